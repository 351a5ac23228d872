"""Plain-number counters and histograms, scraped as prometheus-client's own."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from supervisor.admin.tally import Tally

BOUNDS = (0.001, 0.01, 0.5, 1.0, 30.0)


def _without_created(text: bytes) -> list[str]:
    """The exposition's lines, sorted, with every ``_created`` value blanked."""
    lines = []
    for line in text.decode().splitlines():
        name = line.split("{")[0].split(" ")[0]
        lines.append(line.rsplit(" ", 1)[0] + " T" if name.endswith("_created") else line)
    return sorted(lines)


def test_a_tally_is_scraped_exactly_as_prometheus_clients_own_metrics() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tally = Tally()
    counter = tally.counter("jobs", "Jobs done.", ["kind"], [("a",), ("b",)])
    histogram = tally.histogram("wait_seconds", "Waits.", BOUNDS, ["kind"], [("a",)])
    plain = tally.histogram("lag_seconds", "Lags.", BOUNDS)
    ours.register(tally)
    their_counter = Counter("jobs", "Jobs done.", ["kind"], registry=theirs)
    their_histogram = Histogram("wait_seconds", "Waits.", ["kind"], buckets=BOUNDS, registry=theirs)
    their_plain = Histogram("lag_seconds", "Lags.", buckets=BOUNDS, registry=theirs)
    their_counter.labels("a"), their_counter.labels("b"), their_histogram.labels("a")
    for value in (0.0005, 0.001, 0.2, 0.5, 2.0, 31.0):
        with tally.lock:
            counter.add(("a",))
            histogram.observe(("a",), value)
            histogram.observe(("c",), value * 2)
            plain.observe((), value)
        their_counter.labels("a").inc()
        their_histogram.labels("a").observe(value)
        their_histogram.labels("c").observe(value * 2)
        their_plain.observe(value)
    assert _without_created(generate_latest(ours)) == _without_created(generate_latest(theirs))


def test_a_counter_shows_every_series_at_zero_before_its_first_event() -> None:
    registry, tally = CollectorRegistry(), Tally()
    tally.counter("closes", "Closes.", ["code"], [("1000",), ("1001",)])
    registry.register(tally)
    assert registry.get_sample_value("closes_total", {"code": "1000"}) == 0.0
    assert registry.get_sample_value("closes_total", {"code": "1001"}) == 0.0
    assert registry.get_sample_value("closes_created", {"code": "1001"}) is not None


def test_a_label_value_not_listed_gets_a_series_of_its_own_at_its_first_event() -> None:
    registry, tally = CollectorRegistry(), Tally()
    counter = tally.counter("closes", "Closes.", ["code"], [("1000",)])
    registry.register(tally)
    with tally.lock:
        counter.add(("4000",), 3)
    assert registry.get_sample_value("closes_total", {"code": "4000"}) == 3.0
    assert registry.get_sample_value("closes_created", {"code": "4000"}) is not None


def test_a_value_on_a_bucket_bound_counts_in_that_bucket() -> None:
    registry, tally = CollectorRegistry(), Tally()
    histogram = tally.histogram("wait_seconds", "Waits.", BOUNDS)
    registry.register(tally)
    with tally.lock:
        histogram.observe((), 0.5)
    assert registry.get_sample_value("wait_seconds_bucket", {"le": "0.01"}) == 0.0
    assert registry.get_sample_value("wait_seconds_bucket", {"le": "0.5"}) == 1.0
    assert registry.get_sample_value("wait_seconds_bucket", {"le": "+Inf"}) == 1.0
    assert registry.get_sample_value("wait_seconds_sum") == 0.5


def test_counts_from_many_threads_at_once_are_exact() -> None:
    registry, tally = CollectorRegistry(), Tally()
    counter = tally.counter("jobs", "Jobs done.")
    histogram = tally.histogram("wait_seconds", "Waits.", BOUNDS)
    registry.register(tally)
    start = threading.Barrier(8)

    def count() -> None:
        start.wait()
        for _ in range(20_000):
            with tally.lock:
                counter.add(())
                histogram.observe((), 0.002)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert registry.get_sample_value("jobs_total") == 160_000.0
    assert registry.get_sample_value("wait_seconds_count") == 160_000.0
    assert registry.get_sample_value("wait_seconds_bucket", {"le": "0.01"}) == 160_000.0
