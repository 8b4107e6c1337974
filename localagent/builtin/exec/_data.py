"""The ``data`` of an ``exec`` message: the schema the runtime checks first, and the error code
of a program that cannot start.

Kept apart from ``_run`` so that importing the plugin (which declares its
handler with this schema) does not import what runs a program.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["ENCODINGS", "SPAWN_FAILED", "ExecData"]

SPAWN_FAILED = "spawn_failed"
ENCODINGS = ("text", "base64")


class ExecData(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``exec`` data (the schema the runtime checks; see docs/exec.md)."""

    argv: Annotated[
        list[str],
        msgspec.Meta(
            min_length=1,
            description="The program (an allow-list entry) and its arguments; no shell.",
        ),
    ]
    timeout: Annotated[float, msgspec.Meta(gt=0, description="Seconds before a kill.")] | None = (
        None
    )
    stdin: Annotated[str, msgspec.Meta(description="Text written to standard input.")] | None = None
    stream: Annotated[
        bool, msgspec.Meta(description="Send the output as exec.output messages meanwhile.")
    ] = False
    encoding: Annotated[
        Literal["text", "base64"], msgspec.Meta(description="How output is returned.")
    ] = "text"
