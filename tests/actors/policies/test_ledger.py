"""The ledger: who holds which slot, InMemoryLedger against a simple model."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actors.policies.ledger import AcquireResult, InMemoryLedger


def test_a_user_acquires_slots_up_to_the_limit_and_then_is_full() -> None:
    ledger = InMemoryLedger(node_limit=100)
    for index in range(3):
        assert ledger.acquire("u", f"u:t{index}", f"ws{index}", 3) is AcquireResult.ACQUIRED
    assert ledger.acquire("u", "u:t3", "ws3", 3) is AcquireResult.USER_FULL
    assert ledger.usage("u") == 3
    assert ledger.total() == 3
    assert "u:t3" not in ledger.holders("u")


def test_acquiring_a_held_key_answers_held_and_keeps_the_holder() -> None:
    ledger = InMemoryLedger(node_limit=100)
    assert ledger.acquire("u", "u:t", "ws1", 3) is AcquireResult.ACQUIRED
    assert ledger.acquire("u", "u:t", "ws2", 3) is AcquireResult.HELD
    assert ledger.holders("u") == {"u:t": "ws1"}
    assert ledger.usage("u") == 1


def test_a_held_key_answers_held_even_when_the_user_is_full() -> None:
    ledger = InMemoryLedger(node_limit=100)
    assert ledger.acquire("u", "u:t", "ws1", 1) is AcquireResult.ACQUIRED
    assert ledger.acquire("u", "u:t", "ws2", 1) is AcquireResult.HELD


def test_the_node_limit_applies_across_users() -> None:
    ledger = InMemoryLedger(node_limit=3)
    assert ledger.acquire("a", "a:1", "ws1", 5) is AcquireResult.ACQUIRED
    assert ledger.acquire("a", "a:2", "ws2", 5) is AcquireResult.ACQUIRED
    assert ledger.acquire("b", "b:1", "ws3", 5) is AcquireResult.ACQUIRED
    assert ledger.acquire("c", "c:1", "ws4", 5) is AcquireResult.NODE_FULL
    assert ledger.acquire("a", "a:3", "ws5", 5) is AcquireResult.NODE_FULL
    assert ledger.total() == 3
    assert ledger.usage("c") == 0


def test_a_user_full_answer_comes_before_node_full() -> None:
    ledger = InMemoryLedger(node_limit=1)
    assert ledger.acquire("a", "a:1", "ws1", 1) is AcquireResult.ACQUIRED
    assert ledger.acquire("a", "a:2", "ws2", 1) is AcquireResult.USER_FULL


def test_a_release_by_the_holder_frees_the_slot() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    assert ledger.release("u", "u:t", "ws1") is True
    assert ledger.usage("u") == 0
    assert ledger.total() == 0
    assert ledger.holders("u") == {}
    assert ledger.acquire("u", "u:t", "ws2", 3) is AcquireResult.ACQUIRED


def test_a_release_by_another_holder_frees_nothing() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    assert ledger.release("u", "u:t", "ws-other") is False
    assert ledger.holders("u") == {"u:t": "ws1"}
    assert ledger.usage("u") == 1
    assert ledger.total() == 1


def test_a_release_under_another_key_frees_nothing() -> None:
    """The seed's leak: a manager cleaned up under another id than the one it was made with."""
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:thread_a", "ws1", 3)
    assert ledger.release("u", "u:thread_b", "ws1") is False
    assert ledger.release("other", "u:thread_a", "ws1") is False
    assert ledger.holders("u") == {"u:thread_a": "ws1"}
    assert ledger.total() == 1


def test_a_second_release_of_the_same_slot_frees_nothing() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    ledger.acquire("u", "u:t2", "ws2", 3)
    assert ledger.release("u", "u:t", "ws1") is True
    assert ledger.release("u", "u:t", "ws1") is False
    assert ledger.total() == 1


def test_a_transfer_hands_the_slot_to_the_new_holder() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    assert ledger.transfer("u", "u:t", "ws1", "ws2") is True
    assert ledger.holders("u") == {"u:t": "ws2"}
    assert ledger.usage("u") == 1
    assert ledger.total() == 1
    assert ledger.release("u", "u:t", "ws1") is False
    assert ledger.release("u", "u:t", "ws2") is True


def test_a_transfer_from_a_non_holder_changes_nothing() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    assert ledger.transfer("u", "u:t", "ws-other", "ws2") is False
    assert ledger.transfer("u", "u:missing", "ws1", "ws2") is False
    assert ledger.transfer("nobody", "u:t", "ws1", "ws2") is False
    assert ledger.holders("u") == {"u:t": "ws1"}


def test_a_renew_succeeds_only_for_the_holder() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    assert ledger.renew("u", "u:t", "ws1") is True
    assert ledger.renew("u", "u:t", "ws2") is False
    assert ledger.renew("u", "u:missing", "ws1") is False
    assert ledger.renew("nobody", "u:t", "ws1") is False
    assert ledger.holders("u") == {"u:t": "ws1"}


