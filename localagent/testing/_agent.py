"""Run ``localagent serve`` as a real subprocess on a free loopback port."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import attrs

__all__ = ["AgentProcess", "localagent_cmd", "running_agent", "stop_process"]

LISTENING = re.compile(r"listening on (ws://\S+)")
#: Seconds an agent may take to start.
STARTUP_TIMEOUT = 30.0


def localagent_cmd(*args: str) -> list[str]:
    """The argv that runs the ``localagent`` CLI of this interpreter."""
    return [sys.executable, "-m", "localagent", *args]


@attrs.define
class AgentProcess:
    """A ``localagent serve`` subprocess and everything it wrote to stderr."""

    url: str
    process: subprocess.Popen[str]
    lines: list[str]
    config_dir: Path | None = None

    @property
    def output(self) -> str:
        """Everything the agent wrote to stderr so far."""
        return "".join(self.lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def token(self) -> str:
        """The agent's token, read from its config directory."""
        if self.config_dir is None:
            raise RuntimeError("the config directory is not known; pass config_dir=")
        return (self.config_dir / "token").read_text().strip()


@contextmanager
def running_agent(
    env: Mapping[str, str], *args: str, config_dir: Path | None = None
) -> Iterator[AgentProcess]:
    """Run ``localagent serve --port 0`` in a subprocess until the block ends.

    stderr is drained by a thread for the whole run, so a chatty agent never
    blocks on a full pipe, and callers can inspect the log afterwards.

    Args:
        env: The subprocess's environment.
        args: Extra ``serve`` arguments.
        config_dir: Passed as ``--config-dir`` (else the environment decides).
    """
    prefix = ("--config-dir", str(config_dir)) if config_dir is not None else ()
    process = subprocess.Popen(
        localagent_cmd(*prefix, "serve", "--port", "0", *args),
        env=dict(env),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    started = threading.Event()
    url: list[str] = []

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = LISTENING.search(line)
            if match and not started.is_set():
                url.append(match.group(1))
                started.set()
        started.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        started.wait(STARTUP_TIMEOUT)
        if not url:
            raise AssertionError("the agent did not start:\n" + "".join(lines))
        yield AgentProcess(url[0], process, lines, config_dir)
    finally:
        stop_process(process)
        reader.join(10)


def stop_process(process: subprocess.Popen[str], grace: float = 10.0) -> None:
    """Terminate ``process`` (SIGTERM, then SIGKILL after ``grace`` seconds) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
