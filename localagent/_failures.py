"""How failures are reported, logged and answered, cheaply enough to sit on the fast path.

Every failure the runtime catches (in a hook, a handler, a send path or the
transport) goes through :func:`report` when a plugin implements ``on_error``.
What reaches the log goes through a :class:`FailureLog`: the first failure
of a kind in full, then at most one line per kind every few seconds, which
says how many were left out. Error replies whose ``error`` object repeats
(``unknown_type``, ``invalid_json``, a handler's ``internal_error``) are
encoded once by :class:`ErrorReplies`; only the id is encoded per reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

from localagent_hookspecs import Connection, Message, MessageError, Stage
from pluggy import HookImpl

from . import _codec
from ._connection import WebSocketConnection
from ._protocol import INTERNAL_ERROR, Invalid, error_reply

__all__ = [
    "ErrorContext",
    "ErrorPath",
    "ErrorReplies",
    "FailureLog",
    "OnError",
    "error_parts",
    "error_reply_for",
    "report",
]

logger = logging.getLogger("localagent")

#: Distinct kinds of failure the log keeps apart; the rest share one kind.
MAX_KINDS = 1000
#: Seconds between two lines about one kind of failure (the first always goes out).
LOG_INTERVAL = 10.0
#: Distinct error objects whose encoding is kept (a message naming an id or a path
#: would otherwise fill the cache; those are encoded each time).
MAX_CACHED_ERRORS = 512


class ErrorContext(NamedTuple):
    """Where a failure happened (see :class:`localagent_hookspecs.ErrorContext`).

    A named tuple: one is built for each failure that a plugin's ``on_error``
    sees, and a tuple costs a fraction of a class instance to build.
    """

    stage: Stage
    plugin: str | None = None
    connection: Connection | None = None
    message: Message | None = None


class OnError(NamedTuple):
    """One ``on_error`` implementation, ready to call with ``(error, context)``.

    Attributes:
        plugin: The name of its plugin (for the log, when it raises).
        call: The implementation, adapted to take ``(error, context)``.
    """

    plugin: str | None
    call: Callable[[BaseException, ErrorContext], Any]


def _on_error(pm: Any) -> tuple[OnError, ...]:
    """The ``on_error`` implementations of ``pm``'s plugins, in pluggy's call order."""
    return tuple(
        OnError(pm.get_name(impl.plugin), _positional(impl))
        for impl in reversed(pm.hook.on_error.get_hookimpls())
    )


def _positional(impl: HookImpl) -> Callable[[BaseException, ErrorContext], Any]:
    """Adapt an implementation to ``(error, context)``; it may take fewer arguments."""
    function = impl.function
    names = tuple(impl.argnames)
    if names == ("error", "context"):
        return function
    if names == ("error",):
        return lambda error, context: function(error)
    if names == ("context",):
        return lambda error, context: function(context)
    if names == ("context", "error"):
        return lambda error, context: function(context, error)
    return lambda error, context: function()


def error_parts(error: BaseException) -> tuple[str, str, Any]:
    """``(code, message, details)`` of the reply to ``error``: its own for a
    ``MessageError``, else ``internal_error`` (without the exception's text,
    which may hold what the client should not see)."""
    if isinstance(error, MessageError):
        return error.code, error.message, error.details
    return INTERNAL_ERROR, f"the handler failed: {type(error).__name__}", None


def error_reply_for(msg_id: str | int | None, error: BaseException) -> dict[str, Any]:
    """The error reply for ``error`` (see :func:`error_parts`)."""
    return error_reply(msg_id, *error_parts(error))


class ErrorReplies:
    """Error replies as frames, the ``error`` object encoded once per code and message.

    A frame is ``{"id":ID,"error":{...}}``, byte for byte what encoding
    :func:`localagent._protocol.error_reply` gives: the id is encoded for each
    reply, the rest comes from the cache. Replies with ``details`` are not
    cached (the caller encodes those as usual).
    """

    __slots__ = ("_tails",)

    def __init__(self) -> None:
        self._tails: dict[tuple[str, str], bytes] = {}

    def frame(self, msg_id: str | int | None, code: str, message: str) -> bytes:
        """The encoded reply to ``msg_id`` with this ``code`` and ``message``."""
        tail = self._tails.get((code, message))
        if tail is None:
            error = _codec.dumps({"code": code, "message": message})
            tail = b',"error":' + error + b"}"
            if len(self._tails) < MAX_CACHED_ERRORS:
                self._tails[code, message] = tail
        return b'{"id":' + _codec.dumps(msg_id) + tail


def report(
    on_error: tuple[OnError, ...],
    error: BaseException,
    context: ErrorContext,
    failures: FailureLog | None = None,
) -> MessageError | None:
    """Send ``error`` through the ``on_error`` implementations; return the reply a
    plugin chose, if any.

    Implementations are called one at a time, in pluggy's order, so one that
    raises is logged (through ``failures`` when given: rate-limited) and the
    next still sees the failure.
    """
    for name, call in on_error:
        try:
            chosen = call(error, context)
        except Exception as exc:
            if failures is None:
                logger.exception("on_error of plugin %r failed", name)
            else:
                what = f"on_error of plugin {name!r} failed"
                key = ("on_error", name, type(exc))
                failures.log(logging.ERROR, key, what, repr(exc), exc_info=exc)
            continue
        if isinstance(chosen, MessageError):
            return chosen
    return None


class _Kind:
    """One kind of failure: when a line about it was last written, and what was left out since."""

    __slots__ = ("last", "level", "suppressed", "what")

    def __init__(self, last: float, what: str, level: int) -> None:
        self.last = last
        self.suppressed = 0
        self.what = what
        self.level = level


class FailureLog:
    """The log of failures, rate-limited per kind, counting what it leaves out.

    The first failure of a kind is logged as it comes (a handler's with its
    traceback). After that, at most one line per kind every ``interval``
    seconds: the failure at hand, and how many of that kind were not logged
    since the last line. :meth:`flush` writes the counts still pending (at
    shutdown). A client sending 100,000 bad frames of one kind in ``T``
    seconds leaves at most ``1 + T / interval`` lines (plus one from
    :meth:`flush`); kinds past ``max_kinds`` share one kind, so the log stays
    bounded whatever the input.

    Nothing is counted, nor any time read, for a level the logger would drop.

    Attributes:
        suppressed: Failures left out of the log so far, every kind together.
    """

    def __init__(
        self,
        log: logging.Logger = logger,
        *,
        interval: float = LOG_INTERVAL,
        max_kinds: int = MAX_KINDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = log
        self._interval = interval
        self._max_kinds = max_kinds
        self._clock = clock
        self._kinds: dict[Hashable, _Kind] = {}
        self.suppressed = 0

    def suppress(self, level: int, key: Hashable) -> bool:
        """Count a failure of kind ``key`` and return ``True`` if no line is due for it
        (a line of its kind went out less than ``interval`` ago, or ``level`` is off):
        the caller then need not even format it. Else :meth:`log` it."""
        if not self._logger.isEnabledFor(level):
            return True
        kind = self._kinds.get(key)
        if kind is None or self._clock() - kind.last >= self._interval:
            return False
        kind.suppressed += 1
        self.suppressed += 1
        return True

    def log(
        self,
        level: int,
        key: Hashable,
        what: str,
        detail: str = "",
        exc_info: BaseException | None = None,
    ) -> None:
        """Log one failure of kind ``key``, or count it if that kind was logged recently.

        Args:
            level: The logging level.
            key: What makes two failures the same kind.
            what: The failure, as one line (``%`` is not interpolated).
            detail: What is particular to this one (an exception's text); only
                on the lines that go out.
            exc_info: An exception whose traceback goes with the first line of a kind.
        """
        if not self._logger.isEnabledFor(level):
            return
        kinds = self._kinds
        kind = kinds.get(key)
        now = self._clock()
        if kind is None:
            if len(kinds) >= self._max_kinds:
                key, what, exc_info = _OTHER, "failures of other kinds", None
                kind = kinds.get(key)
            if kind is None:
                kinds[key] = _Kind(now, what, level)
                self._logger.log(
                    level,
                    "%s%s (this kind is logged at most every %g s from now on)",
                    what,
                    f": {detail}" if detail else "",
                    self._interval,
                    exc_info=exc_info,
                )
                return
        if now - kind.last < self._interval:
            kind.suppressed += 1
            self.suppressed += 1
            return
        left_out, since = kind.suppressed, now - kind.last
        kind.suppressed, kind.last = 0, now
        self._logger.log(
            level,
            "%s%s (%d more not logged in the last %.0f s)",
            kind.what,
            f": {detail}" if detail else "",
            left_out,
            since,
        )

    def flush(self) -> None:
        """Log how many failures of each kind were left out since its last line."""
        for kind in self._kinds.values():
            if kind.suppressed:
                self._logger.log(
                    kind.level,
                    "%s: %d more not logged (the log is rate-limited)",
                    kind.what,
                    kind.suppressed,
                )
                kind.suppressed = 0


#: The kind every failure past ``max_kinds`` distinct kinds shares.
_OTHER = object()


#: A connection's own last step of the send path: when it is the whole path (nothing
#: wraps it), an error reply goes out as a frame encoded once per kind.
_UNWRAPPED = WebSocketConnection._send_encoded


class ErrorPath:
    """What the runtime does with a failure before it replies, at the least cost.

    ``on_error`` runs only when a plugin implements it (nothing is built for
    it otherwise); the implementations are looked up once per plugin
    generation (plugins can be enabled and disabled while the agent runs);
    the log is a :class:`FailureLog`; error replies come from
    :class:`ErrorReplies` when the connection's send path is its own.

    Args:
        pm: The plugin manager (``on_error``; its ``generation`` tells when to look again).
    """

    def __init__(self, pm: Any) -> None:
        self._pm = pm
        self._generation = -1
        self._on_error: tuple[OnError, ...] = ()
        self.log = FailureLog()
        self.replies = ErrorReplies()

    def on_error(self) -> tuple[OnError, ...]:
        """The ``on_error`` implementations, in call order (looked up again when the
        plugins change)."""
        if self._generation != self._pm.generation:
            self._on_error = _on_error(self._pm)
            self._generation = self._pm.generation
        return self._on_error

    def reports(self) -> bool:
        """Whether a plugin implements ``on_error``."""
        return bool(self.on_error())

    def report(self, error: BaseException, context: ErrorContext) -> MessageError | None:
        """:func:`report`, with a failing ``on_error`` logged through :attr:`log`."""
        return report(self.on_error(), error, context, self.log)

    def failed(
        self, connection: Any, message: Message, plugin: str | None, error: BaseException
    ) -> dict[str, Any] | bytes:
        """Log and report a handler's failure; return the error reply (see :meth:`reply`).

        Raises:
            BaseException: ``error`` itself when it is not an ``Exception``
                (``CancelledError``, ``KeyboardInterrupt``: not ours to swallow).
        """
        if isinstance(error, SystemExit):
            # sys.exit() in a handler is a plugin bug, not a request to stop the agent.
            error = RuntimeError(f"the handler called sys.exit({error.code!r})")
        if not isinstance(error, Exception):
            raise error
        if not isinstance(error, MessageError):
            self.handler_failed(message, plugin, error)
        if self.reports():  # on_error, and what it chose; nothing to build without one
            error = (
                self.report(error, ErrorContext("message", plugin, connection, message)) or error
            )
        return self.reply(connection, message.id, error)

    def rejected(self, connection: Connection, invalid: Invalid) -> dict[str, Any] | bytes:
        """Log and report bad input; return the error reply (see :meth:`reply`)."""
        self.bad_input(connection, invalid)
        error: MessageError | Invalid = invalid  # a MessageError only for on_error
        if self.reports():
            error = MessageError(invalid.code, invalid.reason)
            error = self.report(error, ErrorContext("message", connection=connection)) or error
        return self.reply(connection, invalid.id, error)

    def handler_failed(self, message: Message, plugin: str | None, error: Exception) -> None:
        """Log that a handler raised ``error`` (not a ``MessageError``: that is an answer)."""
        key = (plugin, message.type, type(error))
        if not self.log.suppress(logging.ERROR, key):  # formatted only when it goes out
            what = f"handler for {message.type!r} (plugin {plugin!r}) failed"
            self.log.log(logging.ERROR, key, what, repr(error), error)

    def bad_input(self, connection: Connection, invalid: Invalid) -> None:
        """Log bad input at DEBUG: the client's fault, and a client sending junk would
        otherwise leave a line per frame."""
        key = (invalid.code, invalid.reason)
        if not self.log.suppress(logging.DEBUG, key):
            what = f"bad input from a client, answered with {invalid.code}"
            detail = f"{invalid.reason} (connection {connection.id})"
            self.log.log(logging.DEBUG, key, what, detail)

    def send_failed(self, connection: Connection, error: Exception) -> None:
        """Log that a send path (a plugin's wrapper) failed, so the reply goes out directly."""
        detail = f"connection {connection.id}: {error!r}"
        what = "a send path failed; replying directly"
        self.log.log(logging.ERROR, ("send", type(error)), what, detail, error)

    def reply(
        self, connection: Any, msg_id: str | int | None, error: BaseException | Invalid
    ) -> dict[str, Any] | bytes:
        """The reply to ``error``: a frame encoded but for the id (from :attr:`replies`)
        to hand to ``connection.send_frame`` when nothing wraps its send path and the
        error has no ``details``; else a mapping for the send path, like any reply."""
        if type(error) is Invalid:
            code, text, details = error.code, error.reason, None
        else:
            code, text, details = error_parts(error)  # type: ignore[arg-type]
        send = connection.send_path
        if (
            details is None
            and getattr(send, "__func__", None) is _UNWRAPPED
            and getattr(send, "__self__", None) is connection
        ):
            return self.replies.frame(msg_id, code, text)
        return error_reply(msg_id, code, text, details)
