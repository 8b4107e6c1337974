"""The process-wide connector factory of :class:`localagent.Client`, in a module of its own.

It imports nothing, so a plugin can install a factory (the ``pooling`` plugin,
at ``on_load``) without importing the client and websockets' client side in
an agent that may never open a client.
"""

from __future__ import annotations

from typing import Any

__all__ = ["factory", "install"]

#: Chooses the connector of a new client (a ``ConnectorFactory``); ``None``: dial directly.
factory: Any = None


def install(new: Any) -> Any:
    """Install ``new`` (``None`` uninstalls); return the factory installed before."""
    global factory
    previous, factory = factory, new
    return previous
