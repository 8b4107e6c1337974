"""Helpers for testing LocalAgent and its plugins against real parts.

``running_agent`` runs ``localagent serve`` as a subprocess on a free port;
``RedisServer`` runs a private ``redis-server`` on a free loopback port (never
the user's Redis), ``RedisClusterServer`` a private Redis Cluster of them.
The test suite and ``localagent bench`` use them.
``headless_chromium`` drives the system's Chromium for browser tests.
"""

from ._agent import AgentProcess, localagent_cmd, running_agent, stop_process
from ._browser import DevTools, find_chromium, headless_chromium, wait_until
from ._redis import RedisServer, free_port
from ._redis_cluster import RedisClusterServer

__all__ = [
    "AgentProcess",
    "DevTools",
    "RedisClusterServer",
    "RedisServer",
    "find_chromium",
    "free_port",
    "headless_chromium",
    "localagent_cmd",
    "running_agent",
    "stop_process",
    "wait_until",
]
