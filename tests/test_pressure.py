"""The agent's limits under pressure: a smaller outbound budget, new connections refused (1013)."""

from __future__ import annotations

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import localagent
from localagent import Client


async def test_refused_connections_get_1013_and_open_ones_go_on(agent: localagent.Server) -> None:
    token = agent.token_file.get()
    async with Client(agent.url, token) as open_one:
        agent.runtime.refuse_connections("busy; try again later")
        async with connect(
            agent.url, additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            try:
                await ws.send('{"id": 1, "type": "ping"}')
                await ws.recv()
            except ConnectionClosed as closed:
                assert closed.rcvd is not None
                assert (closed.rcvd.code, closed.rcvd.reason) == (1013, "busy; try again later")
            else:
                raise AssertionError("a new connection was served while refusing")
        assert await open_one.request("ping") == {"pong": True}
        agent.runtime.refuse_connections(None)
        async with Client(agent.url, token) as new_one:
            assert await new_one.request("ping") == {"pong": True}


def test_the_budget_shrinks_within_bounds_and_comes_back(agent: localagent.Server) -> None:
    runtime = agent.runtime
    configured = runtime.settings.server.max_pending_bytes
    assert runtime.limit_outbound(0.5) == configured // 2 == runtime.budget.limit
    assert runtime.budget.share == configured // 2 // 16
    assert runtime.limit_outbound(0.0) == int(configured * 0.05)  # never to nothing
    assert runtime.limit_outbound(3.0) == configured  # never above the configuration
    assert runtime.budget.limit == configured
