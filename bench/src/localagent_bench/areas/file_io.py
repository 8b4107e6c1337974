"""Area ``files``: 1 KiB files read and written through ``fs`` vs bare ``open()``.

The agent's figures are real ``fs.read`` and ``fs.write`` requests sent by
:class:`~localagent.Client` over one WebSocket connection to an agent
subprocess, with 64 requests in flight and with one at a time, on real files in
the agent's workspace. The baseline reads and writes the same files with
``open()`` in this process, one after another (a local call has no round trip
to overlap). Agent and baseline samples alternate within each repetition.

Every read's content is compared with what the file holds; after each write
sample every written file is read back and checked. ``fs.write`` is atomic (a
temporary file renamed over the target); the baseline overwrites in place.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from localagent import Client

from .._context import BenchContext, Call, in_flight
from .._model import AreaResult, Comparison, Figure
from . import Area

__all__ = ["AREA"]

FILE_SIZE = 1024
#: Distinct files per set; the requests cycle over them.
FILE_COUNT = 256
#: The agent's requests in flight, per figure.
WINDOWS = (64, 1)


def contents(generation: int) -> list[str]:
    """1 KiB of ASCII per file, different for every file and every generation."""
    texts = []
    for index in range(FILE_COUNT):
        line = f"file {index:04} generation {generation:06}\n"
        texts.append((line * (FILE_SIZE // len(line) + 1))[:FILE_SIZE])
    return texts


def file_names(directory: str) -> list[str]:
    """The files' paths relative to the workspace (what ``fs`` requests name)."""
    return [f"{directory}/file{index:04}.txt" for index in range(FILE_COUNT)]


# -- reads -------------------------------------------------------------------------------


def agent_read(client: Client, names: Sequence[str], expected: Sequence[str]) -> Call:
    async def call(index: int) -> None:
        slot = index % len(names)
        reply = await client.request("fs.read", {"path": names[slot]})
        if reply["content"] != expected[slot]:
            raise RuntimeError(f"fs.read of {names[slot]} returned other content")

    return call


def bare_reads(paths: Sequence[Path], expected: Sequence[str], count: int) -> float:
    """``open().read()`` of ``count`` files in a loop, each checked; files/s."""
    started = time.perf_counter()
    for index in range(count):
        slot = index % len(paths)
        with open(paths[slot], encoding="utf-8") as file:
            if file.read() != expected[slot]:
                raise RuntimeError(f"open().read() of {paths[slot]} returned other content")
    return count / (time.perf_counter() - started)


# -- writes ------------------------------------------------------------------------------


def agent_write(client: Client, names: Sequence[str], texts: Sequence[str]) -> Call:
    async def call(index: int) -> None:
        slot = index % len(names)
        reply = await client.request("fs.write", {"path": names[slot], "content": texts[slot]})
        if reply["size"] != FILE_SIZE:
            raise RuntimeError(f"fs.write of {names[slot]} wrote {reply['size']} bytes")

    return call


def bare_writes(paths: Sequence[Path], texts: Sequence[str], count: int) -> float:
    """``open(..., "w").write()`` of ``count`` files in a loop; files/s."""
    started = time.perf_counter()
    for index in range(count):
        slot = index % len(paths)
        with open(paths[slot], "w", encoding="utf-8") as file:
            file.write(texts[slot])
    return count / (time.perf_counter() - started)


def check_written(paths: Sequence[Path], texts: Sequence[str]) -> None:
    """Every file holds what the last write sample wrote to it."""
    for path, text in zip(paths, texts, strict=True):
        if path.read_text(encoding="utf-8") != text:
            raise RuntimeError(f"{path.name} does not hold the content last written")


# -- the area ----------------------------------------------------------------------------


@attrs.define
class _Workload:
    """The read set (fixed content) and the write set (a new generation per sample)."""

    client: Client
    workspace: Path
    count: int
    generation: int = 0
    read_names: list[str] = attrs.field(factory=lambda: file_names("read"))
    write_names: list[str] = attrs.field(factory=lambda: file_names("write"))
    expected: list[str] = attrs.field(factory=lambda: contents(0))

    def prepare(self) -> None:
        (self.workspace / "write").mkdir(parents=True, exist_ok=True)
        (self.workspace / "read").mkdir(parents=True, exist_ok=True)
        for path, text in zip(self.paths(self.read_names), self.expected, strict=True):
            path.write_text(text, encoding="utf-8")

    def paths(self, names: Sequence[str]) -> list[Path]:
        return [self.workspace / name for name in names]

    def next_texts(self) -> list[str]:
        self.generation += 1
        return contents(self.generation)

    async def agent_reads(self, window: int) -> float:
        call = agent_read(self.client, self.read_names, self.expected)
        return await in_flight(self.count, window, call)

    def bare_reads(self) -> float:
        return bare_reads(self.paths(self.read_names), self.expected, self.count)

    async def agent_writes(self, window: int) -> float:
        texts = self.next_texts()
        rate = await in_flight(
            self.count, window, agent_write(self.client, self.write_names, texts)
        )
        check_written(self.paths(self.write_names), texts)
        return rate

    def bare_writes(self) -> float:
        texts = self.next_texts()
        rate = bare_writes(self.paths(self.write_names), texts, self.count)
        check_written(self.paths(self.write_names), texts)
        return rate


async def _sample(workload: _Workload) -> dict[str, float]:
    """One sample of every series, agent and bare alternating."""
    fast, slow = WINDOWS
    return {
        f"read agent {fast}": await workload.agent_reads(fast),
        "read bare": workload.bare_reads(),
        f"read agent {slow}": await workload.agent_reads(slow),
        f"write agent {fast}": await workload.agent_writes(fast),
        "write bare": workload.bare_writes(),
        f"write agent {slow}": await workload.agent_writes(slow),
    }


def _comparisons(series: dict[str, list[float]]) -> list[Comparison]:
    comparisons = []
    for op, bare_name, bare_what in (
        ("read", "open().read()", "bare open().read(), sequential"),
        ("write", "open().write()", "bare open().write(), sequential"),
    ):
        baseline = Figure(bare_name, "files/s", series[f"{op} bare"])
        for window in WINDOWS:
            figure = Figure(
                f"fs.{op} {window} in flight", "files/s", series[f"{op} agent {window}"]
            )
            comparisons.append(
                Comparison(figure=figure, baseline=baseline, baseline_name=bare_what)
            )
    return comparisons


async def run(ctx: BenchContext) -> AreaResult:
    count = ctx.size(2_500, 600)
    series: dict[str, list[float]] = {}
    with ctx.agent() as agent:
        async with Client(agent.url, agent.token) as client:
            workload = _Workload(client, ctx.workspace, max(FILE_COUNT, count // 10))
            workload.prepare()
            ctx.progress("files: warm-up")
            await _sample(workload)
            workload.count = count
            for repetition in range(ctx.repetitions):
                ctx.progress(f"files: {count} reads and writes, {repetition + 1}/{ctx.repetitions}")
                for name, value in (await _sample(workload)).items():
                    series.setdefault(name, []).append(value)
    return AreaResult(
        area="files",
        title="File I/O",
        comparisons=_comparisons(series),
        notes=[
            f"{FILE_COUNT} files of {FILE_SIZE} bytes; {count} reads and {count} writes per "
            "sample; the agent over one WebSocket connection",
            "baseline: open() in the bench process, one file after another",
            "every read's content is checked; written files are read back after each sample",
            "fs.write is atomic (temporary file + rename); the baseline overwrites in place",
        ],
    )


AREA = Area("files", "File I/O", run)
