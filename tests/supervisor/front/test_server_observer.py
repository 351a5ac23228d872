"""What the front reports to its observer: every handshake's answer, its refusals, every close.

A real tree and a real :class:`WebSocketFront` on a loopback port, real
websockets clients; the observer is the daemon's own pair, the metrics and
the readiness policy behind one fan-out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest

from actors.clock import SystemClock
from supervisor.admin.fanout import FanoutObserver
from supervisor.admin.metrics import MetricsObserver
from supervisor.admin.readiness import Readiness
from supervisor.front.auth import Authenticator
from supervisor.front.closing import SHED_GRACE
from tests.hostile import frame, open_raw
from tests.integration.harness import loopback_config, open_ws, wait_for
from tests.supervisor.front.test_server import refusal, running_front, url

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

HANDSHAKES = "ws_supervisor_handshakes_total"
FAILURES = "ws_supervisor_admission_failures_total"
CLOSES = "ws_supervisor_closes_total"


class Observed:
    """The daemon's observers of the front: metrics and readiness, behind one fan-out."""

    def __init__(self) -> None:
        self.metrics = MetricsObserver()
        self.readiness = Readiness(SystemClock(), min_samples=1)
        self.fanout = FanoutObserver(self.metrics, self.readiness)

    def value(self, name: str, labels: Mapping[str, str]) -> float:
        return self.metrics.value(name, labels)


async def test_every_handshake_s_answer_is_counted_under_its_status() -> None:
    seen = Observed()
    async with running_front(front_observer=seen.fanout) as front:
        ws = await open_ws(url(front))
        assert (await refusal(url(front, "/elsewhere"))).status_code == 404
        assert (await refusal(url(front, query=""))).status_code == 401
        assert (await refusal(url(front, query="user_id=a&thread_id=no:no"))).status_code == 400
        await ws.close()
        await wait_for(lambda: seen.value(CLOSES, {"code": "1000"}) == 1, what="close counted")
    counts = {s: seen.value(HANDSHAKES, {"status": s}) for s in ("101", "404", "401", "400")}
    assert counts == {"101": 1, "404": 1, "401": 1, "400": 1}
    assert seen.readiness.admission_counts() == (0, 0)  # none of them a failure of the service
    assert sum(seen.metrics.value(FAILURES, {"outcome": o}) for o in ("timeout", "node_cap")) == 0


async def test_a_handshake_that_raises_is_a_500_and_an_internal_error_failure() -> None:
    class BrokenAuthenticator(Authenticator):
        def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str:
            raise RuntimeError("a bug in authentication")

    seen = Observed()
    broken = BrokenAuthenticator(loopback_config().auth)  # the ci profile's query auth
    async with running_front(front_observer=seen.fanout, auth=broken) as front:
        assert (await refusal(url(front))).status_code == 500
    assert seen.value(HANDSHAKES, {"status": "500"}) == 1
    assert seen.value(FAILURES, {"outcome": "internal_error"}) == 1
    assert seen.readiness.admission_counts() == (0, 1)
    assert [t.id for t in seen.readiness.triggers()] == ["success_rate"]


async def test_a_user_over_their_own_quota_gets_429_and_no_failure_is_counted() -> None:
    seen = Observed()
    async with running_front(front_observer=seen.fanout) as front:
        clients = [await open_ws(url(front)) for _ in range(5)]  # the ci quota
        assert (await refusal(url(front))).status_code == 429
        for ws in clients:
            await ws.close()
    assert seen.value(HANDSHAKES, {"status": "429"}) == 1
    assert all(seen.value(FAILURES, {"outcome": o}) == 0 for o in ("timeout", "node_cap"))
    assert seen.readiness.admission_counts() == (0, 0)


