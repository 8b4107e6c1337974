"""LocalAgent: a small, fast, secure pluggy-based local agent runtime over WebSocket.

This module is the public face; the code lives in private modules, one idea each.
Everything but the exceptions is imported on first use (PEP 562), so commands
that need little (``localagent --help``, a warm ``plugins list``) never import
websockets, pluggy or attrs.
"""

import importlib
from typing import TYPE_CHECKING, Any

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
    from localagent_hookspecs import (
        Agent,
        Connection,
        ErrorContext,
        Message,
        MessageError,
        handles,
        hookimpl,
    )

    from ._client import Client
    from ._config import ServerSettings, Settings, load_settings
    from ._plugins import BUILTIN_PLUGINS, LoadedPlugins, PluginInfo, PluginSpec, load_plugins
    from ._server import Server

#: Where each lazily imported name lives.
_LAZY = {
    **dict.fromkeys(
        ("Agent", "Connection", "ErrorContext", "Message", "MessageError", "handles", "hookimpl"),
        "localagent_hookspecs",
    ),
    "Client": "localagent._client",
    **dict.fromkeys(("ServerSettings", "Settings", "load_settings"), "localagent._config"),
    **dict.fromkeys(
        ("BUILTIN_PLUGINS", "LoadedPlugins", "PluginInfo", "PluginSpec", "load_plugins"),
        "localagent._plugins",
    ),
    "Server": "localagent._server",
}

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
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'localagent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
