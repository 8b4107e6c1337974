"""What an area gets to work with: sizes, repetitions, a scratch directory, agents."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs

from localagent import Server, load_settings
from localagent.testing import AgentProcess, running_agent

__all__ = ["BenchContext", "Call", "in_flight", "percentile", "plugin_option_values"]

#: One unit of work of a throughput figure: ``call(index)``.
Call = Callable[[int], Awaitable[None]]


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``samples`` (``pct`` in 0-100)."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * pct // 100))
    return float(ordered[int(rank) - 1])


async def in_flight(count: int, window: int, call: Call) -> float:
    """Run ``call(0)`` .. ``call(count - 1)`` with ``window`` calls outstanding; calls/s."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await call(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(window)))
    return count / (time.perf_counter() - started)


def plugin_option_values(options: tuple[str, ...]) -> list[str]:
    """The values of ``("-p", "NAME", "-p", "no:OTHER")``: ``["NAME", "no:OTHER"]``."""
    return [value for flag, value in itertools.pairwise(options) if flag == "-p"]


@attrs.define(kw_only=True)
class BenchContext:
    """Everything an area needs, for one variant of one run.

    Attributes:
        quick: ``--quick``: smaller workloads, fewer repetitions.
        repetitions: How many samples each figure gets.
        workdir: A scratch directory for this area and variant (removed after).
        plugin_options: ``-p`` options of this variant, passed to every agent
            started through :meth:`agent` (e.g. ``("-p", "no:batching")``).
        redis_url: A reachable Redis for the ``redis`` area, or ``None``.
        redis_missing: Why there is no Redis, when ``redis_url`` is ``None``.
        progress: Reports what is being measured (shown while the run goes).
        loop: The event loop of the agent subprocesses and bare servers
            (``$LOCALAGENT_LOOP``: ``auto``, ``asyncio`` or ``uvloop``); agents
            in this process run on its loop.
    """

    quick: bool
    repetitions: int
    workdir: Path
    plugin_options: tuple[str, ...] = ()
    redis_url: str | None = None
    redis_missing: str | None = None
    progress: Callable[[str], None] = lambda text: None
    loop: str = "auto"
    _agents: int = 0

    def size(self, full: int, quick: int) -> int:
        """A workload size: ``full`` normally, ``quick`` with ``--quick``."""
        return quick if self.quick else full

    @property
    def workspace(self) -> Path:
        """The workspace every agent of this context uses (created on first use)."""
        path = self.workdir / "workspace"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env(self) -> dict[str, str]:
        """The environment for agent subprocesses.

        Third-party plugins load only when the variant enables them with ``-p``,
        so every figure is reproducible whatever else is installed.
        """
        # The user's LOCALAGENT_* settings would override the config the area
        # writes (workspace, redis, limits): none of them reach the agents.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
        env["LOCALAGENT_LOAD_PLUGINS"] = ""
        env["LOCALAGENT_LOOP"] = self.loop
        return env

    @contextmanager
    def agent(
        self, config: str = "", *args: str, env: dict[str, str] | None = None
    ) -> Iterator[AgentProcess]:
        """Run an agent subprocess with its own config dir, token and a free port.

        Args:
            config: Extra ``config.toml`` text (``[plugins.exec]`` tables, ...).
                The ``[agent]`` table is written here: do not repeat it; pass
                ``redis`` through ``args`` (``"--redis", url``) instead.
            args: Extra ``localagent serve`` arguments.
            env: The environment (default: :meth:`env`).
        """
        self._agents += 1
        config_dir = self.workdir / f"agent{self._agents}"
        config_dir.mkdir(parents=True)
        agent_table = f'[agent]\nworkspace = "{self.workspace}"\n'
        (config_dir / "config.toml").write_text(agent_table + config)
        with running_agent(
            env if env is not None else self.env(),
            "--log-level",
            "warning",
            *self.plugin_options,
            *args,
            config_dir=config_dir,
        ) as agent:
            yield agent

    @asynccontextmanager
    async def in_process_agent(
        self,
        name: str,
        *,
        overrides: Mapping[str, Any] | None = None,
        options: Sequence[str] | None = None,
    ) -> AsyncIterator[Server]:
        """An agent in this process on a free loopback port, with its own config dir; closed after.

        It loads the built-in plugins plus the variant's ``-p`` options, like
        :meth:`BenchContext.agent`, but runs on this process's event loop.

        Args:
            name: Its config directory's name under :attr:`workdir`.
            overrides: More settings (``redis``, ``cluster``, ...).
            options: Plugin options instead of the variant's (``"no:fs"``, ...).
        """
        env = self.env()
        config_dir = self.workdir / name
        config_dir.mkdir(parents=True, exist_ok=True)
        settings = load_settings(
            directory=config_dir,
            environ=env,
            overrides={
                "host": "127.0.0.1",
                "port": 0,
                "workspace": str(self.workspace),
                **(overrides or {}),
            },
        )
        if options is None:
            options = plugin_option_values(self.plugin_options)
        async with Server.create(settings, options=options, environ=env) as server:
            yield server
