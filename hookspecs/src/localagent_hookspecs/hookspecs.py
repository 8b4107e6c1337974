"""The four LocalAgent hooks.

Everything beyond the core is a plugin, and a plugin is any module or object
with functions marked ``@localagent.hookimpl`` whose names (or ``specname``)
match the hooks below. Argument names must match the specification; a plugin
may accept fewer arguments than the hook offers.

Order: pluggy calls implementations last-registered first; ``tryfirst=True``
and ``trylast=True`` move an implementation to the front or back. Built-in
plugins are registered before third-party ones, so a third-party plugin sees a
message type first and can override a built-in handler.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from ._errors import MessageError
from ._markers import hookspec
from ._types import Agent, Connection, ErrorContext, Message, Teardown

__all__ = ["on_connect", "on_error", "on_load", "on_message"]


@hookspec
def on_load(agent: Agent) -> Awaitable[Teardown | None] | Teardown | None:
    """Prepare the plugin, after every enabled plugin is registered; return what undoes it.

    Called once when the agent starts, before the server accepts its first
    connection, and again each time the plugin is enabled on the running
    agent (``localagent plugins enable NAME``). Typical work: read the
    plugin's settings with ``agent.plugin_settings(name, Settings)``, open
    pools, warm caches, start background tasks with ``agent.spawn()``.

    The implementations of all plugins run concurrently: each may return an
    awaitable (e.g. ``async def on_load``), and the runtime awaits all of them
    together, so I/O-bound warm-up (connecting to Redis, pre-dialling a pool)
    overlaps. Each plugin's ``on_load`` time is recorded (``load_ms`` in the
    plugin's info) and logged by ``localagent serve`` at start.

    Args:
        agent: The running agent (see :class:`localagent_hookspecs.Agent`).

    Returns:
        ``None``, or the plugin's **teardown**: a callable taking no argument
        (a plain or an ``async`` function) that undoes what ``on_load`` did
        (flush, stop tasks, close pools). An ``async def on_load`` returns it
        from its coroutine. The runtime calls it once, when the plugin is
        disabled on the running agent (after its handlers that were running
        finished, up to ``server.shutdown_grace`` seconds) and at shutdown
        (after the connections closed; last loaded, first torn down). Tasks
        the plugin started with ``agent.spawn()`` from ``on_load`` are
        cancelled after it. A teardown that raises is reported through
        ``on_error`` with ``stage="unload"``. A return value that is not
        callable is ignored.

    If an implementation raises (or its awaitable does), the error is reported
    through ``on_error`` with ``stage="load"`` and the plugin is unregistered;
    the other plugins keep working. ``localagent serve --strict`` makes such a
    failure fatal at start instead.
    """


@hookspec
def on_connect(connection: Connection) -> Awaitable[None] | None:
    """Set up a new connection.

    Called once per connection the agent serves, after the WebSocket
    handshake was accepted
    (token, ``Origin`` and ``Host`` checks have passed) and before its first
    message is read. Typical work: attach per-connection state to
    ``connection.state``, wrap the send path with ``connection.wrap_send()``
    (batching), register cleanup with ``connection.on_close()``, or send a
    greeting with ``await connection.send(...)``.

    Args:
        connection: The new connection (see
            :class:`localagent_hookspecs.Connection`).

    Returns:
        ``None``, or an awaitable; the runtime awaits every implementation's
        awaitable before it reads the connection's first message.

    Each implementation is called even if an earlier one raised. A failure is
    reported through ``on_error`` with ``stage="connect"`` and the connection
    stays open without that plugin's setup. (``connection.outbound`` is
    reserved for connections the agent dials itself; the core dials none.)

    Like ``on_load``, this hook is called one implementation at a time so a
    failure stays isolated; wrappers are rejected when the plugin is registered.
    """


@hookspec(firstresult=True)
def on_message(connection: Connection, message: Message) -> Any | Awaitable[Any] | None:
    """Handle one inbound message and return the reply's ``result``.

    Called for every valid inbound message (each member of a batch frame is a
    message of its own). The runtime does not loop over every plugin for each
    message: implementations marked with ``@handles("type", ...)`` are called
    only for the types they declare, and implementations without the marker
    are called for every type. For a given type they run in pluggy's order.

    Stops at the first non-``None`` result: that value becomes the reply
    ``{"id": message.id, "result": value}``. If every implementation returns
    ``None``, the client gets an ``unknown_type`` error. ``None`` therefore
    means "not mine"; reply with a JSON object such as ``{"value": None}``
    when the answer is empty.

    Args:
        connection: The connection the message arrived on; a handler may push
            extra messages with ``await connection.send(...)`` (for example,
            streamed output carrying the request's id) before it returns.
        message: The validated message (see :class:`localagent_hookspecs.Message`).

    Returns:
        A JSON-serialisable value, ``None`` to pass, or an awaitable of either
        (``async def`` handlers). Awaitables are awaited before deciding
        whether to stop, so an async handler may also pass by returning ``None``.

    Raises:
        MessageError: To answer with a coded error the client can act on,
            e.g. ``MessageError("not_found", "no such file")``.

    Any other exception is reported through ``on_error`` with
    ``stage="message"`` and answered with ``internal_error``; the connection
    keeps serving. Messages without an ``id`` are notifications: they are
    handled and a result is not sent, but an error still is (with
    ``"id": null``), so a mistake never goes unnoticed.

    Wrappers: an implementation declared ``@hookimpl(wrapper=True)`` (a
    generator that yields once) wraps the handlers of the types it declares
    with ``@handles`` (or of every type). It receives the *awaited* result at
    its ``yield`` and returns the result to use; it sees a handler's exception
    raised at its ``yield``. Old-style ``hookwrapper=True`` is not supported
    for this hook.
    """


@hookspec(firstresult=True)
def on_error(error: BaseException, context: ErrorContext) -> MessageError | None:
    """Observe a failure and, optionally, choose the error reply.

    Called for every failure the runtime catches: an exception from any
    hook implementation or handler (``stage`` ``"load"``, ``"connect"``,
    ``"message"``, ``"close"``), a ``MessageError`` raised by a handler, a
    malformed or unknown inbound message (``"message"``), a reply that could
    not be encoded or a send path that raised (``"send"``), and a failure
    below the handlers, in a task started with ``agent.spawn()``, or a
    cluster entry rejected as forged, expired or replayed (``"transport"``).
    It is never called for its own failures: an exception raised by an
    ``on_error`` implementation is logged and the next implementation still
    runs, so the server can never die of error handling.

    Args:
        error: The exception. Protocol failures arrive as ``MessageError``
            with codes such as ``invalid_json`` or ``unknown_type``.
        context: Where it happened (see :class:`localagent_hookspecs.ErrorContext`).

    Returns:
        A :class:`~localagent_hookspecs.MessageError` to use as the error
        reply, when the failure produces one (a failed or invalid message,
        an unencodable reply), or ``None`` to keep the default reply. Stops
        at the first non-``None`` result.

    Must be a plain function and must not block: it runs on the event loop,
    inline with the failing call. ``async def on_error`` and wrappers are
    rejected when the plugin is registered.
    """
