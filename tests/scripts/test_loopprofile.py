"""``scripts/loopprofile.py``: a profile's functions per connection, and what supervision adds."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.helpers import import_script

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def loopprofile(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return import_script(monkeypatch, "loopprofile")


def test_a_function_is_keyed_alike_from_any_checkout_or_virtual_environment(
    loopprofile: ModuleType,
) -> None:
    key = loopprofile.function_key
    assert key("/a/.venv/lib/python3.11/site-packages/websockets/protocol.py", 162, "state") == (
        "websockets/protocol.py:162:state"
    )
    assert key("/work/one/actors/_runtime/mailbox.py", 68, "tell_here") == key(
        "/work/two/actors/_runtime/mailbox.py", 68, "tell_here"
    )
    assert key("~", 0, "<built-in method len>") == "~:0:<built-in method len>"


def test_calls_and_own_time_are_divided_by_the_connections_and_merged_by_key(
    loopprofile: ModuleType,
) -> None:
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, dict[str, int]]] = {
        ("/x/actors/tree.py", 10, "admit"): (4, 40, 0.004, 0.01, {}),
        ("/y/actors/tree.py", 10, "admit"): (4, 60, 0.006, 0.01, {}),
        ("~", 0, "<built-in method len>"): (20, 20, 0.001, 0.001, {}),
    }
    rows = loopprofile.per_connection(stats, 10)
    assert rows["actors/tree.py:10:admit"] == pytest.approx((10.0, 0.001))
    assert rows["~:0:<built-in method len>"] == pytest.approx((2.0, 0.0001))


def test_the_differences_rank_what_supervision_adds_first_and_leave_out_what_is_equal(
    loopprofile: ModuleType,
) -> None:
    bare = {"a": (3.0, 0.0), "b": (5.0, 0.0), "same": (1.0, 0.0)}
    supervised = {"a": (2.0, 0.0), "b": (9.0, 0.0), "same": (1.0, 0.0), "ours": (7.0, 0.0)}
    assert loopprofile.differences(bare, supervised) == [(7.0, "ours"), (4.0, "b"), (-1.0, "a")]
