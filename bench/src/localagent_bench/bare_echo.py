"""A minimal websockets echo server: the baseline the agent's WebSocket figures are compared with.

It does what the agent does for ``echo`` and ``ping`` with nothing around it:
read each frame undecoded, parse it with the agent's codec (msgspec), build the same reply shape
(``{"id": ..., "result": {"data": ...}}`` or ``{"id": ..., "result": {"pong": true}}``),
encode it with the same codec and send it as a text frame. A message without an ``id``
is one-way, as for the agent: it is decoded and answered by nobody. It runs on
the same event loop as ``serve`` (``$LOCALAGENT_LOOP``, else uvloop when installed), compression
is off and the other websockets settings (``max_size``, keepalive pings) are
left at the defaults, which match the agent's. There is no token, Origin or
Host check: that is part of what the agent adds.

Run it as ``python -m localagent_bench.bare_echo [PORT]``: it binds 127.0.0.1
(port 0, the default, picks a free one), prints the bound port on stdout and
serves until SIGTERM or SIGINT. :func:`localagent_bench._bare.running_bare_echo`
does that from a benchmark and stops it afterwards.

As a baseline for start time too (``serve`` to listening), it imports what
such a script needs and nothing else: no attrs, no harness code (that lives in
:mod:`localagent_bench._bare`), so the ratio is not flattered by a heavy baseline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from localagent import _codec
from localagent._loop import run

__all__ = ["MODULE", "main"]

_PONG = {"pong": True}
MODULE = "localagent_bench.bare_echo"


def _answer(message: Any) -> dict[str, Any] | None:
    """The reply to one message; ``None`` for one-way messages (no id)."""
    msg_id = message.get("id")
    if msg_id is None:
        return None
    if message.get("type") == "ping":
        return {"id": msg_id, "result": _PONG}
    return {"id": msg_id, "result": {"data": message.get("data")}}


async def _handle(ws: ServerConnection) -> None:
    try:
        while True:
            frame = await ws.recv(decode=False)
            message: Any = _codec.loads(frame)
            if message.get("type") == "batch":
                # What a bare server does with a batch: one frame of replies.
                answers = [_answer(member) for member in message["messages"]]
                batch = [answer for answer in answers if answer is not None]
                if batch:
                    await ws.send(_codec.dumps({"type": "batch", "messages": batch}), text=True)
                continue
            reply = _answer(message)
            if reply is not None:
                await ws.send(_codec.dumps(reply), text=True)
    except ConnectionClosed:
        pass


async def _serve(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve(_handle, "127.0.0.1", port, compression=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Serve on ``argv[0]`` (default 0: a free port) until SIGTERM or SIGINT."""
    args = sys.argv[1:] if argv is None else argv
    # The loop serve would run on: $LOCALAGENT_LOOP, else "auto".
    run(_serve(int(args[0]) if args else 0), os.environ.get("LOCALAGENT_LOOP", "auto"))


if __name__ == "__main__":
    main()
