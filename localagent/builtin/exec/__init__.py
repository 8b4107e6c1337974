"""Built-in plugin ``exec``: run allow-listed programs in the workspace, argv only, no shell.

Security rules (docs/exec.md): ``argv[0]`` must equal an allow-list entry
exactly; the program run is the absolute path resolved when the agent started;
arguments are passed as they are, never through a shell; the environment is
rebuilt from ``pass_env`` and ``env``; each run gets its own process group,
which is killed on timeout, when the client disconnects and when the run ends.

The modules: ``_settings`` (the ``[plugins.exec]`` table and the allow-list),
``_data`` (the request's schema), ``_run`` (one request: its process, output
and end; imported by the first request) and ``_plugin`` (the hooks, the
limits, the runs of each connection).
"""

from ._data import SPAWN_FAILED
from ._plugin import NOT_ALLOWED, Plugin
from ._settings import DEFAULT_PASS_ENV, ExecSettings, resolve_allow_list

__all__ = [
    "DEFAULT_PASS_ENV",
    "NOT_ALLOWED",
    "SPAWN_FAILED",
    "ExecSettings",
    "Plugin",
    "resolve_allow_list",
]
