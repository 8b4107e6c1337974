"""Token storage and the handshake policy (token, Origin and Host checks).

The policy is pure: :meth:`HandshakePolicy.check` takes the request's path and
headers and returns ``None`` or a :class:`Rejection`; the transport turns that
into an HTTP 401 or 403 before any WebSocket traffic.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import msgspec

from .exceptions import ConfigError

__all__ = [
    "TOKEN_FILE_NAME",
    "TOKEN_QUERY_PARAMETER",
    "HandshakePolicy",
    "Rejection",
    "TokenFile",
    "is_loopback",
    "redact",
    "redacting_logger",
]

TOKEN_FILE_NAME = "token"
TOKEN_QUERY_PARAMETER = "token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the agent on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TokenFile:
    """The agent's secret token, stored with mode 0600 in the config directory.

    The file is read again when its modification time changes, so
    ``localagent token --rotate`` takes effect for new connections at once.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / TOKEN_FILE_NAME
        self._cached: tuple[tuple[int, int, int], str] | None = None

    def get(self) -> str:
        """Return the token, creating it on first use.

        Raises:
            ConfigError: If the file cannot be created or read.
        """
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return self._create()
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read the token: {exc.strerror}") from None
        # The inode changes on every rotation (os.replace), even where mtimes are coarse.
        key = (status.st_ino, status.st_mtime_ns, status.st_size)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self._read())
        return self._cached[1]

    def rotate(self) -> str:
        """Replace the token with a new random one and return it."""
        return self._write(replace=True)

    def _read(self) -> str:
        try:
            token = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.path}: cannot read the token: {exc}") from None
        if not token:
            raise ConfigError(f"{self.path} is empty; run `localagent token --rotate`")
        if self.path.stat().st_mode & 0o077:
            os.chmod(self.path, 0o600)  # someone loosened it; a secret stays private
        return token

    def _create(self) -> str:
        try:
            return self._write(replace=False)
        except FileExistsError:  # another process created it first
            return self.get()

    def _write(self, *, replace: bool) -> str:
        token = secrets.token_urlsafe(32)
        target = self.path.with_name(f".{TOKEN_FILE_NAME}.{os.getpid()}.tmp")
        try:
            # 0700: the directory holds the secret; nobody else needs to list it.
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"{self.path.parent}: cannot create the config directory: {exc}"
            ) from None
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(token + "\n")
            if replace:
                os.replace(target, self.path)
            else:
                os.link(target, self.path)  # fails if it exists: no clobbering a race
                os.unlink(target)
        except FileExistsError:
            os.unlink(target)
            raise
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot write the token: {exc.strerror}") from None
        self._cached = None
        return token


class Rejection(msgspec.Struct, frozen=True):
    """Why a handshake was refused.

    Attributes:
        status: 401 (no or wrong token) or 403 (Origin or Host not allowed).
        reason: Short text for the response body; never contains the token.
    """

    status: HTTPStatus
    reason: str


def _host_name(host_header: str) -> str:
    """``"[::1]:8765"`` → ``"::1"``, ``"Example.COM:80"`` → ``"example.com"``.

    Anything after an IPv6 literal's ``]`` other than ``:PORT`` keeps the whole
    header as the name, so ``[::1].evil.example`` is not taken for ``::1``.
    """
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :] if end != -1 else ""
        if end == -1 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return host
        return host[1:end]
    if host.count(":") == 1:
        return host.rsplit(":", 1)[0]
    return host


def _token_from(path: str, authorization: str | None) -> str | None:
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    query = urlsplit(path).query
    if query:
        for key, value in parse_qsl(query):
            if key == TOKEN_QUERY_PARAMETER:
                return value
    return None


