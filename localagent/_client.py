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

from . import _codec
from ._config import ENV_PREFIX, config_dir, load_settings
from ._protocol import unbatch
from ._security import TokenFile, redacting_logger
from .exceptions import ConnectFailed, ConnectionLost, HandshakeRejected, ReplyError

__all__ = ["Client", "default_token", "default_url"]

logger = logging.getLogger("localagent.client")

URL_VARIABLE = ENV_PREFIX + "URL"
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
    to a pending request (greetings, broadcasts) go to :attr:`events`.

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
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        open_timeout: float = 10.0,
        max_message_size: int | None = 16 << 20,
        max_events: int = 10_000,
    ) -> None:
        self.url = url or default_url()
        self._token = token
        self._open_timeout = open_timeout
        self._max_message_size = max_message_size
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._listeners: dict[int, Callable[[Any], None]] = {}
        self._ids = itertools.count(1)
        self._closed_error: ConnectionLost | None = None
        self.events: asyncio.Queue[Any] = asyncio.Queue(max_events)
        self.dropped_events = 0

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
            HandshakeRejected: The agent answered 401 (token) or 403 (Origin/Host).
            ConnectFailed: Nothing listens there, or the handshake failed.
        """
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
        msg_id = item.get("id") if type(item) is dict else None
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
        if self.events.full():
            self.events.get_nowait()
            self.dropped_events += 1
        self.events.put_nowait(item)

    async def request(
        self,
        type: str,
        data: Any = None,
        *,
        timeout: float | None = None,
        on_event: Callable[[Any], None] | None = None,
    ) -> Any:
        """Send one request and return its ``result``.

        Args:
            type: The message type.
            data: The payload (any JSON value).
            timeout: Seconds to wait for the reply (``None``: no limit).
            on_event: Called with each message the agent sends with this
                request's id before the final reply (e.g. streamed ``exec``
                output); without it they go to :attr:`events`.

        Raises:
            ReplyError: The agent answered with an error.
            ConnectionLost: The connection closed before the reply.
            TimeoutError: No reply within ``timeout`` seconds.
        """
        ws = self._require_open()
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        if on_event is not None:
            self._listeners[msg_id] = on_event
        try:
            await self._send(ws, {"id": msg_id, "type": type, "data": data})
            reply = await asyncio.wait_for(future, timeout) if timeout else await future
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

    async def notify(self, type: str, data: Any = None) -> None:
        """Send a message without an id: it is handled, but only errors are answered."""
        await self._send(self._require_open(), {"type": type, "data": data})

    async def send_raw(self, frame: bytes | str) -> None:
        """Send one frame as it is (for tests and tools that speak the protocol directly)."""
        ws = self._require_open()
        try:
            await ws.send(frame, text=True)
        except ConnectionClosed:
            raise self._lost() from None

    async def _send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        try:
            await ws.send(_codec.dumps(message), text=True)
        except ConnectionClosed:
            raise self._lost() from None

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
        return self._ws is None or self._closed_error is not None

    @property
    def close_code(self) -> int | None:
        """The close code received from the agent, once closed."""
        return self._closed_error.code if self._closed_error else None

    async def aclose(self) -> None:
        """Close the connection; pending requests fail with :class:`ConnectionLost`."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader

    async def __aenter__(self) -> Client:
        if self._ws is None:
            await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
