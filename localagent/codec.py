"""The agent's JSON codec, for plugins that encode frames themselves.

Everything on the wire goes through these functions, so a plugin that writes
frames (the mempool plugin encodes into reused buffers) produces exactly what
the core would.
"""

from __future__ import annotations

from ._codec import DecodeError, EncodeError, dumps, encode_into, loads

__all__ = ["DecodeError", "EncodeError", "dumps", "encode_into", "loads"]
