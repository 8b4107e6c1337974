"""Built-in plugin ``exec``: run allow-listed programs in the workspace, argv only, no shell.

Security rules (docs/exec.md): ``argv[0]`` must equal an allow-list entry
exactly; the program run is the absolute path resolved when the agent started;
arguments are passed as they are, never through a shell; the environment is
rebuilt from ``pass_env`` and ``env``; each run gets its own process group,
which is killed on timeout, when the client disconnects and when the run ends.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from localagent_hookspecs import Agent, Connection, Message, MessageError, handles, hookimpl

from ..exceptions import ConfigError
from ._args import BAD_REQUEST, arguments, field

if TYPE_CHECKING:  # asyncio costs ~40 ms; `localagent plugins list` imports this module
    import asyncio

__all__ = ["NOT_ALLOWED", "SPAWN_FAILED", "ExecSettings", "Plugin", "resolve_allow_list"]

logger = logging.getLogger(__name__)

NAME = "exec"
NOT_ALLOWED = "not_allowed"
SPAWN_FAILED = "spawn_failed"

DEFAULT_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TERM")
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_OUTPUT = 1 << 20
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_MAX_PER_CONNECTION = 2
ENCODINGS = ("text", "base64")

#: Bytes asked of a pipe per read.
_READ_SIZE = 64 * 1024
#: Seconds allowed, after a kill, to collect what is left in the pipes.
_KILL_GRACE = 2.0

_Emit = Callable[[str, bytes, bool], Awaitable[None]]


# -- configuration ---------------------------------------------------------------


def _where(key: str) -> str:
    return f"[plugins.{NAME}] {key}"


def _number(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{_where(key)} must be a positive number of seconds, not {value!r}")
    return float(value)


def _count(table: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    value = table.get(key, default)
    if type(value) is not int or value < minimum:
        raise ConfigError(f"{_where(key)} must be an integer >= {minimum}, not {value!r}")
    return value


def _strings(table: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = table.get(key, default)
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, str) and item and "\0" not in item for item in value
    ):
        raise ConfigError(f"{_where(key)} must be a list of non-empty strings, not {value!r}")
    return tuple(value)


def _variables(table: Mapping[str, Any], key: str) -> dict[str, str]:
    value = table.get(key, {})
    if not isinstance(value, Mapping) or not all(
        isinstance(name, str)
        and isinstance(text, str)
        and name
        and "=" not in name
        and "\0" not in name + text
        for name, text in value.items()
    ):
        raise ConfigError(f"{_where(key)} must be a table of variable names to strings")
    return dict(value)


@attrs.frozen(kw_only=True)
class ExecSettings:
    """The ``[plugins.exec]`` table.

    Attributes:
        allow: Program names (looked up on ``PATH`` at load) or absolute paths
            that ``argv[0]`` may name. Empty: nothing may run.
        timeout: Seconds a run may take; a request may ask for less.
        max_output: Bytes kept per stream (stdout, stderr); the rest is discarded.
        env: Variables added to (or overriding) the passed-through ones.
        pass_env: Names of the agent's environment variables the program sees.
        max_concurrent: Runs at once across all connections; more wait.
        max_per_connection: Runs at once per connection; more wait.
    """

    allow: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    max_output: int = DEFAULT_MAX_OUTPUT
    env: Mapping[str, str] = attrs.field(factory=dict)
    pass_env: tuple[str, ...] = DEFAULT_PASS_ENV
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    max_per_connection: int = DEFAULT_MAX_PER_CONNECTION

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> ExecSettings:
        """Validate the config table.

        Raises:
            ConfigError: A key is unknown, or a value has the wrong type or range.
        """
        known = [field.name for field in attrs.fields(cls)]
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise ConfigError(
                f"[plugins.{NAME}]: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})"
            )
        allow = _strings(table, "allow", ())
        for entry in allow:
            if "/" in entry and not os.path.isabs(entry):
                raise ConfigError(
                    f"{_where('allow')}: {entry!r} must be a program name or an absolute path"
                )
        return cls(
            allow=allow,
            timeout=_number(table, "timeout", DEFAULT_TIMEOUT),
            max_output=_count(table, "max_output", DEFAULT_MAX_OUTPUT, minimum=0),
            env=_variables(table, "env"),
            pass_env=_strings(table, "pass_env", DEFAULT_PASS_ENV),
            max_concurrent=_count(table, "max_concurrent", DEFAULT_MAX_CONCURRENT, minimum=1),
            max_per_connection=_count(
                table, "max_per_connection", DEFAULT_MAX_PER_CONNECTION, minimum=1
            ),
        )


def _is_program(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def resolve_allow_list(allow: tuple[str, ...], search_path: str | None) -> dict[str, str | None]:
    """Map each allow-list entry to the absolute path to run, or ``None`` if unusable.

    A name is looked up in the absolute directories of ``search_path`` only: a
    relative entry such as ``.`` would make the answer depend on the current
    directory. An absolute entry is used as written (not through
    ``realpath``: a venv's ``python`` is a symlink that must keep its name).
    """
    directories = (search_path if search_path is not None else os.defpath).split(os.pathsep)
    absolute = os.pathsep.join(d for d in directories if os.path.isabs(d))
    programs: dict[str, str | None] = {}
    for entry in allow:
        if os.path.isabs(entry):
            found: str | None = entry if _is_program(entry) else None
        else:
            found = shutil.which(entry, path=absolute) if absolute else None
        if found is None:
            logger.warning(
                "%s: %r is not an executable program%s; requests for it are refused",
                _where("allow"),
                entry,
                "" if os.path.isabs(entry) else " on PATH",
            )
        programs[entry] = found
    return programs


# -- one request -----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Request:
    argv: tuple[str, ...]
    timeout: float
    stdin: bytes | None
    stream: bool
    encoding: str


def _encodable(argument: str) -> bool:
    try:
        os.fsencode(argument)
    except UnicodeEncodeError:
        return False
    return True


def _parse(message: Message, max_timeout: float) -> _Request:
    data = arguments(message, "argv", "timeout", "stdin", "stream", "encoding")
    argv: list[Any] = field(message, data, "argv", list)
    if not argv:
        raise MessageError(BAD_REQUEST, f"{message.type}: field 'argv' must not be empty")
    if not all(isinstance(item, str) for item in argv):
        raise MessageError(BAD_REQUEST, f"{message.type}: field 'argv' must hold only strings")
    if any("\0" in item or not _encodable(item) for item in argv):
        raise MessageError(
            BAD_REQUEST, f"{message.type}: field 'argv' must not hold NUL bytes or lone surrogates"
        )
    timeout: float = field(message, data, "timeout", float, max_timeout)
    if not 0 < timeout <= max_timeout:
        raise MessageError(
            BAD_REQUEST,
            f"{message.type}: field 'timeout' must be > 0 and at most {max_timeout:g} seconds",
            details={"max_timeout": max_timeout},
        )
    stdin: str | None = field(message, data, "stdin", str, None)
    encoding: str = field(message, data, "encoding", str, "text")
    if encoding not in ENCODINGS:
        raise MessageError(
            BAD_REQUEST, f"{message.type}: field 'encoding' must be 'text' or 'base64'"
        )
    return _Request(
        argv=tuple(argv),
        timeout=timeout,
        stdin=None if stdin is None else stdin.encode("utf-8", "surrogatepass"),
        stream=field(message, data, "stream", bool, False),
        encoding=encoding,
    )


@attrs.define
class _Capture:
    """One output stream, kept up to ``limit`` bytes; the rest is dropped.

    With ``store=False`` (streaming: the chunks already went to the client)
    only the size is counted.
    """

    limit: int
    store: bool = True
    data: bytearray = attrs.field(factory=bytearray)
    size: int = 0
    truncated: bool = False

    def keep(self, chunk: bytes) -> bytes:
        """Count (and store) the part of ``chunk`` that fits under the cap; return it."""
        room = self.limit - self.size
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[: max(room, 0)]
        self.size += len(chunk)
        if self.store:
            self.data += chunk
        return chunk


def _encode(data: bytes, encoding: str) -> str:
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    return data.decode("utf-8", "replace")


@attrs.define
class _Streamer:
    """Sends ``exec.output`` messages with the request's id while the program runs."""

    connection: Connection
    message_id: str | int
    encoding: str
    decoders: dict[str, codecs.IncrementalDecoder] = attrs.field(factory=dict)
    alive: bool = True

    async def emit(self, stream: str, chunk: bytes, final: bool) -> None:
        if self.encoding == "base64":
            text = base64.b64encode(chunk).decode("ascii")
        else:
            decoder = self.decoders.get(stream)
            if decoder is None:
                decoder = self.decoders[stream] = codecs.getincrementaldecoder("utf-8")("replace")
            text = decoder.decode(chunk, final)
        if not text or not self.alive:
            return
        try:
            await self.connection.send(
                {
                    "id": self.message_id,
                    "type": "exec.output",
                    "data": {"stream": stream, "chunk": text},
                }
            )
        except ConnectionError:
            # The client is gone; the runtime cancels this request, which kills the program.
            self.alive = False


async def _pump(
    reader: asyncio.StreamReader | None, name: str, capture: _Capture, emit: _Emit | None
) -> None:
    """Read a pipe to its end, keeping (and streaming) what fits under the cap."""
    if reader is None:
        return
    while chunk := await reader.read(_READ_SIZE):
        kept = capture.keep(chunk)
        if kept and emit is not None:
            await emit(name, kept, False)
    if emit is not None:
        await emit(name, b"", True)


async def _feed(writer: asyncio.StreamWriter | None, data: bytes) -> None:
    """Write ``data`` to the program's stdin and close it; a program may not read it all."""
    if writer is None:
        return
    try:
        writer.write(data)
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the run's process group (its id is the leader's pid: ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)


