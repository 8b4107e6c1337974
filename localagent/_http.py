"""Plain HTTP requests on a websockets server: routes answered behind the handshake policy.

websockets parses every request head and hands it to ``process_request``
before any WebSocket handshake. :class:`RouteResponder` is what that hook
calls for a request a route answers: the same :class:`HandshakePolicy` as
the WebSocket handshake decides first, then the route's handler runs, and
its ``HttpResponse`` becomes websockets' ``Response``. There is no HTTP
parser here: websockets' own does the parsing and the limits (8 KiB lines,
128 headers, no request bodies, ``open_timeout`` for the whole head).
"""

from __future__ import annotations

import email.utils
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import parse_qsl

from localagent_hookspecs import HttpRequest, HttpResponse
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers, MultipleValuesError
from websockets.http11 import Request, Response

from ._routes import Route, RouteTable
from ._security import TOKEN_QUERY_PARAMETER, HandshakePolicy

__all__ = ["RouteResponder", "plain_response"]

logger = logging.getLogger("localagent")

#: Reports a handler's failure: (error, the plugin that added the route).
Report = Callable[[BaseException, str | None], None]

METHODS = ("GET", "HEAD")
#: Headers the responder sets itself; a handler's own values for them are ignored.
_FRAMING = frozenset({"content-length", "connection", "date", "transfer-encoding"})
_SAFE_DEFAULTS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def plain_response(
    status: int, text: str, headers: tuple[tuple[str, str], ...] = (), *, head: bool = False
) -> Response:
    """A ``text/plain`` response that closes the connection (``head``: without the body)."""
    return _encode(HttpResponse(status, (text + "\n").encode(), headers=dict(headers)), head=head)


def _encode(response: HttpResponse, *, head: bool) -> Response:
    """``HttpResponse`` -> websockets' ``Response``, with the framing and safe headers.

    Raises:
        ValueError: A status outside 200-599 (a 1xx would switch protocols)
            or a malformed header.
    """
    status = response.status
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise ValueError(f"a route's response status must be an integer 200-599, not {status!r}")
    body = bytes(response.body)
    extra = {"Content-Type": response.content_type, **response.headers}
    for name, value in extra.items():
        if not _TOKEN.fullmatch(name) or not isinstance(value, str) or _BAD_VALUE.search(value):
            raise ValueError(f"a route's response has a malformed header: {name!r}")
    given = {name.lower() for name in extra}
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            *((name, value) for name, value in _SAFE_DEFAULTS if name.lower() not in given),
            *((name, value) for name, value in extra.items() if name.lower() not in _FRAMING),
        ]
    )
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return Response(int(status), phrase, headers, b"" if head else body)


def _asks_for_websocket(request: Request) -> bool:
    return any("websocket" in value.lower() for value in request.headers.get_all("Upgrade"))


def _remote(connection: ServerConnection) -> str | None:
    address = connection.remote_address
    return f"{address[0]}:{address[1]}" if address else None


def _request_value(request: Request, route: Route, remote: str | None) -> HttpRequest:
    """The handler's view of ``request``: no token in it, neither header nor parameter."""
    query = request.path.partition("?")[2]
    headers: dict[str, str] = {}
    for name, value in request.headers.raw_items():
        key = name.lower()
        if key != "authorization":
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return HttpRequest(
        method=request.method,
        path=route.path,
        query=tuple(
            (key, value)
            for key, value in parse_qsl(query, keep_blank_values=True)
            if key != TOKEN_QUERY_PARAMETER
        ),
        headers=headers,
        remote_address=remote,
    )


class RouteResponder:
    """Answers the requests that ``routes`` route, behind ``policy``.

    Args:
        routes: The routes (read at each request, so routes added later count).
        policy: The Host, Origin and token checks of the WebSocket handshake.
        report: Called with a handler's failure and the route's plugin.
    """

    def __init__(
        self, routes: RouteTable, policy: HandshakePolicy, *, report: Report | None = None
    ) -> None:
        self.routes = routes
        self.policy = policy
        self._report = report
        self._logged: set[tuple[str, type[BaseException]]] = set()

    def route_for(self, request: Request) -> Route | None:
        """The route that answers ``request``, or ``None``: no route for its path,
        or it asks for a WebSocket (that opens one whatever its path)."""
        if not self.routes:
            return None
        route = self.routes.get(request.path.partition("?")[0])
        if route is None or _asks_for_websocket(request):
            return None
        return route

    def answer_every_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | Awaitable[Response]:
        """``process_request`` of a server that serves routes only: 404 off the routes."""
        route = self.routes.get(request.path.partition("?")[0])
        if route is None:
            return plain_response(HTTPStatus.NOT_FOUND, "not found")
        return self.respond(connection, request, route)

    async def respond(
        self, connection: ServerConnection, request: Request, route: Route
    ) -> Response:
        """Check ``request`` as a handshake would be, then answer it with ``route``."""
        head = request.method == "HEAD"
        headers = request.headers
        try:
            rejection = self.policy.check(
                request.path,
                headers.get("Host"),
                headers.get("Origin"),
                headers.get("Authorization"),
                needs_token=route.needs_token,
            )
        except MultipleValuesError:
            return plain_response(
                HTTPStatus.BAD_REQUEST, "duplicate Host, Origin or Authorization header", head=head
            )
        remote = _remote(connection)
        if rejection is not None:
            logger.info(
                "refused an HTTP request for %s from %s: %s (%d)",
                route.path,
                remote.rpartition(":")[0] if remote else "?",
                rejection.reason,
                rejection.status,
            )
            challenge = (("WWW-Authenticate", "Bearer"),) if rejection.status == 401 else ()
            return plain_response(rejection.status, rejection.reason, challenge, head=head)
        if request.method not in METHODS:
            return plain_response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"method {request.method} not allowed",
                (("Allow", ", ".join(METHODS)),),
            )
        try:
            answer = route.handler(_request_value(request, route, remote))
            if inspect.isawaitable(answer):
                answer = await answer
            if not isinstance(answer, HttpResponse):
                raise TypeError(f"the handler returned {type(answer).__name__}, not HttpResponse")
            return _encode(answer, head=head)
        except Exception as exc:
            self._failed(route, exc)
            return plain_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", head=head)

    def _failed(self, route: Route, error: Exception) -> None:
        """Log (with a traceback the first time per route and kind) and report."""
        key = (route.path, type(error))
        if key in self._logged:
            logger.debug("route %s (plugin %r) failed again: %r", route.path, route.plugin, error)
        else:
            if len(self._logged) < 1000:
                self._logged.add(key)
            logger.error(
                "route %s (plugin %r) failed (later failures of this kind are logged at DEBUG)",
                route.path,
                route.plugin,
                exc_info=error,
            )
        if self._report is not None:
            self._report(error, route.plugin)
