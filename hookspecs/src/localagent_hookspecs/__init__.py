"""Hook specifications, markers and typing Protocols for LocalAgent plugins.

Plugins depend on this small distribution; the runtime is ``localagent``.
"""

from ._errors import MessageError
from ._http import HttpRequest, HttpResponse, RouteHandler
from ._markers import (
    HANDLES_ATTRIBUTE,
    PROJECT_NAME,
    SCHEMAS_ATTRIBUTE,
    handled_schema,
    handled_types,
    handles,
    hookimpl,
    hookspec,
)
from ._types import (
    Agent,
    BufferSource,
    CloseCallback,
    Connection,
    ErrorContext,
    KeyValueStore,
    Message,
    SendFunc,
    Stage,
    Teardown,
    Traffic,
)

__all__ = [
    "HANDLES_ATTRIBUTE",
    "PROJECT_NAME",
    "SCHEMAS_ATTRIBUTE",
    "Agent",
    "BufferSource",
    "CloseCallback",
    "Connection",
    "ErrorContext",
    "HttpRequest",
    "HttpResponse",
    "KeyValueStore",
    "Message",
    "MessageError",
    "RouteHandler",
    "SendFunc",
    "Stage",
    "Teardown",
    "Traffic",
    "handled_schema",
    "handled_types",
    "handles",
    "hookimpl",
    "hookspec",
]
