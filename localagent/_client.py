"""``localagent.Client``: an asyncio client with concurrent, id-correlated requests."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from . import _codec, _connectors
from ._config import ENV_PREFIX, config_dir, load_settings
from ._connectors import ClientOptions, Connector, ConnectorFactory
from ._protocol import batch_frames, unbatch
from ._security import TokenFile, redacting_logger
from .exceptions import ConnectFailed, ConnectionLost, HandshakeRejected, ReplyError

__all__ = [
    "Client",
    "ClientOptions",
    "Connector",
    "ConnectorFactory",
    "default_token",
    "default_url",
]

logger = logging.getLogger("localagent.client")

URL_VARIABLE = ENV_PREFIX + "URL"
#: Largest batch frame a coalescing :class:`Client` sends (well under any sane
#: ``max_message_size`` of an agent); a larger message is sent alone.
BATCH_BYTES = 16 * 1024
TOKEN_VARIABLE = ENV_PREFIX + "TOKEN"


def default_url(environ: Mapping[str, str] | None = None) -> str:
    """``$LOCALAGENT_URL``, or the URL the configured server listens on."""
    environ = os.environ if environ is None else environ
    if environ.get(URL_VARIABLE):
        return environ[URL_VARIABLE]
    server = load_settings(environ=environ).server
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
    host = f"[{host}]" if ":" in host else host
    return f"ws://{host}:{server.port}"


def default_token(environ: Mapping[str, str] | None = None) -> str:
    """``$LOCALAGENT_TOKEN``, or the token stored in the user config directory."""
    environ = os.environ if environ is None else environ
    return environ.get(TOKEN_VARIABLE) or TokenFile(config_dir()).get()


class Client:
    """A connection to an agent that sends requests and matches replies by id.

    Requests may run concurrently (``asyncio.gather`` over :meth:`request`);
    batch frames are unpacked transparently. Messages that are not replies
    to a pending request (greetings, broadcasts) go to :attr:`events`, and so
    does every message carrying ``from``: another client's delivery, whatever
    its ``id``, is never taken for part of one of this client's requests.

    Example::

        async with Client(url, token) as client:
            print(await client.request("ping"))

    Args:
        url: ``ws://host:port`` of the agent (default: :func:`default_url`).
        token: The agent's token (default: :func:`default_token`).
        open_timeout: Seconds allowed to connect.
        max_message_size: Largest frame accepted from the agent.
        max_events: Capacity of :attr:`events`; when full the oldest event is
            dropped and counted in :attr:`dropped_events`.
        connector: Borrow the connection from this :class:`Connector` (a pool)
            instead of dialling one; :meth:`aclose` gives it back.
        direct: Dial this client's own connection even when a connector
            factory is installed (a pool's own connections are made this way).
        coalesce: Send the requests and notifications made in the same
            event-loop iteration (say, by ``asyncio.gather``) as one batch
            frame of at most :data:`BATCH_BYTES`, instead of a frame each.
            The agent answers each member on its own, as if sent alone.

    Pooled clients: with a connector (given, or chosen by the factory that
    :meth:`set_connector_factory` installs, e.g. by the ``pooling`` plugin),
    :meth:`open` borrows a connection and :meth:`aclose` returns it. If the
    borrowed connection closes (the agent restarted), requests in flight fail
    with :class:`ConnectionLost` and the next request borrows a new one.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        open_timeout: float = 10.0,
        max_message_size: int | None = 16 << 20,
        max_events: int = 10_000,
        connector: Connector | None = None,
        direct: bool = False,
        coalesce: bool = True,
    ) -> None:
        self.url = url or default_url()
        self._token = token
        self._open_timeout = open_timeout
        self._max_message_size = max_message_size
        self._connector = connector
        self._direct = direct
        self._coalesce = coalesce
        #: Encoded messages waiting for this loop iteration's frame (see :meth:`_send`).
        self._outbox: list[bytes] = []
        #: The borrowed connection, while a pooled client is open.
        self._lease: Client | None = None
        self._released = True  # a pooled client is not open yet
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._listeners: dict[int, Callable[[Any], None]] = {}
        self._ids = itertools.count(1)
        self._closed_error: ConnectionLost | None = None
        self._events: asyncio.Queue[Any] = asyncio.Queue(max_events)
        self._dropped_events = 0
        self._writes: set[asyncio.Task[None]] = set()

    @classmethod
    def set_connector_factory(cls, factory: ConnectorFactory | None) -> ConnectorFactory | None:
        """Install the process-wide factory that new clients consult in :meth:`open`.

        This is the hook a pooling plugin fills in its ``on_load``: the factory
        gets the new client's :class:`ClientOptions` and returns the
        :class:`Connector` (a pool) to borrow from, or ``None`` to dial
        directly. ``None`` uninstalls it.

        Returns:
            The factory installed before.
        """
        previous: ConnectorFactory | None = _connectors.install(factory)
        return previous

    @property
    def options(self) -> ClientOptions:
        """What this client was created with."""
        return ClientOptions(self.url, self._token, self._open_timeout, self._max_message_size)

    @property
    def events(self) -> asyncio.Queue[Any]:
        """Messages that are not replies to a pending request (greetings, deliveries)."""
        return self._lease._events if self._lease is not None else self._events

    @property
    def dropped_events(self) -> int:
        """Events dropped because :attr:`events` was full."""
        return self._lease._dropped_events if self._lease is not None else self._dropped_events

    @property
    def pending(self) -> int:
        """Requests sent on this connection and still waiting for their reply."""
        if self._lease is not None:
            return self._lease.pending
        return len(self._pending) + len(self._listeners)

    @property
    def pooled(self) -> bool:
        """Whether this client borrows its connection from a :class:`Connector`."""
        return self._connector is not None

    @classmethod
    async def connect(
        cls, url: str | None = None, token: str | None = None, **kwargs: Any
    ) -> Client:
        """Create a client and open its connection."""
        client = cls(url, token, **kwargs)
        await client.open()
        return client

    async def open(self) -> None:
        """Open the WebSocket connection.

        Raises:
            HandshakeRejected: The agent answered 401 (token), 403 (Origin/Host)
                or 503 (too many connections).
            ConnectFailed: Nothing listens there, or the handshake failed.
        """
        factory = _connectors.factory
        if self._connector is None and not self._direct and factory is not None:
            self._connector = factory(self.options)
        if self._connector is not None:
            self._lease = await self._connector.acquire()
            self._released = False
            return
        token = self._token if self._token is not None else default_token()
        try:
            self._ws = await connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {token}"},
                compression=None,
                open_timeout=self._open_timeout,
                max_size=self._max_message_size,
                user_agent_header="localagent-client",
                logger=redacting_logger("localagent.websockets.client"),
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            reason = (
                exc.response.body.decode("utf-8", "replace").strip() if exc.response.body else ""
            )
            raise HandshakeRejected(
                status, f"the agent at {self.url} refused the connection: {status} {reason}"
            ) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ConnectFailed(
                f"cannot connect to {self.url}: {exc}. Is `localagent serve` running?"
            ) from None
        self._closed_error = None
        self._reader = asyncio.create_task(self._read(self._ws), name="localagent-client-reader")

    async def _read(self, ws: ClientConnection) -> None:
        try:
            while True:
                frame = await ws.recv(decode=False)
                try:
                    decoded = _codec.loads(frame)
                except _codec.DecodeError:
                    logger.warning("ignored a frame that is not JSON")
                    continue
                for item in unbatch(decoded):
                    self._deliver(item)
        except ConnectionClosed:
            pass
        finally:
            code, reason = ws.close_code, ws.close_reason or ""
            detail = f" (close code {code}{': ' + reason if reason else ''})" if code else ""
            self._closed_error = ConnectionLost(
                f"the connection to {self.url} closed{detail}", code=code, reason=reason
            )
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_exception(self._closed_error)

    def _deliver(self, item: Any) -> None:
        # A message with "from" is another client's delivery (docs/protocol.md): its id
        # is the sender's, and ids are guessable, so it never joins a pending request.
        msg_id = item.get("id") if type(item) is dict and "from" not in item else None
        if type(msg_id) is int:  # the client's ids are ints; anything else is an event
            if "result" in item or "error" in item:
                future = self._pending.pop(msg_id, None)
                if future is not None:
                    if not future.done():
                        future.set_result(item)
                    return
            else:
                listener = self._listeners.get(msg_id)
                if listener is not None:
                    try:
                        listener(item)
                    except Exception:  # the caller's bug must not stop the reader
                        logger.exception("on_event callback for request %s failed", msg_id)
                    return
        if self._events.full():
            self._events.get_nowait()
            self._dropped_events += 1
        self._events.put_nowait(item)

    async def request(
        self,
        type: str,
        data: Any = None,
        *,
        timeout: float | None = None,
        on_event: Callable[[Any], None] | None = None,
        to: str | None = None,
        cancel_on_abort: bool = False,
    ) -> Any:
        """Send one request and return its ``result``.

        Args:
            type: The message type.
            data: The payload (any JSON value).
            timeout: Seconds to wait for the reply (``None``: no limit).
            on_event: Called with each message the agent sends with this
                request's id before the final reply (e.g. streamed ``exec``
                output); without it they go to :attr:`events`. A message
                carrying ``from`` (another client's delivery) is never one.
            to: Address it to another agent or client of the agent's cluster
                (the envelope's ``"to"``, see docs/cluster.md).
            cancel_on_abort: If the caller is cancelled or ``timeout`` passes
                before the reply, send ``agent.cancel`` for the request, so the
                agent stops its handler (an ``exec`` its program).

        Raises:
            ReplyError: The agent answered with an error.
            ConnectionLost: The connection closed before the reply.
            TimeoutError: No reply within ``timeout`` seconds.
        """
        if self._connector is not None:
            lease = await self._leased()
            return await lease.request(
                type,
                data,
                timeout=timeout,
                on_event=on_event,
                to=to,
                cancel_on_abort=cancel_on_abort,
            )
        ws = self._require_open()
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        if on_event is not None:
            self._listeners[msg_id] = on_event
        try:
            message = {"id": msg_id, "type": type, "data": data}
            if to is not None:
                message["to"] = to
            await self._send(ws, message)
            reply = await asyncio.wait_for(future, timeout) if timeout else await future
        except (asyncio.CancelledError, TimeoutError):
            if cancel_on_abort and (future.cancelled() or not future.done()):  # no reply yet
                self._cancel_remote(ws, msg_id)
            raise
        finally:
            self._pending.pop(msg_id, None)
            self._listeners.pop(msg_id, None)
        error = reply.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise ReplyError("invalid_reply", f"malformed error reply: {error!r}")
            raise ReplyError(
                str(error.get("code", "error")), str(error.get("message", "")), error.get("details")
            )
        return reply.get("result")

    def _cancel_remote(self, ws: ClientConnection, msg_id: int) -> None:
        """Send ``agent.cancel`` for ``msg_id`` from a task of its own (the caller is cancelled)."""
        frame = _codec.dumps({"type": "agent.cancel", "data": {"id": msg_id}})
        task = asyncio.get_running_loop().create_task(self._write(ws, frame))
        self._writes.add(task)
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        task.add_done_callback(self._writes.discard)

    async def notify(self, type: str, data: Any = None, *, to: str | None = None) -> None:
        """Send a message without an id: it is handled, but only errors are answered.

        ``to`` addresses it as in :meth:`request`.
        """
        if self._connector is not None:
            await (await self._leased()).notify(type, data, to=to)
            return
        message = {"type": type, "data": data}
        if to is not None:
            message["to"] = to
        await self._send(self._require_open(), message)

    async def send_raw(self, frame: bytes | str) -> None:
        """Send one frame as it is (for tests and tools that speak the protocol directly)."""
        if self._connector is not None:
            await (await self._leased()).send_raw(frame)
            return
        ws = self._require_open()
        if self._outbox:  # messages sent before this frame go before it
            await self._write_outbox(ws)
        await self._write(ws, frame)

    async def _send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        encoded = _codec.dumps(message)  # an unencodable payload fails its own caller
        if not self._coalesce:
            await self._write(ws, encoded)
            return
        outbox = self._outbox
        outbox.append(encoded)
        if len(outbox) > 1:
            return  # this iteration's first sender writes it; a lost connection fails its reply
        # The first sender of this iteration writes the frame: it yields once, so the
        # requests already scheduled to run in this iteration (the callers woken by
        # one batch of replies, an asyncio.gather) join the outbox first.
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            # Cancelled while yielding: the others' messages still go out.
            task = asyncio.get_running_loop().create_task(self._write_outbox(ws))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
            raise
        await self._write_outbox(ws)

    async def _write_outbox(self, ws: ClientConnection) -> None:
        """Write the outbox: one frame per :data:`BATCH_BYTES`, a lone message as itself."""
        outbox, self._outbox = self._outbox, []
        for frame in batch_frames(outbox, BATCH_BYTES):
            await self._write(ws, frame)

    async def _write(self, ws: ClientConnection, frame: bytes | str) -> None:
        try:
            await ws.send(frame, text=True)
        except ConnectionClosed:
            raise self._lost() from None

    async def _leased(self) -> Client:
        """The borrowed connection; a new one if it closed (the agent restarted, say)."""
        lease, connector = self._lease, self._connector
        if self._released or connector is None:
            raise ConnectionLost("the client is not connected; call open() first")
        if lease is None or lease.closed:
            self._lease = None
            if lease is not None:
                connector.release(lease)  # the pool discards a closed connection
            lease = await connector.acquire()
            if self.closed:  # aclose() ran meanwhile
                connector.release(lease)
                raise ConnectionLost("the client was closed")
            self._lease = lease
        return lease

    async def check(self, timeout: float) -> bool:
        """Whether the connection answers a WebSocket ping within ``timeout`` seconds.

        A pool calls it before handing out a connection that sat idle.
        """
        if self._lease is not None:
            return await self._lease.check(timeout)
        if self.closed or self._ws is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await (await self._ws.ping())
        except (ConnectionClosed, TimeoutError, OSError):
            return False
        return True

    def _require_open(self) -> ClientConnection:
        if self._ws is None:
            raise ConnectionLost("the client is not connected; call open() first")
        if self._closed_error is not None:
            raise self._closed_error
        return self._ws

    def _lost(self) -> ConnectionLost:
        return self._closed_error or ConnectionLost(f"the connection to {self.url} closed")

    @property
    def closed(self) -> bool:
        if self._connector is not None:
            return self._released
        return self._ws is None or self._closed_error is not None

    @property
    def close_code(self) -> int | None:
        """The close code received from the agent, once closed."""
        if self._lease is not None:
            return self._lease.close_code
        return self._closed_error.code if self._closed_error else None

    async def aclose(self) -> None:
        """Close the connection; pending requests fail with :class:`ConnectionLost`.

        A pooled client gives its connection back to the pool instead.
        """
        if self._connector is not None:
            lease, self._lease = self._lease, None
            self._released = True
            if lease is not None:
                self._connector.release(lease)
            return
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader

    async def __aenter__(self) -> Client:
        if self._ws is None and self._lease is None:
            await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
