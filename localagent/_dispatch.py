"""The ``on_message`` dispatch table: one lookup per message instead of a hook loop.

Built from ``pm.hook.on_message.get_hookimpls()`` whenever the plugin set
changes. For each message type it holds the implementations that declared the
type with ``@handles`` plus those that declared none, in pluggy's call order.
Calling the first handler directly costs a dict lookup and a function call;
a pluggy hook call costs several microseconds (DESIGN.md §5).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from types import CoroutineType
from typing import Any

import msgspec
from localagent_hookspecs import Connection, Message, MessageError, handled_types
from pluggy import HookImpl

from ._plugins import PluginManager
from ._protocol import UNKNOWN_TYPE
from ._schemas import typed_direct, typed_handler
from .exceptions import ConnectionLost

__all__ = ["Dispatcher", "HandlerFailed", "Route", "discard", "is_pending"]

Handler = Callable[[Connection, Message], Any]
Wrapper = Callable[[Connection, Message], Generator[None, Any, Any]]


class HandlerFailed(Exception):
    """Carries a handler's exception together with the plugin it came from."""

    def __init__(self, plugin: str | None, error: BaseException) -> None:
        super().__init__(plugin, error)
        self.plugin = plugin
        self.error = error


_awaitable_types: dict[type, bool] = {}


def _is_awaitable(value: object) -> bool:
    """``inspect.isawaitable`` for handler results, cached per type (it is on the hot path)."""
    kind = type(value)
    known = _awaitable_types.get(kind)
    if known is None:
        known = _awaitable_types[kind] = hasattr(kind, "__await__")
    return known


def is_pending(result: object) -> bool:
    """Whether :meth:`Dispatcher.dispatch` returned work still to await.

    The dispatcher awaits handler awaitables inside its own coroutines, so
    "pending" is exactly "a coroutine object"; a finished result never is one.
    """
    return type(result) is CoroutineType


def discard(result: CoroutineType[Any, Any, Any]) -> None:
    """Close a pending result that will never be awaited, and the handler's coroutine in it.

    The result is one of the dispatcher's coroutines, not started, holding the
    handler's own coroutine as an argument (through another of the
    dispatcher's when wrappers run); closing only the outer one would leave
    the handler's to warn "coroutine ... was never awaited".
    """
    frame = result.cr_frame
    if frame is not None:
        for value in frame.f_locals.values():
            if type(value) is CoroutineType:
                discard(value)
    result.close()


def _positional(impl: HookImpl) -> Callable[[Connection, Message], Any]:
    """Adapt an implementation to ``(connection, message)``; it may take fewer arguments."""
    function = impl.function
    names = tuple(impl.argnames)
    if names == ("connection", "message"):
        return function
    if names == ("message",):
        return lambda connection, message: function(message)
    if names == ("connection",):
        return lambda connection, message: function(connection)
    if names == ("message", "connection"):
        return lambda connection, message: function(message, connection)
    return lambda connection, message: function()


class Route(msgspec.Struct, frozen=True):
    """The handlers and wrappers for one message type, in call order."""

    handlers: tuple[Handler, ...]
    plugins: tuple[str | None, ...]
    wrappers: tuple[Wrapper, ...] = ()
    wrapper_plugins: tuple[str | None, ...] = ()
    #: The first handler itself when it takes only ``message``: called as
    #: ``direct(message)``, without the adapter in ``handlers[0]``.
    direct: Callable[[Message], Any] | None = None


