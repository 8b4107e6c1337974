"""The ``exec`` plugin: allow-list lookups, concurrency limits, and the runs of each connection."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localagent_hookspecs import Agent, Connection, Message, MessageError, handles, hookimpl

from ._data import ExecData
from ._settings import NAME, ExecSettings, resolve_allow_list

if TYPE_CHECKING:  # asyncio costs ~40 ms; `localagent plugins list` imports this module
    import asyncio

    from ._run import ConnectionRuns

__all__ = ["NOT_ALLOWED", "Plugin"]

NOT_ALLOWED = "not_allowed"


class Plugin:
    """Runs allow-listed programs for ``exec`` requests (one instance per agent)."""

    def __init__(self) -> None:
        self.settings = ExecSettings()
        #: Allow-list entry -> absolute path to run (``None``: listed but not found).
        self.programs: dict[str, str | None] = {}
        self._environment: dict[str, str] = {}
        self._workspace: Path | None = None
        self._slots: asyncio.Semaphore | None = None  # both set by on_load

    @hookimpl
    def on_load(self, agent: Agent) -> None:
        """Validate ``[plugins.exec]``, resolve the allow-list and build the environment.

        Raises:
            ConfigError: The table has an unknown key or a value of the wrong type.
        """
        import asyncio

        self.settings = settings = agent.plugin_settings(NAME, ExecSettings)
        self.programs = resolve_allow_list(settings.allow, os.environ.get("PATH"))
        passed = {name: os.environ[name] for name in settings.pass_env if name in os.environ}
        self._environment = {**passed, **settings.env}
        self._workspace = agent.workspace
        self._slots = asyncio.Semaphore(settings.max_concurrent)

    def _connection_state(self, connection: Connection) -> ConnectionRuns:
        import asyncio

        from ._run import ConnectionRuns

        state = connection.state.get(NAME)
        if not isinstance(state, ConnectionRuns):
            state = connection.state[NAME] = ConnectionRuns(
                asyncio.Semaphore(self.settings.max_per_connection)
            )
            connection.on_close(state.kill_all)
        return state

    def _program(self, message: Message, name: str) -> str:
        if name not in self.programs:
            raise MessageError(
                NOT_ALLOWED,
                f"{message.type}: {name!r} is not in the allow-list ([plugins.{NAME}] allow)",
            )
        program = self.programs[name]
        if program is None:
            raise MessageError(
                NOT_ALLOWED, f"{message.type}: {name!r} was not found when the agent started"
            )
        return program

    @hookimpl(specname="on_message")
    @handles("exec", schema=ExecData)
    async def run(self, connection: Connection, message: Message) -> dict[str, Any]:
        """Run an allow-listed program (argv, no shell) in the workspace; reply when it ends.

        Replies with its exit code and output (see docs/exec.md). Programs not
        in the agent's allow-list are refused (``not_allowed``).

        Raises:
            MessageError: ``bad_request``, ``not_allowed`` or ``spawn_failed``.
        """
        # Here, not at the top: what runs a program is loaded by the first exec request.
        from ._run import Streamer, parse_request, run_program

        request = parse_request(message, self.settings.timeout)
        program = self._program(message, request.argv[0])
        streamer = (
            Streamer(connection, message.id, request.encoding)
            if request.stream and message.id is not None
            else None
        )
        state = self._connection_state(connection)
        if self._slots is None:
            raise RuntimeError("the exec plugin's on_load was not called")
        async with state.slots, self._slots:  # per connection first: no hogging global slots
            return await run_program(
                message,
                request,
                program,
                cwd=self._workspace,
                env=self._environment,
                max_output=self.settings.max_output,
                processes=state.processes,
                streamer=streamer,
            )
