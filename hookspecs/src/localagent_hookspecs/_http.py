"""The values a plugin's HTTP route receives and returns (see :meth:`Agent.add_route`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeAlias

import msgspec

__all__ = ["HttpRequest", "HttpResponse", "RouteHandler"]


class HttpRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One plain HTTP request to a route, past the agent's Host, Origin and token checks.

    The token never reaches a handler: the ``Authorization`` header and the
    ``token`` query parameter are left out, so a handler cannot log them by
    mistake.

    Attributes:
        method: ``"GET"`` or ``"HEAD"`` (the agent answers other methods with
            405 itself; for ``HEAD`` it sends the response without its body).
        path: The path the route was added for (the request's path, without the query).
        query: The query's parameters, decoded, in order, without ``token``.
        headers: The request's headers by lower-case name (a repeated header's
            values joined with ``", "``), without ``authorization``.
        remote_address: ``"host:port"`` of the client, if known.
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)
    remote_address: str | None = None


class HttpResponse(msgspec.Struct, frozen=True):
    """What a route handler answers.

    The agent adds ``Content-Length``, ``Date``, ``Connection: close`` (one
    request per connection) and, unless the handler sets them,
    ``Cache-Control: no-store``, ``X-Content-Type-Options: nosniff`` and
    ``Referrer-Policy: no-referrer``.

    Attributes:
        status: The HTTP status code.
        body: The body (not sent in the answer to a ``HEAD`` request).
        content_type: The ``Content-Type`` header.
        headers: More headers, by name.
    """

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)

    @classmethod
    def text(
        cls, text: str, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> HttpResponse:
        """A plain-text response: ``text`` and a newline, in UTF-8."""
        return cls(status, (text + "\n").encode(), headers=dict(headers or {}))


#: A route's handler: takes the request, returns the response or an awaitable of it.
RouteHandler: TypeAlias = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]
