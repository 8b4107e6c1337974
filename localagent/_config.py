"""Settings: defaults, then ``config.toml``, then ``LOCALAGENT_*`` variables, then flags.

The config file lives in the platform's user config directory (platformdirs),
or in ``$LOCALAGENT_CONFIG_DIR`` when that is set. Reading uses the standard
library's ``tomllib``; :func:`set_plugin_enabled` edits the file with tomlkit so
the user's comments and layout survive.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from . import _config_values as _values
from ._paths import CONFIG_FILE_NAME, config_dir
from .exceptions import ConfigError

__all__ = [
    "CONFIG_FILE_NAME",
    "AgentSettings",
    "ServerSettings",
    "Settings",
    "config_dir",
    "load_settings",
    "set_plugin_enabled",
]

#: The cluster's shared secret, in the config directory unless ``cluster_secret_file`` says.
CLUSTER_SECRET_FILE_NAME = "cluster-secret"
ENV_PREFIX = "LOCALAGENT_"

SettingsT = TypeVar("SettingsT")


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[server]`` table.

    Attributes:
        host: Address to bind. Anything but a loopback address needs ``allow_remote``.
        port: TCP port; 0 picks a free one.
        allow_remote: Allow a non-loopback bind (the agent then warns at start).
        origins: Browser ``Origin`` values allowed to connect (exact match).
        allowed_hosts: Extra ``Host`` header names accepted besides loopback names.
        max_message_size: Largest inbound frame in bytes; larger closes with 1009.
        max_in_flight: Requests per connection handled concurrently; more wait.
        max_pending_bytes: Most bytes of replies that may wait to be written
            (each frame counted twice while it is written) or be built under a
            reservation, across all connections. A connection holding more than
            1/16 of it gets no new handler started until they are written; when
            the total goes over, the connection holding the most is closed
            with 1008.
        max_connections: Most connections served at once; more handshakes
            are refused with 503.
        compression: Enable permessage-deflate (off by default: it costs CPU
            and buys nothing on loopback).
        ping_interval: Seconds between keepalive pings (``None`` disables).
        ping_timeout: Seconds to wait for a pong before closing.
        open_timeout: Seconds allowed for the opening handshake.
        shutdown_grace: Seconds in-flight requests get to finish at shutdown.
        loop: The event loop ``serve`` runs on: ``"auto"`` (uvloop when
            installed, else asyncio's), ``"uvloop"`` or ``"asyncio"``.
        watch_interval: Seconds between two looks at ``config.toml`` and the
            installed distributions, for plugins enabled, disabled or
            installed while the agent runs (0 turns the watching off).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    allow_remote: bool = False
    origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_message_size: int = 1 << 20
    max_in_flight: int = 64
    max_pending_bytes: int = 64 << 20
    max_connections: int = 256
    compression: bool = False
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    open_timeout: float = 10.0
    shutdown_grace: float = 5.0
    loop: str = "auto"
    watch_interval: float = 0.5

    def __post_init__(self) -> None:
        _values.read_fields(self, _SERVER_READERS)


_SERVER_READERS: dict[str, _values.Reader] = {
    "host": (_values.as_str, None),
    "port": (_values.as_int, _values.check_port),
    "allow_remote": (_values.as_bool, None),
    "origins": (_values.tuple_of_str, None),
    "allowed_hosts": (_values.tuple_of_str, None),
    "max_message_size": (_values.as_int, _values.check_positive),
    "max_in_flight": (_values.as_int, _values.check_positive),
    "max_pending_bytes": (_values.as_int, _values.check_positive),
    "max_connections": (_values.as_int, _values.check_positive),
    "compression": (_values.as_bool, None),
    "ping_interval": (_values.optional_float, _values.check_positive),
    "ping_timeout": (_values.optional_float, _values.check_positive),
    "open_timeout": (_values.as_float, _values.check_positive),
    "shutdown_grace": (_values.as_float, None),
    "loop": (_values.as_str, _values.check_loop),
    "watch_interval": (_values.as_float, _values.check_not_negative),
}


def _default_workspace() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("localagent", appauthor=False)) / "workspace"


class AgentSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[agent]`` table: what the agent works on.

    Attributes:
        workspace: The directory ``fs`` is confined to and ``exec`` runs in
            (default: ``workspace`` in the platform's user data dir).
        redis: A Redis URL for the key-value store; ``None`` keeps state in
            process memory (the embedded default, nothing to install).
        cluster: The name of the cluster of agents sharing ``redis`` that this
            agent joins (docs/cluster.md); ``None``: no cluster.
        cluster_agent: This agent's name in the cluster (default: the
            ``host:port`` it listens on).
        cluster_timeout: Seconds a message routed to another agent waits
            for its reply before the sender gets a ``timeout`` error.
        cluster_secret_file: The file holding the secret the agents of the
            cluster share (default: ``cluster-secret`` in the config dir).
        cluster_wait_replicas: On a Redis Cluster, how many replicas must
            confirm each routed write (``WAIT``) before it counts as sent; 0:
            asynchronous replication only (docs/cluster.md, "Failover").
        cluster_wait_timeout: Seconds a ``WAIT`` may take; a write still
            unconfirmed then stands, with a warning.
    """

    workspace: Path = msgspec.field(default_factory=_default_workspace)
    redis: str | None = None
    cluster: str | None = None
    cluster_agent: str | None = None
    cluster_timeout: float = 30.0
    cluster_secret_file: Path | None = None
    cluster_wait_replicas: int = 0
    cluster_wait_timeout: float = 1.0

    def __post_init__(self) -> None:
        _values.read_fields(self, _AGENT_READERS)


