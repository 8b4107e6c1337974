"""Unit tests for the on_message dispatch table (localagent._dispatch).

They use the real plugin manager with small plugin classes; the connection is a
plain object since dispatch only passes it through.
"""

from __future__ import annotations

import gc
import inspect
import warnings
from collections.abc import Generator
from typing import Any

import pytest
from localagent_hookspecs import MessageError, handles, hookimpl

from localagent._dispatch import Dispatcher, HandlerFailed, discard
from localagent._plugins import PluginManager
from localagent._protocol import UNKNOWN_TYPE, Message


class Conn:
    """Stands in for a connection: dispatch only hands it to the handlers."""

    id = "c1"


CONN = Conn()


def msg(message_type: str, data: Any = None, msg_id: int | None = 1) -> Message:
    return Message(msg_id, message_type, data)


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@pytest.fixture
def pm() -> PluginManager:
    return PluginManager()


@pytest.fixture
def dispatcher(pm: PluginManager) -> Dispatcher:
    return Dispatcher(pm)


def handler(name: str, result: Any, *types: str, calls: list[str] | None = None, **opts: Any):
    """A plugin object with one on_message impl returning ``result`` (and recording)."""

    def on_message(connection: Any, message: Message) -> Any:
        if calls is not None:
            calls.append(f"{name}:{message.type}")
        return result

    function = handles(*types)(on_message) if types else on_message
    plugin = type(name, (), {})()
    plugin.on_message = hookimpl(**opts)(function)  # type: ignore[attr-defined]
    return plugin


# --------------------------------------------------------------------------- routing


def test_handles_routes_only_declared_types(pm: PluginManager, dispatcher: Dispatcher) -> None:
    calls: list[str] = []
    pm.register(handler("only_a", "from a", "a", calls=calls), name="only_a")
    pm.register(handler("only_b", "from b", "b", calls=calls), name="only_b")
    assert dispatcher.dispatch(CONN, msg("a")) == "from a"
    assert dispatcher.dispatch(CONN, msg("b")) == "from b"
    assert calls == ["only_a:a", "only_b:b"]
    assert dispatcher.route("a").plugins == ("only_a",)
    assert dispatcher.route("b").plugins == ("only_b",)