class HandshakePolicy(msgspec.Struct, frozen=True):
    """Decides whether an opening handshake may proceed.

    Attributes:
        token: Returns the current token (read per handshake so rotation applies).
        origins: Browser origins allowed to connect. A request without an
            ``Origin`` header is a non-browser client and needs only the token.
        hosts: Accepted ``Host`` names (lower case), or ``None`` for any.
    """

    token: Callable[[], str]
    origins: frozenset[str]
    hosts: frozenset[str] | None

    @classmethod
    def create(
        cls,
        token: Callable[[], str],
        *,
        bind_host: str,
        origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
    ) -> HandshakePolicy:
        """Build the policy for a server bound to ``bind_host``."""
        extra = {host.lower().strip("[]") for host in allowed_hosts}
        hosts: frozenset[str] | None = None
        if "*" not in extra:
            bind = bind_host.lower().strip("[]")
            wildcard = bind in ("0.0.0.0", "::", "")
            hosts = frozenset(LOOPBACK_NAMES | extra | (set() if wildcard else {bind}))
        return cls(token=token, origins=frozenset(o.rstrip("/") for o in origins), hosts=hosts)

    def check(
        self,
        path: str,
        host: str | None,
        origin: str | None,
        authorization: str | None,
        *,
        needs_token: bool = True,
    ) -> Rejection | None:
        """Return ``None`` to accept the request, or why it is refused.

        Args:
            path: The request target (path and query: the token may be a parameter).
            host: The ``Host`` header.
            origin: The ``Origin`` header (``None`` for a non-browser client).
            authorization: The ``Authorization`` header.
            needs_token: ``False`` skips the token check only, for an HTTP
                route open to probes (the Host and Origin checks still run).
        """
        if self.hosts is not None and (host is None or _host_name(host) not in self.hosts):
            return Rejection(HTTPStatus.FORBIDDEN, "Host not allowed")
        if origin is not None and origin.rstrip("/") not in self.origins:
            return Rejection(HTTPStatus.FORBIDDEN, "Origin not allowed")
        if not needs_token:
            return None
        offered = _token_from(path, authorization)
        if offered is None:
            return Rejection(HTTPStatus.UNAUTHORIZED, "missing token")
        expected = self.token()
        if not hmac.compare_digest(offered.encode(), expected.encode()):
            return Rejection(HTTPStatus.UNAUTHORIZED, "invalid token")
        return None


_AUTHORIZATION = re.compile(r"(?im)(authorization:[ \t]*(?:\S+[ \t]+)?)\S+")
_QUERY_PARAMETER = re.compile(r"([?&])([^=&\s]+)=([^&\s]*)")


def _mask_token_parameter(match: re.Match[str]) -> str:
    # Compare the decoded key: "%74oken=" is read as "token=" by the handshake too.
    if unquote_plus(match.group(2)) == TOKEN_QUERY_PARAMETER:
        return f"{match.group(1)}{match.group(2)}=***"
    return match.group(0)


def redact(text: str, secret: str | None = None) -> str:
    """Mask secrets in ``text`` (a request path, a header dump, a log message).

    Masks ``Authorization`` header values, every ``token=`` query parameter
    (however its key is percent-encoded), and ``secret`` wherever it appears.
    A near-miss token in a refused request is masked too: it would otherwise
    give away most of the real one.
    """
    masked = _QUERY_PARAMETER.sub(_mask_token_parameter, _AUTHORIZATION.sub(r"\1***", text))
    return masked.replace(secret, "***") if secret else masked


class _RedactSecrets(logging.Filter):
    """Applies :func:`redact` to every record of the logger it is attached to.

    websockets logs every handshake header and the request path at DEBUG.
    """

    def __init__(self, token: Callable[[], str] | None) -> None:
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        secret = None
        if self._token is not None:
            try:
                secret = self._token()
            except Exception:  # never let logging fail because the token file did
                secret = None
        text = record.getMessage()
        masked = redact(text, secret)
        if masked != text:
            record.msg, record.args = masked, None
        return True


def redacting_logger(name: str, token: Callable[[], str] | None = None) -> logging.Logger:
    """Return logger ``name`` with a filter that keeps secrets out of its records."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _RedactSecrets) for f in logger.filters):
        logger.addFilter(_RedactSecrets(token))
    return logger
