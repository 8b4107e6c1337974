"""Several agents sharing Redis: naming, entry formats, and the node that does the I/O.

See docs/cluster.md. The pure parts (:mod:`._names`, :mod:`._entries`) are
imported by the settings; :class:`ClusterNode` (redis-py) only when a cluster
is configured.
"""

from ._names import (
    BROADCAST,
    Address,
    Keys,
    check_agent_name,
    check_cluster_name,
    parse_address,
    safe_url,
)

__all__ = [
    "BROADCAST",
    "Address",
    "Keys",
    "check_agent_name",
    "check_cluster_name",
    "parse_address",
    "safe_url",
]
