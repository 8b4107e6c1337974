"""The monitor's own port, for users who set ``[plugins.monitor] port``.

By default the endpoints answer on the agent's own port (``agent.add_route``).
With a port of its own, the monitor runs a second websockets server there,
whose ``process_request`` answers every request from the monitor's routes
(404 off them): no WebSocket ever opens on it, and websockets parses the
requests, as on the agent's port. The checks are the agent's handshake
policy: the agent's token, a loopback ``Host`` name (or one of
``allowed_hosts``), and no browser ``Origin`` but the port's own.

Slow and half-open clients cannot lock the endpoints out: each connection is
served on its own, with :data:`OPEN_TIMEOUT` seconds to send its request head.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from localagent_hookspecs import RouteHandler
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from localagent._http import RouteResponder
from localagent._routes import RouteTable
from localagent._security import HandshakePolicy, redacting_logger

from ._config import MonitorConfig

__all__ = ["OPEN_TIMEOUT", "MonitorPort"]

#: Seconds a client of the monitor's own port gets to send its whole request head;
#: then its connection is closed. A real client, on loopback, sends it at once.
OPEN_TIMEOUT = 5.0

logger = logging.getLogger("localagent.monitor")


async def _no_websocket(connection: ServerConnection) -> None:
    """Never runs: ``process_request`` answers every request with a response."""
    await connection.close()


class MonitorPort:
    """The monitor's endpoints on a port of their own; create it with :meth:`open`."""

    def __init__(self, server: Server, host: str) -> None:
        self._server = server
        self.host = host

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @classmethod
    async def open(
        cls,
        config: MonitorConfig,
        routes: Iterable[tuple[str, RouteHandler, bool]],
        token: Callable[[], str],
    ) -> MonitorPort:
        """Bind ``config.host:config.port`` and serve ``routes`` (path, handler, needs_token).

        Raises:
            OSError: The port cannot be bound; the message names it.
        """
        assert config.port is not None
        table = RouteTable()
        for path, handler, needs_token in routes:
            table.add(path, handler, needs_token=needs_token, plugin="monitor")
        responder: RouteResponder | None = None

        def answer(
            connection: ServerConnection, request: Request
        ) -> Response | Awaitable[Response]:
            assert responder is not None  # set before the server starts serving
            return responder.answer_every_request(connection, request)

        try:
            server = await serve(
                _no_websocket,
                config.host,
                config.port,
                start_serving=False,
                process_request=answer,
                compression=None,
                open_timeout=OPEN_TIMEOUT,
                ping_interval=None,
                server_header="LocalAgent",
                logger=redacting_logger("localagent.websockets.monitor", token),
            )
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"monitor: cannot listen on {config.host}:{config.port}: {exc.strerror or exc} "
                "(pick another with --monitor-port or [plugins.monitor] port)",
            ) from None
        port = cls(server, config.host)
        names = ("127.0.0.1", "localhost", "[::1]", *config.allowed_hosts)
        policy = HandshakePolicy.create(
            token,
            bind_host=config.host,
            origins=[f"http://{name}:{port.port}" for name in names],
            allowed_hosts=config.allowed_hosts,
        )
        responder = RouteResponder(table, policy)
        await server.start_serving()
        return port

    async def aclose(self) -> None:
        self._server.close()
        await self._server.wait_closed()
