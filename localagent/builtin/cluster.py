"""Built-in plugin ``cluster``: several agents sharing Redis (``serve --cluster NAME``).

Does nothing unless the settings name a cluster (``[agent] cluster``, with a
Redis URL). Then its ``on_load`` starts a :class:`~localagent._cluster._node.ClusterNode`
and registers :class:`Router`, whose ``on_message`` (``tryfirst``, no
``@handles``: it sees every message) forwards the messages whose ``"to"``
names another agent, a peer or ``"*"``, and passes the others on. Registering
the router only for a cluster keeps the per-type dispatch of an agent outside
one exactly as it was. See docs/cluster.md.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from localagent_hookspecs import Agent, Connection, Message, hookimpl

if TYPE_CHECKING:
    from .._cluster._node import ClusterNode

__all__ = ["ROUTER_NAME", "Plugin", "Router"]

logger = logging.getLogger("localagent.cluster")

#: The name the router is registered under, beside the plugin.
ROUTER_NAME = "cluster.router"


class Router:
    """The ``on_message`` of a cluster member: forwards what is addressed elsewhere."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    @hookimpl(tryfirst=True)
    def on_message(self, connection: Connection, message: Message) -> Any:
        """``None`` (not mine) for a message without ``to`` or addressed to this agent."""
        return self.node.route(connection, message)


class Plugin:
    """Joins the configured cluster; inert without one."""

    node: ClusterNode | None = None

    @hookimpl
    def on_load(self, agent: Agent) -> None:
        from .._runtime import AgentRuntime

        if not isinstance(agent, AgentRuntime):
            return  # only the runtime knows the settings and dispatches remote messages
        settings = agent.settings.agent
        if settings.cluster is None:
            return
        if settings.redis is None:  # load_settings refuses this; Settings built by hand may not
            logger.error("cluster %r is not joined: it needs a Redis URL", settings.cluster)
            return
        from .._cluster._node import ClusterNode
        from .._cluster._signing import read_secret_file

        self.node = ClusterNode(
            agent,
            cluster=settings.cluster,
            redis_url=settings.redis,
            secret=read_secret_file(agent.settings.cluster_secret_path),  # ConfigError if bad
            name=settings.cluster_agent,
            timeout=settings.cluster_timeout,
            wait_replicas=settings.cluster_wait_replicas,
            wait_timeout=max(1, round(settings.cluster_wait_timeout * 1000)),
        )
        agent.pm.register(Router(self.node), name=ROUTER_NAME)
        agent.spawn(self.node.run(), name="localagent-cluster")
