"""Running :mod:`localagent_bench.bare_echo` from a benchmark: a subprocess on a free port.

Kept apart from the script itself, whose start is a baseline and so imports
nothing a bare websockets server would not.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import attrs

from localagent.testing import stop_process

from .bare_echo import MODULE

__all__ = ["BareEcho", "bare_echo_cmd", "running_bare_echo"]


def bare_echo_cmd(port: int = 0) -> list[str]:
    """The argv that runs the bare echo server with the current interpreter."""
    return [sys.executable, "-m", MODULE, str(port)]


@attrs.frozen
class BareEcho:
    """A running bare echo server subprocess."""

    url: str
    process: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def running_bare_echo(env: Mapping[str, str]) -> Iterator[BareEcho]:
    """Run the bare echo server on a free loopback port until the block ends.

    Raises:
        RuntimeError: The server did not print its port.
    """
    process = subprocess.Popen(
        bare_echo_cmd(),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"the bare echo server did not start (printed {line!r})")
        yield BareEcho(f"ws://127.0.0.1:{line}", process)
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()
