"""Built-in plugin ``exec`` (being written)."""

from __future__ import annotations

__all__ = ["Plugin"]


class Plugin:
    """Placeholder until the real plugin lands."""
