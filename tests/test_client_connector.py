"""``localagent.Client`` with a :class:`Connector`: the hook a pooling plugin fills.

The connector here is the smallest real one: it dials plain clients and keeps
returned ones for reuse, against a real agent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localagent import Client, ConnectionLost, Server
from localagent._client import ClientOptions


class KeepOne:
    """Hands out one kept connection, or dials a new one; counts what it did."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.kept: list[Client] = []
        self.dialled = self.released = 0

    async def acquire(self) -> Client:
        while self.kept:
            client = self.kept.pop()
            if not client.closed:
                return client
        self.dialled += 1
        return await Client.connect(self.url, self.token, direct=True)

    def release(self, client: Client) -> None:
        self.released += 1
        if not client.closed:
            self.kept.append(client)


@pytest.fixture
def factory_reset() -> Iterator[None]:
    previous = Client.set_connector_factory(None)
    yield
    Client.set_connector_factory(previous)


async def test_a_client_borrows_and_returns_its_connection(agent: Server) -> None:
    connector = KeepOne(agent.url, agent.token_file.get())
    for _ in range(3):
        async with Client(agent.url, connector=connector) as client:
            assert client.pooled and not client.closed
            assert await client.request("ping") == {"pong": True}
        assert client.closed
    assert (connector.dialled, connector.released) == (1, 3)
    for kept in connector.kept:
        await kept.aclose()


async def test_the_factory_is_consulted_unless_direct(agent: Server, factory_reset: None) -> None:
    token = agent.token_file.get()
    connector = KeepOne(agent.url, token)
    seen: list[ClientOptions] = []

    def factory(options: ClientOptions) -> KeepOne:
        seen.append(options)
        return connector

    Client.set_connector_factory(factory)
    async with Client(agent.url, token) as pooled:
        assert pooled.pooled
    async with Client(agent.url, token, direct=True) as direct:
        assert not direct.pooled
        assert await direct.request("ping") == {"pong": True}
    assert [options.url for options in seen] == [agent.url]
    assert token not in repr(seen[0])  # the token is never shown
    assert Client.set_connector_factory(None) is factory
    async with Client(agent.url, token) as plain:
        assert not plain.pooled
    for kept in connector.kept:
        await kept.aclose()


async def test_a_lost_connection_is_replaced_on_the_next_request(agent: Server) -> None:
    connector = KeepOne(agent.url, agent.token_file.get())
    async with Client(agent.url, connector=connector) as client:
        assert await client.request("ping") == {"pong": True}
        for connection in list(agent.runtime.connections):
            await connection.close(1001, "going away")
        lease = client._lease
        assert lease is not None
        with pytest.raises(ConnectionLost):
            await lease.request("ping")  # in flight on the old connection: a clear error
        assert await client.request("ping") == {"pong": True}  # the next one: new connection
        assert connector.dialled == 2
    for kept in connector.kept:
        await kept.aclose()


async def test_a_closed_pooled_client_refuses_requests(agent: Server) -> None:
    connector = KeepOne(agent.url, agent.token_file.get())
    client = Client(agent.url, connector=connector)
    with pytest.raises(ConnectionLost, match="not connected"):
        await client.request("ping")
    await client.open()
    await client.aclose()
    with pytest.raises(ConnectionLost, match="not connected"):
        await client.request("ping")
    for kept in connector.kept:
        await kept.aclose()
