"""Headless Chromium for tests: Debian's ``chromium`` driven over the DevTools protocol.

No browser is downloaded: :func:`find_chromium` looks for the system's, and
``.ci/run`` installs Debian's package where it is missing. The DevTools
protocol runs over the WebSocket Chromium opens on a free port
(``websockets.sync``).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

__all__ = ["DevTools", "find_chromium", "headless_chromium", "wait_until"]

#: The names Debian and others give the binary.
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    """The path of the system's Chromium, or ``None``."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class DevTools:
    """A minimal Chrome DevTools protocol client.

    :meth:`open` opens a page and makes it the default session for the
    calls that follow (``Target.*`` calls go to the browser itself).
    """

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self._stack = ExitStack()
        self._ws = self._stack.enter_context(connect(url, max_size=None, open_timeout=30))
        self._ids = itertools.count(1)
        self.session: str | None = None

    def call(self, method: str, *, session: str | None = None, **params: Any) -> Any:
        """Call ``method`` and return its result (events received meanwhile are dropped)."""
        msg_id = next(self._ids)
        request: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        session = session or self.session
        if session is not None and not method.startswith("Target."):
            request["sessionId"] = session
        self._ws.send(json.dumps(request))
        while True:
            reply = json.loads(self._ws.recv(timeout=30))
            if reply.get("id") == msg_id:  # everything else is an event
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]

    def open(self, url: str) -> str:
        """Open ``url`` in a new page; return its session, now the default one."""
        target = self.call("Target.createTarget", url=url)["targetId"]
        session: str = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.session = session
        return session

    def evaluate(self, expression: str, *, session: str | None = None) -> Any:
        """The value of a JavaScript expression in the page (JSON-like values only)."""
        result = self.call(
            "Runtime.evaluate", session=session, expression=expression, returnByValue=True
        )
        return result["result"].get("value")

    def close(self) -> None:
        self._stack.close()


@contextmanager
def headless_chromium(
    chromium: str, profile: Path, *, window_size: str = "1200,1400"
) -> Iterator[DevTools]:
    """Run ``chromium`` headless with a fresh ``profile`` directory; yield its DevTools client."""
    process = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # CI runs the tests as root
            "--disable-gpu",
            "--disable-background-networking",
            f"--window-size={window_size}",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = threading.Event()
    address: list[str] = []
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match and not address:
                address.append(match.group(1))
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(60), "chromium did not start:\n" + "".join(lines)
        devtools = DevTools(address[0])
        try:
            yield devtools
        finally:
            devtools.close()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(10)


def wait_until(read: Callable[[], Any], done: Callable[[Any], bool], seconds: float = 30) -> Any:
    """Poll ``read()`` (a page's state, say) until ``done`` says yes; return the last value.

    Raises:
        AssertionError: Not done within ``seconds``, with the last value.
    """
    deadline = time.monotonic() + seconds
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    assert done(value), f"the page never showed what was expected: {value!r}"
    return value
