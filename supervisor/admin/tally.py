"""Counters and histograms as plain numbers, read by Prometheus at scrape.

prometheus-client's ``Counter.inc`` and ``Histogram.observe`` cost four or
five Python calls and a lock each; a connection makes eight of them. Here
an event costs one dictionary update under one lock that the observer
holds for every table (:attr:`Tally.lock`), and the families are built
only when scraped, by :class:`Tally` as a collector of the registry. The
exposition is the same as prometheus-client's own: ``_total`` and
``_created`` samples for a counter, cumulative ``le`` buckets, ``_count``,
``_sum`` and ``_created`` for a histogram.

The tables are written on any thread, always under :attr:`Tally.lock`
(the caller takes it around its updates); they are read under it at scrape.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import cast

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = ["CounterTable", "HistogramTable", "Tally"]

Labels = tuple[str, ...]

_le_text = cast(Callable[[float], str], floatToGoString)  # a bucket's ``le``, as the library's


class CounterTable:
    """One counter family: a count per label values, every series created at 0."""

    __slots__ = ("counts", "created", "documentation", "labelnames", "name")

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], series: Iterable[Labels]
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        now = time.time()
        self.counts: dict[Labels, int] = {tuple(labels): 0 for labels in series}
        self.created: dict[Labels, float] = dict.fromkeys(self.counts, now)

    def add(self, labels: Labels, amount: int = 1) -> None:
        """Count ``amount`` more under ``labels`` (the caller holds the tally's lock)."""
        counts = self.counts
        if labels not in counts:
            self.created[labels] = time.time()
        counts[labels] = counts.get(labels, 0) + amount

    def family(self) -> CounterMetricFamily:
        """The family as scraped (the caller holds the tally's lock)."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, count in self.counts.items():
            family.add_metric(labels, count, created=self.created[labels])
        return family


class HistogramTable:
    """One histogram family: per label values, a count per bucket and the sum observed."""

    __slots__ = ("bounds", "created", "documentation", "labelnames", "name", "series")

    def __init__(
        self,
        name: str,
        documentation: str,
        bounds: Sequence[float],
        labelnames: Sequence[str] = (),
        series: Iterable[Labels] = ((),),
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.bounds = tuple(sorted(bounds))
        self.series: dict[Labels, tuple[list[int], list[float]]] = {}
        self.created: dict[Labels, float] = {}
        for labels in series:
            self._new(tuple(labels))

    def _new(self, labels: Labels) -> tuple[list[int], list[float]]:
        entry = self.series[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        self.created[labels] = time.time()
        return entry

    def observe(self, labels: Labels, value: float) -> None:
        """Count ``value`` in its bucket (the caller holds the tally's lock)."""
        entry = self.series.get(labels) or self._new(labels)
        entry[0][bisect.bisect_left(self.bounds, value)] += 1  # the first bound >= value
        entry[1][0] += value

    def family(self) -> HistogramMetricFamily:
        """The family as scraped, buckets cumulative (the caller holds the tally's lock)."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [_le_text(bound) for bound in self.bounds] + ["+Inf"]
        for labels, (counts, total) in self.series.items():
            cumulative, running = [], 0
            for edge, count in zip(edges, counts, strict=True):
                running += count
                cumulative.append((edge, float(running)))
            family.add_metric(list(labels), cumulative, total[0])
            named = dict(zip(self.labelnames, labels, strict=True))
            family.samples.append(Sample(f"{self.name}_created", named, self.created[labels]))
        return family


class Tally:
    """The tables of one observer, one lock for all, and the collector that reads them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._tables: list[CounterTable | HistogramTable] = []

    def counter(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        series: Iterable[Labels] = ((),),
    ) -> CounterTable:
        """A new counter table, scraped with the others (``name`` without ``_total``)."""
        table = CounterTable(name, documentation, labelnames, series)
        self._tables.append(table)
        return table

    def histogram(
        self,
        name: str,
        documentation: str,
        bounds: Sequence[float],
        labelnames: Sequence[str] = (),
        series: Iterable[Labels] = ((),),
    ) -> HistogramTable:
        """A new histogram table, scraped with the others."""
        table = HistogramTable(name, documentation, bounds, labelnames, series)
        self._tables.append(table)
        return table

    def collect(self) -> Iterator[Metric]:
        """The registry's scrape: every table's family, read under the lock."""
        with self.lock:
            families = [table.family() for table in self._tables]
        yield from families
