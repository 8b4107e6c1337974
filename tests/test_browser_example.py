"""``examples/browser-client/index.html`` talks to a real agent.

Two runs, each against a real agent:

- In Node.js: the page's script runs on a small stand-in for the DOM, with
  Node's WebSocket (``node --experimental-websocket``). The agent batches
  every frame it sends, so the page must unpack batch frames.
- In headless Chromium (Debian's ``/usr/bin/chromium``; skipped without it):
  ``http.server`` serves the page, and the agent allows only its origin. The
  test reads the page's DOM through the DevTools protocol until the reply
  shows up. (``--dump-dom`` would dump the DOM at the load event, before the
  WebSocket has even connected.) The same page under a second origin gets
  no reply: the agent refuses it with 403.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

import localagent
from localagent import hookimpl
from localagent.testing import DevTools, headless_chromium, wait_until

from .helpers import running_agent

PAGE_DIR = Path(__file__).resolve().parent.parent / "examples" / "browser-client"
PAGE = PAGE_DIR / "index.html"


def _script() -> str:
    match = re.search(r"<script>\n(.*?)</script>", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    assert match, "index.html has no inline <script>"
    return match.group(1)


def test_the_page_loads_nothing_from_elsewhere() -> None:
    html = PAGE.read_text(encoding="utf-8")
    assert not re.search(r"\b(src|href)\s*=", html), "the page must be one self-contained file"
    assert not re.search(r"@import|url\(|\bimport\s*\(|fetch\(", html)
    assert '"/?token=" + encodeURIComponent(' in _script()


# -- Node.js -----------------------------------------------------------------

#: Just enough DOM for the page's script, and a driver that fills in its forms.
NODE_DOM = """
"use strict";
class FakeElement {
  constructor(tag) {
    Object.assign(this, { tag, children: [], className: "", value: "", checked: false,
                          disabled: false, text: "", listeners: {} });
  }
  get textContent() {
    return this.children.length ? this.children.map((c) => c.textContent ?? c).join("")
                                : this.text;
  }
  set textContent(value) { this.children = []; this.text = String(value); }
  append(...nodes) { this.children.push(...nodes); }
  addEventListener(type, listener) { this.listeners[type] = listener; }
}
const fakeElements = new Map();
globalThis.document = {
  getElementById(id) {
    if (!fakeElements.has(id)) fakeElements.set(id, new FakeElement("#" + id));
    return fakeElements.get(id);
  },
  createElement: (tag) => new FakeElement(tag),
};
globalThis.location = { hash: HASH, pathname: "/", search: "", origin: "http://localhost:3000" };
globalThis.history = {
  replaceState(_state, _title, url) { location.hash = url.split("#")[1] ?? ""; },
};
"""

NODE_DRIVER = """
const submit = (id) => document.getElementById(id).listeners.submit({ preventDefault() {} });
const items = () => document.getElementById("log").children.map(
  (li) => ({ kind: li.className, text: li.children[1].textContent }));
