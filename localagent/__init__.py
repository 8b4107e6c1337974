"""LocalAgent: a small, fast, secure pluggy-based local agent runtime over WebSocket.

This module is the public face; the code lives in private modules, one idea each.
``Client`` and ``Server`` are imported on first use, so commands that do not
talk WebSocket (``localagent --help``, ``plugins list``) never import websockets.
"""

from typing import TYPE_CHECKING, Any

from localagent_hookspecs import (
    Agent,
    Connection,
    ErrorContext,
    Message,
    MessageError,
    handles,
    hookimpl,
)

from ._config import ServerSettings, Settings, load_settings
from ._plugins import BUILTIN_PLUGINS, LoadedPlugins, PluginInfo, PluginSpec, load_plugins
from .exceptions import (
    ClientError,
    ConfigError,
    ConnectFailed,
    ConnectionLost,
    HandshakeRejected,
    LocalAgentError,
    PluginError,
    ReplyError,
)

if TYPE_CHECKING:
    from ._client import Client
    from ._server import Server

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_PLUGINS",
    "Agent",
    "Client",
    "ClientError",
    "ConfigError",
    "ConnectFailed",
    "Connection",
    "ConnectionLost",
    "ErrorContext",
    "HandshakeRejected",
    "LoadedPlugins",
    "LocalAgentError",
    "Message",
    "MessageError",
    "PluginError",
    "PluginInfo",
    "PluginSpec",
    "ReplyError",
    "Server",
    "ServerSettings",
    "Settings",
    "__version__",
    "handles",
    "hookimpl",
    "load_plugins",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from ._client import Client

        return Client
    if name == "Server":
        from ._server import Server

        return Server
    raise AttributeError(f"module 'localagent' has no attribute {name!r}")
