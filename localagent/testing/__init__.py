"""Helpers for testing LocalAgent and its plugins against real parts.

``running_agent`` runs ``localagent serve`` as a subprocess on a free port;
``RedisServer`` runs a private ``redis-server`` on a free loopback port (never
the user's Redis). The test suite and ``localagent bench`` use both.
"""

from ._agent import AgentProcess, localagent_cmd, running_agent, stop_process
from ._redis import RedisServer, free_port

__all__ = [
    "AgentProcess",
    "RedisServer",
    "free_port",
    "localagent_cmd",
    "running_agent",
    "stop_process",
]
