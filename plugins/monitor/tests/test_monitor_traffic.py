"""All traffic, GC and CPU on the dashboard and in /metrics, from the runtime's own counters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from monitor_testing import http_get, plugin_of, until
from prometheus_client.parser import text_string_to_metric_families

import localagent


@pytest.fixture
def monitor_config() -> str:
    return "tick = 0.05\n"  # the default types: exec, fs.write, fs.delete; echo is not one


async def _snapshot(agent: localagent.Server) -> Any:
    reply = await http_get(agent.port, "/performance.json", token=agent.token_file.get())
    assert reply.status == 200, reply
    return reply.json()


async def test_ten_thousand_echo_requests_are_all_counted(
    localagent_agent: localagent.Server,
) -> None:
    agent = localagent_agent
    async with localagent.Client(agent.url, agent.token_file.get()) as client:
        for start in range(0, 10_000, 500):
            replies = await asyncio.gather(
                *(client.request("echo", n) for n in range(start, start + 500))
            )
            assert replies[-1] == {"data": start + 499}
        for _ in range(7):
            try:
                await client.request("no.such.type")
            except localagent.ReplyError as exc:
                assert exc.code == "unknown_type"

        async def counted() -> bool:
            data = await _snapshot(agent)
            return bool(data["throughput"]["handled"] >= 10_007 and data["cpu"]["percent"] > 0)

        await until(counted)
        data = await _snapshot(agent)
    # "echo" is not a monitored type here: counted all the same, by the runtime.
    assert data["throughput"]["handled"] == 10_007
    assert data["throughput"]["monitored_handled"] == 0
    assert data["errors"]["replies"] == 7
    assert max(data["throughput"]["history"]) > 0
    assert data["gc"]["collections"][0] > 0  # 10,000 requests allocate: generation 0 ran
    assert sum(data["gc"]["pause_ms"]) > 0
    assert data["cpu"]["seconds"] > 0

    reply = await http_get(agent.port, "/metrics", token=agent.token_file.get())
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.body.decode())
        for sample in family.samples
    }
    assert samples["localagent_messages_received_total", ()] >= 10_007
    assert samples["localagent_error_replies_total", ()] == 7
    assert samples["localagent_gc_collections_total", (("generation", "0"),)] > 0
    assert samples["localagent_gc_pause_seconds_total", (("generation", "0"),)] > 0
    assert ("localagent_cpu_percent", ()) in samples
    assert samples["process_cpu_seconds_total", ()] > 0


async def test_the_gc_watch_leaves_with_the_plugin(localagent_agent: localagent.Server) -> None:
    import gc

    plugin = plugin_of(localagent_agent)
    monitor = plugin.monitor
    assert monitor is not None and monitor.metrics.gc in gc.callbacks
    await plugin.stop()  # the teardown on_load returned
    assert monitor.metrics.gc not in gc.callbacks
    assert plugin.monitor is None