_AGENT_READERS: dict[str, _values.Reader] = {
    "workspace": (_values.path, None),
    "redis": (_values.redis_url, None),
    "cluster": (_values.cluster_name, None),
    "cluster_agent": (_values.agent_name, None),
    "cluster_timeout": (_values.as_float, _values.check_positive),
    "cluster_secret_file": (_values.optional_path, None),
    "cluster_wait_replicas": (_values.as_int, _values.check_not_negative),
    "cluster_wait_timeout": (_values.as_float, _values.check_positive),
}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the agent is configured with.

    Attributes:
        config_dir: Directory holding ``config.toml`` and the token.
        server: The ``[server]`` table.
        agent: The ``[agent]`` table.
        plugins: The ``[plugins.NAME]`` tables, by plugin name, overrides
            applied. ``enabled = false`` in a table disables that plugin; the
            other keys are the plugin's own settings (:meth:`plugin_settings`).
        plugin_overrides: The ``NAME.KEY`` names in ``plugins`` whose values
            came from overrides (``--set``, ``load_settings(overrides=...)``)
            rather than the file; errors name them as such.
    """

    config_dir: Path
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    agent: AgentSettings = msgspec.field(default_factory=AgentSettings)
    plugins: Mapping[str, Mapping[str, Any]] = msgspec.field(default_factory=dict)
    plugin_overrides: frozenset[str] = frozenset()

    @property
    def config_file(self) -> Path:
        """The path of ``config.toml``."""
        return self.config_dir / CONFIG_FILE_NAME

    @property
    def cluster_secret_path(self) -> Path:
        """Where the cluster's secret is read from (``cluster_secret_file`` or the default)."""
        return self.agent.cluster_secret_file or self.config_dir / CLUSTER_SECRET_FILE_NAME

    @property
    def disabled_plugins(self) -> frozenset[str]:
        """Plugins switched off in the config file."""
        return frozenset(
            name for name, table in self.plugins.items() if table.get("enabled", True) is False
        )

    def plugin_config(self, name: str) -> Mapping[str, Any]:
        """The plugin's own table, without the ``enabled`` switch."""
        table = self.plugins.get(name, {})
        return {key: value for key, value in table.items() if key != "enabled"}

    def plugin_settings(self, name: str, settings_type: type[SettingsT]) -> SettingsT:
        """The plugin's table as an instance of ``settings_type`` (see
        :meth:`localagent_hookspecs.Agent.plugin_settings`).

        Raises:
            ConfigError: An unknown key or a bad value, named with its file or ``--set``.
        """
        from ._plugin_settings import convert_plugin_table

        return convert_plugin_table(
            name,
            self.plugin_config(name),
            settings_type,
            file=self.config_file,
            overridden=self.plugin_overrides,
        )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    import tomllib  # only once there is a file to parse: an agent without one never loads it

    try:
        return tomllib.loads(data.decode())  # what tomllib.load does with a binary file
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


#: The typed tables, by name. Field names are unique across them, so each
#: field has one ``LOCALAGENT_<FIELD>`` variable.
_TABLES: dict[str, type[ServerSettings] | type[AgentSettings]] = {
    "server": ServerSettings,
    "agent": AgentSettings,
}


