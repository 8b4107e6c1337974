"""A private Redis Cluster: ``redis-server`` processes in cluster mode, for tests and benchmarks.

Three primaries (and, optionally, replicas of each) on free loopback ports,
each with its own directory; the slots are assigned and the nodes introduced
with ``CLUSTER`` commands (no ``redis-cli`` needed). Each node is a
:class:`RedisServer`, so it dies with the process that started it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ._redis import RedisServer, free_port

__all__ = ["RedisClusterServer"]

#: Hash slots of a Redis Cluster.
SLOTS = 16384


class RedisClusterServer:
    """Start and stop a Redis Cluster of ``primaries`` shards with ``replicas`` replicas each.

    Args:
        directory: Where each node's directory (config, log) goes.
        primaries: Shards (each holds an equal range of the slots).
        replicas: Replicas per primary.
        node_timeout: ``cluster-node-timeout`` in milliseconds: how long a node
            may be unreachable before it is failed over.

    Attributes:
        nodes: Every node, the primaries first (in slot order), then the
            replicas (``replicas`` per primary, in the same order).
    """

    def __init__(
        self, directory: Path, *, primaries: int = 3, replicas: int = 0, node_timeout: int = 2000
    ) -> None:
        self.directory = directory
        self.primaries = primaries
        self.replicas = replicas
        self.nodes: list[RedisServer] = []
        #: Each node's cluster bus port, by its port.
        self.bus_ports: dict[int, int] = {}
        taken: set[int] = set()

        def unique_port() -> int:  # free now, and not given to another node of this cluster
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            return port

        for index in range(primaries * (1 + replicas)):
            bus_port = unique_port()
            self.nodes.append(
                RedisServer(
                    directory / f"node{index}",
                    durable=False,
                    options=(
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", str(node_timeout),
                        "--cluster-port", str(bus_port),
                        # A replica that lost its primary long ago still takes over.
                        "--cluster-replica-validity-factor", "0",
                        "--repl-diskless-sync-delay", "0",
                    ),
                )
            )  # fmt: skip
            if self.nodes[-1].port in taken:
                self.nodes[-1].port = unique_port()
            taken.add(self.nodes[-1].port)
            self.bus_ports[self.nodes[-1].port] = bus_port

    @property
    def url(self) -> str:
        """The URL of the first node: what a user gives (any node will do)."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        """Start every node, assign the slots, introduce the nodes; wait until the cluster is ok."""
        try:
            for node in self.nodes:
                node.start()
            self._create()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, node: RedisServer) -> Any:
        """A synchronous redis-py client of one node (the caller closes it)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5.0)

    def node_id(self, node: RedisServer) -> str:
        with self.client(node) as client:
            return str(client.execute_command("CLUSTER", "MYID").decode())

    def _create(self) -> None:
        primaries = self.nodes[: self.primaries]
        share = SLOTS // self.primaries
        for index, node in enumerate(primaries):
            first = index * share
            last = SLOTS - 1 if index == self.primaries - 1 else first + share - 1
            with self.client(node) as client:
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with self.client(self.nodes[0]) as client:
            for node in self.nodes[1:]:
                client.execute_command(
                    "CLUSTER", "MEET", "127.0.0.1", node.port, self.bus_ports[node.port]
                )
        self._wait(
            lambda c: len(c.execute_command("CLUSTER", "NODES").splitlines()) == len(self.nodes)
        )
        for index, node in enumerate(self.nodes[self.primaries :]):
            primary = primaries[index // self.replicas]
            with self.client(node) as client:
                client.execute_command("CLUSTER", "REPLICATE", self.node_id(primary))
        self.wait_ok()
        # Every node knows every replica (a client's slot map, taken from any node, lists them).
        shard = 3 + self.replicas
        self._wait(lambda c: all(len(r) == shard for r in c.execute_command("CLUSTER", "SLOTS")))

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node says ``cluster_state:ok`` and its replicas are in sync."""
        self._wait(self._ok, timeout)

    def _ok(self, client: Any) -> bool:
        info = client.execute_command("CLUSTER", "INFO").decode()
        if "cluster_state:ok" not in info:
            return False
        replication = client.info("replication")
        if replication.get("role") == "slave":
            return bool(replication.get("master_link_status") == "up")
        return True

    def _wait(self, check: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            pending: list[object] = []
            for node in self.nodes:
                if node.process is None:
                    continue
                with self.client(node) as client:
                    try:
                        if not check(client):
                            pending.append(node.port)
                    except Exception as exc:  # a node still starting up
                        pending.append(f"{node.port} ({exc})")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster is not ready: nodes {pending}")
            time.sleep(0.05)

    # -- failover ----------------------------------------------------------

    def primary_of(self, key: str) -> RedisServer:
        """The running node that serves ``key``'s slot now."""
        for node in self.nodes:
            if node.process is None:
                continue
            with self.client(node) as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for first, last, primary, *_replicas in client.execute_command("CLUSTER", "SLOTS"):
                    if first <= slot <= last:
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
        raise RuntimeError("no node of the cluster is running")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        """A running replica of ``primary``."""
        primary_id = self.node_id(primary)
        for node in self.nodes:
            if node is primary or node.process is None:
                continue
            with self.client(node) as client:
                info = client.info("replication")
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary.port:
                    return node
        raise RuntimeError(f"no running replica of {primary.port} ({primary_id})")

    def failover(self, primary: RedisServer) -> RedisServer:
        """``CLUSTER FAILOVER`` on a replica of ``primary``; the new primary, once it serves."""
        replica = self.replica_of(primary)
        with self.client(replica) as client:
            client.execute_command("CLUSTER", "FAILOVER")
        self._wait_primary(replica)
        # The former primary turns into a replica of the new one, in sync.
        self._wait_role(primary, "slave")
        self.wait_ok()
        return replica

    def kill(self, primary: RedisServer) -> RedisServer:
        """Kill ``primary`` (SIGKILL); the replica that took over, once it serves."""
        replica = self.replica_of(primary)
        primary.kill()
        self._wait_primary(replica)
        return replica

    def _wait_primary(self, node: RedisServer, timeout: float = 30.0) -> None:
        """Wait until every running node sees ``node`` as a primary, and the cluster is ok."""
        self._wait_role(node, "master", timeout)
        address = f"127.0.0.1:{node.port}@"

        def sees_primary(client: Any) -> bool:
            for line in client.execute_command("CLUSTER", "NODES").decode().splitlines():
                if address in line:
                    return "master" in line.split()[2]
            return False

        self._wait(sees_primary, timeout)
        self.wait_ok(timeout)

    def _wait_role(self, node: RedisServer, role: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self.client(node) as client:
            while client.info("replication").get("role") != role:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {node.port} is not a {role} after {timeout} s")
                time.sleep(0.05)
