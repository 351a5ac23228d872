"""PoolPolicy: when a retired manager may wait for reuse, and for how long."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors.policies.pool import PoolPolicy


def test_the_pool_takes_managers_up_to_its_size_counting_those_on_the_way() -> None:
    pool = PoolPolicy(size=2, idle_seconds=30.0)
    assert pool.has_room(0) and pool.has_room(1)
    assert not pool.has_room(2) and not pool.has_room(1, on_the_way=1)
    assert not PoolPolicy(size=0, idle_seconds=30.0).has_room(0)


def test_a_pooled_manager_expires_exactly_at_its_idle_time() -> None:
    pool = PoolPolicy(size=2, idle_seconds=30.0)
    assert not pool.expired(idle_since=100.0, now=129.5)
    assert pool.expired(idle_since=100.0, now=130.0)


@given(
    since=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    later=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
)
def test_a_pooled_manager_expires_from_the_time_expires_at_gives_and_not_before(
    since: float, later: float
) -> None:
    pool = PoolPolicy(size=2, idle_seconds=30.0)
    assert pool.expired(since, pool.expires_at(since) + later)
    assert not pool.expired(since, since + 29.9)


def test_a_manager_with_nothing_left_and_uses_to_spare_is_reusable() -> None:
    pool = PoolPolicy(size=2, idle_seconds=30.0, max_uses=3)
    assert pool.reusable(served=1, crashed=False, holds_state=False)
    assert pool.reusable(served=2, crashed=False, holds_state=False)


def test_a_manager_whose_connection_ended_in_a_crash_is_not_reusable() -> None:
    pool = PoolPolicy(size=2, idle_seconds=30.0)
    assert not pool.reusable(served=1, crashed=True, holds_state=False)


def test_a_manager_that_still_holds_state_is_not_reusable() -> None:
    pool = PoolPolicy(size=2, idle_seconds=30.0)
    assert not pool.reusable(served=1, crashed=False, holds_state=True)


def test_a_manager_that_has_served_its_configured_number_of_connections_is_not_reusable() -> None:
    pool = PoolPolicy(size=2, idle_seconds=30.0, max_uses=3)
    assert not pool.reusable(served=3, crashed=False, holds_state=False)
    assert not pool.reusable(served=4, crashed=False, holds_state=False)


@given(served=st.integers(min_value=0, max_value=10**9))
def test_without_a_use_limit_a_clean_manager_is_always_reusable(served: int) -> None:
    pool = PoolPolicy(size=2, idle_seconds=30.0, max_uses=0)
    assert pool.reusable(served=served, crashed=False, holds_state=False)
