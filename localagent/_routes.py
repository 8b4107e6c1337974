"""The HTTP routes plugins add with ``agent.add_route``: which handler answers which path.

Pure bookkeeping, no I/O: :mod:`localagent._http` answers the requests.
"""

from __future__ import annotations

from contextvars import ContextVar

import msgspec
from localagent_hookspecs import RouteHandler

__all__ = ["LOADING_PLUGIN", "Route", "RouteTable"]

#: The plugin whose ``on_load`` runs in this context (each runs in a task of its own),
#: so that a route knows its plugin without the plugin naming itself.
LOADING_PLUGIN: ContextVar[str | None] = ContextVar("localagent_loading_plugin", default=None)


class Route(msgspec.Struct, frozen=True):
    """One path's handler.

    Attributes:
        path: The path it answers (exact match, without the query).
        handler: Turns an ``HttpRequest`` into an ``HttpResponse``.
        needs_token: Whether a request needs the agent's token (Host and
            Origin are checked either way).
        plugin: The plugin that added it, if known (for ``on_error``).
    """

    path: str
    handler: RouteHandler
    needs_token: bool = True
    plugin: str | None = None


def _check_path(path: object) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"a route's path must be a string starting with '/', not {path!r}")
    if any(char in path for char in "?#") or any(char.isspace() for char in path):
        raise ValueError(f"a route's path cannot hold '?', '#' or whitespace: {path!r}")
    return path


class RouteTable:
    """The routes by path; empty until a plugin adds one."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def __bool__(self) -> bool:
        return bool(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    @property
    def paths(self) -> list[str]:
        """The routed paths, sorted."""
        return sorted(self._routes)

    def add(
        self, path: str, handler: RouteHandler, *, needs_token: bool = True, plugin: str | None
    ) -> None:
        """Route ``path`` to ``handler`` (see ``Agent.add_route``).

        Raises:
            ValueError: A malformed path, or one that has a route already
                (the message names the plugin that added it).
        """
        path = _check_path(path)
        if not callable(handler):
            raise ValueError(f"the handler of route {path} is not callable: {handler!r}")
        taken = self._routes.get(path)
        if taken is not None:
            owner = f" (added by plugin {taken.plugin!r})" if taken.plugin else ""
            raise ValueError(f"route {path} exists already{owner}")
        self._routes[path] = Route(path, handler, needs_token, plugin)

    def get(self, path: str) -> Route | None:
        """The route of ``path`` (without its query), or ``None``."""
        return self._routes.get(path)

    def remove_plugin(self, plugin: str) -> None:
        """Drop every route ``plugin`` added (its ``on_load`` failed)."""
        self._routes = {p: r for p, r in self._routes.items() if r.plugin != plugin}
