"""The agent runtime: runs the hooks, serves connections, turns failures into replies.

Transport-agnostic: it receives frames and a :class:`WebSocketConnection`, and
never touches the listening socket (that is :mod:`localagent._server`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from types import CoroutineType
from typing import Any, Protocol, TypeVar

from localagent_hookspecs import (
    Connection,
    KeyValueStore,
    Message,
    MessageError,
    RouteHandler,
    SendFunc,
)
from websockets.asyncio.connection import Connection as WebSocket
from websockets.exceptions import ConnectionClosed

from . import _codec
from ._budget import OutboundBudget, heaviest
from ._config import Settings
from ._connection import WebSocketConnection
from ._dispatch import Dispatcher, HandlerFailed, discard
from ._failures import ErrorContext, ErrorPath, error_parts
from ._lifecycle import PluginLifecycle
from ._plugins import LoadedPlugins
from ._pressure import TRY_AGAIN_LATER, Pressure
from ._protocol import INTERNAL_ERROR, error_reply, parse_frame
from ._protocol import Message as Parsed
from ._routes import LOADING_PLUGIN, RouteTable
from ._stores import open_store
from ._traffic import Traffic
from .exceptions import ConfigError, ConnectionLost

__all__ = ["AgentRuntime", "Replying"]

logger = logging.getLogger("localagent")

SettingsT = TypeVar("SettingsT")

INTERNAL_ERROR_CLOSE = 1011
#: Close code and reason for a connection shed to keep the agent within its outbound budget.
POLICY_VIOLATION = 1008
OVER_BUDGET_REASON = "over the agent's outbound budget: replies are not being read"


class Replying(Connection, Protocol):
    """A connection the runtime replies on: its send path is what ``send`` calls."""

    send_path: SendFunc


def _newest_first(connection: WebSocketConnection) -> int:
    return -int(connection.id.removeprefix("c"))


class AgentRuntime:
    """The running agent: what plugins see as :class:`localagent_hookspecs.Agent`.

    Args:
        settings: The loaded settings.
        plugins: The loaded plugins (see :func:`localagent.load_plugins`).
        strict: Make a failing ``on_load`` fatal.
    """

    def __init__(self, settings: Settings, plugins: LoadedPlugins, *, strict: bool = False) -> None:
        self.settings = settings
        self.plugins = plugins
        self.pm = plugins.manager
        self.strict = strict
        self.dispatcher = Dispatcher(self.pm)
        self.connections: set[WebSocketConnection] = set()
        #: Handler tasks still running, across connections (for a graceful drain).
        self.in_flight: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._max_in_flight = settings.server.max_in_flight
        #: Encoded replies waiting to be written, across connections (``max_pending_bytes``).
        self.budget = OutboundBudget(settings.server.max_pending_bytes)
        #: What plugins may hold back under load (budget, new connections).
        self.pressure = Pressure(self.budget, settings.server.max_pending_bytes)
        self._store: KeyValueStore | None = None
        #: The plain HTTP routes plugins added (see :meth:`add_route`).
        self.routes = RouteTable()
        #: ``ws://host:port`` once a server listens for this runtime (see :meth:`listening`).
        self.url: str | None = None
        self._listening = asyncio.Event()
        #: on_error, the failure log (rate-limited) and error replies encoded once.
        self.errors = ErrorPath(self.pm)
        #: Plugins that asked for their ``[plugins.NAME]`` table (see ``warn_unread``).
        self._tables_read: set[str] = set()
        #: Runs each plugin's ``on_load`` and keeps what undoes it.
        self.lifecycle = PluginLifecycle(self)
        #: Messages received and failures answered, all traffic (for the monitor).
        self.traffic = Traffic()
        #: Called after plugins were enabled or disabled while the agent runs.
        self._plugin_listeners: list[Callable[[], None]] = []

    # -- the Agent protocol ------------------------------------------------

    @property
    def config_dir(self) -> Path:
        return self.settings.config_dir

    @property
    def workspace(self) -> Path:
        return self.settings.agent.workspace

    @property
    def store(self) -> KeyValueStore:
        if self._store is None:
            self._store = open_store(self.settings.agent.redis)
        return self._store

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def plugin_config(self, name: str) -> Mapping[str, Any]:
        self._tables_read.add(name)
        return self.settings.plugin_config(name)

    def plugin_settings(self, name: str, settings_type: type[SettingsT]) -> SettingsT:
        self._tables_read.add(name)
        return self.settings.plugin_settings(name, settings_type)

    def spawn(
        self, coroutine: Coroutine[Any, Any, Any], *, name: str | None = None
    ) -> asyncio.Task[Any]:
        task = self.loop.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        self.lifecycle.owns(task)
        return task

    def add_route(self, path: str, handler: RouteHandler, *, needs_token: bool = True) -> None:
        self.routes.add(path, handler, needs_token=needs_token, plugin=LOADING_PLUGIN.get())

    def limit_outbound(self, factor: float) -> int:
        return self.pressure.limit_outbound(factor)

    def refuse_connections(self, reason: str | None) -> None:
        self.pressure.refuse_connections(reason)

    def on_plugins_changed(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after plugins were enabled or disabled on the running agent."""
        self._plugin_listeners.append(callback)

    def plugins_changed(self) -> None:
        """Tell the listeners of :meth:`on_plugins_changed`; one that raises is reported."""
        for callback in list(self._plugin_listeners):
            try:
                callback()
            except Exception as exc:
                self.report(exc, ErrorContext("transport"))

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.report(task.exception(), ErrorContext("transport"))  # type: ignore[arg-type]

    # -- lifecycle ---------------------------------------------------------

    def listening(self, url: str) -> None:
        """Record where the server listens (``ws://host:port``); called once it does."""
        self.url = url
        self._listening.set()

    async def wait_listening(self) -> str:
        """Wait until a server listens for this runtime; return its ``ws://host:port``."""
        await self._listening.wait()
        assert self.url is not None
        return self.url

    async def start(self) -> None:
        """Run every plugin's ``on_load`` concurrently and record its time.

        Raises:
            PluginError: If ``strict`` and a plugin's ``on_load`` failed.
        """
        self._loop = asyncio.get_running_loop()
        try:
            self.workspace.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the workspace {self.workspace}: {exc}") from None
        await self._check_store()
        await self.lifecycle.load(list(reversed(self.pm.hook.on_load.get_hookimpls())))
        self.lifecycle.warn_unread(self._tables_read)

    async def _check_store(self) -> None:
        try:
            await self.store.ping()
        except MessageError as exc:
            # Not fatal: the store reconnects by itself, and until then kv
            # requests get "unavailable" replies.
            logger.warning("%s", exc.message)

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for running handlers to reply."""
        if self.in_flight and timeout > 0:
            await asyncio.wait(list(self.in_flight), timeout=timeout)

    async def aclose(self) -> None:
        """Undo each plugin's ``on_load``, cancel the tasks of :meth:`spawn`, close the store."""
        await self.lifecycle.tear_down_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._store is not None:
            await self._store.aclose()
        self.errors.log.flush()

    # -- errors ------------------------------------------------------------

    def report(self, error: BaseException, context: ErrorContext) -> MessageError | None:
        """Send ``error`` through ``on_error``; return the reply a plugin chose, if any
        (:func:`localagent._failures.report`: one implementation at a time)."""
        return self.errors.report(error, context)

    def _report_connection(self, error: BaseException, connection: WebSocketConnection) -> None:
        self.report(error, ErrorContext("close", connection=connection))

    # -- connections -------------------------------------------------------

    def connection_for(
        self, ws: WebSocket, *, outbound: bool, origin: str | None = None
    ) -> WebSocketConnection:
        """Wrap a websockets connection for the hooks."""
        return WebSocketConnection(
            ws,
            outbound=outbound,
            origin=origin,
            report=self._report_connection,
            budget=self.budget,
            over_budget=self._over_budget,
        )

    def _over_budget(self, charged: WebSocketConnection) -> None:
        """More than ``max_pending_bytes`` wait: shed the connection that holds the most.

        That is the client reading the least of what it asked for, usually
        not ``charged`` (whose frame just went over): a well-behaved client's
        replies wait only until it reads them.
        """
        # Ties go to the newest connection: a client served longer keeps its place
        # (and the choice does not hang on the order a set happens to iterate in).
        candidates = sorted({charged, *self.connections}, key=_newest_first)
        victim = heaviest(c for c in candidates if c.shed_reason is None)
        if victim is None:
            return
        logger.warning(
            "closing connection %s (%s) with %d: %d bytes of its replies wait to be written, "
            "and the agent's replies waiting in all (%d bytes) are over server.max_pending_bytes "
            "(%d)",
            victim.id,
            victim.remote_address or "?",
            POLICY_VIOLATION,
            victim.pending_bytes,
            self.budget.pending,
            self.budget.limit,
        )
        self.budget.shed += 1
        victim.shed(POLICY_VIOLATION, OVER_BUDGET_REASON)

    async def run_on_connect(self, connection: WebSocketConnection) -> None:
        """Call every ``on_connect``; one plugin's failure does not stop the others."""
        for impl in reversed(self.pm.hook.on_connect.get_hookimpls()):
            try:
                result = impl.function(*([connection] if impl.argnames else []))
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                name = self.pm.get_name(impl.plugin)
                self.report(exc, ErrorContext("connect", plugin=name, connection=connection))

    async def serve(self, ws: WebSocket, *, origin: str | None = None) -> None:
        """Serve one inbound connection until it closes."""
        refusing = self.pressure.refusing
        if refusing is not None:  # under pressure: "try again later", before any hook
            await ws.close(TRY_AGAIN_LATER, refusing)
            return
        connection = self.connection_for(ws, outbound=False, origin=origin)
        self.connections.add(connection)
        in_flight = asyncio.Semaphore(self._max_in_flight)
        budget = self.budget
        traffic = self.traffic
        pending: set[asyncio.Task[None]] = set()

        def forget(task: asyncio.Task[None]) -> None:
            pending.discard(task)
            self.in_flight.discard(task)

        def stop_handlers() -> None:
            # A closing connection's handlers can no longer reply: stop them now
            # rather than when the close is done (a shed client may never answer).
            current = asyncio.current_task()
            for task in pending:
                if task is not current:
                    task.cancel()

        try:
            await self.run_on_connect(connection)
            connection.on_close(stop_handlers)
            dispatch = self.dispatcher.dispatch
            while True:
                # Text frames come decoded: websockets closes with 1007 when one is
                # not UTF-8 (RFC 6455 section 8.1). Binary frames come as bytes.
                frame = await ws.recv()
                send = connection.send_path  # read per frame: a plugin may wrap it later
                items = parse_frame(frame)
                traffic.messages += len(items)
                # Replies to a batch frame's members will have company: see more_inbound.
                connection.in_batch = len(items) > 1
                for item in items:
                    if type(item) is not Parsed:
                        # No coroutine of its own, nor _reply()'s for a frame encoded once.
                        self.traffic.errors += 1
                        reply = self.errors.rejected(connection, item)  # type: ignore[arg-type]
                        if type(reply) is bytes:
                            await connection.send_frame(reply)
                        else:
                            await self._reply(connection, None, reply)
                        continue
                    try:
                        result = dispatch(connection, item)
                    except HandlerFailed as failed:
                        # _fail(), inlined: two coroutines fewer per failure (its own and
                        # _reply()'s) when the reply is a frame encoded once.
                        reply = self._failure_reply(connection, item, failed)
                        if type(reply) is bytes:
                            await connection.send_frame(reply)
                        else:
                            await self._reply(connection, item, reply)
                        continue
                    if type(result) is CoroutineType:  # is_pending(), inlined
                        # Async handler: finish it in a task so the next message is
                        # read meanwhile; the semaphore bounds how many run at once.
                        try:
                            await in_flight.acquire()
                            if connection.closed:  # shed or closing while we waited
                                raise ConnectionLost(f"connection {connection.id} is closed")
                            if connection.pending_bytes > budget.share:
                                # Slowed: its replies wait for the client to read them,
                                # so start nothing more for it until they are written.
                                budget.slowed += 1
                                await connection.written()
                        except BaseException:
                            discard(result)  # never started: no "never awaited" warning
                            raise
                        task = asyncio.create_task(
                            self._finish(connection, item, result, in_flight)
                        )
                        pending.add(task)
                        self.in_flight.add(task)
                        task.add_done_callback(forget)
                        connection.requests.track(item.id, task)  # for agent.cancel
                    elif item.id is not None:
                        reply = {"id": item.id, "result": result}
                        try:  # the common case, inline: no extra coroutine per reply
                            await send(reply)
                        except ConnectionLost:
                            raise
                        except Exception as exc:
                            await self._send_failed(connection, item, reply, exc)
        except (ConnectionClosed, ConnectionLost):
            pass
        except Exception as exc:
            # A bug below the handlers (codec, transport, a send wrapper): report it
            # and close this connection with "internal error"; the server goes on.
            self.report(exc, ErrorContext("transport", connection=connection))
            logger.exception("connection %s failed", connection.id)
            await ws.close(INTERNAL_ERROR_CLOSE, "internal error")
        finally:
            self.connections.discard(connection)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await connection.run_close_callbacks()
            # A shed connection's own close code goes out before websockets' 1000.
            await connection.wait_shed()

    async def _finish(
        self,
        connection: WebSocketConnection,
        message: Message,
        pending: Any,
        in_flight: asyncio.Semaphore,
    ) -> None:
        try:
            await self._complete(connection, message, pending)
        except ConnectionLost:
            pass  # the client went away; nobody is left to answer
        finally:
            in_flight.release()

    async def handle(self, connection: Replying, message: Message) -> None:
        """Handle one message that did not arrive on a socket of this process, and reply.

        The path :meth:`serve` takes for each message (dispatch, ``on_error``,
        the reply through ``connection.send_path``), for a connection that
        stands for a sender elsewhere (the ``cluster`` plugin's remote senders).

        Raises:
            ConnectionLost: The reply could not be handed to ``connection``.
        """
        self.traffic.messages += 1
        try:
            result = self.dispatcher.dispatch(connection, message)
        except HandlerFailed as failed:
            await self._fail(connection, message, failed)
            return
        await self._complete(connection, message, result)

    async def _complete(self, connection: Replying, message: Message, result: Any) -> None:
        """Await a pending handler result, then send the reply (or the error reply)."""
        if type(result) is CoroutineType:
            try:
                result = await result
            except HandlerFailed as failed:
                await self._fail(connection, message, failed)
                return
        if message.id is not None:
            reply = {"id": message.id, "result": result}
            try:  # _reply(), inlined: one coroutine less per async message
                await connection.send_path(reply)
            except ConnectionLost:
                raise
            except Exception as exc:
                await self._send_failed(connection, message, reply, exc)

    async def _reply(
        self, connection: Replying, message: Message | None, reply: dict[str, Any] | bytes
    ) -> None:
        """Send a reply through the connection's send path (see :meth:`_send_failed`),
        or a frame already encoded (:meth:`ErrorPath.reply`) to the connection itself."""
        if isinstance(reply, bytes):
            return await connection.send_frame(reply)
        try:
            await connection.send_path(reply)
        except ConnectionLost:
            raise
        except Exception as exc:
            await self._send_failed(connection, message, reply, exc)

    async def _send_failed(
        self,
        connection: Replying,
        message: Message | None,
        reply: dict[str, Any],
        error: Exception,
    ) -> None:
        """Fall back after the send path failed, so the client still gets an answer.

        An unserialisable result becomes an ``internal_error`` reply. If the
        send path itself failed (a broken wrapper), the error is reported and
        the reply goes out directly, bypassing the wrappers.
        """
        context = ErrorContext("send", connection=connection, message=message)
        chosen = self.report(error, context)
        if isinstance(error, _codec.EncodeError):
            self.traffic.errors += 1
            fallback = chosen or MessageError(
                INTERNAL_ERROR, f"the reply is not JSON-serialisable: {error}"
            )
            reply = error_reply(reply.get("id"), *error_parts(fallback))
        else:
            self.errors.send_failed(connection, error)
        await connection.send_frame(_codec.dumps(reply))

    async def _fail(self, connection: Replying, message: Message, failed: HandlerFailed) -> None:
        await self._reply(connection, message, self._failure_reply(connection, message, failed))

    def _failure_reply(
        self, connection: Replying, message: Message, failed: HandlerFailed
    ) -> dict[str, Any] | bytes:
        """Count a handler's failure; the error reply to send (:meth:`ErrorPath.failed`)."""
        self.traffic.errors += 1
        return self.errors.failed(connection, message, failed.plugin, failed.error)
