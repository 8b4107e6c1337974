"""Fixtures of the reliability suite: one agent subprocess shared by a module's fuzz runs."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from localagent.testing import AgentProcess, running_agent


def agent_env(root: os.PathLike[str] | str, **extra: str) -> dict[str, str]:
    """An environment for an agent subprocess with its own config dir and workspace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
    env.update(
        LOCALAGENT_CONFIG_DIR=os.path.join(root, "config"),
        LOCALAGENT_WORKSPACE=os.path.join(root, "workspace"),
        LOCALAGENT_LOAD_PLUGINS="",
        **extra,
    )
    return env


@pytest.fixture(scope="module")
def shared_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """A ``localagent serve`` subprocess (built-ins only) for every example of a module.

    Hypothesis runs many examples per test; one agent for all of them keeps the
    run short, and shows that the agent survives the whole sequence.
    """
    root = tmp_path_factory.mktemp("agent")
    env = agent_env(root)
    with running_agent(env, "--log-level", "debug", config_dir=root / "config") as agent:
        yield agent
    assert "Traceback" not in agent.output, agent.output[-5000:]


@pytest.fixture(autouse=True)
def collect_garbage_between_tests() -> Iterator[None]:
    """Run finalizers of this suite's cyclic garbage (transports, clients) at a safe point.

    CPython 3.11 before 3.11.8 (gh-106905) can fail an unrelated ``ast.parse``
    with "AST constructor recursion depth mismatch" when the garbage collector
    runs finalizers in the middle of it, as pytest's import rewriting does.
    """
    yield
    gc.collect()