def test_handler_for_a_is_never_called_for_b_even_when_b_is_unknown(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    calls: list[str] = []
    pm.register(handler("only_a", "from a", "a", calls=calls), name="only_a")
    with pytest.raises(HandlerFailed):
        dispatcher.dispatch(CONN, msg("b"))
    assert calls == []
    assert dispatcher.route("b").handlers == ()


def test_handles_with_several_types(pm: PluginManager, dispatcher: Dispatcher) -> None:
    pm.register(handler("multi", "ok", "a", "b"), name="multi")
    assert dispatcher.dispatch(CONN, msg("a")) == "ok"
    assert dispatcher.dispatch(CONN, msg("b")) == "ok"
    with pytest.raises(HandlerFailed):
        dispatcher.dispatch(CONN, msg("c"))


def test_catch_all_sees_every_type(pm: PluginManager, dispatcher: Dispatcher) -> None:
    calls: list[str] = []
    pm.register(handler("specific", None, "a", calls=calls), name="specific")
    pm.register(handler("spy", None, calls=calls), name="spy")  # passes every time
    pm.register(handler("answer", "caught", calls=calls, trylast=True), name="answer")
    for message_type in ("a", "b", "never.declared"):
        assert dispatcher.dispatch(CONN, msg(message_type)) == "caught"
    assert calls == [
        "spy:a",
        "specific:a",
        "answer:a",
        "spy:b",
        "answer:b",
        "spy:never.declared",
        "answer:never.declared",
    ]


def test_one_plugin_several_handlers_via_specname(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    class Plugin:
        @hookimpl(specname="on_message")
        @handles("add")
        def add(self, message: Message) -> int:
            return sum(message.data)

        @hookimpl(specname="on_message")
        @handles("neg")
        def neg(self, message: Message) -> int:
            return -message.data

    pm.register(Plugin(), name="math")
    assert dispatcher.dispatch(CONN, msg("add", [1, 2, 3])) == 6
    assert dispatcher.dispatch(CONN, msg("neg", 4)) == -4


# --------------------------------------------------------------------------- order


def test_last_registered_is_called_first(pm: PluginManager, dispatcher: Dispatcher) -> None:
    pm.register(handler("first", "first", "x"), name="first")
    pm.register(handler("second", "second", "x"), name="second")
    assert dispatcher.dispatch(CONN, msg("x")) == "second"
    assert dispatcher.route("x").plugins == ("second", "first")


def test_tryfirst_and_trylast_reorder(pm: PluginManager, dispatcher: Dispatcher) -> None:
    pm.register(handler("early", "early", "x", tryfirst=True), name="early")
    pm.register(handler("plain", "plain", "x"), name="plain")
    pm.register(handler("late", "late", "x", trylast=True), name="late")
    assert dispatcher.route("x").plugins == ("early", "plain", "late")
    assert dispatcher.dispatch(CONN, msg("x")) == "early"


def test_specific_and_catch_all_are_merged_in_pluggy_order(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    pm.register(handler("all1", None), name="all1")
    pm.register(handler("x1", None, "x"), name="x1")
    pm.register(handler("all2", None), name="all2")
    pm.register(handler("y1", None, "y"), name="y1")
    assert dispatcher.route("x").plugins == ("all2", "x1", "all1")
    assert dispatcher.route("y").plugins == ("y1", "all2", "all1")
    assert dispatcher.route("z").plugins == ("all2", "all1")


def test_first_non_none_wins_and_none_passes(pm: PluginManager, dispatcher: Dispatcher) -> None:
    calls: list[str] = []
    pm.register(handler("never", "never", "x", calls=calls), name="never")
    pm.register(handler("winner", 0, "x", calls=calls), name="winner")  # falsy, not None
    pm.register(handler("passer", None, "x", calls=calls), name="passer")
    assert dispatcher.dispatch(CONN, msg("x")) == 0
    assert calls == ["passer:x", "winner:x"]


@pytest.mark.parametrize("falsy", [False, 0, "", [], {}])
def test_falsy_results_are_answers(pm: PluginManager, dispatcher: Dispatcher, falsy: Any) -> None:
    pm.register(handler("fallback", "fallback", "x"), name="fallback")
    pm.register(handler("falsy", falsy, "x"), name="falsy")
    assert dispatcher.dispatch(CONN, msg("x")) == falsy


# --------------------------------------------------------------------------- async handlers


def test_sync_result_is_returned_directly(pm: PluginManager, dispatcher: Dispatcher) -> None:
    pm.register(handler("sync", {"v": 1}, "x"), name="sync")
    result = dispatcher.dispatch(CONN, msg("x"))
    assert not inspect.isawaitable(result)
    assert result == {"v": 1}


async def test_async_handler_is_awaited(pm: PluginManager, dispatcher: Dispatcher) -> None:
    class Plugin:
        @hookimpl
        @handles("x")
        async def on_message(self, message: Message) -> Any:
            return {"echo": message.data}

    pm.register(Plugin(), name="async")
    pending = dispatcher.dispatch(CONN, msg("x", 42))
    assert inspect.isawaitable(pending)
    assert await pending == {"echo": 42}


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "wrapped"])
def test_a_discarded_pending_result_leaves_no_coroutine_unawaited(
    pm: PluginManager, dispatcher: Dispatcher, wrapped: bool
) -> None:
    """The runtime discards a result it will never start (its connection closed meanwhile)."""
    started: list[int] = []

    class Plugin:
        @hookimpl
        @handles("x")
        async def on_message(self, message: Message) -> Any:
            started.append(message.data)
            return message.data

    pm.register(Plugin(), name="async")
    if wrapped:
        pm.register(wrapper_plugin([], "w", "x"), name="w")
    pending = dispatcher.dispatch(CONN, msg("x", 42))
    assert inspect.iscoroutine(pending)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "coroutine ... was never awaited"
        discard(pending)
        del pending
        gc.collect()
    assert started == []


async def test_async_none_passes_to_the_next(pm: PluginManager, dispatcher: Dispatcher) -> None:
    calls: list[str] = []

    class AsyncPasser:
        @hookimpl
        @handles("x")
        async def on_message(self, message: Message) -> Any:
            calls.append("async-passer")
            return None

    class AsyncAnswer:
        @hookimpl
        @handles("x")
        async def on_message(self, message: Message) -> Any:
            calls.append("async-answer")
            return "async"

    pm.register(handler("last", "sync-last", "x", calls=calls), name="last")
    pm.register(AsyncAnswer(), name="async-answer")
    pm.register(handler("sync-passer", None, "x", calls=calls), name="sync-passer")
    pm.register(AsyncPasser(), name="async-passer")
    assert await resolve(dispatcher.dispatch(CONN, msg("x"))) == "async"
    assert calls == ["async-passer", "sync-passer:x", "async-answer"]


async def test_async_none_then_sync_answer(pm: PluginManager, dispatcher: Dispatcher) -> None:
    class AsyncPasser:
        @hookimpl
        @handles("x")
        async def on_message(self) -> Any:
            return None

    pm.register(handler("sync", "sync answer", "x"), name="sync")
    pm.register(AsyncPasser(), name="async-passer")
    assert await resolve(dispatcher.dispatch(CONN, msg("x"))) == "sync answer"


async def test_all_async_pass_is_unknown_type(pm: PluginManager, dispatcher: Dispatcher) -> None:
    class AsyncPasser:
        @hookimpl
        @handles("x")
        async def on_message(self) -> Any:
            return None

    pm.register(AsyncPasser(), name="async-passer")
    with pytest.raises(HandlerFailed) as caught:
        await resolve(dispatcher.dispatch(CONN, msg("x")))
    assert caught.value.plugin is None
    assert isinstance(caught.value.error, MessageError)
    assert caught.value.error.code == UNKNOWN_TYPE


async def test_async_handler_exception_names_the_plugin(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    boom = LookupError("async boom")

    class Failing:
        @hookimpl
        @handles("x")
        async def on_message(self) -> Any:
            raise boom

    pm.register(handler("fallback", "unused", "x"), name="fallback")
    pm.register(Failing(), name="failing")
    with pytest.raises(HandlerFailed) as caught:
        await resolve(dispatcher.dispatch(CONN, msg("x")))
    assert caught.value.plugin == "failing"
    assert caught.value.error is boom


# --------------------------------------------------------------------------- failures


def test_unknown_type(pm: PluginManager, dispatcher: Dispatcher) -> None:
    pm.register(handler("passer", None), name="passer")
    with pytest.raises(HandlerFailed) as caught:
        dispatcher.dispatch(CONN, msg("nope"))
    failed = caught.value
    assert failed.plugin is None
    assert isinstance(failed.error, MessageError)
    assert failed.error.code == UNKNOWN_TYPE == "unknown_type"
    assert "'nope'" in failed.error.message


def test_unknown_type_with_no_plugins_at_all(dispatcher: Dispatcher) -> None:
    with pytest.raises(HandlerFailed) as caught:
        dispatcher.dispatch(CONN, msg("ping"))
    assert isinstance(caught.value.error, MessageError)
    assert caught.value.error.code == UNKNOWN_TYPE


def test_handler_exception_names_the_plugin(pm: PluginManager, dispatcher: Dispatcher) -> None:
    boom = ValueError("boom")
    calls: list[str] = []

    class Failing:
        @hookimpl
        @handles("x")
        def on_message(self) -> Any:
            raise boom

    pm.register(handler("after", "after", "x", calls=calls), name="after")
    pm.register(Failing(), name="failing")
    with pytest.raises(HandlerFailed) as caught:
        dispatcher.dispatch(CONN, msg("x"))
    assert caught.value.plugin == "failing"
    assert caught.value.error is boom
    assert caught.value.__cause__ is boom
    assert calls == []  # an exception stops the chain


def test_message_error_is_carried_unchanged(pm: PluginManager, dispatcher: Dispatcher) -> None:
    class Picky:
        @hookimpl
        @handles("x")
        def on_message(self) -> Any:
            raise MessageError("bad_request", "no", details={"field": "path"})

    pm.register(Picky(), name="picky")
    with pytest.raises(HandlerFailed) as caught:
        dispatcher.dispatch(CONN, msg("x"))
    assert caught.value.plugin == "picky"
    assert isinstance(caught.value.error, MessageError)
    assert caught.value.error.code == "bad_request"
    assert caught.value.error.details == {"field": "path"}


# --------------------------------------------------------------------------- wrappers


def wrapper_plugin(log: list[Any], name: str, *types: str, replace: Any = None):
    """A wrapper plugin that logs what it sees; optionally replaces the result."""

    def on_message(message: Message) -> Generator[None, Any, Any]:
        log.append(f"{name}:enter:{message.type}")
        try:
            result = yield
        except BaseException as exc:
            log.append(f"{name}:error:{exc!r}")
            raise
        log.append(f"{name}:result:{result!r}")
        return replace if replace is not None else result

    function = handles(*types)(on_message) if types else on_message
    plugin = type(name, (), {})()
    plugin.on_message = hookimpl(wrapper=True)(function)  # type: ignore[attr-defined]
    return plugin


async def test_wrapper_wraps_only_declared_types(pm: PluginManager, dispatcher: Dispatcher) -> None:
    log: list[Any] = []
    pm.register(handler("answer", "plain"), name="answer")
    pm.register(wrapper_plugin(log, "w", "a"), name="w")
    assert dispatcher.route("a").wrapper_plugins == ("w",)
    assert dispatcher.route("b").wrappers == ()
    result_b = dispatcher.dispatch(CONN, msg("b"))
    assert result_b == "plain"  # unwrapped: returned directly, wrapper untouched
    assert log == []
    # A synchronous handler is wrapped synchronously: no coroutine, no task.
    assert dispatcher.dispatch(CONN, msg("a")) == "plain"
    assert log == ["w:enter:a", "w:result:'plain'"]


async def test_catch_all_wrapper_wraps_every_type(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    log: list[Any] = []
    pm.register(handler("answer", "ok"), name="answer")
    pm.register(handler("only_a", "a!", "a"), name="only_a")
    pm.register(wrapper_plugin(log, "w"), name="w")
    assert await resolve(dispatcher.dispatch(CONN, msg("a"))) == "a!"
    assert await resolve(dispatcher.dispatch(CONN, msg("zzz"))) == "ok"
    assert log == ["w:enter:a", "w:result:'a!'", "w:enter:zzz", "w:result:'ok'"]


async def test_wrapper_sees_the_awaited_result(pm: PluginManager, dispatcher: Dispatcher) -> None:
    log: list[Any] = []

    class AsyncAnswer:
        @hookimpl
        @handles("x")
        async def on_message(self, message: Message) -> Any:
            return {"async": message.data}

    pm.register(AsyncAnswer(), name="async")
    pm.register(wrapper_plugin(log, "w", "x"), name="w")
    assert await resolve(dispatcher.dispatch(CONN, msg("x", 7))) == {"async": 7}
    assert log == ["w:enter:x", "w:result:{'async': 7}"]


async def test_wrapper_can_replace_the_result(pm: PluginManager, dispatcher: Dispatcher) -> None:
    log: list[Any] = []
    pm.register(handler("answer", "original", "x"), name="answer")
    pm.register(wrapper_plugin(log, "w", "x", replace="replaced"), name="w")
    assert await resolve(dispatcher.dispatch(CONN, msg("x"))) == "replaced"
    assert log == ["w:enter:x", "w:result:'original'"]


async def test_wrappers_nest_in_pluggy_order(pm: PluginManager, dispatcher: Dispatcher) -> None:
    log: list[Any] = []
    pm.register(handler("answer", "r", "x"), name="answer")
    pm.register(wrapper_plugin(log, "inner", "x", replace="inner-r"), name="inner")
    pm.register(wrapper_plugin(log, "outer", "x"), name="outer")  # registered last: outermost
    assert dispatcher.route("x").wrapper_plugins == ("outer", "inner")
    assert await resolve(dispatcher.dispatch(CONN, msg("x"))) == "inner-r"
    assert log == [
        "outer:enter:x",
        "inner:enter:x",
        "inner:result:'r'",
        "outer:result:'inner-r'",
    ]


async def test_wrapper_sees_handler_exception_and_it_keeps_the_plugin(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    log: list[Any] = []
    boom = KeyError("k")

    class Failing:
        @hookimpl
        @handles("x")
        def on_message(self) -> Any:
            raise boom

    pm.register(Failing(), name="failing")
    pm.register(wrapper_plugin(log, "w", "x"), name="w")
    with pytest.raises(HandlerFailed) as caught:
        await resolve(dispatcher.dispatch(CONN, msg("x")))
    assert caught.value.plugin == "failing"  # the wrapper re-raised: blame stays
    assert caught.value.error is boom
    assert log == ["w:enter:x", f"w:error:{boom!r}"]


async def test_wrapper_sees_async_handler_exception(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    log: list[Any] = []

    class Failing:
        @hookimpl
        @handles("x")
        async def on_message(self) -> Any:
            raise RuntimeError("late")

    pm.register(Failing(), name="failing")
    pm.register(wrapper_plugin(log, "w", "x"), name="w")
    with pytest.raises(HandlerFailed) as caught:
        await resolve(dispatcher.dispatch(CONN, msg("x")))
    assert caught.value.plugin == "failing"
    assert log == ["w:enter:x", "w:error:RuntimeError('late')"]


async def test_wrapper_sees_unknown_type(pm: PluginManager, dispatcher: Dispatcher) -> None:
    log: list[Any] = []
    pm.register(wrapper_plugin(log, "w", "x"), name="w")
    with pytest.raises(HandlerFailed) as caught:
        await resolve(dispatcher.dispatch(CONN, msg("x")))
    assert isinstance(caught.value.error, MessageError)
    assert caught.value.error.code == UNKNOWN_TYPE
    assert log[0] == "w:enter:x"
    assert log[1].startswith("w:error:MessageError('unknown_type'")


async def test_wrapper_can_turn_an_exception_into_a_result(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    class Failing:
        @hookimpl
        @handles("x")
        def on_message(self) -> Any:
            raise ValueError("bad")

    class Rescuer:
        @hookimpl(wrapper=True)
        @handles("x")
        def on_message(self) -> Generator[None, Any, Any]:
            try:
                return (yield)
            except ValueError as exc:
                return {"rescued": str(exc)}

    pm.register(Failing(), name="failing")
    pm.register(Rescuer(), name="rescuer")
    assert await resolve(dispatcher.dispatch(CONN, msg("x"))) == {"rescued": "bad"}


async def test_wrapper_raising_its_own_exception_is_blamed(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    class Strict:
        @hookimpl(wrapper=True)
        @handles("x")
        def on_message(self) -> Generator[None, Any, Any]:
            result = yield
            raise MessageError("rejected", f"not {result}")

    pm.register(handler("answer", "ok", "x"), name="answer")
    pm.register(Strict(), name="strict")
    with pytest.raises(HandlerFailed) as caught:
        await resolve(dispatcher.dispatch(CONN, msg("x")))
    assert caught.value.plugin == "strict"
    assert isinstance(caught.value.error, MessageError)
    assert caught.value.error.code == "rejected"


async def test_wrapper_failing_before_yield_is_blamed(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    calls: list[str] = []

    class Gate:
        @hookimpl(wrapper=True)
        @handles("x")
        def on_message(self) -> Generator[None, Any, Any]:
            raise PermissionError("denied")
            yield  # pragma: no cover

    pm.register(handler("answer", "ok", "x", calls=calls), name="answer")
    pm.register(Gate(), name="gate")
    with pytest.raises(HandlerFailed) as caught:
        await resolve(dispatcher.dispatch(CONN, msg("x")))
    assert caught.value.plugin == "gate"
    assert isinstance(caught.value.error, PermissionError)
    assert calls == []  # the handler never ran


async def test_wrapper_yielding_twice_is_an_error(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    class Twice:
        @hookimpl(wrapper=True)
        @handles("x")
        def on_message(self) -> Generator[None, Any, Any]:
            yield
            yield

    pm.register(handler("answer", "ok", "x"), name="answer")
    pm.register(Twice(), name="twice")
    with pytest.raises(HandlerFailed) as caught:
        await resolve(dispatcher.dispatch(CONN, msg("x")))
    assert caught.value.plugin == "twice"
    assert "yielded twice" in str(caught.value.error)


# --------------------------------------------------------------------------- table rebuilds


def test_table_is_rebuilt_after_register_and_unregister(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    base = handler("base", "base", "x")
    pm.register(base, name="base")
    assert dispatcher.dispatch(CONN, msg("x")) == "base"
    generation = pm.generation

    override = handler("override", "override", "x")
    pm.register(override, name="override")
    assert pm.generation != generation
    assert dispatcher.dispatch(CONN, msg("x")) == "override"

    newcomer = handler("newcomer", "new", "y")
    pm.register(newcomer, name="newcomer")
    assert dispatcher.dispatch(CONN, msg("y")) == "new"

    generation = pm.generation
    pm.unregister(override)
    assert pm.generation != generation
    assert dispatcher.dispatch(CONN, msg("x")) == "base"

    pm.unregister(name="newcomer")
    with pytest.raises(HandlerFailed):
        dispatcher.dispatch(CONN, msg("y"))
    pm.unregister(base)
    with pytest.raises(HandlerFailed):
        dispatcher.dispatch(CONN, msg("x"))


def test_route_is_cached_while_plugins_do_not_change(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    pm.register(handler("base", "base", "x"), name="base")
    first = dispatcher.route("x")
    assert dispatcher.route("x") is first
    pm.register(handler("other", "other", "y"), name="other")
    assert dispatcher.route("x") is not first
    assert dispatcher.route("x") == first  # same handlers, new table


# --------------------------------------------------------------------------- signatures


def test_impls_with_fewer_or_reordered_arguments(pm: PluginManager, dispatcher: Dispatcher) -> None:
    seen: dict[str, tuple[Any, ...]] = {}

    class Plugin:
        @hookimpl(specname="on_message")
        @handles("m")
        def only_message(self, message: Message) -> Any:
            seen["m"] = (message,)
            return "m"

        @hookimpl(specname="on_message")
        @handles("c")
        def only_connection(self, connection: Any) -> Any:
            seen["c"] = (connection,)
            return "c"

        @hookimpl(specname="on_message")
        @handles("none")
        def nothing(self) -> Any:
            seen["none"] = ()
            return "none"

        @hookimpl(specname="on_message")
        @handles("both")
        def reordered(self, message: Message, connection: Any) -> Any:
            seen["both"] = (message, connection)
            return "both"

    pm.register(Plugin(), name="sig")
    m, c, n, b = msg("m"), msg("c"), msg("none"), msg("both")
    assert dispatcher.dispatch(CONN, m) == "m"
    assert dispatcher.dispatch(CONN, c) == "c"
    assert dispatcher.dispatch(CONN, n) == "none"
    assert dispatcher.dispatch(CONN, b) == "both"
    assert seen == {"m": (m,), "c": (CONN,), "none": (), "both": (b, CONN)}


def test_module_level_function_taking_only_message(
    pm: PluginManager, dispatcher: Dispatcher
) -> None:
    import localagent.builtin.echo as echo_plugin

    pm.register(echo_plugin, name="echo")
    assert dispatcher.dispatch(CONN, msg("echo", {"a": [1]})) == {"data": {"a": [1]}}
