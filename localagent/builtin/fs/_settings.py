"""The ``[plugins.fs]`` table."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import attrs

__all__ = ["DEFAULT_MAX_READ_BYTES", "DEFAULT_MAX_WRITE_BYTES", "NAME", "FsSettings"]

#: The plugin's name: its ``[plugins.fs]`` table.
NAME: Final = "fs"

MIB: Final = 1024 * 1024
DEFAULT_MAX_READ_BYTES: Final = 4 * MIB
DEFAULT_MAX_WRITE_BYTES: Final = 4 * MIB


def _absolute(_instance: object, _attribute: object, value: Path | None) -> None:
    if value is not None and not value.is_absolute():
        raise ValueError(f"root must be an absolute path, not {str(value)!r}")


@attrs.frozen(kw_only=True)
class FsSettings:
    """The ``[plugins.fs]`` table.

    Attributes:
        max_read_bytes: Most bytes one ``fs.read`` returns.
        max_write_bytes: Most bytes one ``fs.write`` writes.
        root: The directory the plugin is confined to (``~`` expanded);
            ``None``: the agent's workspace.
    """

    max_read_bytes: int = attrs.field(
        default=DEFAULT_MAX_READ_BYTES, validator=attrs.validators.gt(0)
    )
    max_write_bytes: int = attrs.field(
        default=DEFAULT_MAX_WRITE_BYTES, validator=attrs.validators.gt(0)
    )
    root: Path | None = attrs.field(default=None, validator=_absolute)
