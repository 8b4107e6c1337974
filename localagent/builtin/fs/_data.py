"""The ``data`` of each ``fs`` message: the schemas the runtime checks first."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["DeleteData", "ListData", "ReadData", "StatData", "WriteData"]

Path = Annotated[str, msgspec.Meta(description="A relative POSIX path inside the workspace root.")]
Encoding = Annotated[
    Literal["text", "base64"], msgspec.Meta(description="UTF-8 text, or bytes as base64.")
]
Count = Annotated[int, msgspec.Meta(ge=0)]


class ReadData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``fs.read`` data."""

    path: Path
    encoding: Encoding = "text"
    offset: Annotated[Count, msgspec.Meta(description="Byte offset to start at.")] = 0
    length: Annotated[Count, msgspec.Meta(description="Most bytes to read.")] | None = None


class WriteData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``fs.write`` data."""

    path: Path
    content: str
    encoding: Encoding = "text"
    fsync: bool = False
    parents: Annotated[bool, msgspec.Meta(description="Create missing parent directories.")] = False
    overwrite: bool = True


class ListData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``fs.list`` data."""

    path: Path = "."


class StatData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``fs.stat`` data."""

    path: Path = "."


class DeleteData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``fs.delete`` data."""

    path: Path
