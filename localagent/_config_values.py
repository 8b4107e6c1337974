"""How a settings value is read: converted from TOML, an environment variable's string or a
flag, then checked.

The ``[server]`` and ``[agent]`` tables (:mod:`localagent._config`) are frozen msgspec
Structs whose ``__post_init__`` runs :func:`read_fields` with a :data:`Reader` per key.
They are Structs, not attrs classes, because they are built before the agent listens
and a Struct class costs a small fraction of an attrs class to define (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from msgspec.structs import force_setattr

__all__ = [
    "Reader",
    "agent_name",
    "as_bool",
    "as_float",
    "as_int",
    "as_str",
    "check_loop",
    "check_not_negative",
    "check_port",
    "check_positive",
    "cluster_name",
    "optional_float",
    "optional_path",
    "path",
    "read_fields",
    "redis_url",
    "tuple_of_str",
]


def tuple_of_str(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise TypeError("expected a list of strings")


def optional_float(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.lower() in ("", "none", "off")):
        return None
    return as_float(value)


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise TypeError("expected true or false")


def as_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise TypeError("expected an integer")
    return int(value)


def as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("expected a number")
    return float(value)


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def check_positive(name: str, value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{name} must be positive")


def check_not_negative(name: str, value: Any) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative")


def check_port(_name: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError("port must be between 0 and 65535")


def check_loop(_name: str, value: str) -> None:
    from ._loop import LOOPS

    if value not in LOOPS:
        raise ValueError(f"loop must be one of {', '.join(LOOPS)}, not {value!r}")


#: How a key's value is read: a converter (from TOML, an environment variable's
#: string or a flag) and, optionally, a check of the converted value.
Reader = tuple[Callable[[Any], Any], Callable[[str, Any], None] | None]


def read_fields(table: msgspec.Struct, readers: Mapping[str, Reader]) -> None:
    """Convert and check a table's values in place (from its ``__post_init__``)."""
    for name, (convert, check) in readers.items():
        value = convert(getattr(table, name))
        if check is not None:
            check(name, value)
        force_setattr(table, name, value)


def path(value: Any) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise TypeError("expected a directory path")
    return Path(value).expanduser().absolute()


def optional_path(value: Any) -> Path | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | Path):
        raise TypeError("expected a file path")
    return Path(value).expanduser().absolute()


def redis_url(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return value


def cluster_name(value: Any) -> str | None:
    """A cluster name: key-safe (it goes inside Redis hash tags), or empty for none."""
    if value is None or value == "":
        return None
    from ._cluster import check_cluster_name  # the cluster's naming rules live there

    return check_cluster_name(as_str(value))


def agent_name(value: Any) -> str | None:
    if value is None or value == "":
        return None
    from ._cluster import check_agent_name

    return check_agent_name(as_str(value))
