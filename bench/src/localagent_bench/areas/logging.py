"""Area ``logging``: records/s through the project's logging setup vs bare ``logging``.

The agent's figure logs through what ``localagent serve`` uses: the record
format of the CLI and the secret-redacting filter of
:func:`localagent._security.redacting_logger` (asking the token file for the
secret on every record, as the server's logger does), to a ``FileHandler``.
The baseline is a plain logger with a ``FileHandler``, the same format and no
filter. Both write the same realistic records to files in the scratch
directory; neither propagates to the root logger, and both are taken apart
afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from localagent._security import TokenFile, redacting_logger
from localagent.cli import LOG_FORMAT

from .._context import BenchContext
from .._model import AreaResult, Comparison, Figure
from . import Area

__all__ = ["AREA", "SHAPES", "records"]

#: The records an agent logs, as (message, args); ``{n}`` is a running number.
#: The last one carries a token in a request path, which the filter masks.
SHAPES: tuple[tuple[str, tuple[object, ...]], ...] = (
    ("connection %s opened from 127.0.0.1:%d", ("c{n}", 40_000)),
    ("request %s %r handled in %.1f ms", ("c{n}", "kv.get", 0.4)),
    ("plugin %r: %d background task(s) running", ("exec", 3)),
    ("request %s %r failed: %s", ("c{n}", "fs.read", "no such file: notes.txt")),
    ("connection %s closed (%d)", ("c{n}", 1000)),
    ("slow handler %r took %.1f ms (limit %d ms)", ("exec.run", 812.5, 500)),
    ("connection %s closed (%d)", ("c{n}", 1001)),
    ("refused GET /?token=%s from 127.0.0.1:%d: invalid token", ("Zm9vYmFyYmF6{n}", 40_001)),
)


def _numbered(arg: object, n: int) -> object:
    return arg.format(n=n) if isinstance(arg, str) else arg


def records(count: int) -> list[tuple[str, tuple[object, ...]]]:
    """``count`` realistic (message, args) pairs, cycling through :data:`SHAPES`."""
    made = []
    for n in range(count):
        message, args = SHAPES[n % len(SHAPES)]
        made.append((message, tuple(_numbered(arg, n) for arg in args)))
    return made


@contextmanager
def _file_logger(name: str, path: Path, *, redacting: TokenFile | None) -> Iterator[logging.Logger]:
    """A logger writing ``LOG_FORMAT`` lines to ``path``, taken apart at the end."""
    logger = redacting_logger(name, redacting.get) if redacting else logging.getLogger(name)
    filters = list(logger.filters)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()
        for added in filters:
            logger.removeFilter(added)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def _rate(logger: logging.Logger, batch: Sequence[tuple[str, tuple[object, ...]]]) -> float:
    started = time.perf_counter()
    for message, args in batch:
        logger.info(message, *args)
    return len(batch) / (time.perf_counter() - started)


async def run(ctx: BenchContext) -> AreaResult:
    """Log the same records through both loggers, alternating, and compare records/s."""
    count = ctx.size(50_000, 10_000)
    batch = records(count)
    token_file = TokenFile(ctx.workdir / "config")
    token_file.get()
    agent_log, bare_log = ctx.workdir / "agent.log", ctx.workdir / "bare.log"
    prefix = f"localagent.bench.logging.{ctx.workdir.name}"
    agent, bare = [], []
    ctx.progress(f"logging: {count:,} records x {ctx.repetitions}")
    with (
        _file_logger(f"{prefix}.agent", agent_log, redacting=token_file) as agent_logger,
        _file_logger(f"{prefix}.bare", bare_log, redacting=None) as bare_logger,
    ):
        for _ in range(ctx.repetitions):
            agent.append(_rate(agent_logger, batch))
            bare.append(_rate(bare_logger, batch))
    masked = agent_log.read_text(encoding="utf-8").count("token=***")
    clear = bare_log.read_text(encoding="utf-8").count("token=Zm9v")
    return AreaResult(
        area="logging",
        title="Logging",
        comparisons=[
            Comparison(
                figure=Figure("records logged to a file", "records/s", agent),
                baseline=Figure("bare logging", "records/s", bare),
                baseline_name="bare logging.FileHandler (same format, no filter)",
            )
        ],
        notes=[
            f"{count:,} INFO records per sample, format {LOG_FORMAT!r}, a FileHandler each "
            "(one write and flush per record)",
            f"the agent's logger redacts secrets (it stats the token file on every record): "
            f"1 record in {len(SHAPES)} has a token in a request path; "
            f"{masked:,} were masked in the agent's file, {clear:,} stayed in the bare file",
        ],
    )


AREA = Area("logging", "Logging", run)
