"""A minimal websockets echo server: the baseline that ``bench_core.py`` compares against.

It does what the agent does for ``echo`` and ``ping`` with nothing around it:
read each frame undecoded, parse it with orjson, build the same reply shape
(``{"id": ..., "result": {"data": ...}}`` or ``{"id": ..., "result": {"pong": true}}``),
encode it with orjson and send it as a text frame. Compression is off and the
other websockets settings (``max_size``, keepalive pings) are left at the
defaults, which match the agent's.

Run it as ``python benchmarks/_bare_echo_server.py [PORT]``: it binds
127.0.0.1 (port 0 picks a free one), prints the bound port on stdout and
serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

_PONG = {"pong": True}


async def _handle(ws: ServerConnection) -> None:
    try:
        while True:
            frame = await ws.recv(decode=False)
            message: Any = orjson.loads(frame)
            if message.get("type") == "ping":
                reply = {"id": message.get("id"), "result": _PONG}
            else:
                reply = {"id": message.get("id"), "result": {"data": message.get("data")}}
            await ws.send(orjson.dumps(reply), text=True)
    except ConnectionClosed:
        pass


async def _main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve(_handle, "127.0.0.1", port, compression=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
