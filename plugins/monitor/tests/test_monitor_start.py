"""What a start imports: the modules of settings that are off, and of the ticker, wait.

Each case starts a real agent with the monitor in a fresh interpreter (the
test process has imported everything already) and lists which of the
deferred modules are in ``sys.modules`` once it listens, and after a tick.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from monitor_testing import write_config

DEFERRED = (
    "localagent_monitor._actions",
    "localagent_monitor._optimizer",
    "localagent_monitor._port",
    "localagent_monitor._window",
    "localagent_monitor._prometheus",
)

SCRIPT = """
import asyncio, json, sys

import localagent

DEFERRED = {deferred!r}


def imported():
    return sorted(name for name in DEFERRED if name in sys.modules)


async def main():
    settings = localagent.load_settings(overrides={{"port": 0}})
    server = localagent.Server.create(settings, options=["monitor"], strict=True)
    async with server:
        listening = imported()
        monitor = server.runtime.pm.get_plugin("monitor").monitor
        while monitor.figures is None:  # the first tick
            await asyncio.sleep(0.01)
        print(json.dumps({{"listening": listening, "ticked": imported()}}))


asyncio.run(main())
"""


def imports_of_a_start(config_dir: Path, table: str) -> dict[str, list[str]]:
    write_config(config_dir, table)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(deferred=DEFERRED)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, list[str]] = json.loads(result.stdout.splitlines()[-1])
    return found


def test_a_start_with_the_defaults_imports_none_of_them(localagent_config_dir: Path) -> None:
    found = imports_of_a_start(localagent_config_dir, "tick = 0.05\n")
    assert found["listening"] == []
    assert found["ticked"] == ["localagent_monitor._window"]


def test_each_setting_imports_its_own_module(localagent_config_dir: Path) -> None:
    table = "tick = 0.05\nport = 0\nactions = true\nauto_optimize = true\n"
    found = imports_of_a_start(localagent_config_dir, table)
    assert found["listening"] == [
        "localagent_monitor._actions",
        "localagent_monitor._optimizer",
        "localagent_monitor._port",
    ]
