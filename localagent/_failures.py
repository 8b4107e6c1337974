"""How failures are reported: ``on_error`` in pluggy's order, and a handler's failure logged.

Every failure the runtime catches (in a hook, a handler, a send path or the
transport) goes through :func:`report`; a handler's own exception is also
logged by a :class:`HandlerFailureLog`, with its traceback once per kind.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
from localagent_hookspecs import Connection, Message, MessageError, Stage
from pluggy import PluginManager

from ._protocol import INTERNAL_ERROR, error_reply

__all__ = ["ErrorContext", "HandlerFailureLog", "error_reply_for", "report"]

logger = logging.getLogger("localagent")

#: Distinct kinds of handler failure whose traceback is remembered as logged.
_MAX_LOGGED_KINDS = 1000


@attrs.frozen
class ErrorContext:
    """Where a failure happened (see :class:`localagent_hookspecs.ErrorContext`)."""

    stage: Stage
    plugin: str | None = None
    connection: Connection | None = None
    message: Message | None = None


def error_reply_for(msg_id: str | int | None, error: BaseException) -> dict[str, Any]:
    """The error reply for ``error``: its own code for a ``MessageError``, else ``internal_error``
    (without the exception's text, which may hold what the client should not see)."""
    if isinstance(error, MessageError):
        return error_reply(msg_id, error.code, error.message, error.details)
    return error_reply(msg_id, INTERNAL_ERROR, f"the handler failed: {type(error).__name__}")


def report(pm: PluginManager, error: BaseException, context: ErrorContext) -> MessageError | None:
    """Send ``error`` through ``on_error``; return the reply a plugin chose, if any.

    Implementations are called one at a time, in pluggy's order, so one that
    raises is logged and the next still sees the failure.
    """
    for impl in reversed(pm.hook.on_error.get_hookimpls()):
        arguments = {"error": error, "context": context}
        try:
            chosen = impl.function(*(arguments[name] for name in impl.argnames))
        except Exception:
            logger.exception("on_error of plugin %r failed", pm.get_name(impl.plugin))
            continue
        if isinstance(chosen, MessageError):
            return chosen
    return None


@attrs.define
class HandlerFailureLog:
    """Logs a handler's exception: with its traceback the first time, briefly after.

    A handler that fails on every request would otherwise write a traceback
    per message; formatting one costs more than serving the message, and
    ``on_error`` still sees every failure.
    """

    _logged: set[tuple[str | None, str, type[BaseException]]] = attrs.field(factory=set)

    def log(self, message: Message, plugin: str | None, error: Exception) -> None:
        """Log that the handler of ``plugin`` for ``message`` raised ``error``."""
        key = (plugin, message.type, type(error))
        if key in self._logged:
            logger.debug("handler for %r (plugin %r) failed again: %r", message.type, plugin, error)
            return
        if len(self._logged) < _MAX_LOGGED_KINDS:  # bounded: distinct failure kinds only
            self._logged.add(key)
        logger.error(
            "handler for %r (plugin %r) failed (later failures of this kind are logged at DEBUG)",
            message.type,
            plugin,
            exc_info=error,
        )
