"""``localagent cluster status`` and the ``serve --cluster`` flags, as real subprocesses."""

from __future__ import annotations

import json
import subprocess

from localagent.testing import free_port, localagent_cmd

from .conftest import CLUSTER, Cluster


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        localagent_cmd(*args), env=env, capture_output=True, text=True, timeout=60
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


async def test_status_lists_agents_peers_and_backlogs(
    cluster: Cluster, subprocess_env: dict[str, str], redis_url: str
) -> None:
    cluster.start("a")
    cluster.start("b")
    a_name, b_name = cluster.name("a"), cluster.name("b")
    async with cluster.peer("a") as a:
        await a.until_routed(b_name)
        # The heartbeat publishes the peers within a second or two.
        for _ in range(100):
            status = run(subprocess_env, "cluster", "status", "--redis", redis_url,
                         "--cluster", CLUSTER, "--json")  # fmt: skip
            assert status.returncode == 0, status
            agents = {agent["name"]: agent for agent in json.loads(status.stdout)["agents"]}
            if agents.get(a_name, {}).get("peers") == ["c1"]:
                break
        assert json.loads(status.stdout)["cluster"] == CLUSTER
        assert set(agents) == {a_name, b_name}
        a_status = agents[a_name]
        assert a_status["state"] == "up"
        assert a_status["url"] == f"ws://{a_name}"
        assert a_status["pid"] == cluster.agents["a"].pid
        assert a_status["peers"] == ["c1"]
        assert a_status["heartbeat_age"] >= 0
        assert a_status["rejected"] == 0
        for stream in ("inbox", "replies"):
            assert set(agents[b_name][stream]) == {"length", "pending", "lag"}
        assert agents[b_name]["inbox"]["pending"] == 0

        # Settings supply the defaults; the text table has a row per agent.
        env = {**subprocess_env, "LOCALAGENT_REDIS": redis_url, "LOCALAGENT_CLUSTER": CLUSTER}
        table = run(env, "cluster", "status")
        assert table.returncode == 0, table
        header, *rows = table.stdout.splitlines()
        assert header.split() == [
            "AGENT", "STATE", "URL", "PID", "HEARTBEAT", "INBOX", "PENDING", "LAG", "REJECTED",
            "PEERS",
        ]  # fmt: skip
        assert sorted(row.split()[0] for row in rows) == sorted([a_name, b_name])
        assert all(row.split()[1] == "up" for row in rows)

    cluster.stop("b")  # a clean stop leaves the cluster at once
    status = run(subprocess_env, "cluster", "status", "--redis", redis_url, "--cluster", CLUSTER,
                 "--json")  # fmt: skip
    assert [agent["name"] for agent in json.loads(status.stdout)["agents"]] == [a_name]


def test_status_of_an_empty_cluster(subprocess_env: dict[str, str], redis_url: str) -> None:
    result = run(subprocess_env, "cluster", "status", "--redis", redis_url, "--cluster", "none")
    assert result.returncode == 0, result
    assert "No agents are registered in cluster 'none'" in result.stdout
    result = run(subprocess_env, "cluster", "status", "--redis", redis_url, "--cluster", "none",
                 "--json")  # fmt: skip
    assert json.loads(result.stdout) == {"cluster": "none", "agents": []}


def test_status_fails_cleanly(subprocess_env: dict[str, str], redis_url: str) -> None:
    assert_clean_failure(run(subprocess_env, "cluster", "status", "--redis", redis_url), 2)
    assert_clean_failure(run(subprocess_env, "cluster", "status", "--cluster", CLUSTER), 2)
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    result = run(subprocess_env, "cluster", "status", "--redis", unreachable, "--cluster", "x")
    assert_clean_failure(result, 1)
    assert "cannot read the cluster from Redis" in result.stderr
    result = run(subprocess_env, "cluster", "status", "--redis", redis_url, "--cluster", "a{b}")
    assert_clean_failure(result, 2)


def test_serve_cluster_needs_redis_and_a_valid_name(
    subprocess_env: dict[str, str], redis_url: str
) -> None:
    result = run(subprocess_env, "serve", "--port", "0", "--cluster", CLUSTER)
    assert_clean_failure(result, 1)
    assert "cluster 'test' needs Redis" in result.stderr
    result = run(subprocess_env, "serve", "--port", "0", "--redis", redis_url,
                 "--cluster", "no/slash")  # fmt: skip
    assert_clean_failure(result, 1)
    assert "--cluster = 'no/slash'" in result.stderr
    result = run(subprocess_env, "serve", "--port", "0", "--redis", redis_url,
                 "--cluster", CLUSTER, "--cluster-agent", "a/b")  # fmt: skip
    assert_clean_failure(result, 1)
    assert "--cluster-agent = 'a/b'" in result.stderr


async def test_a_configured_agent_name_is_its_address(cluster: Cluster) -> None:
    cluster.start("a")
    cluster.start("b", "--cluster-agent", "builder")
    async with cluster.peer("a") as a:
        assert (await a.until_routed("builder", "echo"))["result"] == {"data": None}
    assert "cluster: test (agent builder)" in cluster.agents["b"].output
