"""QuotaPolicy: a user's quota decides supersede, sweep first, admit, evict or reject."""

from __future__ import annotations

from typing import Literal

import pytest

from actors.policies.quota import QuotaPolicy, Verdict


@pytest.mark.parametrize(
    ("limit", "ratio", "expected"),
    [(10, 0.5, 5), (5, 0.5, 3), (3, 0.5, 2), (1, 0.5, 1), (7, 0.3, 3), (10, 1.0, 10)],
)
def test_the_proactive_threshold_rounds_up(limit: int, ratio: float, expected: int) -> None:
    assert QuotaPolicy(limit, ratio).proactive_at == expected


def test_the_proactive_threshold_is_at_least_one_slot() -> None:
    assert QuotaPolicy(10, 0.0).proactive_at == 1
    assert QuotaPolicy(1, 0.01).proactive_at == 1


def test_a_sweep_is_due_at_and_above_the_proactive_threshold() -> None:
    policy = QuotaPolicy(10, 0.5)
    assert not policy.should_sweep(0)
    assert not policy.should_sweep(4)
    assert policy.should_sweep(5)
    assert policy.should_sweep(6)
    assert policy.should_sweep(10)


def test_a_held_key_is_superseded_even_when_the_quota_is_full() -> None:
    on_fulls: tuple[Literal["reject", "evict_oldest_idle"], ...] = ("reject", "evict_oldest_idle")
    for on_full in on_fulls:
        policy = QuotaPolicy(3, on_full=on_full)
        assert policy.decide(1, key_held=True) is Verdict.SUPERSEDE
        assert policy.decide(3, key_held=True) is Verdict.SUPERSEDE
        assert policy.decide(3, key_held=True, can_evict=False) is Verdict.SUPERSEDE


def test_a_new_key_under_the_limit_is_admitted() -> None:
    policy = QuotaPolicy(3)
    assert policy.decide(0, key_held=False) is Verdict.ADMIT
    assert policy.decide(2, key_held=False) is Verdict.ADMIT


def test_a_new_key_at_the_limit_is_rejected_when_on_full_is_reject() -> None:
    policy = QuotaPolicy(3, on_full="reject")
    assert policy.decide(3, key_held=False) is Verdict.REJECT
    assert policy.decide(3, key_held=False, can_evict=True) is Verdict.REJECT
    assert policy.decide(4, key_held=False) is Verdict.REJECT


def test_a_new_key_at_the_limit_evicts_the_oldest_idle_when_one_can_be_evicted() -> None:
    policy = QuotaPolicy(3, on_full="evict_oldest_idle")
    assert policy.decide(3, key_held=False, can_evict=True) is Verdict.EVICT
    assert policy.decide(2, key_held=False, can_evict=True) is Verdict.ADMIT


def test_a_new_key_at_the_limit_is_rejected_when_nothing_can_be_evicted() -> None:
    policy = QuotaPolicy(3, on_full="evict_oldest_idle")
    assert policy.decide(3, key_held=False, can_evict=False) is Verdict.REJECT


@pytest.mark.parametrize("limit", [0, -1])
def test_a_quota_below_one_slot_is_refused_at_construction(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        QuotaPolicy(limit)


@pytest.mark.parametrize(("limit", "ratio", "at"), [(100, 0.07, 7), (25, 0.28, 7), (50, 0.14, 7)])
def test_a_sweep_is_due_once_used_slots_reach_the_proactive_ratio_despite_float_rounding(
    limit: int, ratio: float, at: int
) -> None:
    policy = QuotaPolicy(limit, ratio)
    assert policy.proactive_at == at
    assert policy.should_sweep(at) and not policy.should_sweep(at - 1)


def test_a_quota_that_rejects_never_looks_for_a_connection_to_evict() -> None:
    policy = QuotaPolicy(3, on_full="reject")
    assert [policy.may_evict(used) for used in (0, 2, 3, 4)] == [False] * 4


def test_a_quota_that_evicts_looks_for_a_connection_to_evict_only_when_full() -> None:
    policy = QuotaPolicy(3, on_full="evict_oldest_idle")
    assert [policy.may_evict(used) for used in (0, 2, 3, 4)] == [False, False, True, True]
    assert policy.decide(2, key_held=False) is Verdict.ADMIT  # below: no victim needed
