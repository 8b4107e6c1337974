"""Exceptions raised by LocalAgent.

The tree::

    LocalAgentError
    ├── ConfigError            a configuration file, variable or flag is invalid
    ├── PluginError            a plugin failed to import, register or load
    └── ClientError            raised by localagent.Client
        ├── ConnectFailed      no WebSocket connection could be opened
        │   └── HandshakeRejected   the agent refused the handshake (401, 403, 503)
        ├── ConnectionLost     the connection closed (also a ConnectionError)
        └── ReplyError         the agent answered with an error reply

Plugins raise :class:`localagent_hookspecs.MessageError` (re-exported as
``localagent.MessageError``) to send a coded error reply.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClientError",
    "ConfigError",
    "ConnectFailed",
    "ConnectionLost",
    "HandshakeRejected",
    "LocalAgentError",
    "PluginError",
    "ReplyError",
]


class LocalAgentError(Exception):
    """Root of every exception LocalAgent raises on its own."""


class ConfigError(LocalAgentError):
    """A configuration file, environment variable or command-line flag is invalid."""


class PluginError(LocalAgentError):
    """A plugin failed to import, register or load.

    Attributes:
        plugin: The plugin's name.
    """

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(f"plugin {plugin!r}: {message}")
        self.plugin = plugin


class ClientError(LocalAgentError):
    """Base class of the errors raised by :class:`localagent.Client`."""


class ConnectFailed(ClientError):
    """No WebSocket connection could be opened to the agent."""


class HandshakeRejected(ConnectFailed):
    """The agent refused the handshake.

    Attributes:
        status: The HTTP status (401: token missing or wrong; 403: Origin or
            Host not allowed; 503: the agent serves ``server.max_connections``
            connections already).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConnectionLost(ClientError, ConnectionError):
    """The connection closed before the reply arrived, or was already closed.

    Attributes:
        code: The WebSocket close code, if one was received (1009: a frame was
            larger than the agent's limit).
        reason: The close reason sent by the peer.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ReplyError(ClientError):
    """The agent answered a request with an error reply.

    Attributes:
        code: The error code, e.g. ``"unknown_type"`` or ``"bad_request"``.
        message: The agent's explanation.
        details: Extra information, if the agent sent any.
    """

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
