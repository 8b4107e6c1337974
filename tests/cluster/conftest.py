"""Fixtures for the cluster tests: real ``serve --cluster`` processes on one private Redis."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from localagent import Client, _codec
from localagent._cluster._signing import create_secret_file
from localagent.testing import AgentProcess, RedisClusterServer, free_port, running_agent

CLUSTER = "test"
#: Seconds a test waits for something that happens within a second or two.
PATIENCE = 30.0


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait until ``check()`` holds, failing after :data:`PATIENCE` seconds."""
    deadline = time.monotonic() + PATIENCE
    while not check():
        assert time.monotonic() < deadline, f"still not {what} after {PATIENCE} s"
        await asyncio.sleep(0.05)


class Peer:
    """A client of one agent that sends raw messages (with ``to``) and collects replies.

    Ids are strings, so :class:`localagent.Client` leaves every reply in its
    ``events``; one reader files each reply by id and everything else
    (deliveries, broadcasts) in :attr:`received`.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.replies: dict[str | None, list[dict[str, Any]]] = {}
        self.received: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()

    def new_id(self) -> str:
        return f"m{next(self._ids)}"

    async def read(self) -> None:
        """File what arrives until cancelled (run as a task by :meth:`Cluster.peer`)."""
        while True:
            item = await self.client.events.get()
            async with self._changed:
                if "result" in item or "error" in item:
                    self.replies.setdefault(item["id"], []).append(item)
                else:
                    self.received.append(item)
                self._changed.notify_all()

    async def send(self, message_type: str, data: Any = None, **fields: Any) -> str:
        msg_id = fields.pop("id", None) or self.new_id()
        message = {"id": msg_id, "type": message_type, "data": data, **fields}
        await self.client.send_raw(_codec.dumps(message))
        return str(msg_id)

    async def reply(self, msg_id: str | None) -> dict[str, Any]:
        """Wait for the reply to ``msg_id`` (the first one, if more came)."""
        async with asyncio.timeout(PATIENCE + 10), self._changed:
            await self._changed.wait_for(lambda: bool(self.replies.get(msg_id)))
        return self.replies[msg_id][0]

    async def next_received(self) -> dict[str, Any]:
        """Wait for the next message that is not a reply."""
        async with asyncio.timeout(PATIENCE), self._changed:
            await self._changed.wait_for(lambda: bool(self.received))
        return self.received.pop(0)

    async def request(self, message_type: str, data: Any = None, **fields: Any) -> dict[str, Any]:
        return await self.reply(await self.send(message_type, data, **fields))

    async def until_routed(self, to: str, message_type: str = "ping") -> dict[str, Any]:
        """Send to ``to`` until it is not ``unreachable``/``unavailable`` (an agent joining)."""
        deadline = time.monotonic() + PATIENCE
        while True:
            reply = await self.request(message_type, to=to)
            code = reply.get("error", {}).get("code")
            if code not in ("unreachable", "unavailable") or time.monotonic() > deadline:
                return reply
            await asyncio.sleep(0.1)


class Cluster:
    """Agents of one cluster, each on a fixed port and config dir (kept across restarts).

    They share the secret in :attr:`secret_file` (``--cluster-secret-file``).
    """

    def __init__(self, env: dict[str, str], redis_url: str, root: Path, stack: ExitStack) -> None:
        self.env = env
        self.redis_url = redis_url
        self.root = root
        self.stack = stack
        self.secret_file = root / "cluster-secret"
        create_secret_file(self.secret_file)
        self.ports: dict[str, int] = {}
        self.agents: dict[str, AgentProcess] = {}
        self._stacks: dict[str, ExitStack] = {}

    def name(self, key: str) -> str:
        """The agent's name in the cluster: ``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.ports[key]}"

    def start(self, key: str, *args: str) -> AgentProcess:
        port = self.ports.setdefault(key, free_port())
        stack = self.stack.enter_context(ExitStack())
        self._stacks[key] = stack
        agent = stack.enter_context(
            running_agent(
                self.env,
                "--port",
                str(port),
                "--redis",
                self.redis_url,
                "--cluster",
                CLUSTER,
                "--cluster-secret-file",
                str(self.secret_file),
                *args,
                config_dir=self.root / key,
            )
        )
        self.agents[key] = agent
        return agent

    def kill(self, key: str) -> None:
        """SIGKILL the agent: no clean shutdown, its registration expires by itself."""
        agent = self.agents.pop(key)
        agent.process.kill()
        agent.process.wait()
        self._stacks.pop(key).close()

    def stop(self, key: str) -> None:
        """Stop the agent cleanly (SIGTERM)."""
        self.agents.pop(key)
        self._stacks.pop(key).close()

    @asynccontextmanager
    async def peer(self, key: str) -> AsyncIterator[Peer]:
        agent = self.agents[key]
        async with Client(agent.url, agent.token) as client:
            peer = Peer(client)
            reader = asyncio.create_task(peer.read())
            try:
                yield peer
            finally:
                reader.cancel()
                with suppress(asyncio.CancelledError):
                    await reader


@pytest.fixture
def cluster(subprocess_env: dict[str, str], redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with ExitStack() as stack:
        yield Cluster(subprocess_env, redis_url, tmp_path, stack)


@pytest.fixture(scope="session")
def redis_cluster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServer]:
    """A private Redis Cluster of 3 primaries (no replicas) for the session."""
    with RedisClusterServer(tmp_path_factory.mktemp("redis-cluster")) as server:
        yield server


@pytest.fixture
def redis_cluster_url(redis_cluster_server: RedisClusterServer) -> str:
    """The URL of one node of the private Redis Cluster, every primary emptied."""
    for node in redis_cluster_server.nodes:
        with redis_cluster_server.client(node) as client:
            client.flushall()
    return redis_cluster_server.url
