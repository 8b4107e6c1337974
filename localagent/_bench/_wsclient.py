"""The raw client every WebSocket figure is measured with, whichever server it drives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from websockets.asyncio.client import ClientConnection

__all__ = ["pipelined"]


async def pipelined(
    ws: ClientConnection,
    frames: Sequence[bytes],
    first_id: int,
    check: Callable[[bytes, int], None],
) -> float:
    """Send every frame without waiting while a reader task checks each reply; msg/s.

    Args:
        ws: An open connection.
        frames: Encoded requests with consecutive ids starting at ``first_id``.
        first_id: The id of the first frame.
        check: Raises if ``reply`` is not the expected answer to request ``id``.
    """

    async def read_replies() -> None:
        for expected in range(first_id, first_id + len(frames)):
            check(await ws.recv(decode=False), expected)

    started = time.perf_counter()
    reader = asyncio.create_task(read_replies())
    try:
        for frame in frames:
            await ws.send(frame, text=True)
        await reader
    finally:
        reader.cancel()
    return len(frames) / (time.perf_counter() - started)