def test_releasing_a_user_frees_all_of_its_slots_and_fixes_the_total() -> None:
    ledger = InMemoryLedger(node_limit=10)
    for index in range(3):
        ledger.acquire("a", f"a:{index}", f"wsa{index}", 5)
    ledger.acquire("b", "b:1", "wsb", 5)
    assert ledger.release_user("a") == 3
    assert ledger.usage("a") == 0
    assert ledger.holders("a") == {}
    assert ledger.total() == 1
    assert ledger.usage("b") == 1
    assert ledger.release_user("a") == 0
    assert ledger.release_user("nobody") == 0
    assert ledger.total() == 1


def test_holders_is_a_copy_of_the_users_slots() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    holders = ledger.holders("u")
    holders["u:forged"] = "ws9"
    assert ledger.holders("u") == {"u:t": "ws1"}
    assert ledger.usage("u") == 1


def test_an_unknown_user_has_no_usage_and_no_holders() -> None:
    ledger = InMemoryLedger(node_limit=10)
    assert ledger.usage("nobody") == 0
    assert ledger.holders("nobody") == {}
    assert ledger.total() == 0


USERS = ("a", "b", "c")
KEYS = ("k1", "k2", "k3", "k4")
HOLDERS = ("ws1", "ws2", "ws3")
USER_LIMIT = 2
NODE_LIMIT = 4


class LedgerMachine(RuleBasedStateMachine):
    """InMemoryLedger against a dict of dicts, under random calls."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = InMemoryLedger(node_limit=NODE_LIMIT)
        self.model: dict[str, dict[str, str]] = {user: {} for user in USERS}

    def model_total(self) -> int:
        return sum(len(slots) for slots in self.model.values())

    @rule(
        user=st.sampled_from(USERS),
        key=st.sampled_from(KEYS),
        holder=st.sampled_from(HOLDERS),
        limit=st.integers(min_value=0, max_value=USER_LIMIT),
    )
    def acquire(self, user: str, key: str, holder: str, limit: int) -> None:
        slots = self.model[user]
        if key in slots:
            expected = AcquireResult.HELD
        elif len(slots) >= limit:
            expected = AcquireResult.USER_FULL
        elif self.model_total() >= NODE_LIMIT:
            expected = AcquireResult.NODE_FULL
        else:
            expected = AcquireResult.ACQUIRED
            slots[key] = holder
        assert self.ledger.acquire(user, key, holder, limit) is expected

    @rule(user=st.sampled_from(USERS), key=st.sampled_from(KEYS), holder=st.sampled_from(HOLDERS))
    def release(self, user: str, key: str, holder: str) -> None:
        slots = self.model[user]
        expected = slots.get(key) == holder
        if expected:
            del slots[key]
        assert self.ledger.release(user, key, holder) is expected

    @rule(
        user=st.sampled_from(USERS),
        key=st.sampled_from(KEYS),
        old=st.sampled_from(HOLDERS),
        new=st.sampled_from(HOLDERS),
    )
    def transfer(self, user: str, key: str, old: str, new: str) -> None:
        slots = self.model[user]
        expected = slots.get(key) == old
        if expected:
            slots[key] = new
        assert self.ledger.transfer(user, key, old, new) is expected

    @rule(user=st.sampled_from(USERS), key=st.sampled_from(KEYS), holder=st.sampled_from(HOLDERS))
    def renew(self, user: str, key: str, holder: str) -> None:
        assert self.ledger.renew(user, key, holder) is (self.model[user].get(key) == holder)

    @rule(user=st.sampled_from(USERS))
    def release_user(self, user: str) -> None:
        expected = len(self.model[user])
        self.model[user] = {}
        assert self.ledger.release_user(user) == expected

    @invariant()
    def matches_the_model(self) -> None:
        for user in USERS:
            assert self.ledger.holders(user) == self.model[user]
            assert self.ledger.usage(user) == len(self.model[user])

    @invariant()
    def no_user_exceeds_the_limit(self) -> None:
        for user in USERS:
            assert self.ledger.usage(user) <= USER_LIMIT

    @invariant()
    def the_total_stays_within_the_node_limit_and_sums_the_usages(self) -> None:
        total = self.ledger.total()
        assert 0 <= total <= NODE_LIMIT
        assert total == sum(self.ledger.usage(user) for user in USERS)
        assert total == self.model_total()


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_the_ledger_matches_a_simple_model_under_random_calls = LedgerMachine.TestCase


def test_a_refused_acquire_leaves_no_trace_of_the_user_in_the_ledger() -> None:
    ledger = InMemoryLedger(node_limit=1)
    assert ledger.acquire("a", "a:t1", "ws1", 1) is AcquireResult.ACQUIRED
    assert ledger.acquire("b", "b:t1", "ws2", 1) is AcquireResult.NODE_FULL
    assert ledger._slots.keys() == {"a"}
