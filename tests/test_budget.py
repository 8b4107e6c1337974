"""The outbound budget's bookkeeping, without sockets (``localagent._budget``)."""

from __future__ import annotations

import attrs
import pytest

from localagent._budget import SHARE_DIVISOR, OutboundBudget, heaviest

MIB = 1 << 20


@attrs.define
class Holder:
    name: str
    pending_bytes: int


def test_the_share_is_a_fraction_of_the_limit() -> None:
    budget = OutboundBudget(64 * MIB)
    assert budget.limit == 64 * MIB
    assert budget.share == 64 * MIB // SHARE_DIVISOR == 4 * MIB
    assert (budget.pending, budget.slowed, budget.shed) == (0, 0, 0)


def test_a_tiny_limit_still_has_a_share_of_one_byte() -> None:
    assert OutboundBudget(3).share == 1


@pytest.mark.parametrize("limit", [0, -1])
def test_the_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        OutboundBudget(limit)


def test_over_means_more_than_the_limit() -> None:
    budget = OutboundBudget(100)
    budget.pending = 100
    assert not budget.over
    budget.pending = 101
    assert budget.over


def test_a_write_off_leaves_later_refunds_to_a_detached_budget() -> None:
    agent = OutboundBudget(100)
    agent.pending = 70  # 50 of one connection, 20 of another
    agent.write_off(50)
    own = agent.detached()
    own.pending -= 50  # the shed connection's frames end: refunded where they no longer count
    assert agent.pending == 20
    assert own is not agent and own.limit == agent.limit and own.pending == -50


def test_heaviest_is_the_holder_with_the_most_bytes_waiting() -> None:
    holders = [Holder("a", 10), Holder("b", 30), Holder("c", 20)]
    assert heaviest(holders) == Holder("b", 30)


def test_heaviest_takes_the_first_of_a_tie() -> None:
    assert heaviest([Holder("a", 5), Holder("b", 5)]) == Holder("a", 5)


def test_no_holder_is_heaviest_when_nothing_waits() -> None:
    assert heaviest([]) is None
    assert heaviest([Holder("a", 0), Holder("b", 0)]) is None


def test_heaviest_reads_any_iterable_once() -> None:
    assert heaviest(Holder(str(n), n) for n in (3, 9, 4)) == Holder("9", 9)
