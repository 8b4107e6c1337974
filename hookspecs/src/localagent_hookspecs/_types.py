"""Typing Protocols for the objects the hooks receive.

The runtime (``localagent``) provides the concrete classes; plugins depend only
on these Protocols, so a plugin type-checks against ``localagent-hookspecs``
alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, TypeVar

if TYPE_CHECKING:  # asyncio costs ~40 ms to import; CLI commands that never run a loop skip it
    import asyncio

    from ._http import RouteHandler

__all__ = [
    "Agent",
    "BufferSource",
    "CloseCallback",
    "Connection",
    "ErrorContext",
    "KeyValueStore",
    "Message",
    "SendFunc",
    "Stage",
    "Teardown",
    "Traffic",
]

#: The send path of a connection: takes one JSON-serialisable message (a reply,
#: an event or a batch frame) and returns once it was handed to the transport.
SendFunc: TypeAlias = Callable[[Mapping[str, Any]], Awaitable[None]]

#: Called when a connection closes; may be a coroutine function.
CloseCallback: TypeAlias = Callable[[], Awaitable[None] | None]

#: What ``on_load`` may return to undo itself: a plain or an async function of no argument.
Teardown: TypeAlias = Callable[[], Awaitable[None] | None]

#: Where a failure happened, as reported to ``on_error``.
Stage: TypeAlias = Literal["load", "connect", "message", "send", "transport", "close", "unload"]

#: A plugin's settings type, as given to :meth:`Agent.plugin_settings`.
SettingsT = TypeVar("SettingsT")


class BufferSource(Protocol):
    """Reusable buffers a connection encodes its batch frames into (see
    :meth:`Connection.use_buffers`); the mempool plugin's ``BufferPool`` is one.
    """

    def acquire(self, size_hint: int = 0) -> bytearray:
        """A buffer for one frame of about ``size_hint`` bytes, the caller's until released.

        Its contents do not matter: the connection encodes into it from
        offset 0, which sets its length (growing it if need be).
        """

    def release(self, buffer: bytearray) -> None:
        """Take back a buffer from :meth:`acquire` once its frame was written."""


class Message(Protocol):
    """One inbound message, already validated.

    Attributes:
        id: The client's correlation id (a string or an integer), echoed in the
            reply; ``None`` for a notification that expects no reply.
        type: The message type, e.g. ``"ping"`` or ``"fs.read"``.
        data: The JSON payload (any JSON value; ``None`` when absent).
        to: The address the client gave (``"to"``: another agent or peer of
            a cluster, or ``"*"``), ``None`` when it gave none. With
            ``serve --cluster``, the built-in ``cluster`` plugin forwards a
            message addressed elsewhere before any other handler sees it,
            so handlers see only messages meant for this agent.
    """

    @property
    def id(self) -> str | int | None: ...

    @property
    def type(self) -> str: ...

    @property
    def data(self) -> Any: ...

    @property
    def to(self) -> str | None: ...


class Connection(Protocol):
    """One WebSocket connection, inbound (a client of ``serve``) or outbound.

    Attributes:
        id: Identifier, unique within the process (e.g. ``"c17"``).
        outbound: ``True`` for connections this process dialled.
        remote_address: ``"host:port"`` of the peer, if known.
        origin: The browser ``Origin`` header, ``None`` for non-browser clients.
        state: Per-connection scratch space for plugins. Key it by your
            plugin's name to stay out of other plugins' way.
        closed: Whether the connection has closed.
        congested: Whether this connection's replies are backing up: more than
            its share of the agent's outbound budget (``server.max_pending_bytes``)
            waits to be written. A plugin that holds replies before writing
            them (batching) stops holding them while it is ``True``.
        more_inbound: Whether more of this connection's inbound messages are at
            hand right now: the rest of a batch frame being dispatched, or frames
            already read off the socket and waiting. A reply sent while it is
            ``True`` will likely have company within this event-loop iteration;
            one sent while it is ``False`` is, for now, alone. A plugin that holds
            replies to send them together (batching) writes a lone reply at once.
            A connection that cannot tell says ``True``.
    """

    @property
    def id(self) -> str: ...

    @property
    def outbound(self) -> bool: ...

    @property
    def remote_address(self) -> str | None: ...

    @property
    def origin(self) -> str | None: ...

    @property
    def state(self) -> dict[str, Any]: ...

    @property
    def closed(self) -> bool: ...

    @property
    def congested(self) -> bool: ...

    @property
    def more_inbound(self) -> bool: ...

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one message through the (possibly wrapped) send path.

        Raises:
            ConnectionError: If the connection is closed.
        """

    def reserve(self, size: int) -> AbstractAsyncContextManager[None]:
        """Count ``size`` bytes of a reply against the outbound budget while it is built.

        ``async with connection.reserve(n): ...`` around building a large
        reply (reading a file, say) makes a client that does not read its
        replies get one such reply built at a time: entering waits while the
        connection has bytes waiting and ``n`` more would take it over its
        share of the budget, and the bytes count against the agent's budget
        until the block ends. Connections that write no frames of their own
        let it through at once.

        Raises (on entering):
            ConnectionError: The connection is closed, or was shed to keep
                the agent within its budget.
        """
        ...

    async def send_frame(self, frame: bytes | bytearray | memoryview) -> None:
        """Write one already-encoded JSON text frame, bypassing any wrapper.

        The frame's bytes are copied before this returns, so a caller may
        reuse the buffer at once.
        """

    def use_buffers(self, source: BufferSource | None) -> None:
        """Encode this connection's batch frames into buffers from ``source``.

        The send path's last step, "encode, write one frame", then encodes
        each ``{"type": "batch", ...}`` message into a buffer from
        ``source`` instead of into new bytes, writes it and releases it:
        a buffer is held by one frame at a time, whatever plugins wrap the
        send path outside. Other messages are encoded as before. ``None``
        stops it. A connection that writes no WebSocket frames (a request
        routed from another agent of a cluster) ignores it.
        """

    def wrap_send(self, wrapper: Callable[[SendFunc], SendFunc]) -> None:
        """Replace the send path with ``wrapper(current_send_path)``.

        Wrappers stack: the last one applied runs first. A batching plugin
        wraps the send path and calls the inner one with a batch frame
        ``{"type": "batch", "messages": [...]}``.
        """

    def on_close(self, callback: CloseCallback) -> None:
        """Run ``callback`` when the connection closes.

        Callbacks run in the order they were added. On a server-initiated
        close they run *before* the socket closes, so a wrapper can flush
        what it holds.
        """

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with a WebSocket close code."""


class KeyValueStore(Protocol):
    """The agent's key-value store: JSON values under string keys.

    The embedded default keeps them in process memory; with a Redis URL
    configured they live in Redis (durable, shared between processes). Every
    method may raise :class:`~localagent_hookspecs.MessageError` with code
    ``"unavailable"`` when the backend cannot be reached (a handler can let it
    propagate: the client gets that error reply), or ``"not_an_integer"``
    from :meth:`incr`. A write returns only after the backend confirmed it.

    Attributes:
        kind: ``"memory"`` or ``"redis"``.
    """

    @property
    def kind(self) -> str: ...

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` if there is none."""

    async def get_many(self, keys: Sequence[str], default: Any = None) -> list[Any]:
        """The values of ``keys``, in order (``default`` for missing ones), in one round trip."""

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value``; with ``ttl``, it expires after that many seconds."""

    async def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        """Store several values at once (all or none, in one round trip)."""

    async def delete(self, keys: Sequence[str]) -> int:
        """Remove ``keys``; return how many existed."""

    async def incr(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the integer under ``key`` (missing counts as 0); return it."""

    async def keys(self, prefix: str = "") -> list[str]:
        """The keys that start with ``prefix``, sorted."""

    async def ping(self) -> None:
        """Check that the backend answers (raises ``MessageError("unavailable")``)."""

    async def aclose(self) -> None:
        """Release connections; the agent calls it at shutdown."""


