"""The dashboard in a real headless Chromium (Debian's ``chromium``), against a real agent.

The agent runs as a ``localagent serve`` subprocess with the monitor's endpoints
on the agent's own port (the default); Chromium is driven through the DevTools
protocol over its WebSocket (``websockets.sync``). The page is opened with the
token in its address; a client thread sends ``echo`` requests while the test
reads the page's DOM until its figures have changed, then saves a screenshot:
``monitor-dashboard.png`` in the test's temporary directory (its path is
printed; run pytest with ``--basetemp=DIR`` to keep it somewhere known).

Without Chromium the test is skipped, but under CI (``CI=true``), where
``.ci/run`` installs it, it fails instead (the ``localagent_chromium`` fixture).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from localagent.testing import headless_chromium, running_agent, wait_until


@contextmanager
def sending(url: str, token: str) -> Iterator[list[int]]:
    """A thread that sends ``echo`` requests (one at a time) until the block ends."""
    stop = threading.Event()
    sent = [0]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                for msg_id in itertools.count(1):
                    if stop.is_set():
                        return
                    ws.send(json.dumps({"id": msg_id, "type": "echo", "data": msg_id}))
                    reply = json.loads(ws.recv(timeout=30))
                    assert reply["id"] == msg_id, reply
                    sent[0] += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors


FIGURES = """JSON.stringify({
  handled: document.getElementById("messages-total").textContent,
  throughput: document.getElementById("throughput").textContent,
  health: document.getElementById("health").textContent,
  connections: document.getElementById("connections").textContent,
  problem: document.getElementById("problem").textContent,
  types: [...document.querySelectorAll("#types tr td:first-child")].map((td) => td.textContent),
  plugins: [...document.querySelectorAll("#plugins tr td:first-child")].map((td) => td.textContent),
  search: location.search,
})"""


def test_the_dashboard_shows_live_figures_in_chromium(
    localagent_chromium: str, localagent_config_dir: Path, tmp_path: Path
) -> None:
    localagent_config_dir.mkdir(parents=True, exist_ok=True)
    (localagent_config_dir / "config.toml").write_text(
        '[plugins.monitor]\ntypes = ["echo"]\ntick = 0.2\n'
    )
    env = {**os.environ, "LOCALAGENT_LOAD_PLUGINS": "monitor"}
    with (
        running_agent(env, config_dir=localagent_config_dir) as agent,
        headless_chromium(localagent_chromium, tmp_path / "profile") as browser,
    ):
        port = int(agent.url.rsplit(":", 1)[1])  # the agent's own port serves the page
        browser.open(f"http://127.0.0.1:{port}/performance?token={agent.token}")

        def figures() -> Any:
            value = browser.evaluate(FIGURES)
            return json.loads(value) if isinstance(value, str) else {}

        first = wait_until(figures, lambda f: f.get("handled", "").isdigit())
        assert first["problem"] == "", first
        assert first["search"] == "", "the page must drop the token from its address"
        assert first["health"] == "healthy"
        assert "monitor" in first["plugins"]
        with sending(agent.url, agent.token) as sent:
            second = wait_until(figures, lambda f: int(f["handled"]) > int(first["handled"]))
            assert second["types"] == ["echo"]
            assert second["connections"] == "1"
            moving = wait_until(figures, lambda f: float(f["throughput"]) > 0)
            third = wait_until(figures, lambda f: int(f["handled"]) > int(moving["handled"]))
            assert int(third["handled"]) <= sent[0]  # every request counted is a real one
            shot = browser.call("Page.captureScreenshot", format="png")
        screenshot = tmp_path / "monitor-dashboard.png"
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        print(f"dashboard screenshot: {screenshot}")
        assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert screenshot.stat().st_size > 10_000
    assert agent.token not in agent.output
