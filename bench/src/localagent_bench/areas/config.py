"""Area ``config``: real config files loaded per second vs bare ``tomllib.loads``.

The agent's figure is the whole ``load_settings`` of a realistic config.toml
from disk (read, parse, validate every setting, environment overrides); the
baseline parses the same text with ``tomllib.loads`` and does nothing else.
"""

from __future__ import annotations

import time
import tomllib

from localagent import load_settings

from .._context import BenchContext
from .._model import AreaResult, Comparison, Figure
from . import Area

__all__ = ["AREA"]

CONFIG = """\
[server]
host = "127.0.0.1"
port = 8765
origins = ["http://localhost:3000", "http://localhost:5173"]
allowed_hosts = ["agent.localhost"]
max_message_size = 1048576
max_in_flight = 64
compression = false
ping_interval = 20.0
ping_timeout = 20.0
open_timeout = 10.0

[agent]
workspace = "~/agent-workspace"

[plugins.echo]
enabled = false

[plugins.exec]
allow = ["git", "ls", "python3"]
timeout = 30
max_output = 1048576

[plugins.fs]
max_read_bytes = 4194304
"""


async def run(ctx: BenchContext) -> AreaResult:
    directory = ctx.workdir / "config"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.toml").write_text(CONFIG)
    count = ctx.size(5_000, 1_000)
    agent, bare = [], []
    ctx.progress(f"config: {count} loads x {ctx.repetitions}")
    for _ in range(ctx.repetitions):
        started = time.perf_counter()
        for _ in range(count):
            load_settings(directory=directory, environ={})
        agent.append(count / (time.perf_counter() - started))
        started = time.perf_counter()
        for _ in range(count):
            tomllib.loads(CONFIG)
        bare.append(count / (time.perf_counter() - started))
    return AreaResult(
        area="config",
        title="Config loading",
        comparisons=[
            Comparison(
                figure=Figure("config files loaded", "files/s", agent),
                baseline=Figure("tomllib.loads", "files/s", bare),
                baseline_name="bare tomllib.loads (no file read, no validation)",
            )
        ],
        notes=[f"{len(CONFIG)} bytes of TOML, {count} loads per sample"],
    )


AREA = Area("config", "Config loading", run)
