"""The listening WebSocket server: a thin layer of websockets around the runtime."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server as WebSocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import MultipleValuesError
from websockets.http11 import Request, Response
from websockets.protocol import CLOSED

from ._config import Settings, load_settings
from ._failures import ErrorContext
from ._http import RouteResponder
from ._plugins import load_plugins
from ._runtime import AgentRuntime
from ._security import HandshakePolicy, TokenFile, is_loopback, redacting_logger
from .exceptions import ConfigError

if TYPE_CHECKING:
    from ._live import LivePlugins

__all__ = ["Server"]

logger = logging.getLogger("localagent")

GOING_AWAY = 1001
#: Seconds between two log lines about handshakes refused for the connection limit.
REFUSAL_LOG_INTERVAL = 10.0


class Server:
    """A running agent: plugins loaded, ``on_load`` done, listening on a socket.

    Create it with :meth:`create` and use it as an async context manager::

        async with Server.create(port=0) as server:
            print(server.url)
            await server.serve_forever()

    Args:
        runtime: The agent runtime to serve.
        token: The token source (defaults to the token file in the config dir).
    """

    def __init__(self, runtime: AgentRuntime, *, token: TokenFile | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.token_file = token or TokenFile(self.settings.config_dir)
        server = self.settings.server
        self.policy = HandshakePolicy.create(
            self.token_file.get,
            bind_host=server.host,
            origins=server.origins,
            allowed_hosts=server.allowed_hosts,
        )
        #: Answers the plain HTTP requests of the routes plugins add (``agent.add_route``).
        self.http = RouteResponder(runtime.routes, self.policy, report=self._route_failed)
        self._ws_server: WebSocketServer | None = None
        #: Connections admitted past the handshake checks and not yet done with.
        self._admitted: set[ServerConnection] = set()
        self._refused_unlogged = 0
        self._refusal_logged_at: float | None = None
        #: Keeps the plugins in step with config.toml and the installed ones (once started).
        self.live: LivePlugins | None = None

    @classmethod
    def create(
        cls,
        settings: Settings | None = None,
        *,
        options: Sequence[str] = (),
        strict: bool = False,
        extra_plugins: Mapping[str, object] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Server:
        """Load settings (unless given) and plugins and build a server; nothing runs yet.

        Args:
            settings: Use these instead of loading them.
            options: ``-p NAME`` / ``-p no:NAME`` plugin options.
            strict: Make any plugin failure fatal.
            extra_plugins: Plugin objects to register by name besides the discovered ones.
            environ: Environment for settings and plugin selection (default ``os.environ``).
            overrides: Settings by name, such as ``port=0`` or ``redis="redis://..."``.
        """
        environ = os.environ if environ is None else environ
        if settings is None:
            settings = load_settings(environ=environ, overrides=overrides)
        plugins = load_plugins(
            disabled_in_config=settings.disabled_plugins,
            options=options,
            environ=environ,
            extra=extra_plugins,
            strict=strict,
        )
        for info in plugins.errors:
            logger.error("plugin %r failed to load: %s", info.name, info.error)
        return cls(AgentRuntime(settings, plugins, strict=strict))

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        if self._ws_server is None:
            raise RuntimeError("the server is not started")
        return int(self._ws_server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` of the running server (without the token)."""
        host = self.settings.server.host
        host = f"[{host}]" if ":" in host else host
        return f"ws://{host}:{self.port}"

    async def start(self) -> None:
        """Bind the port, run ``on_load`` for every plugin, then accept connections.

        The port is bound first, so that an agent that cannot listen (the port is
        taken) fails before any plugin's ``on_load`` starts anything; connections
        are accepted only once every ``on_load`` has finished.

        Raises:
            ConfigError: A non-loopback bind without ``allow_remote``, or the
                port cannot be bound.
            PluginError: In strict mode, when a plugin's ``on_load`` fails.
        """
        server = self.settings.server
        if not is_loopback(server.host):
            if not server.allow_remote:
                raise ConfigError(
                    f"binding to {server.host} exposes the agent beyond this machine; "
                    "pass --allow-remote (or set server.allow_remote) if you mean it"
                )
            logger.warning(
                "listening on non-loopback address %s: anyone who can reach it and has "
                "the token can use this agent",
                server.host,
            )
        self.token_file.get()  # create it now, not at the first handshake
        try:
            ws_server = await serve(
                self._handle,
                server.host,
                server.port,
                start_serving=False,
                process_request=self._process_request,
                compression="deflate" if server.compression else None,
                max_size=server.max_message_size,
                ping_interval=server.ping_interval,
                ping_timeout=server.ping_timeout,
                open_timeout=server.open_timeout,
                server_header="LocalAgent",
                logger=redacting_logger("localagent.websockets.server", self.token_file.get),
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}"
            ) from None
        self._ws_server = ws_server
        try:
            await self.runtime.start()
            await ws_server.start_serving()
        except BaseException:
            self._ws_server = None
            ws_server.close()
            await ws_server.wait_closed()
            await self.runtime.aclose()
            raise
        self.runtime.listening(self.url)
        interval = self.settings.server.watch_interval
        if interval > 0:
            from ._live import LivePlugins

            self.live = LivePlugins(self.runtime, self.url, interval)
            self.live.start()

    def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | Awaitable[Response] | None:
        """Answer a route's request, or check a WebSocket handshake (``None``: it goes on)."""
        route = self.http.route_for(request)
        if route is not None:
            return self.http.respond(connection, request, route)
        return self._check_handshake(connection, request)

    def _route_failed(self, error: BaseException, plugin: str | None) -> None:
        self.runtime.report(error, ErrorContext("transport", plugin=plugin))

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        headers = request.headers
        try:
            rejection = self.policy.check(
                request.path,
                headers.get("Host"),
                headers.get("Origin"),
                headers.get("Authorization"),
            )
        except MultipleValuesError:
            return connection.respond(400, "duplicate Host, Origin or Authorization header\n")
        if rejection is None:
            return self._admit(connection)
        logger.info(
            "refused a connection from %s: %s (%d)",
            connection.remote_address[0] if connection.remote_address else "?",
            rejection.reason,
            rejection.status,
        )
        return connection.respond(rejection.status, rejection.reason + "\n")

    def _admit(self, connection: ServerConnection) -> Response | None:
        """Count a connection that passed the checks, or refuse it (503) at ``max_connections``.

        It is counted from here, not from :meth:`_handle`, so that handshakes
        in progress at once cannot all slip under the limit.
        """
        admitted = self._admitted
        limit = self.settings.server.max_connections
        if len(admitted) >= limit:
            # One that closed before its handler ran was never discarded there.
            admitted.difference_update([c for c in admitted if c.protocol.state is CLOSED])
        if len(admitted) < limit:
            admitted.add(connection)
            return None
        self._log_refusal(connection, limit)
        return connection.respond(
            503, f"too many connections: this agent serves at most {limit} at once\n"
        )

    def _log_refusal(self, connection: ServerConnection, limit: int) -> None:
        """Log a refusal for the connection limit, at most once per REFUSAL_LOG_INTERVAL."""
        now = time.monotonic()
        if (
            self._refusal_logged_at is not None
            and now - self._refusal_logged_at < REFUSAL_LOG_INTERVAL
        ):
            self._refused_unlogged += 1
            return
        unlogged = (
            f"; {self._refused_unlogged} more refused since the last message"
            if self._refused_unlogged
            else ""
        )
        logger.warning(
            "refused a connection from %s with 503: %d connections are open and "
            "server.max_connections is %d%s",
            connection.remote_address[0] if connection.remote_address else "?",
            len(self._admitted),
            limit,
            unlogged,
        )
        self._refused_unlogged = 0
        self._refusal_logged_at = now

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            await self.runtime.serve(
                ws, origin=ws.request.headers.get("Origin") if ws.request else None
            )
        finally:
            self._admitted.discard(ws)

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        if self._ws_server is None:
            raise RuntimeError("the server is not started")
        await self._ws_server.serve_forever()

    async def aclose(self) -> None:
        """Shut down gracefully.

        Stops accepting connections, gives running handlers up to
        ``shutdown_grace`` seconds to reply, closes every connection with 1001
        (close callbacks run first, so wrappers can flush), then cancels the
        background tasks.
        """
        if self._ws_server is None:
            return
        if self.live is not None:
            await self.live.stop()
        self._ws_server.close(close_connections=False)
        await self.runtime.drain(self.settings.server.shutdown_grace)
        connections = list(self.runtime.connections)
        await asyncio.gather(
            *(c.close(GOING_AWAY, "server shutting down") for c in connections),
            return_exceptions=True,
        )
        await self._ws_server.wait_closed()
        await self.runtime.aclose()
        self._ws_server = None

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
