"""What more than one command module needs: the settings and JSON output, imported on use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._config import Settings

__all__ = ["load_settings", "pretty"]


def load_settings(**kwargs: Any) -> Settings:
    """:func:`localagent.load_settings`, imported on first use.

    attrs, which the settings are made of, costs more at start-up than click:
    ``--help`` and a warm ``plugins list`` never pay for it.
    """
    from .._config import load_settings

    return load_settings(**kwargs)


def pretty(value: Any) -> str:
    """``value`` as indented JSON, the way every command prints JSON."""
    from .. import _codec

    return _codec.pretty(value)
