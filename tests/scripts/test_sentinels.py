"""The Sentinel set the failover tests start: a start that cannot work says why at once."""

from __future__ import annotations

import socket
import time

import pytest
from _sentinels import SentinelSet
from _toolkit import HOST

pytestmark = pytest.mark.timeout(30)


def test_a_set_whose_master_port_is_taken_fails_at_once_naming_the_process_that_exited() -> None:
    sentinels = SentinelSet()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((HOST, sentinels.master_port))
        squatter.listen()
        started = time.monotonic()
        with pytest.raises(AssertionError, match=f"redis-server on {sentinels.master_port} exited"):
            sentinels.start()
    assert time.monotonic() - started < 5  # not the 10 s wait for an answer
    assert not sentinels.dir.exists()  # cleaned up
    assert all(proc.poll() is not None for proc in sentinels.procs.values())


def test_a_started_set_tells_each_sentinels_view_of_the_master() -> None:
    sentinels = SentinelSet().start()
    try:
        views = sentinels.views()
    finally:
        sentinels.cleanup()
    for port in sentinels.sentinel_ports:
        assert f"sentinel {port}: {{'ip': '{HOST}', 'port': {sentinels.master_port}," in views
    assert views.count("'num-slaves': 1, 'num-other-sentinels': 2") == 3
