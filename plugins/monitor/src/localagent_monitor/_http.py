"""A small, strict HTTP/1.1 server for the monitor's GET endpoints, on the agent's event loop.

:func:`parse_head` is pure: it takes the bytes of a request head and returns a
:class:`Request` or raises :class:`BadRequest`. :class:`HttpServer` reads one
request per connection (``Connection: close``), hands it to a handler
function and writes its :class:`Response`. No request bodies, no
keep-alive, no pipelining: what the endpoints need and nothing more.

Slow or half-open clients cannot crowd out real ones: a head must arrive
within :data:`HEAD_TIMEOUT`, a response be taken within
:data:`WRITE_TIMEOUT`, and a connection beyond :data:`MAX_CONNECTIONS` makes
room by dropping the oldest one still sending its head.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from urllib.parse import unquote

import attrs

__all__ = ["MAX_HEAD", "BadRequest", "HttpServer", "Request", "Response", "parse_head"]

logger = logging.getLogger("localagent.monitor")

#: Longest request head accepted (request line and headers), in bytes.
MAX_HEAD = 8192
#: Seconds a client gets to send its whole request head (then: 408, and closed).
#: The endpoints are on loopback, where a real client sends its head at once.
HEAD_TIMEOUT = 5.0
#: Seconds a client gets to take the response (then the connection is dropped).
WRITE_TIMEOUT = 10.0
#: Connections open at once. One more drops the oldest connection that is still
#: sending its head; only when none is, the newcomer is answered 503.
MAX_CONNECTIONS = 64

_REQUEST_LINE = re.compile(rb"([A-Z]{1,16}) (/[\x21-\x7e]*) HTTP/(1\.[01])")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Headers that must not appear twice (a second one smells of request smuggling).
_SINGLE = frozenset({"host", "authorization", "origin", "content-length", "transfer-encoding"})


class BadRequest(Exception):
    """The request cannot be served; ``status`` says why (400, 405, 413, 431, ...)."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@attrs.frozen
class Request:
    """One parsed request head.

    Attributes:
        method: ``"GET"`` or ``"HEAD"`` (others are refused while parsing).
        target: The request target as sent (path and query).
        path: The decoded path, without the query.
        query: The raw query string (empty if none).
        headers: Header values by lower-case name.
    """

    method: str
    target: str
    path: str
    query: str
    headers: Mapping[str, str]


@attrs.frozen
class Response:
    """What a handler answers.

    Attributes:
        status: The HTTP status.
        body: The body bytes (not sent for ``HEAD``).
        content_type: The ``Content-Type`` header.
        headers: Extra headers.
    """

    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def text(cls, status: HTTPStatus, text: str, **headers: str) -> Response:
        return cls(status, (text + "\n").encode(), headers=headers)

    def encode(self, *, head_only: bool = False) -> bytes:
        """The response as bytes on the wire."""
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Referrer-Policy: no-referrer",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def parse_head(head: bytes) -> Request:
    """Parse a request head (request line and headers, ending with an empty line).

    Strict on purpose: CRLF line ends only, a request line of the form
    ``METHOD /target HTTP/1.x``, token header names, no folded lines, no
    duplicate ``Host``/``Authorization``/``Origin``, ``Host`` required, no body.

    Raises:
        BadRequest: 400 for anything malformed, 405 for a method other than
            GET or HEAD, 413 for a request with a body.
    """
    if not head.endswith(b"\r\n\r\n"):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "incomplete request head")
    lines = head[:-4].split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "bare CR or LF in the request head")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target = match.group(1).decode(), match.group(2).decode("ascii")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed header line")
        try:
            text = value.strip(b" \t").decode("ascii")
        except UnicodeDecodeError:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "non-ASCII header value") from None
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text if char != "\t"):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "control character in a header value")
        key = name.decode().lower()
        if key in headers:
            if key in _SINGLE:
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"duplicate {key} header")
            headers[key] = f"{headers[key]}, {text}"
        else:
            headers[key] = text
    if "host" not in headers:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "missing Host header")
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request bodies are not accepted")
    if method not in ("GET", "HEAD"):
        raise BadRequest(HTTPStatus.METHOD_NOT_ALLOWED, f"method {method} not allowed")
    raw_path, _, query = target.partition("?")
    return Request(method, target, unquote(raw_path), query, headers)


Handler = Callable[[Request], Response]


class HttpServer:
    """Serves ``handler`` on ``host:port`` with asyncio streams.

    Args:
        handler: Called with each valid request; its exceptions become a 500
            (logged without the request target, which may hold the token).
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._active = 0
        #: The connections still sending their request head, oldest first.
        self._reading: dict[asyncio.WriteTransport, None] = {}

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("the HTTP server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        """Bind and start accepting (raises ``OSError`` when the port is taken)."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        # Each newcomer over the limit drops one connection still sending its head: a
        # real request sends its head at once, so only stuck ones grow old there.
        room = self._active < MAX_CONNECTIONS or self._drop_oldest_reading()
        self._active += 1
        try:
            if room:
                self._reading[transport] = None
                response = await self._respond(reader, transport)
            else:
                response = Response.text(
                    HTTPStatus.SERVICE_UNAVAILABLE, "too many connections"
                ).encode()
            if transport.is_closing():
                return  # dropped to make room: nobody to answer
            writer.write(response)
            async with asyncio.timeout(WRITE_TIMEOUT):
                await writer.drain()
                writer.close()
                await writer.wait_closed()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away, or would not take the response
        finally:
            self._active -= 1
            self._reading.pop(transport, None)
            transport.abort()  # closed already, or dropped: nothing is waited for

    def _drop_oldest_reading(self) -> bool:
        """Close the oldest connection still sending its head; whether there was one.

        Its reader then sees the end of the stream, and its :meth:`_serve` ends.
        """
        oldest = next(iter(self._reading), None)
        if oldest is None:
            return False
        del self._reading[oldest]
        oldest.abort()
        return True

    async def _respond(
        self, reader: asyncio.StreamReader, transport: asyncio.WriteTransport
    ) -> bytes:
        try:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            finally:
                self._reading.pop(transport, None)  # past its head: never the one to drop
            request = parse_head(head)
        except TimeoutError:
            return Response.text(HTTPStatus.REQUEST_TIMEOUT, "request head too slow").encode()
        except asyncio.LimitOverrunError:
            status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
            return Response.text(status, "request head too large").encode()
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise
            return Response.text(HTTPStatus.BAD_REQUEST, "incomplete request head").encode()
        except BadRequest as exc:
            extra = {"Allow": "GET, HEAD"} if exc.status == HTTPStatus.METHOD_NOT_ALLOWED else {}
            return Response.text(exc.status, exc.reason, **extra).encode()
        try:
            response = self._handler(request)
        except Exception:
            logger.exception("monitor: the handler for %s failed", request.path)
            response = Response.text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        return response.encode(head_only=request.method == "HEAD")
