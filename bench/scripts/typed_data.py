"""Typed message data: what checking ``data`` against a schema costs, over a real WebSocket.

One agent (this script in ``--serve`` mode, a subprocess on a free loopback port) answers
two message types with the same work, storing a key in the agent's store:

- ``typed.set``: declared ``@handles("typed.set", schema=SetData)`` with the built-in kv
  plugin's own schema: the runtime converts ``data`` with msgspec before the handler runs
  (what ``kv.set`` does now);
- ``checked.set``: no schema; the handler checks ``data`` by hand, field by field, as the
  kv plugin did before schemas (``_args.arguments`` and ``field``).

From this process, one WebSocket connection sends them in turn, round after round: one at a
time (``p50`` round trip) and ``--in-flight`` at once (messages per second, where the
agent's per-message CPU shows). It prints the medians over the rounds and the same-round
ratios typed/checked.

    .venv/bin/python bench/scripts/typed_data.py [--rounds 7] [--messages 4000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

KINDS = ("typed.set", "checked.set")
DATA = {"key": "bench:key", "value": {"n": 1, "text": "hello"}, "ttl": 60}


def _plugin() -> object:
    from localagent_hookspecs import MessageError, handles, hookimpl

    from localagent.builtin.kv import MAX_KEY_LENGTH, SetData

    class Store:
        @hookimpl
        def on_load(self, agent: Any) -> None:
            self.store = agent.store

        @hookimpl(specname="on_message")
        @handles("typed.set", schema=SetData)
        async def typed(self, message: Any) -> dict[str, bool]:
            data = message.data
            await self.store.set(data.key, data.value, ttl=data.ttl)
            return {"ok": True}

        @hookimpl(specname="on_message")
        @handles("checked.set")
        async def checked(self, message: Any) -> dict[str, bool]:
            data = {} if message.data is None else message.data
            if not isinstance(data, dict):
                raise MessageError("bad_request", "checked.set: data must be a JSON object")
            for name in data:
                if name not in ("key", "value", "ttl"):
                    raise MessageError("bad_request", f"checked.set: unknown field {name}")
            key = data.get("key")
            if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
                raise MessageError("bad_request", "checked.set: key must be a non-empty string")
            if "value" not in data:
                raise MessageError("bad_request", "checked.set: field 'value' is required")
            ttl = data.get("ttl")
            if ttl is not None:
                if type(ttl) is bool or not isinstance(ttl, int | float) or ttl <= 0:
                    raise MessageError("bad_request", "checked.set: 'ttl' must be positive")
                ttl = float(ttl)
            await self.store.set(key, data["value"], ttl=ttl)
            return {"ok": True}

    return Store()


async def serve() -> None:
    """Run the agent until stdin closes; print its URL and token as one JSON line."""
    import localagent

    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
    environ["LOCALAGENT_LOAD_PLUGINS"] = ""
    with tempfile.TemporaryDirectory() as directory:
        settings = localagent.load_settings(
            directory=Path(directory),
            environ=environ,
            overrides={"host": "127.0.0.1", "port": 0, "workspace": directory},
        )
        server = localagent.Server.create(
            settings, extra_plugins={"bench-store": _plugin()}, environ=environ, strict=True
        )
        async with server:
            print(json.dumps({"url": server.url, "token": server.token_file.get()}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def exchange(ws: ClientConnection, kind: str, count: int, in_flight: int) -> list[float]:
    """``count`` requests of ``kind``, ``in_flight`` outstanding; each round trip in seconds."""
    loop = asyncio.get_running_loop()
    replies = {number: loop.create_future() for number in range(count)}
    samples: list[float] = []
    numbers = iter(range(count))

    async def sender() -> None:
        for number in numbers:
            started = time.perf_counter()
            frame = orjson.dumps({"id": number, "type": kind, "data": DATA})
            await ws.send(frame, text=True)
            reply = await replies[number]
            assert "result" in reply, reply
            samples.append(time.perf_counter() - started)

    async def reader() -> None:
        for _ in range(count):
            reply = orjson.loads(await ws.recv())
            replies[reply["id"]].set_result(reply)

    read = asyncio.create_task(reader())
    await asyncio.gather(*(sender() for _ in range(in_flight)))
    await read
    return samples


async def measure(endpoint: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {endpoint['token']}"}
    p50: dict[str, list[float]] = {kind: [] for kind in KINDS}
    rate: dict[str, list[float]] = {kind: [] for kind in KINDS}
    async with connect(endpoint["url"], additional_headers=headers, compression=None) as ws:
        for kind in KINDS:
            await exchange(ws, kind, 500, 1)  # warm-up
        for _ in range(args.rounds):
            for kind in KINDS:
                one = await exchange(ws, kind, args.messages // 4, 1)
                p50[kind].append(statistics.median(one) * 1e6)
                started = time.perf_counter()
                await exchange(ws, kind, args.messages, args.in_flight)
                rate[kind].append(args.messages / (time.perf_counter() - started))
    typed, checked = KINDS
    return {
        "rounds": args.rounds,
        "p50_us": {kind: round(statistics.median(p50[kind]), 1) for kind in KINDS},
        "msgs_per_s": {kind: round(statistics.median(rate[kind])) for kind in KINDS},
        "p50_typed_over_checked": round(
            statistics.median(a / b for a, b in zip(p50[typed], p50[checked], strict=True)), 3
        ),
        "rate_typed_over_checked": round(
            statistics.median(a / b for a, b in zip(rate[typed], rate[checked], strict=True)), 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    agent = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        endpoint = json.loads(agent.stdout.readline())
        report = asyncio.run(measure(endpoint, args))
    finally:
        assert agent.stdin is not None
        agent.stdin.close()
        agent.wait(10)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for kind in KINDS:
        print(
            f"{kind:<12} p50 {report['p50_us'][kind]:>7.1f} us   "
            f"{report['msgs_per_s'][kind]:>7} msg/s ({args.in_flight} in flight)"
        )
    print(
        f"typed / checked: p50 {report['p50_typed_over_checked']}x, "
        f"msg/s {report['rate_typed_over_checked']}x (same-round ratios, median)"
    )


if __name__ == "__main__":
    main()
