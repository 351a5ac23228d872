"""Crashes, hangs and timeouts: restart or reap, abandon, and never lose a slot."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pykka
import pytest

from actors.clock import ManualClock
from actors.codes import ServerCloseCode
from actors.context import UserExecutionContext
from actors.manager import ManagerActor
from actors.ports import Handle, Handler, QueuePort
from actors.tree import SupervisionTree, echo_handler
from supervisor.admin.metrics import MetricsObserver
from tests.helpers import connect, handle_of, make_config, wait_for_value, wait_until


def crash_on(word: str) -> Callable[[], Handler]:
    """A handler factory whose handler raises on ``word`` and echoes anything else."""

    def handler(context: UserExecutionContext, text: str, send: Callable[[str], None]) -> None:
        if text == word:
            raise RuntimeError(f"handler crashed on {word!r}")
        echo_handler(context, text, send)

    return lambda: handler


@pytest.fixture
def crashing_tree(metrics: MetricsObserver, clock: ManualClock) -> Iterator[SupervisionTree]:
    config = make_config({"restart": {"max_restarts": 2, "within_seconds": 10.0}})
    tree = SupervisionTree(
        config, clock=clock, observer=metrics, tick=False, handler_factory=crash_on("boom")
    )
    with tree:
        yield tree


def crashed_and_restarted(
    tree: SupervisionTree, metrics: MetricsObserver
) -> tuple[Handle, QueuePort]:
    """A connection of alice whose manager crashed once and was restarted; it answers again."""
    admission, port, _ = connect(tree, "alice")
    handle = handle_of(admission)
    handle.deliver("boom")
    wait_until(lambda: metrics.value("ws_supervisor_restarts_total") == 1, what="restart")
    handle.deliver("still here")
    assert port.frames.get(timeout=2) == "still here"
    return handle, port


def test_a_crashed_manager_is_restarted_on_the_same_connection(
    crashing_tree: SupervisionTree, metrics: MetricsObserver
) -> None:
    _, port = crashed_and_restarted(crashing_tree, metrics)
    assert not port.is_closed
    (user,) = crashing_tree.snapshot()["users"]
    assert user["restarts"] == 1 and user["managers"][0]["restarts"] == 1
    assert crashing_tree.ledger.usage("alice") == 1


def test_a_connection_that_crashed_leaves_its_manager_stopped_not_pooled(
    crashing_tree: SupervisionTree, metrics: MetricsObserver
) -> None:
    handle, _ = crashed_and_restarted(crashing_tree, metrics)
    handle.closed()
    wait_until(lambda: crashing_tree.ledger.usage("alice") == 0, what="slot freed")
    wait_until(lambda: not pykka.ActorRegistry.get_by_class(ManagerActor), what="manager stopped")
    assert crashing_tree.snapshot()["users"][0]["pool_idle"] == 0
    connect(crashing_tree, "alice")
    assert metrics.value("ws_supervisor_pool_reuses_total") == 0


def test_a_manager_crashing_beyond_the_restart_intensity_is_reaped_with_1011(
    crashing_tree: SupervisionTree, metrics: MetricsObserver
) -> None:
    admission, port, _ = connect(crashing_tree, "alice")
    handle = handle_of(admission)
    for expected in (1, 2):
        handle.deliver("boom")
        wait_for_value(lambda: metrics.value("ws_supervisor_restarts_total"), expected)
    handle.deliver("boom")
    assert port.wait_closed(3) == ServerCloseCode.INTERNAL_ERROR
    wait_until(lambda: crashing_tree.ledger.usage("alice") == 0, what="slot freed")
    assert metrics.value("ws_supervisor_cleanups_total", {"reason": "crash", "result": "ok"}) == 1


def test_restarts_older_than_the_intensity_window_are_forgotten(
    crashing_tree: SupervisionTree, metrics: MetricsObserver, clock: ManualClock
) -> None:
    admission, port, _ = connect(crashing_tree, "alice")
    handle = handle_of(admission)
    for expected in (1, 2, 3, 4):
        handle.deliver("boom")
        wait_for_value(lambda: metrics.value("ws_supervisor_restarts_total"), expected)
        clock.advance(6.0)  # two crashes never fall in one 10 s window
    assert not port.is_closed


def test_a_manager_that_hangs_is_abandoned_within_the_cleanup_timeout_and_its_slot_freed(
    metrics: MetricsObserver, clock: ManualClock
) -> None:
    release = threading.Event()
    entered = threading.Event()

    def hang(context: UserExecutionContext, text: str, send: Callable[[str], None]) -> None:
        entered.set()
        release.wait(30)

    tree = SupervisionTree(
        make_config(), clock=clock, observer=metrics, tick=False, handler_factory=lambda: hang
    )
    with tree:
        admission, _port, _ = connect(tree, "alice")
        handle_of(admission).deliver("hang")
        assert entered.wait(2)
        handle_of(admission).closed()
        wait_until(lambda: tree.ledger.usage("alice") == 0, what="slot freed though hung")
        clock.advance(tree.settings.cleanup.emergency_cleanup_timeout)
        tree.tick()
        wait_until(lambda: metrics.value("ws_supervisor_abandoned_actors_total") == 1)
        release.set()


def test_an_idle_connection_is_reaped_with_4003_on_the_tick_after_the_idle_timeout(
    metrics: MetricsObserver, clock: ManualClock
) -> None:
    config = make_config({"timeouts": {"idle_timeout": 60.0}})
    with SupervisionTree(config, clock=clock, observer=metrics, tick=False) as tree:
        _admission, port, _ = connect(tree, "alice")
        clock.advance(60.0)
        tree.tick()
        tree.snapshot()  # the tick has reached the supervisor once this answers
        assert not port.is_closed  # exactly at the timeout: still live
        clock.advance(0.5)
        tree.tick()
        assert port.wait_closed(2) == ServerCloseCode.IDLE_TIMEOUT
        wait_until(lambda: tree.ledger.usage("alice") == 0)
        assert (
            metrics.value("ws_supervisor_cleanups_total", {"reason": "timeout", "result": "ok"})
            == 1
        )


def test_the_root_ticks_only_the_supervisors_with_work_due(
    metrics: MetricsObserver, clock: ManualClock
) -> None:
    timeouts = {"idle_timeout": 60.0, "ping_interval": 20.0, "ping_timeout": 20.0}
    config = make_config({"timeouts": timeouts})  # sweeps due at least every 40 s
    with SupervisionTree(config, clock=clock, observer=metrics, tick=False) as tree:
        ports = [connect(tree, user)[1] for user in ("ann", "bob", "cyd")]

        def ticked() -> int:
            tree.tick()
            return int(tree.snapshot()["root"]["ticked_last"])

        assert ticked() == 3  # new supervisors: due at once; each sweeps, then says when next
        wait_until(lambda: ticked() == 0, what="no supervisor ticked before its work is due")
        clock.advance(30.0)
        assert ticked() == 0
        assert not any(port.is_closed for port in ports)
        clock.advance(30.5)  # past the idle timeout
        assert ticked() == 3
        assert [port.wait_closed(2) for port in ports] == [ServerCloseCode.IDLE_TIMEOUT] * 3


def test_a_connection_missing_keepalive_is_reaped_once_past_interval_plus_timeout(
    clock: ManualClock,
) -> None:
    with SupervisionTree(make_config(), clock=clock, tick=False) as tree:
        admission, port, _ = connect(tree, "alice")
        handle_of(admission).heartbeat()
        deadline = tree.settings.timeouts.ping_interval + tree.settings.timeouts.ping_timeout
        clock.advance(deadline + 0.1)
        tree.tick()
        assert port.wait_closed(2) == ServerCloseCode.IDLE_TIMEOUT


def test_a_close_that_is_never_confirmed_is_abandoned_after_the_cleanup_timeout(
    metrics: MetricsObserver, clock: ManualClock
) -> None:
    config = make_config({"timeouts": {"idle_timeout": 5.0}})
    with SupervisionTree(config, clock=clock, observer=metrics, tick=False) as tree:
        _, port, _ = connect(tree, "alice", confirm_close=False)
        clock.advance(6.0)
        tree.tick()
        assert port.wait_closed(2) == ServerCloseCode.IDLE_TIMEOUT
        wait_until(lambda: tree.ledger.usage("alice") == 0)
        clock.advance(config.cleanup.emergency_cleanup_timeout)
        tree.tick()
        wait_until(lambda: tree.snapshot()["users"][0]["managers"] == [])
        assert metrics.value("ws_supervisor_abandoned_actors_total") == 1
        assert (
            metrics.value(
                "ws_supervisor_cleanups_total", {"reason": "timeout", "result": "abandoned"}
            )
            == 1
        )


def test_a_crashed_user_supervisor_closes_its_connections_with_1012_and_frees_every_slot(
    metrics: MetricsObserver, clock: ManualClock
) -> None:
    with SupervisionTree(make_config(), clock=clock, observer=metrics, tick=False) as tree:
        ports = [connect(tree, "alice")[1] for _ in range(3)]
        _, bob_port, _ = connect(tree, "bob")
        assert tree.crash_user_supervisor("alice")
        assert [port.wait_closed(3) for port in ports] == [ServerCloseCode.SERVICE_RESTART] * 3
        wait_until(lambda: tree.ledger.usage("alice") == 0, what="slots freed")
        again, _port, _ = connect(tree, "alice")
        assert again.admitted
        assert tree.ledger.usage("alice") == 1
        assert not bob_port.is_closed and tree.ledger.usage("bob") == 1
        assert tree.snapshot()["root"]["supervisor_restarts"] == 1
        assert metrics.value("ws_supervisor_thread_id_mismatches_total") == 0


def test_frames_sent_right_behind_a_crashing_one_are_replayed_to_the_restarted_manager(
    crashing_tree: SupervisionTree, metrics: MetricsObserver
) -> None:
    admission, port, _ = connect(crashing_tree, "alice")
    handle = handle_of(admission)
    handle.deliver("boom")
    for n in range(20):
        handle.deliver(f"frame {n}")
    assert [port.frames.get(timeout=2) for _ in range(20)] == [f"frame {n}" for n in range(20)]
    assert metrics.value("ws_supervisor_restarts_total") == 1
