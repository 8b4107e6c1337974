"""``localagent cluster``: the shared secret, and the state of a cluster's agents."""

from __future__ import annotations

import click

from ._shared import load_settings, pretty

__all__ = ["cluster"]


@click.group()
def cluster() -> None:
    """Inspect the cluster of agents sharing Redis (serve --cluster NAME)."""


@cluster.command("secret")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def cluster_secret(path: str | None) -> None:
    """Create the secret the agents of a cluster share, in a new file (mode 0600).

    PATH defaults to where serve looks for it: [agent] cluster_secret_file, or
    cluster-secret in the config dir. Give every agent of the cluster a copy
    (--cluster-secret-file PATH). The secret never goes through Redis; a file
    that exists is never replaced.
    """
    from pathlib import Path

    from .._cluster._signing import create_secret_file

    target = Path(path).expanduser().absolute() if path else load_settings().cluster_secret_path
    create_secret_file(target)
    click.echo(f"wrote a new cluster secret to {target} (mode 0600)")


@cluster.command("status")
@click.option("--redis", metavar="URL", help="The cluster's Redis (default: the configured one).")
@click.option(
    "--cluster", "name", metavar="NAME", help="The cluster (default: the configured one)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per agent.")
def cluster_status(redis: str | None, name: str | None, as_json: bool) -> None:
    """List the cluster's agents: state, URL, pid, last heartbeat, inbox backlog, peers.

    An agent is "up" while its heartbeat is recent, "down" when it stopped
    without leaving (its queued messages wait for it to come back). INBOX is
    the length of its stream, PENDING the entries it read and has not
    answered yet, LAG those it has not read yet.
    """
    settings = load_settings(overrides={"redis": redis})
    url = settings.agent.redis
    if name is None:
        name = settings.agent.cluster
    if name is None:
        raise click.UsageError("no cluster is configured: pass --cluster NAME")
    if url is None:
        raise click.UsageError("no Redis is configured: pass --redis URL")
    from .._cluster import check_cluster_name, safe_url
    from .._cluster._status import read_status, render_table

    try:
        check_cluster_name(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--cluster'") from None
    try:
        import redis as redis_py
    except ImportError:
        raise click.ClickException(
            "redis-py is not installed; install the extra: pip install 'localagent[redis]'"
        ) from None
    try:
        agents = read_status(url, name)
    except redis_py.exceptions.RedisError as exc:
        raise click.ClickException(
            f"cannot read the cluster from Redis at {safe_url(url)}: {exc}"
        ) from None
    if as_json:
        click.echo(pretty({"cluster": name, "agents": [agent.to_json() for agent in agents]}))
        return
    if not agents:
        click.echo(f"No agents are registered in cluster {name!r}.")
        return
    click.echo(render_table(agents))
