"""Helpers for testing LocalAgent and its plugins against real parts.

``RedisServer`` runs a private ``redis-server`` on a free loopback port (never
the user's Redis); the test suite and the benchmarks use it.
"""

from ._redis import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