async def test_503s_at_the_node_cap_and_at_emergency_are_counted_by_outcome() -> None:
    seen = Observed()
    limits = {"quota": {"node_max_managers": 10, "max_managers_per_user": 20}}
    async with running_front(limits, front_observer=seen.fanout) as front:
        alice = [await open_ws(url(front)) for _ in range(9)]  # 9 of 10: the node at emergency
        refused = await refusal(url(front, query="user_id=bob"))  # a new user is refused
        assert (refused.status_code, refused.body.decode().strip()) == (503, "node_emergency")
        alice.append(await open_ws(url(front)))  # a known user still gets the last slot
        full = await refusal(url(front))
        assert (full.status_code, full.body.decode().strip()) == (503, "node_full")
        for ws in alice:
            await ws.close()
    assert seen.value(HANDSHAKES, {"status": "503"}) == 2
    assert seen.value(FAILURES, {"outcome": "emergency"}) == 1
    assert seen.value(FAILURES, {"outcome": "node_cap"}) == 1


async def test_every_admitted_connection_s_close_is_counted_under_its_code() -> None:
    seen = Observed()
    async with running_front(front_observer=seen.fanout) as front:
        normal = await open_ws(url(front))
        await normal.close()
        own = await open_ws(url(front))
        await own.close(code=4100, reason="the peer's own code")
        dropped = await open_ws(url(front))
        dropped.transport.abort()  # no close frame
        first = await open_ws(url(front, query="user_id=carol&thread_id=thread_t1"))
        await open_ws(url(front, query="user_id=carol&thread_id=thread_t1"))  # supersedes it
        await first.wait_closed()
        await wait_for(lambda: seen.value(CLOSES, {"code": "4001"}) == 1, what="4001 counted")
        await wait_for(lambda: seen.value(CLOSES, {"code": "1006"}) == 1, what="1006 counted")
    assert seen.value(CLOSES, {"code": "1000"}) == 1
    assert seen.value(CLOSES, {"code": "other"}) == 1
    assert seen.value(CLOSES, {"code": "1001"}) == 1  # the superseding one, at the stop


async def test_with_the_mismatch_fault_on_a_close_is_reported_under_a_foreign_key() -> None:
    tree_metrics = MetricsObserver()
    faults = {"faults": {"close_under_foreign_id": True}}
    async with running_front(faults, observer=tree_metrics) as front:
        ws = await open_ws(url(front))
        await ws.close()
        await wait_for(
            lambda: tree_metrics.value("ws_supervisor_thread_id_mismatches_total") == 1,
            what="the mismatch counted",
        )
        assert front.tree.ledger.usage("alice") == 1  # the seed's leak: the slot stays held


async def test_a_shed_connection_is_counted_under_its_code_though_the_peer_never_answers() -> None:
    seen = Observed()
    limits = {"limits": {"messages_per_second": 1.0, "message_burst": 2}}
    async with running_front(limits, front_observer=seen.fanout) as front:
        _reader, writer = await open_raw(front.port, "mallory")
        writer.write(frame(0x1, b'{"type": "ping"}') * 10)  # past the burst; never reads again
        await wait_for(
            lambda: seen.value(CLOSES, {"code": "1008"}) == 1, SHED_GRACE + 5, "1008 counted"
        )
        writer.close()
    assert seen.value(CLOSES, {"code": "1006"}) == 0


async def test_a_peer_reaped_by_the_keepalive_is_counted_and_logged_under_4003(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Observed()
    quick = {"timeouts": {"ping_interval": 0.3, "ping_timeout": 0.3}}
    caplog.set_level(logging.INFO, logger="supervisor.access")
    async with running_front(quick, front_observer=seen.fanout) as front:
        _reader, writer = await open_raw(front.port, "mallory")  # never answers a ping
        await wait_for(lambda: seen.value(CLOSES, {"code": "4003"}) == 1, 10, "4003 counted")
        writer.close()
    assert seen.value(CLOSES, {"code": "1006"}) == 0
    ended = [r.getMessage() for r in caplog.records if r.name == "supervisor.access"]
    assert len(ended) == 1 and " code=4003 by=server " in ended[0], ended