@attrs.define
class _ConnectionState:
    """What ``exec`` keeps in ``connection.state["exec"]``."""

    slots: asyncio.Semaphore
    processes: set[asyncio.subprocess.Process] = attrs.field(factory=set)

    def kill_all(self) -> None:
        for process in list(self.processes):
            _kill_group(process)


# -- the plugin ------------------------------------------------------------------


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

        self.settings = settings = ExecSettings.from_table(agent.plugin_config(NAME))
        self.programs = resolve_allow_list(settings.allow, os.environ.get("PATH"))
        passed = {name: os.environ[name] for name in settings.pass_env if name in os.environ}
        self._environment = {**passed, **settings.env}
        self._workspace = agent.workspace
        self._slots = asyncio.Semaphore(settings.max_concurrent)

    def _connection_state(self, connection: Connection) -> _ConnectionState:
        import asyncio

        state = connection.state.get(NAME)
        if not isinstance(state, _ConnectionState):
            state = connection.state[NAME] = _ConnectionState(
                asyncio.Semaphore(self.settings.max_per_connection)
            )
            connection.on_close(state.kill_all)
        return state

    def _program(self, message: Message, name: str) -> str:
        if name not in self.programs:
            raise MessageError(
                NOT_ALLOWED,
                f"{message.type}: {name!r} is not in the allow-list ({_where('allow')})",
            )
        program = self.programs[name]
        if program is None:
            raise MessageError(
                NOT_ALLOWED, f"{message.type}: {name!r} was not found when the agent started"
            )
        return program

    @hookimpl(specname="on_message")
    @handles("exec")
    async def run(self, connection: Connection, message: Message) -> dict[str, Any]:
        """Run ``argv`` and reply with its exit code and output (see docs/exec.md).

        Raises:
            MessageError: ``bad_request``, ``not_allowed`` or ``spawn_failed``.
        """
        request = _parse(message, self.settings.timeout)
        program = self._program(message, request.argv[0])
        streamer = (
            _Streamer(connection, message.id, request.encoding)
            if request.stream and message.id is not None
            else None
        )
        state = self._connection_state(connection)
        if self._slots is None:
            raise RuntimeError("the exec plugin's on_load was not called")
        async with state.slots, self._slots:  # per connection first: no hogging global slots
            return await self._execute(message, request, program, state, streamer)

    async def _execute(
        self,
        message: Message,
        request: _Request,
        program: str,
        state: _ConnectionState,
        streamer: _Streamer | None,
    ) -> dict[str, Any]:
        import asyncio

        logger.debug("exec: starting %s", program)
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                program,
                *request.argv[1:],
                cwd=self._workspace,
                env=self._environment,
                stdin=asyncio.subprocess.DEVNULL
                if request.stdin is None
                else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise MessageError(
                SPAWN_FAILED,
                f"{message.type}: cannot start {request.argv[0]!r}: {exc.strerror or exc}",
            ) from None
        state.processes.add(process)
        stdout = _Capture(self.settings.max_output, store=streamer is None)
        stderr = _Capture(self.settings.max_output, store=streamer is None)
        emit = streamer.emit if streamer is not None else None
        tasks = [
            asyncio.create_task(_pump(process.stdout, "stdout", stdout, emit)),
            asyncio.create_task(_pump(process.stderr, "stderr", stderr, emit)),
        ]
        if request.stdin is not None:
            tasks.append(asyncio.create_task(_feed(process.stdin, request.stdin)))
        timed_out = False
        try:
            try:
                async with asyncio.timeout(request.timeout):
                    # asyncio.wait, not gather: a timeout must not cancel the readers,
                    # which still collect what the program wrote before the kill.
                    await asyncio.wait(tasks)
                    await process.wait()
            except TimeoutError:
                timed_out = True
                _kill_group(process)
                await asyncio.wait(tasks, timeout=_KILL_GRACE)
                # Bounded: a process that left the group (setsid) may hold the pipes.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), _KILL_GRACE)
        finally:
            # Stragglers left in the group after the program ended, or a cancelled
            # request (the client disconnected): nothing of this run survives it.
            _kill_group(process)
            state.processes.discard(process)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error  # a bug in a reader: the client gets internal_error
        duration = time.monotonic() - started
        returncode = process.returncode
        result: dict[str, Any] = {
            "exit_code": -signal.SIGKILL if returncode is None else returncode,
        }
        if streamer is None:
            result["stdout"] = _encode(bytes(stdout.data), request.encoding)
            result["stderr"] = _encode(bytes(stderr.data), request.encoding)
        result.update(
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            timed_out=timed_out,
            duration=duration,
        )
        return result