class Dispatcher:
    """Routes each message to its handlers.

    :meth:`dispatch` returns the result directly when the handlers are
    synchronous, or an awaitable when one of them is async or the type is
    wrapped; the caller awaits only in that case.
    """

    def __init__(self, pm: PluginManager) -> None:
        self._pm = pm
        self._generation = -1
        self._table: dict[str, Route] = {}
        self._default = Route((), ())

    def route(self, message_type: str) -> Route:
        """The route for ``message_type`` (rebuilding the table if plugins changed)."""
        if self._generation != self._pm.generation:
            self._rebuild()
        return self._table.get(message_type, self._default)

    def _rebuild(self) -> None:
        impls = list(reversed(self._pm.hook.on_message.get_hookimpls()))  # call order
        declared: set[str] = set()
        for impl in impls:
            declared |= handled_types(impl.function) or set()

        def route_for(message_type: str | None) -> Route:
            def applies(impl: HookImpl) -> bool:
                types = handled_types(impl.function)
                return types is None or (message_type is not None and message_type in types)

            plain = [i for i in impls if not i.wrapper and not i.hookwrapper and applies(i)]
            wrapping = [i for i in impls if i.wrapper and applies(i)]
            # A handler with a schema= is called through typed_*() (its data checked first).
            direct = (
                typed_direct(plain[0].function, plain[0], message_type)
                if plain and tuple(plain[0].argnames) == ("message",)
                else None
            )
            return Route(
                handlers=tuple(typed_handler(_positional(i), i, message_type) for i in plain),
                plugins=tuple(self._pm.get_name(i.plugin) for i in plain),
                wrappers=tuple(_positional(i) for i in wrapping),
                wrapper_plugins=tuple(self._pm.get_name(i.plugin) for i in wrapping),
                direct=direct,
            )

        self._table = {message_type: route_for(message_type) for message_type in declared}
        self._default = route_for(None)
        self._generation = self._pm.generation

    def dispatch(self, connection: Connection, message: Message) -> Any:
        """Call the handlers for ``message``; return the result or an awaitable of it.

        Raises:
            HandlerFailed: A handler raised (``MessageError`` included), or no
                handler answered (``MessageError`` with code ``unknown_type``).
        """
        # route() inlined: this runs for every message.
        if self._generation != self._pm.generation:
            self._rebuild()
        route = self._table.get(message.type, self._default)
        if route.wrappers:
            return self._wrapped(route, connection, message)
        handlers = route.handlers
        if handlers:  # _call's first step, inlined: the first handler usually answers
            direct = route.direct
            try:
                result = direct(message) if direct is not None else handlers[0](connection, message)
            except BaseException as exc:
                raise HandlerFailed(route.plugins[0], exc) from exc
            if result is not None:
                known = _awaitable_types.get(type(result))
                if known is False:
                    return result
                if known or _is_awaitable(result):
                    return self._finish(route, 0, result, connection, message)
                return result
            return self._call(route, 1, connection, message)
        raise HandlerFailed(None, _unknown(message))

    def _call(self, route: Route, start: int, connection: Connection, message: Message) -> Any:
        handlers = route.handlers
        for index in range(start, len(handlers)):
            try:
                result = handlers[index](connection, message)
            except BaseException as exc:
                raise HandlerFailed(route.plugins[index], exc) from exc
            if result is None:
                continue
            if _is_awaitable(result):
                return self._finish(route, index, result, connection, message)
            return result
        raise HandlerFailed(None, _unknown(message))

    async def _finish(
        self,
        route: Route,
        index: int,
        pending: Awaitable[Any],
        connection: Connection,
        message: Message,
    ) -> Any:
        try:
            result = await pending
        except ConnectionLost:
            raise  # its connection went away (Connection.reserve): not the handler's failure
        except BaseException as exc:
            raise HandlerFailed(route.plugins[index], exc) from exc
        if result is not None:
            return result
        # The async handler passed; try the ones after it.
        result = self._call(route, index + 1, connection, message)
        return await result if is_pending(result) else result

    def _wrapped(self, route: Route, connection: Connection, message: Message) -> Any:
        """Run the wrappers around the handlers: synchronously when the handler is.

        Only an async handler makes this return a coroutine (the wrappers then
        finish after it); a synchronous one is wrapped and answered at once,
        with no task of its own.
        """
        started: list[tuple[Generator[None, Any, Any], str | None]] = []
        try:
            for wrapper, plugin in zip(route.wrappers, route.wrapper_plugins, strict=True):
                generator = wrapper(connection, message)
                try:
                    next(generator)
                except BaseException as exc:
                    raise HandlerFailed(plugin, exc) from exc
                started.append((generator, plugin))
            result = self._call(route, 0, connection, message)
        except BaseException as exc:
            return _unwind(started, exc, None)
        if is_pending(result):
            return self._finish_wrapped(started, result)
        return _unwind(started, None, result)

    async def _finish_wrapped(
        self, started: list[tuple[Generator[None, Any, Any], str | None]], pending: Any
    ) -> Any:
        try:
            result = await pending
        except BaseException as exc:
            return _unwind(started, exc, None)
        return _unwind(started, None, result)


def _unwind(
    started: list[tuple[Generator[None, Any, Any], str | None]],
    error: BaseException | None,
    result: Any,
) -> Any:
    """Resume the started wrappers, innermost first, with the result or the error."""
    for generator, plugin in reversed(started):
        try:
            if error is not None:
                inner = error.error if isinstance(error, HandlerFailed) else error
                generator.throw(inner)
            else:
                generator.send(result)
            error = HandlerFailed(plugin, RuntimeError("on_message wrapper yielded twice"))
        except StopIteration as stop:
            result, error = stop.value, None
        except BaseException as exc:
            if not (isinstance(error, HandlerFailed) and exc is error.error):
                error = HandlerFailed(plugin, exc)
    if error is not None:
        raise error
    return result


def _unknown(message: Message) -> MessageError:
    return MessageError(UNKNOWN_TYPE, f"no plugin handles message type {message.type!r}")
