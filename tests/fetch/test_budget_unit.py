"""``TransferBudget``: grants, the soft cut-off and what a transfer is charged,
without any I/O (the end-to-end behaviour is in tests/sync/test_budget.py)."""

from __future__ import annotations

import pytest

from mirror.errors import BudgetExhaustedError, ExitStatus, UsageError
from mirror.fetch.budget import TransferBudget, TransferPaused, current_allowance


def test_a_transfer_that_fits_is_granted_its_length_and_charged_what_it_moved() -> None:
    """A target that fits gets no stop point; a resumed one that moves only its
    missing bytes is charged those, not its length."""
    budget = TransferBudget(1000)
    with budget.transfer(600, resumable=True) as allowance:
        assert allowance is not None
        assert allowance.stop_after is None
        assert current_allowance() is allowance
        allowance.received(150)  # 450 bytes were already held from an earlier run
    assert current_allowance() is None
    assert (budget.spent, budget.reserved, budget.left) == (150, 0, 850)
    budget.check()


def test_a_large_target_gets_what_is_left_and_pauses_there() -> None:
    """A resumable target larger than what is left is granted the rest and stops at
    it (paused, counted); nothing new starts after that (deferred); check() is then
    exit 5 naming both counts."""
    budget = TransferBudget(1000)

    def large_download() -> None:
        with budget.transfer(5000, resumable=True) as allowance:
            assert allowance is not None
            assert allowance.stop_after == 1000
            allowance.received(999)
            assert not allowance.exhausted
            allowance.received(1)
            assert allowance.exhausted
            raise TransferPaused

    with pytest.raises(TransferPaused):
        large_download()
    with budget.transfer(10, resumable=False) as later:
        assert later is None
    assert (budget.spent, budget.paused, budget.deferred) == (1000, 1, 1)
    with pytest.raises(BudgetExhaustedError, match=r"1 target\(s\) not started, 1 paused") as e:
        budget.check()
    assert e.value.exit_status == ExitStatus.BUDGET


def test_concurrent_grants_never_add_up_past_the_budget() -> None:
    """Transfers started while others are in flight share what is left: the grants
    in flight never exceed the budget, except a small in-memory target, which is
    granted whole whenever anything is left (the soft overshoot)."""
    budget = TransferBudget(1000)
    with budget.transfer(700, resumable=True) as first:
        assert first is not None
        with budget.transfer(700, resumable=True) as second:
            assert second is not None
            assert second.grant == 300
            assert second.stop_after == 300
            with budget.transfer(50, resumable=False) as third:
                assert third is None
    assert budget.deferred == 1
    small = TransferBudget(100)
    with small.transfer(250, resumable=False) as whole:
        assert whole is not None
        assert whole.grant == 250
        assert whole.stop_after is None


def test_a_fetcher_that_reports_nothing_is_charged_the_grant() -> None:
    """A fetcher that does not count bytes (a local directory, a bundle) is charged
    the whole grant."""
    budget = TransferBudget(1000)
    with budget.transfer(400, resumable=True):
        pass
    assert budget.spent == 400


def test_a_zero_budget_is_a_usage_error() -> None:
    """A budget of 0 could never make progress: exit 2."""
    with pytest.raises(UsageError):
        TransferBudget(0)
