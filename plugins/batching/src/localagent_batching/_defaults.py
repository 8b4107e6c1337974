"""Default settings, importable without asyncio (``plugins list`` imports the plugin)."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_INTERVAL", "DEFAULT_MAX_BATCH", "DEFAULT_QUEUE_FACTOR"]

DEFAULT_MAX_BATCH: Final = 50
DEFAULT_INTERVAL: Final = 0.005
#: Without an explicit ``max_queue``, it is this many times ``max_batch``.
DEFAULT_QUEUE_FACTOR: Final = 20
