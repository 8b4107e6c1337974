"""``localagent bench``: the command; the harness is imported only when it runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ._model import BenchReport

__all__ = ["bench"]


class _BenchCommand(click.Command):
    """``bench``, whose help lists the areas (imported only when the help is shown)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from .areas import AREAS

        with formatter.section("Areas, in the order they run"):
            formatter.write_text(", ".join(name for name, _module in AREAS))
        super().format_epilog(ctx, formatter)


@click.command(
    cls=_BenchCommand, short_help="Measure the agent against bare baselines, area by area."
)
@click.argument("area", nargs=-1)
@click.option("--quick", is_flag=True, help="Smaller workloads and 3 repetitions.")
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="Write every figure, sample and the environment as JSON to FILE ('-': stdout).",
)
@click.option("--markdown", is_flag=True, help="Print a Markdown table instead of the table.")
@click.option(
    "-r",
    "--repetitions",
    type=click.IntRange(min=1),
    metavar="N",
    help="Samples per figure (default 5, or 3 with --quick).",
)
@click.option(
    "--redis",
    metavar="URL",
    help="Measure the redis area against the Redis at URL (default: a private redis-server).",
)
@click.option(
    "--loop",
    type=click.Choice(["auto", "asyncio", "uvloop"]),
    default="auto",
    show_default=True,
    help="Event loop of the agents and bare servers it starts (serve --loop).",
)
def bench(
    area: tuple[str, ...],
    quick: bool,
    json_file: str | None,
    markdown: bool,
    repetitions: int | None,
    redis: str | None,
    loop: str,
) -> None:
    """Measure the agent against bare baselines, area by area, in one run.

    Runs real agents (subprocesses on free loopback ports, each with its own
    token) and the bare libraries beside them, and prints each figure's
    median with min-max, the same-run ratio and its grade. Without AREA, every
    area runs. An area whose component is missing is skipped with the reason.
    Exit status: 0 (also with skipped areas), 1 if an area failed, 2 for a
    usage error.
    """
    from .areas import load_areas

    try:
        load_areas(list(area))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="AREA") from None
    if json_file == "-" and markdown:
        raise click.UsageError("--json - and --markdown both write to stdout; choose one")
    if json_file not in (None, "-"):
        _check_writable(json_file)
    from localagent._loop import loop_factory
    from localagent.exceptions import ConfigError

    try:
        loop_factory(loop)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="'--loop'") from None
    report = _run_bench(area, quick, repetitions, redis, loop)
    _print_bench(report, json_file, markdown)
    failed = [result.area for result in report.results if result.error is not None]
    if failed:
        raise click.ClickException(f"area(s) failed: {', '.join(failed)}")


def _check_writable(path: str) -> None:
    """Refuse an unwritable ``--json`` path before the run, not after it."""
    target = os.path.abspath(path)
    exists = os.path.exists(target)
    directory = os.path.dirname(target)
    if (exists and not os.access(target, os.W_OK)) or (
        not exists and not (os.path.isdir(directory) and os.access(directory, os.W_OK))
    ):
        raise click.BadParameter(f"cannot write {path!r}", param_hint="'--json'")


def _run_bench(
    areas: Sequence[str], quick: bool, repetitions: int | None, redis: str | None, loop: str
) -> BenchReport:
    """Run the areas, with a live status on stderr when both outputs are terminals."""
    from ._runner import run_bench

    def run(progress: Callable[[str], None]) -> BenchReport:
        return run_bench(
            areas,
            quick=quick,
            repetitions=repetitions,
            redis_url=redis,
            progress=progress,
            loop=loop,
        )

    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        return run(lambda text: None)
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("localagent bench: starting", total=None)
        return run(lambda text: bar.update(task, description=f"localagent bench: {text}"))


def _print_bench(report: BenchReport, json_file: str | None, markdown: bool) -> None:
    """The table or the Markdown on stdout, and the JSON where ``--json`` says."""
    from ._render import print_table, render_json, render_markdown

    if markdown:
        click.echo(render_markdown(report), nl=False)
    elif json_file != "-":
        print_table(report, sys.stdout)
    if json_file == "-":
        click.echo(render_json(report), nl=False)
    elif json_file is not None:
        try:
            with open(json_file, "w", encoding="utf-8") as file:
                file.write(render_json(report))
        except OSError as exc:
            raise click.ClickException(f"cannot write {json_file}: {exc.strerror}") from None
