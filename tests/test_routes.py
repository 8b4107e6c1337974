"""Plugins' HTTP routes on the agent's own port (``agent.add_route``), against a real agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from localagent_hookspecs import HttpRequest, HttpResponse

import localagent
from localagent import Client, Server, hookimpl
from localagent._routes import RouteTable

from .helpers import handshake_status, http_request

ORIGIN = "http://localhost:3000"


class Routes:
    """Adds ``/hello`` (token), ``/probe`` (no token), ``/kv`` (async), ``/boom`` and friends."""

    def __init__(self) -> None:
        self.requests: list[HttpRequest] = []
        self.errors: list[tuple[BaseException, Any]] = []

    @hookimpl
    def on_load(self, agent: localagent.Agent) -> None:
        store = agent.store

        def hello(request: HttpRequest) -> HttpResponse:
            self.requests.append(request)
            return HttpResponse(200, b"hello", "text/plain", {"X-Greeting": "hi"})

        async def kv(request: HttpRequest) -> HttpResponse:
            await store.set("visits", dict(request.query).get("name"))
            return HttpResponse.text(str(await store.get("visits")))

        def boom(request: HttpRequest) -> HttpResponse:
            raise ValueError("route failed on purpose")

        agent.add_route("/hello", hello)
        agent.add_route("/probe", lambda request: HttpResponse.text("up"), needs_token=False)
        agent.add_route("/kv", kv)
        agent.add_route("/boom", boom)
        agent.add_route("/not-a-response", lambda request: "hello")  # type: ignore[arg-type,return-value]
        agent.add_route("/switching", lambda request: HttpResponse(101))

    @hookimpl
    def on_error(self, error: BaseException, context: Any) -> None:
        self.errors.append((error, context))


class FailsAfterAddingARoute:
    @hookimpl
    def on_load(self, agent: localagent.Agent) -> None:
        agent.add_route("/half", lambda request: HttpResponse.text("half"))
        raise RuntimeError("on_load failed on purpose")


@pytest.fixture
def routes() -> Routes:
    return Routes()


@pytest.fixture
async def agent(routes: Routes) -> AsyncIterator[Server]:
    server = Server.create(
        port=0,
        origins=(ORIGIN,),
        extra_plugins={"routes": routes, "half": FailsAfterAddingARoute()},
    )
    async with server:
        yield server


def bearer(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token_file.get()}"}


async def test_a_route_answers_get_and_head_with_safe_headers(agent: Server) -> None:
    reply = await http_request(agent.port, "/hello", bearer(agent))
    assert (reply.status, reply.body) == (200, b"hello")
    assert reply.headers["content-type"] == "text/plain"
    assert reply.headers["x-greeting"] == "hi"
    assert reply.headers["content-length"] == "5"
    assert reply.headers["connection"] == "close"
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert reply.headers["server"] == "LocalAgent"
    head = await http_request(agent.port, "/hello", bearer(agent), method="HEAD")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "5")


async def test_an_async_route_handler_does_real_io(agent: Server) -> None:
    reply = await http_request(agent.port, "/kv?name=ada", bearer(agent))
    assert (reply.status, reply.body) == (200, b"ada\n")
    assert await agent.runtime.store.get("visits") == "ada"


@pytest.mark.parametrize(
    ("case", "headers", "status"),
    [
        ("no token", {"Authorization": ""}, 401),
        ("a wrong token", {"Authorization": "Bearer wrong"}, 401),
        ("a foreign Origin", {"Origin": "http://evil.example"}, 403),
        ("a listed Origin but no token", {"Origin": ORIGIN, "Authorization": ""}, 401),
        ("a rebinding Host", {"Host": "evil.example"}, 403),
        ("no Host", {"Host": ""}, 403),
    ],
)
async def test_route_requests_are_refused_as_the_websocket_handshake_would_be(
    agent: Server, routes: Routes, case: str, headers: dict[str, str], status: int
) -> None:
    sent = {"Host": f"127.0.0.1:{agent.port}", **bearer(agent), **headers}
    sent = {name: value for name, value in sent.items() if value}  # "": left out
    route = await http_request(agent.port, "/hello", {"Host": "", **sent})
    handshake = await handshake_status(agent.port, sent)
    assert route.status == handshake == status, case
    assert routes.requests == []  # the handler never saw it
    if status == 401:
        assert route.headers["www-authenticate"] == "Bearer"
    assert agent.token_file.get().encode() not in route.body


async def test_an_allowed_request_is_one_the_handshake_would_accept(agent: Server) -> None:
    headers = {"Host": f"localhost:{agent.port}", "Origin": ORIGIN, **bearer(agent)}
    assert (await http_request(agent.port, "/hello", headers)).status == 200
    assert await handshake_status(agent.port, headers) == 101


async def test_a_route_open_to_probes_still_checks_host_and_origin(agent: Server) -> None:
    assert (await http_request(agent.port, "/probe")).body == b"up\n"
    assert (await http_request(agent.port, "/probe", {"Authorization": "Bearer no"})).status == 200
    assert (await http_request(agent.port, "/probe", {"Host": "evil.example"})).status == 403
    foreign = {"Origin": "http://evil.example"}
    assert (await http_request(agent.port, "/probe", foreign)).status == 403


async def test_the_token_never_reaches_a_handler(agent: Server, routes: Routes) -> None:
    token = agent.token_file.get()
    reply = await http_request(agent.port, f"/hello?a=1&token={token}&b=", {"X-Test": "yes"})
    assert reply.status == 200
    (request,) = routes.requests
    assert request.method == "GET" and request.path == "/hello"
    assert request.query == (("a", "1"), ("b", ""))
    assert request.headers["x-test"] == "yes"
    assert request.remote_address is not None
    routes.requests.clear()
    await http_request(agent.port, "/hello", bearer(agent))
    (request,) = routes.requests
    assert "authorization" not in request.headers
    assert token not in repr(request)


async def test_other_methods_get_405_and_never_reach_the_handler(
    agent: Server, routes: Routes
) -> None:
    reply = await http_request(agent.port, "/hello", bearer(agent), method="POST")
    assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD"
    assert routes.requests == []


@pytest.mark.parametrize(
    ("path", "error"),
    [("/boom", ValueError), ("/not-a-response", TypeError), ("/switching", ValueError)],
)
async def test_a_failing_handler_gets_500_and_on_error_names_its_plugin(
    agent: Server, routes: Routes, path: str, error: type[BaseException]
) -> None:
    reply = await http_request(agent.port, path, bearer(agent))
    assert (reply.status, reply.body) == (500, b"internal error\n")
    ((raised, context),) = [(e, c) for e, c in routes.errors if c.stage != "load"]
    assert isinstance(raised, error)
    assert (context.stage, context.plugin) == ("transport", "routes")
    async with Client(agent.url, agent.token_file.get()) as client:  # the agent goes on
        assert await client.request("ping") == {"pong": True}
    assert (await http_request(agent.port, "/probe")).status == 200


async def test_a_websocket_handshake_to_a_routed_path_opens_a_websocket(agent: Server) -> None:
    headers = {"Host": f"127.0.0.1:{agent.port}", **bearer(agent)}
    assert await handshake_status(agent.port, headers, path="/hello") == 101
    async with Client(f"{agent.url}/hello", agent.token_file.get()) as client:
        assert await client.request("ping") == {"pong": True}


async def test_paths_without_a_route_are_answered_as_before(agent: Server) -> None:
    async with Server.create(port=0) as bare:
        for server in (agent, bare):
            unknown = await http_request(server.port, "/nope", bearer(server))
            assert unknown.status == 426  # a WebSocket endpoint, as without routes
            assert (await http_request(server.port, "/nope")).status == 401


async def test_the_routes_of_a_plugin_whose_on_load_fails_are_removed(agent: Server) -> None:
    info = agent.runtime.plugins.info("half")
    assert info is not None and not info.registered
    assert agent.runtime.routes.get("/half") is None
    assert (await http_request(agent.port, "/half", bearer(agent))).status == 426
    assert (await http_request(agent.port, "/hello", bearer(agent))).status == 200


@pytest.mark.parametrize("path", ["hello", "", "/a?b=1", "/a#b", "/a b", 7])
def test_a_malformed_path_is_refused(path: Any) -> None:
    with pytest.raises(ValueError, match="route's path"):
        RouteTable().add(path, lambda request: HttpResponse(), plugin="x")


def test_a_taken_path_is_refused_naming_its_plugin() -> None:
    table = RouteTable()
    table.add("/metrics", lambda request: HttpResponse(), plugin="monitor")
    with pytest.raises(
        ValueError, match=r"route /metrics exists already \(added by plugin 'monitor'\)"
    ):
        table.add("/metrics", lambda request: HttpResponse(), plugin="other")
    table.remove_plugin("monitor")
    assert not table
