"""The ``[plugins.fs]`` table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import msgspec

__all__ = ["DEFAULT_MAX_READ_BYTES", "DEFAULT_MAX_WRITE_BYTES", "NAME", "FsSettings"]

#: The plugin's name: its ``[plugins.fs]`` table.
NAME: Final = "fs"

MIB: Final = 1024 * 1024
DEFAULT_MAX_READ_BYTES: Final = 4 * MIB
DEFAULT_MAX_WRITE_BYTES: Final = 4 * MIB


class FsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[plugins.fs]`` table.

    Attributes:
        max_read_bytes: Most bytes one ``fs.read`` returns.
        max_write_bytes: Most bytes one ``fs.write`` writes.
        root: The directory the plugin is confined to (``~`` expanded);
            ``None``: the agent's workspace.
    """

    max_read_bytes: Annotated[int, msgspec.Meta(gt=0)] = DEFAULT_MAX_READ_BYTES
    max_write_bytes: Annotated[int, msgspec.Meta(gt=0)] = DEFAULT_MAX_WRITE_BYTES
    root: Path | None = None

    def __post_init__(self) -> None:
        if self.root is not None and not self.root.is_absolute():
            raise ValueError(f"root must be an absolute path, not {str(self.root)!r}")
