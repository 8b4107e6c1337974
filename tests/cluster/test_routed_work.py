"""Routed work obeys the sender's limits and ends when the sender goes away."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from .conftest import Cluster, until

#: A program that says it started, then waits until the test lets it finish.
WAIT = "touch started.$$; while [ ! -e release ]; do sleep 0.05; done"


def _started(workspace: Path) -> int:
    return len(list(workspace.glob("started.*")))


def _pid(workspace: Path) -> int | None:
    text = (workspace / "pid").read_text().strip() if (workspace / "pid").exists() else ""
    return int(text) if text else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_routed_exec_obeys_the_senders_max_per_connection(
    cluster: Cluster, subprocess_env: dict[str, str]
) -> None:
    workspace = Path(subprocess_env["LOCALAGENT_WORKSPACE"])
    cluster.start("a")
    cluster.start("b", "--set", 'exec.allow=["sh"]', "--set", "exec.max_per_connection=2")
    b = cluster.name("b")
    async with cluster.peer("a") as peer:
        await peer.until_routed(b)
        ids = [await peer.send("exec", {"argv": ["sh", "-c", WAIT]}, to=b) for _ in range(4)]
        await until(lambda: _started(workspace) >= 2, "started")
        await asyncio.sleep(1.0)  # without the limit, the other two start at once
        assert _started(workspace) == 2
        (workspace / "release").touch()
        for msg_id in ids:
            assert (await peer.reply(msg_id))["result"]["exit_code"] == 0
        assert _started(workspace) == 4


async def test_routed_exec_is_killed_when_the_sender_disconnects(
    cluster: Cluster, subprocess_env: dict[str, str]
) -> None:
    workspace = Path(subprocess_env["LOCALAGENT_WORKSPACE"])
    cluster.start("a")
    cluster.start("b", "--set", 'exec.allow=["sh"]', "--set", "exec.timeout=600")
    b = cluster.name("b")
    async with cluster.peer("a") as peer:
        await peer.until_routed(b)
        await peer.send("exec", {"argv": ["sh", "-c", "echo $$ > pid; exec sleep 300"]}, to=b)
        await until(lambda: _pid(workspace) is not None, "started")
        pid = _pid(workspace)
        assert pid is not None
        assert _alive(pid)
    # The client is gone: agent a tells b, which kills the process.
    await until(lambda: not _alive(pid), "killed after its client left")
    async with cluster.peer("a") as peer:  # and b serves on
        assert (await peer.request("ping", to=b))["result"] == {"pong": True}