def _table_from(
    name: str,
    file_table: Mapping[str, Any],
    environ: Mapping[str, str],
    overrides: Mapping[str, Any],
    path: Path,
) -> Any:
    cls = _TABLES[name]
    fields = set(cls.__struct_fields__)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, value in file_table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{path}: unknown setting {name}.{key} (known: {known})")
        values[key], sources[key] = value, f"{path}: {name}.{key}"
    for field in fields:
        variable = ENV_PREFIX + field.upper()
        if variable in environ:
            values[field], sources[field] = environ[variable], f"${variable}"
    for key, value in overrides.items():
        if value is not None:
            values[key], sources[key] = value, f"--{key.replace('_', '-')}"
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        # A table's __post_init__ reports a bad value without the field's source;
        # find the offending one so the message says where to look.
        for key, value in values.items():
            try:
                cls(**{key: value})
            except (TypeError, ValueError) as field_exc:
                raise ConfigError(f"{sources[key]} = {value!r}: {field_exc}") from None
        raise ConfigError(str(exc)) from None


def load_settings(
    *,
    directory: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load the settings in order of precedence, lowest first.

    Args:
        directory: The config directory (default: :func:`config_dir`).
        environ: Environment to read ``LOCALAGENT_*`` from (default: ``os.environ``).
        overrides: Values from command-line flags (or ``Server.create``), by
            setting name, for any table (``port``, ``workspace``, ...), or
            ``NAME.KEY`` for a key of a plugin's ``[plugins.NAME]`` table
            (``batching.max_batch``); ``None`` values are ignored.

    Raises:
        ConfigError: With the file, variable or flag at fault.
    """
    directory = directory if directory is not None else config_dir()
    environ = os.environ if environ is None else environ
    path = directory / CONFIG_FILE_NAME
    document = _read_toml(path)
    unknown = set(document) - {*_TABLES, "plugins"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}")
    for name in _TABLES:
        if not isinstance(document.get(name, {}), dict):
            raise ConfigError(f"{path}: '{name}' must be a table")
    plugin_tables = document.get("plugins", {})
    if not isinstance(plugin_tables, dict) or not all(
        isinstance(table, dict) for table in plugin_tables.values()
    ):
        raise ConfigError(f"{path}: 'plugins' must hold one [plugins.NAME] table per plugin")
    for name, table in plugin_tables.items():
        if not isinstance(table.get("enabled", True), bool):
            raise ConfigError(f"{path}: plugins.{name}.enabled must be true or false")
    by_table: dict[str, dict[str, Any]] = {name: {} for name in _TABLES}
    plugin_tables = _with_plugin_overrides(plugin_tables, overrides or {})
    for key, value in (overrides or {}).items():
        if "." in key:
            continue
        table = next((n for n, cls in _TABLES.items() if key in cls.__struct_fields__), None)
        if table is None:
            raise ConfigError(f"unknown setting {key!r}")
        by_table[table][key] = value
    server = _table_from("server", document.get("server", {}), environ, by_table["server"], path)
    agent = _table_from("agent", document.get("agent", {}), environ, by_table["agent"], path)
    if agent.cluster is not None and agent.redis is None:
        raise ConfigError(
            f"cluster {agent.cluster!r} needs Redis: give a URL with --redis, "
            f"{ENV_PREFIX}REDIS or [agent] redis"
        )
    return Settings(
        config_dir=directory,
        server=server,
        agent=agent,
        plugins=plugin_tables,
        plugin_overrides=frozenset(
            key for key, value in (overrides or {}).items() if "." in key and value is not None
        ),
    )


def _with_plugin_overrides(
    tables: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """The ``[plugins.NAME]`` tables with the ``NAME.KEY`` overrides applied."""
    merged = {name: dict(table) for name, table in tables.items()}
    for key, value in overrides.items():
        if "." not in key or value is None:
            continue
        name, _, field = key.partition(".")
        if not name or not field:
            raise ConfigError(f"bad plugin setting {key!r}: expected NAME.KEY")
        if field == "enabled" and not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false")
        merged.setdefault(name, {})[field] = value
    return merged


def set_plugin_enabled(directory: Path, name: str, enabled: bool) -> Path:
    """Persist ``[plugins.NAME] enabled = ...`` in the config file, keeping its comments.

    Returns:
        The path of the file written.
    """
    import tomlkit  # only the enable/disable commands pay for it

    path = directory / CONFIG_FILE_NAME
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else None
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if document is None:
        document = tomlkit.document()
    plugins = document.setdefault("plugins", tomlkit.table(is_super_table=True))
    table = plugins.setdefault(name, tomlkit.table())
    if enabled:
        table.pop("enabled", None)
        if not table:
            del plugins[name]
    else:
        table["enabled"] = False
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(tomlkit.dumps(document), encoding="utf-8")
    os.replace(tmp, path)
    return path
