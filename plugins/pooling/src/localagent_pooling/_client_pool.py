"""``ClientPool``: a bounded, health-checked, fair pool of WebSocket connections to one agent.

Each pooled connection is a plain, directly connected :class:`localagent.Client`
(requests on it may run concurrently). A caller borrows one for its exclusive
use and gives it back:

* **Bounded.** At most ``max_size`` connections exist (idle, lent out or being
  dialled); ``min_size`` are kept open (dialled concurrently by :meth:`ClientPool.prewarm`).
* **Fair.** When none is free and the pool is full, callers wait first come,
  first served: a returned connection is handed straight to the longest
  waiting caller, so a newcomer never overtakes a waiter.
* **Health-checked.** A connection that closed is never handed out: it is
  discarded and replaced. One that sat idle longer than ``health_check_interval``
  must answer a WebSocket ping within ``ping_timeout`` first. The maintenance
  task pings idle connections, closes those idle longer than ``idle_timeout``
  (down to ``min_size``) and dials back up to ``min_size``.
* **Acquire timeout.** A caller that waited ``acquire_timeout`` seconds gets a
  :class:`PoolTimeout` that says how full the pool is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from localagent import Client, ClientError

__all__ = ["ClientPool", "PoolClosed", "PoolStats", "PoolTimeout"]


class PoolTimeout(ClientError, TimeoutError):
    """No connection became free within the acquire timeout."""


class PoolClosed(ClientError):
    """The pool was closed; it hands out no more connections."""


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a pool's counters.

    Attributes:
        size: Connections that exist now (idle + in use + being dialled).
        idle: Connections waiting in the pool.
        in_use: Connections lent out.
        waiting: Callers waiting for a connection now.
        acquired: Connections handed out, ever.
        created: Connections dialled, ever.
        replaced: Connections found closed or unresponsive and discarded.
        expired: Idle connections closed after ``idle_timeout``.
        timeouts: Acquires that gave up after ``acquire_timeout``.
    """

    size: int
    idle: int
    in_use: int
    waiting: int
    acquired: int
    created: int
    replaced: int
    expired: int
    timeouts: int


