"""One ``exec`` run: the request, the program's process, its output, its end.

Imported on the first ``exec`` request, not when the plugin is: an agent whose
clients never run a program does not build these classes.

:func:`parse_request` checks a message's ``data``; :func:`run_program` starts the
program in its own process group, collects (or streams) its output under the
cap, kills the group on timeout and when the run ends, and builds the reply.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from localagent_hookspecs import Connection, Message, MessageError

from .._args import BAD_REQUEST
from ._data import SPAWN_FAILED, ExecData

if TYPE_CHECKING:  # asyncio costs ~40 ms; `localagent plugins list` imports this module
    import asyncio

__all__ = [
    "ConnectionRuns",
    "Request",
    "Streamer",
    "kill_group",
    "parse_request",
    "run_program",
]

logger = logging.getLogger("localagent.builtin.exec")

#: Bytes asked of a pipe per read.
_READ_SIZE = 64 * 1024
#: Seconds allowed, after a kill, to collect what is left in the pipes.
_KILL_GRACE = 2.0

_Emit = Callable[[str, bytes, bool], Awaitable[None]]


@attrs.frozen(kw_only=True)
class Request:
    """A checked ``exec`` request."""

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


def parse_request(message: Message, max_timeout: float) -> Request:
    """Check what the schema (:class:`ExecData`) cannot; ``timeout`` defaults to ``max_timeout``.

    Raises:
        MessageError: ``bad_request``, naming the field.
    """
    data: ExecData = message.data
    argv = data.argv
    if any("\0" in item or not _encodable(item) for item in argv):
        raise MessageError(
            BAD_REQUEST, f"{message.type}: field 'argv' must not hold NUL bytes or lone surrogates"
        )
    timeout = max_timeout if data.timeout is None else data.timeout
    if not 0 < timeout <= max_timeout:
        raise MessageError(
            BAD_REQUEST,
            f"{message.type}: field 'timeout' must be > 0 and at most {max_timeout:g} seconds",
            details={"max_timeout": max_timeout},
        )
    return Request(
        argv=tuple(argv),
        timeout=timeout,
        stdin=None if data.stdin is None else data.stdin.encode("utf-8", "surrogatepass"),
        stream=data.stream,
        encoding=data.encoding,
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
class Streamer:
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


def kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the run's process group (its id is the leader's pid: ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)


@attrs.define
class ConnectionRuns:
    """What ``exec`` keeps in ``connection.state["exec"]``: the connection's slots and runs."""

    slots: asyncio.Semaphore
    processes: set[asyncio.subprocess.Process] = attrs.field(factory=set)

    def kill_all(self) -> None:
        for process in list(self.processes):
            kill_group(process)


async def run_program(
    message: Message,
    request: Request,
    program: str,
    *,
    cwd: Path | None,
    env: Mapping[str, str],
    max_output: int,
    processes: set[asyncio.subprocess.Process],
    streamer: Streamer | None,
) -> dict[str, Any]:
    """Run ``program`` (the resolved ``argv[0]``) for ``request``; return the reply's result.

    The process is in ``processes`` while it runs, for whoever must kill it
    early (a closing connection).

    Raises:
        MessageError: ``spawn_failed`` when the program cannot start.
    """
    import asyncio

    logger.debug("exec: starting %s", program)
    started = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            program,
            *request.argv[1:],
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL if request.stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise MessageError(
            SPAWN_FAILED,
            f"{message.type}: cannot start {request.argv[0]!r}: {exc.strerror or exc}",
        ) from None
    processes.add(process)
    stdout = _Capture(max_output, store=streamer is None)
    stderr = _Capture(max_output, store=streamer is None)
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
            kill_group(process)
            await asyncio.wait(tasks, timeout=_KILL_GRACE)
            # Bounded: a process that left the group (setsid) may hold the pipes.
            with contextlib.suppress(TimeoutError):  # shielded: a second cancel leaves it be
                await asyncio.wait_for(asyncio.shield(process.wait()), _KILL_GRACE)
    finally:
        # Stragglers left in the group after the program ended, or a cancelled
        # request (the client disconnected): nothing of this run survives it.
        kill_group(process)
        processes.discard(process)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if process.returncode is None:  # cancelled (agent.cancel, a disconnect): reap it too
            with contextlib.suppress(TimeoutError):  # shielded: a second cancel leaves it be
                await asyncio.wait_for(asyncio.shield(process.wait()), _KILL_GRACE)
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
