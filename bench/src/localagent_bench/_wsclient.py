"""The raw client every WebSocket figure is measured with, whichever server it drives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection

from localagent import _codec
from localagent._protocol import unbatch

__all__ = ["pipelined", "replies"]


def replies(frame: bytes | str) -> list[Any]:
    """The messages one received frame carries (a batch frame carries several)."""
    return unbatch(_codec.loads(frame))


async def pipelined(
    ws: ClientConnection,
    frames: Sequence[bytes],
    first_id: int,
    check: Callable[[Any, int], None],
    *,
    per_frame: int = 1,
) -> float:
    """Send every frame without waiting while a reader task checks each reply; messages/s.

    Replies may arrive one per frame or in batch frames: either way each is
    checked, in order.

    Args:
        ws: An open connection.
        frames: Encoded requests (or batch frames of ``per_frame`` requests)
            with consecutive ids starting at ``first_id``.
        first_id: The id of the first request.
        check: Raises if ``reply`` (decoded) is not the answer to request ``id``.
        per_frame: Requests per frame.
    """
    count = len(frames) * per_frame

    async def read_replies() -> None:
        expected = first_id
        while expected < first_id + count:
            for reply in replies(await ws.recv(decode=False)):
                check(reply, expected)
                expected += 1

    started = time.perf_counter()
    reader = asyncio.create_task(read_replies())
    try:
        for frame in frames:
            await ws.send(frame, text=True)
        await reader
    finally:
        reader.cancel()
    return count / (time.perf_counter() - started)
