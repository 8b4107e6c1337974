"""Default settings, importable cheaply (``plugins list`` imports the plugin)."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_MAX_BUFFER", "DEFAULT_MAX_PER_CLASS", "DEFAULT_MAX_POOLED", "MIN_CLASS"]

#: Idle buffers kept per size class.
DEFAULT_MAX_PER_CLASS: Final = 16
#: Most bytes the idle buffers may hold together.
DEFAULT_MAX_POOLED: Final = 8 * 1024 * 1024
#: Buffers that grew past this are freed, not pooled (one huge frame must not pin memory).
DEFAULT_MAX_BUFFER: Final = 1024 * 1024
#: The smallest size class: 2**MIN_CLASS bytes (1 KiB).
MIN_CLASS: Final = 10
