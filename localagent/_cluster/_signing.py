"""The cluster's shared secret and the MACs that make Redis unable to forge messages.

Pure code, no I/O but the secret file. Redis carries the cluster's messages but is
not trusted with authority: every agent of a cluster holds the same secret, read from
a file that never passes through Redis, and signs what it writes (HMAC-SHA256 over
every field, the cluster, the sender and the target included, and a timestamp).
What fails verification is never handled (see docs/cluster.md#trust).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from ..exceptions import ConfigError

__all__ = [
    "MAX_AGE_SECONDS",
    "MAX_SKEW_SECONDS",
    "Signer",
    "create_secret_file",
    "read_secret_file",
]

#: Random bytes in a new secret (written hex-encoded), and the fewest characters accepted.
SECRET_BYTES: Final = 32
MIN_SECRET_CHARS: Final = 32
#: How old a signed entry may be when it is read (older ones are rejected as expired),
#: and how far in the future (clocks of several machines disagree a little).
MAX_AGE_SECONDS: Final = 600.0
MAX_SKEW_SECONDS: Final = 60.0

_VERSION: Final = b"localagent-cluster/1"


def _how_to_create(path: Path) -> str:
    return (
        f"create one with `localagent cluster secret {path}` and give every agent of the "
        "cluster a copy (--cluster-secret-file PATH, [agent] cluster_secret_file or "
        "LOCALAGENT_CLUSTER_SECRET_FILE)"
    )


def create_secret_file(path: Path) -> None:
    """Write a new random secret to ``path`` (mode 0600); never replaces a file.

    Raises:
        ConfigError: ``path`` exists or cannot be written.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{path} exists; a cluster's agents must keep the secret they share"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot write the cluster secret {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secrets.token_hex(SECRET_BYTES) + "\n")


def read_secret_file(path: Path) -> bytes:
    """The secret in ``path``: its text without surrounding whitespace, as bytes.

    Raises:
        ConfigError: The file is missing, readable by others than its owner,
            or too short; the message says how to create a good one.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"the cluster needs a shared secret, and {path} does not exist: " + _how_to_create(path)
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the cluster secret {path}: {exc}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the cluster secret {path} is readable by other users (mode {mode & 0o777:o}): "
            f"chmod 600 {path}"
        )
    if len(text) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"the cluster secret in {path} is too short ({len(text)} characters, at least "
            f"{MIN_SECRET_CHARS}): " + _how_to_create(path)
        )
    return text.encode()


class Signer:
    """Signs and checks the parts of one cluster's entries with its secret.

    The MAC covers the parts joined by newlines, after a version tag and the
    cluster's name. Every part but the last must be free of newlines (names,
    ids and numbers are), so that no two lists of parts sign the same bytes;
    the last part (the JSON message) may hold anything. The HMAC state, keyed
    and fed the prefix, is computed once and copied per MAC: about half the
    cost of keying anew.

    Args:
        cluster: The cluster's name.
        key: The cluster's secret.
    """

    __slots__ = ("_keyed", "cluster")

    def __init__(self, cluster: str, *, key: bytes) -> None:
        self.cluster = cluster
        # Keyed, and fed the version tag and the cluster's name, once: copied per MAC.
        prefix = b"\n".join((_VERSION, cluster.encode(), b""))
        self._keyed = hmac.new(key, prefix, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return f"Signer(cluster={self.cluster!r})"  # never the key

    def sign(self, *parts: bytes) -> bytes:
        """The MAC (32 bytes) of ``parts``."""
        return self._mac(b"\n".join(parts))

    def verify(self, mac: bytes, *parts: bytes) -> bool:
        """Whether ``mac`` is the MAC of ``parts`` (constant time)."""
        text = b"\n".join(parts)
        if text.count(b"\n", 0, len(text) - len(parts[-1])) != len(parts) - 1:
            return False  # a newline inside a part that may not hold one
        return hmac.compare_digest(mac, self._mac(text))

    def _mac(self, text: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(text)
        return mac.digest()