class ClientPool:
    """A pool of connections to the agent at ``url``.

    Use :meth:`lease` (or :meth:`acquire` / :meth:`release`), :meth:`request`
    for one request, or :meth:`client` for a :class:`localagent.Client` that
    borrows from the pool. It is a :class:`localagent._client.Connector`.

    Example::

        async with ClientPool(url, token, min_size=2, max_size=10) as pool:
            print(await pool.request("ping"))

    Args:
        url: ``ws://host:port`` of the agent.
        token: Its token (``None``: the default token, as for ``Client``).
        min_size: Connections kept open (dialled by :meth:`prewarm`).
        max_size: Most connections at once.
        acquire_timeout: Seconds a caller waits for a free connection.
        idle_timeout: Seconds an idle connection beyond ``min_size`` lives.
        health_check_interval: An idle connection older than this (seconds)
            must answer a ping before it is handed out; the maintenance task
            runs at this period too.
        ping_timeout: Seconds a health-check ping may take.
        open_timeout: Seconds allowed to dial one connection.
        max_message_size: Largest frame accepted from the agent.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float = 5.0,
        idle_timeout: float = 60.0,
        health_check_interval: float = 1.0,
        ping_timeout: float = 2.0,
        open_timeout: float = 10.0,
        max_message_size: int | None = 16 << 20,
    ) -> None:
        if max_size < 1 or not 0 <= min_size <= max_size:
            raise ValueError("need 0 <= min_size <= max_size and max_size >= 1")
        for name, value in (
            ("acquire_timeout", acquire_timeout),
            ("idle_timeout", idle_timeout),
            ("health_check_interval", health_check_interval),
            ("ping_timeout", ping_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, not {value!r}")
        self.url = url
        self._token = token
        self.min_size = min_size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.idle_timeout = idle_timeout
        self.health_check_interval = health_check_interval
        self.ping_timeout = ping_timeout
        self._open_timeout = open_timeout
        self._max_message_size = max_message_size
        #: Idle connections with the monotonic time they were returned; the
        #: most recently returned is reused first, so surplus ones can expire.
        self._idle: deque[_Idle] = deque()
        self._in_use: set[Client] = set()
        self._dialling = 0
        #: Idle connections the maintenance task is checking right now.
        self._checking = 0
        #: Waiting callers, first come first served. A waiter gets a connection,
        #: or ``None``: "a slot is free, dial one yourself".
        self._waiters: deque[asyncio.Future[Client | None]] = deque()
        self._maintenance: asyncio.Task[None] | None = None
        self._closed = False
        self._acquired = self._created = self._replaced = self._expired = self._timeouts = 0

    def __repr__(self) -> str:
        return f"<ClientPool {self.url} {self.stats()}>"

    # -- counters -------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Connections that exist now: idle, in use, or being dialled."""
        return len(self._idle) + len(self._in_use) + self._dialling + self._checking

    def stats(self) -> PoolStats:
        """The counters now."""
        return PoolStats(
            size=self.size,
            idle=len(self._idle),
            in_use=len(self._in_use),
            waiting=sum(not waiter.done() for waiter in self._waiters),
            acquired=self._acquired,
            created=self._created,
            replaced=self._replaced,
            expired=self._expired,
            timeouts=self._timeouts,
        )

    # -- lifecycle ------------------------------------------------------------------

    async def prewarm(self) -> None:
        """Dial up to ``min_size`` connections, concurrently, and start the maintenance task.

        Raises:
            ConnectFailed: A connection could not be opened (the others are kept).
        """
        self._start()
        missing = self.min_size - self.size
        if missing <= 0:
            return
        self._dialling += missing
        outcomes = await asyncio.gather(
            *(self._dial_reserved() for _ in range(missing)), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, Client):
                self._hand_back(outcome)
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if errors:
            raise errors[0]

    def _start(self) -> None:
        if self._closed:
            raise PoolClosed(f"the pool of connections to {self.url} is closed")
        if self._maintenance is None:
            self._maintenance = asyncio.get_running_loop().create_task(
                self._maintain(), name=f"localagent-pooling-maintenance {self.url}"
            )

    async def aclose(self) -> None:
        """Close every idle connection and stop; lent-out ones close when released."""
        self._closed = True
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed(f"the pool for {self.url} was closed"))
        idle = [entry.client for entry in self._idle]
        self._idle.clear()
        await asyncio.gather(*(client.aclose() for client in idle), return_exceptions=True)

    async def __aenter__(self) -> ClientPool:
        await self.prewarm()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- acquire and release --------------------------------------------------------

    async def acquire(self, timeout: float | None = None) -> Client:
        """Borrow a healthy, open connection; give it back with :meth:`release`.

        Args:
            timeout: Seconds to wait for a free one (default ``acquire_timeout``).

        Raises:
            PoolTimeout: None became free in time.
            PoolClosed: The pool was closed.
            ConnectFailed: A new connection was needed and could not be opened.
        """
        self._start()
        while self._idle and not self._waiters:
            entry = self._idle.pop()
            if await self._healthy(entry):
                return self._lend(entry.client)
        if self.size < self.max_size and not self._waiters:
            self._dialling += 1
            return self._lend(await self._dial_reserved())
        return await self._wait(self.acquire_timeout if timeout is None else timeout)

    async def _wait(self, timeout: float) -> Client:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Client | None] = loop.create_future()
        self._waiters.append(waiter)
        owned = False  # the waiter's outcome is ours to keep (lent, or a slot dialled)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    handed = await waiter
                    owned = True
                    if handed is None:  # a slot was freed for us: dial into it
                        return self._lend(await self._dial_reserved())
                    if not handed.closed:  # handed over by release(): in use a moment ago
                        return self._lend(handed)
                    owned = False
                    waiter = loop.create_future()
                    self._waiters.appendleft(waiter)  # keep our place in line
                    self._discard(handed)  # frees a slot, for us first
        except TimeoutError:
            self._timeouts += 1
            raise PoolTimeout(
                f"no connection to {self.url} became free within {timeout:g} s: "
                f"all {self.max_size} (max_size) are in use and {len(self._waiters)} "
                "callers are waiting; raise max_size or acquire_timeout, or hold "
                "connections for less time"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if not waiter.done():
                waiter.cancel()
            elif not owned and not waiter.cancelled() and waiter.exception() is None:
                # Something was handed to us just as we gave up: pass it on.
                handed = waiter.result()
                if handed is None:
                    self._dialling -= 1
                    self._free_slot()
                else:
                    self._in_use.discard(handed)
                    self._hand_back(handed)

    def release(self, client: Client) -> None:
        """Give back a connection from :meth:`acquire`.

        A closed connection, or one with requests still waiting for replies,
        is closed and discarded (late replies must not reach the next caller).
        """
        if client not in self._in_use:
            return  # released twice, or not ours
        self._in_use.discard(client)
        self._hand_back(client)

    def _hand_back(self, client: Client) -> None:
        """Give a connection that is in nobody's hands to the first waiter, or keep it idle."""
        if self._closed:
            self._close_soon(client)
            return
        if client.closed or client.pending:
            self._discard(client)
            return
        while not client.events.empty():  # the next borrower starts with no stale events
            client.events.get_nowait()
        waiter = self._next_waiter()
        if waiter is not None:
            self._in_use.add(client)  # lent on the waiter's behalf until it runs
            waiter.set_result(client)
            return
        now = time.monotonic()
        self._idle.append(_Idle(client, since=now, checked=now))

    @contextlib.asynccontextmanager
    async def lease(self, timeout: float | None = None) -> AsyncIterator[Client]:
        """``async with pool.lease() as client:`` borrows a connection for the block."""
        client = await self.acquire(timeout)
        try:
            yield client
        finally:
            self.release(client)

    async def request(self, type: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Send one request on a borrowed connection and return its ``result``.

        Raises:
            ReplyError: The agent answered with an error.
            ConnectionLost: The connection closed before the reply (the
                connection is replaced; the next request gets a new one).
            PoolTimeout: No connection became free in time.
        """
        async with self.lease() as client:
            return await client.request(type, data, timeout=timeout)

    def client(self) -> Client:
        """A :class:`localagent.Client` that borrows its connection from this pool.

        ``async with pool.client() as client:`` borrows on entry and gives
        back on exit; if the agent restarts meanwhile, the client's next
        request borrows a new connection.
        """
        return Client(self.url, self._token, connector=self)

    # -- internals ------------------------------------------------------------------

    def _lend(self, client: Client) -> Client:
        self._in_use.add(client)
        self._acquired += 1
        return client

    def _next_waiter(self) -> asyncio.Future[Client | None] | None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    async def _healthy(self, entry: _Idle) -> bool:
        """Open, and (if unchecked for a while) answering a ping; else discarded."""
        client = entry.client
        if not client.closed:
            if time.monotonic() - entry.checked < self.health_check_interval:
                return True
            if await client.check(self.ping_timeout):
                return True
        self._discard(client)
        return False

    def _discard(self, client: Client) -> None:
        """Drop a bad connection; its slot goes to the first waiter (who dials)."""
        self._in_use.discard(client)
        self._replaced += 1
        self._close_soon(client)
        self._free_slot()

    def _free_slot(self) -> None:
        if self.size < self.max_size:
            waiter = self._next_waiter()
            if waiter is not None:
                self._dialling += 1  # reserved for the waiter
                waiter.set_result(None)

    def _close_soon(self, client: Client) -> None:
        if not client.closed:
            task = asyncio.get_running_loop().create_task(client.aclose())
            _closing.add(task)
            task.add_done_callback(_closing.discard)

    async def _dial_reserved(self) -> Client:
        """Dial one connection into a slot already counted in ``_dialling``."""
        try:
            client = Client(
                self.url,
                self._token,
                open_timeout=self._open_timeout,
                max_message_size=self._max_message_size,
                direct=True,
            )
            await client.open()
            self._created += 1
            return client
        finally:
            self._dialling -= 1

    async def _maintain(self) -> None:
        """Every ``health_check_interval``: ping idle connections, expire, refill."""
        while True:
            await asyncio.sleep(self.health_check_interval)  # a timer, not a stand-in for I/O
            await self._maintain_once()

    async def _maintain_once(self) -> None:
        now = time.monotonic()
        for entry in list(self._idle):  # oldest first
            if entry.client.closed:
                self._idle.remove(entry)
                self._discard(entry.client)
            elif now - entry.since > self.idle_timeout and self.size > self.min_size:
                self._idle.remove(entry)
                self._expired += 1
                self._close_soon(entry.client)
                self._free_slot()
        # Ping the ones unchecked for a while, out of reach meanwhile (still counted in size).
        stale = [entry for entry in self._idle if now - entry.checked >= self.health_check_interval]
        for entry in stale:
            self._idle.remove(entry)
        self._checking += len(stale)
        try:
            answers = await asyncio.gather(*(e.client.check(self.ping_timeout) for e in stale))
        except BaseException:
            self._checking -= len(stale)
            for entry in stale:
                self._close_soon(entry.client)
            raise
        checked = time.monotonic()
        for entry, alive in zip(reversed(stale), reversed(answers), strict=True):
            self._checking -= 1
            if not alive:
                self._discard(entry.client)
                continue
            entry.checked = checked
            waiter = self._next_waiter()
            if waiter is not None:  # someone started waiting while we checked
                self._in_use.add(entry.client)
                waiter.set_result(entry.client)
            else:
                self._idle.appendleft(entry)  # older than anything returned meanwhile
        if self.size < self.min_size and not self._closed:
            with contextlib.suppress(Exception):  # the agent is down: try again next time
                await self.prewarm()


@dataclass(eq=False)
class _Idle:
    """An idle connection, when it was returned, when it last proved healthy."""

    client: Client
    since: float
    checked: float


#: Connections being closed in the background (kept referenced until done).
_closing: set[asyncio.Task[None]] = set()