class Traffic(Protocol):
    """The runtime's own counters of all traffic: an add per frame, no wrapper.

    Attributes:
        messages: Inbound messages received since the start (each member of
            a batch frame counts), valid or not.
        errors: Error replies sent for them (failed handlers, unknown types,
            invalid messages, replies that could not be encoded).
    """

    @property
    def messages(self) -> int: ...

    @property
    def errors(self) -> int: ...


class Agent(Protocol):
    """The running agent, as plugins see it in ``on_load``.

    Attributes:
        config_dir: The user config directory (holds ``config.toml`` and the token).
        workspace: The directory the agent works in (``[agent] workspace``):
            ``fs`` is confined to it and ``exec`` runs there. It exists when
            ``on_load`` is called.
        store: The key-value store (memory by default, Redis when configured).
        loop: The event loop the agent runs on.
        traffic: Counters of every message and error reply (read them; the
            runtime keeps them).
    """

    @property
    def config_dir(self) -> Path: ...

    @property
    def workspace(self) -> Path: ...

    @property
    def store(self) -> KeyValueStore: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def traffic(self) -> Traffic: ...

    def limit_outbound(self, factor: float) -> int:
        """Set the outbound budget to ``factor`` times ``server.max_pending_bytes``.

        For a plugin that relieves an agent under pressure (the monitor's
        optimization actions). ``factor`` is clamped to ``[0.05, 1.0]``: the
        budget never grows past the configuration; ``1.0`` restores it. A
        smaller budget slows, and past it sheds (close code 1008), the
        connections whose replies wait the most. Returns the budget in bytes.
        """

    def refuse_connections(self, reason: str | None) -> None:
        """Close new WebSocket connections with 1013 (try again later) and ``reason``.

        From now on, each connection that passed the handshake's checks is
        closed at once, before ``on_connect``, with close code 1013 and
        ``reason`` (cut to 120 bytes); open connections and the HTTP routes
        (``/readyz``, ``/metrics``) go on. ``None`` accepts connections again.
        """

    def on_plugins_changed(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever plugins are enabled or disabled on the running agent.

        The set of message types handled (and of routes) may have changed: a
        plugin that lists them (e.g. to export schemas) reads them again. The
        callback runs on the event loop, after the change took effect; an
        exception it raises is reported through ``on_error`` (stage
        ``"transport"``). It is not called for the plugins loaded at start.
        """

    def plugin_config(self, name: str) -> Mapping[str, Any]:
        """Return the config's ``[plugins.NAME]`` table without ``enabled`` (empty if absent).

        The raw TOML values, unchecked; :meth:`plugin_settings` checks them.
        """

    def plugin_settings(self, name: str, settings_type: type[SettingsT]) -> SettingsT:
        """Return the ``[plugins.NAME]`` table as an instance of ``settings_type``.

        ``settings_type`` is the plugin's declaration of its settings: a
        frozen attrs class (or a msgspec ``Struct``, or a dataclass) whose
        fields are the keys, whose annotations are their types and whose
        defaults apply to missing keys. Values are checked strictly against
        the annotations (``"10"`` is not an ``int``; an ``int`` is accepted for
        a ``float``; a TOML array for a ``tuple``; a string for a
        ``pathlib.Path``, ``~`` expanded), then the type's own validators run.
        ``localagent serve --set NAME.KEY=VALUE`` overrides apply.

        Args:
            name: The plugin's name (its entry point's name).
            settings_type: The type to build.

        Returns:
            A ``settings_type`` instance.

        Raises:
            Exception: ``localagent.ConfigError`` for a key the type does not
                declare (the message lists the known ones) or a value it
                refuses; the message names the key, what was expected and the
                config file (or the ``--set`` flag) it came from. Raised from
                ``on_load``, it marks the plugin as failed and the agent
                serves without it.
        """

    def spawn(
        self, coroutine: Coroutine[Any, Any, Any], *, name: str | None = None
    ) -> asyncio.Task[Any]:
        """Run ``coroutine`` as a background task owned by the agent.

        Failures are reported through ``on_error``; the task is cancelled when
        the agent shuts down.
        """

    def add_route(self, path: str, handler: RouteHandler, *, needs_token: bool = True) -> None:
        """Answer plain HTTP ``GET`` and ``HEAD`` requests for ``path`` on the agent's own port.

        A request for ``path`` first passes the checks of a WebSocket
        handshake, with the same policy: the ``Host`` and ``Origin`` checks
        always, and the token unless ``needs_token`` is false (for health
        probes that hold no token). A request refused there, or with another
        method (405), never reaches ``handler``. ``handler`` gets an
        :class:`~localagent_hookspecs.HttpRequest` and returns an
        :class:`~localagent_hookspecs.HttpResponse` (or an awaitable of one)
        within ``server.open_timeout``. If it raises, the client gets a 500
        and the error goes to ``on_error`` (stage ``"transport"``, the plugin
        that added the route).

        A request that asks for a WebSocket upgrade opens a WebSocket, whatever
        its path; other requests to a path without a route are answered as
        before routes existed. Routes cost WebSocket connections nothing past
        their handshake. The routes of a plugin whose ``on_load`` fails are
        removed with it.

        Raises:
            ValueError: ``path`` does not start with ``/``, holds a ``?``,
                ``#`` or whitespace, or has a route already.
        """


class ErrorContext(Protocol):
    """Where an error reported to ``on_error`` happened.

    Attributes:
        stage: ``"load"``, ``"connect"``, ``"message"``, ``"send"``,
            ``"transport"``, ``"close"`` or ``"unload"`` (a plugin's teardown).
        plugin: Name of the plugin whose code raised, if it is known.
        connection: The connection involved, if any.
        message: The inbound message being handled, if any.
    """

    @property
    def stage(self) -> Stage: ...

    @property
    def plugin(self) -> str | None: ...

    @property
    def connection(self) -> Connection | None: ...

    @property
    def message(self) -> Message | None: ...
