"""Server metrics through ``prometheus_client``, one registry per server.

Counters (``inc``), gauges (``set``) and histograms (``observe``) are created on first use
with the label names of that call (sorted) and the help text / buckets given to
``describe``. The exposition text comes from ``prometheus_client.generate_latest`` and is
served at ``GET /monitoring/prometheus/metrics``, the path TF Serving uses when its
``prometheus_config`` is enabled. ``counter`` / ``gauge`` / ``histogram`` read values back
(tests, the benchmark).
"""

from __future__ import annotations

import threading
from typing import Dict, Sequence, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Counters, gauges and histograms keyed by labels, in a private CollectorRegistry."""

    def __init__(self, prefix: str = "lstm_math_serving"):
        self.prefix = prefix
        self.registry = CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._metrics: Dict[str, object] = {}
        self._help: Dict[str, str] = {}
        self._buckets: Dict[str, Sequence[float]] = {}
        self._children: Dict[Tuple[str, Tuple[Tuple[str, str], ...]], object] = {}

    def describe(self, name: str, text: str, buckets: Sequence[float] | None = None) -> None:
        with self._lock:
            self._help[name] = text
            if buckets is not None:
                self._buckets[name] = tuple(buckets)

    def _child(self, kind, name: str, labels: Dict[str, str]):
        key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
        child = self._children.get(key)
        if child is not None:
            return child
        with self._lock:
            metric = self._metrics.get(name)
            if metric is None:
                kwargs = {}
                if kind is Histogram:
                    kwargs["buckets"] = self._buckets.get(name, LATENCY_BUCKETS)
                # prometheus_client appends _total to counters itself
                base = name[:-len("_total")] if kind is Counter and name.endswith("_total") \
                    else name
                metric = kind(f"{self.prefix}_{base}", self._help.get(name, name),
                              labelnames=sorted(labels), registry=self.registry, **kwargs)
                self._metrics[name] = metric
            child = metric.labels(**dict(key[1])) if labels else metric
            self._children[key] = child
        return child

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._child(Counter, name, labels).inc(amount)

    def set(self, name: str, value: float, **labels: str) -> None:
        self._child(Gauge, name, labels).set(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        self._child(Histogram, name, labels).observe(value)

    # -- reading back (tests, benchmark) -------------------------------------------------
    def _samples(self, name: str):
        metric = self._metrics.get(name)
        if metric is None:
            return []
        return [s for family in metric.collect() for s in family.samples]

    def counter(self, name: str, **labels: str) -> float:
        """Sum of a counter over all series whose labels include ``labels``."""
        want = {k: str(v) for k, v in labels.items()}
        return sum(s.value for s in self._samples(name) if s.name.endswith("_total")
                   and want.items() <= s.labels.items())

    def gauge(self, name: str, **labels: str) -> float | None:
        want = {k: str(v) for k, v in labels.items()}
        for s in self._samples(name):
            if s.labels == want:
                return s.value
        return None

    def histogram(self, name: str, **labels: str) -> Dict[str, float]:
        """``{"count", "sum", "max_bucket"}`` summed over the matching series."""
        want = {k: str(v) for k, v in labels.items()}
        count, total, max_le = 0.0, 0.0, 0.0
        previous: Dict[tuple, float] = {}
        for s in self._samples(name):
            rest = {k: v for k, v in s.labels.items() if k != "le"}
            if not want.items() <= rest.items():
                continue
            if s.name.endswith("_count"):
                count += s.value
            elif s.name.endswith("_sum"):
                total += s.value
            elif s.name.endswith("_bucket"):  # cumulative: a bucket that grew has values
                series = tuple(sorted(rest.items()))
                if s.value > previous.get(series, 0.0):
                    max_le = max(max_le, float(s.labels["le"]))
                previous[series] = s.value
        return {"count": int(count), "sum": total, "max_bucket": max_le}

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        return generate_latest(self.registry).decode("utf-8")