const field = (id, value) => { document.getElementById(id).value = value; };
async function until(done) {
  for (let i = 0; i < 200 && !done(items()); i++) await new Promise((r) => setTimeout(r, 50));
  if (!done(items())) throw new Error("timed out: " + JSON.stringify(items()));
}
(async () => {
  await until((log) => log.some((item) => item.kind === "reply"));  // the auto-sent ping
  field("type", "echo");
  field("data", '{"a": [1, 2]}');
  submit("send-form");
  await until((log) => log.filter((item) => item.kind === "reply").length === 2);
  field("data", "{nope");
  submit("send-form");
  field("type", "no.such.type");
  field("data", "");
  document.getElementById("notify").checked = true;
  submit("send-form");
  await until((log) => log.some((item) => item.text.includes("unknown_type")));
  const status = document.getElementById("status").textContent;
  console.log(JSON.stringify({ items: items(), status, hash: location.hash }));
  process.exit(0);
})().catch((error) => { console.error(error.message); process.exit(1); });
"""


@functools.cache
def _node() -> str | None:
    """``node``, if it has a WebSocket (Node.js 20 and later, with the flag)."""
    node = shutil.which("node")
    if node is None:
        return None
    has_websocket = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
    probe = subprocess.run(
        [node, "--experimental-websocket", "-e", has_websocket],
        capture_output=True,
        timeout=30,
    )
    return node if probe.returncode == 0 else None


class BatchEverything:
    """Sends every message to the client inside a batch frame of its own."""

    @hookimpl
    def on_connect(self, connection: localagent.Connection) -> None:
        def batch(inner: Any) -> Any:
            async def send(message: Any) -> None:
                await inner({"type": "batch", "messages": [message]})

            return send

        connection.wrap_send(batch)


@pytest.mark.skipif(_node() is None, reason="needs Node.js 20+ (node --experimental-websocket)")
async def test_the_page_script_in_node(tmp_path: Path) -> None:
    server = localagent.Server.create(port=0, extra_plugins={"batch": BatchEverything()})
    async with server:
        url = server.url
        fragment = urlencode({"url": url, "token": server.token_file.get(), "send": "ping"})
        script = tmp_path / "page.js"
        script.write_text(
            NODE_DOM.replace("HASH", json.dumps("#" + fragment)) + _script() + NODE_DRIVER,
            encoding="utf-8",
        )
        node = await asyncio.create_subprocess_exec(
            str(_node()),
            "--experimental-websocket",
            "--no-warnings",
            str(script),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(node.communicate(), 60)
    assert node.returncode == 0, stderr.decode()
    page = json.loads(stdout)
    assert page["hash"] == "", "the page must drop the token from the address bar"
    assert page["status"] == f"connected to {url}"
    shown = [(item["kind"], json.loads(item["text"])) for item in page["items"][:4]]
    assert shown == [
        ("sent", {"type": "ping", "id": 1}),
        ("reply", {"id": 1, "result": {"pong": True}}),  # unpacked from its batch frame
        ("sent", {"type": "echo", "id": 2, "data": {"a": [1, 2]}}),
        ("reply", {"id": 2, "result": {"data": {"a": [1, 2]}}}),
    ]
    rest = page["items"][4:]
    assert rest[0]["kind"] == "error" and rest[0]["text"].startswith("data is not JSON")
    assert json.loads(rest[1]["text"]) == {"type": "no.such.type"}
    assert rest[2]["kind"] == "error"
    assert json.loads(rest[2]["text"])["id"] is None


# -- headless Chromium -------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _serve_page() -> Iterator[int]:
    """``python3 -m http.server --bind 127.0.0.1 -d examples/browser-client`` on a free port."""
    handler = functools.partial(_QuietHandler, directory=str(PAGE_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


#: The page's log entries, as {kind, text} objects.
LOG = (
    "JSON.stringify([...document.querySelectorAll('#log li')]"
    ".map((li) => ({kind: li.className, text: li.lastChild.textContent})))"
)


def _log(devtools: DevTools, session: str) -> list[dict[str, str]]:
    value = devtools.evaluate(LOG, session=session)
    return json.loads(value) if isinstance(value, str) else []


def test_the_page_in_headless_chromium(
    localagent_chromium: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    config_dir = Path(subprocess_env["LOCALAGENT_CONFIG_DIR"])
    with _serve_page() as port:
        allowed = f"http://127.0.0.1:{port}"
        with (
            running_agent(subprocess_env, "--origin", allowed, config_dir=config_dir) as agent,
            headless_chromium(localagent_chromium, tmp_path / "chromium") as devtools,
        ):
            fragment = urlencode({"url": agent.url, "token": agent.token, "send": "ping"})
            session = devtools.open(f"{allowed}/#{fragment}")
            log = wait_until(
                lambda: _log(devtools, session), lambda log: any(i["kind"] == "reply" for i in log)
            )
            replies = [json.loads(item["text"]) for item in log if item["kind"] == "reply"]
            assert replies == [{"id": 1, "result": {"pong": True}}], log

            # The same page under an origin the agent does not list: refused with 403.
            refused = devtools.open(f"http://localhost:{port}/#{fragment}")
            log = wait_until(
                lambda: _log(devtools, refused), lambda log: any(i["kind"] == "error" for i in log)
            )
            assert [item["kind"] for item in log] == ["error"], log
            assert "connection failed" in log[0]["text"]
        assert "Origin not allowed" in agent.output or "403" in agent.output
