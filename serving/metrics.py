"""Thread-safe counters and histograms rendered in the Prometheus text format.

Only the stdlib is used, so the model server needs no Prometheus client library. The text
is served at ``GET /monitoring/prometheus/metrics``, the path TF Serving uses when its
``prometheus_config`` is enabled.
"""

from __future__ import annotations

import bisect
import threading
from typing import Dict, Iterable, Sequence, Tuple

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

LabelKey = Tuple[Tuple[str, str], ...]


def _labels(labels: Dict[str, str]) -> LabelKey:
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def _fmt_labels(key: LabelKey, extra: Iterable[Tuple[str, str]] = ()) -> str:
    items = list(key) + list(extra)
    if not items:
        return ""
    body = ",".join('%s="%s"' % (k, v.replace("\\", "\\\\").replace('"', '\\"')
                                 .replace("\n", "\\n")) for k, v in items)
    return "{" + body + "}"


class _Histogram:
    __slots__ = ("buckets", "counts", "total", "count")

    def __init__(self, buckets: Sequence[float]):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


class Metrics:
    """Counters (``inc``), gauges (``set``) and histograms (``observe``) keyed by labels."""

    def __init__(self, prefix: str = "lstm_math_serving"):
        self.prefix = prefix
        self._lock = threading.Lock()
        self._counters: Dict[str, Dict[LabelKey, float]] = {}
        self._gauges: Dict[str, Dict[LabelKey, float]] = {}
        self._histograms: Dict[str, Dict[LabelKey, _Histogram]] = {}
        self._bucket_spec: Dict[str, Sequence[float]] = {}
        self._help: Dict[str, str] = {}

    def describe(self, name: str, text: str, buckets: Sequence[float] | None = None) -> None:
        with self._lock:
            self._help[name] = text
            if buckets is not None:
                self._bucket_spec[name] = tuple(buckets)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._gauges.setdefault(name, {})[_labels(labels)] = float(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            series = self._histograms.setdefault(name, {})
            hist = series.get(key)
            if hist is None:
                hist = series[key] = _Histogram(self._bucket_spec.get(name, LATENCY_BUCKETS))
            hist.observe(value)

    # -- reading back (tests, benchmark) -------------------------------------------------
    def counter(self, name: str, **labels: str) -> float:
        """Sum of a counter over all series whose labels include ``labels``."""
        want = set(_labels(labels))
        with self._lock:
            return sum(v for k, v in self._counters.get(name, {}).items() if want <= set(k))

    def gauge(self, name: str, **labels: str) -> float | None:
        with self._lock:
            return self._gauges.get(name, {}).get(_labels(labels))

    def histogram(self, name: str, **labels: str) -> Dict[str, float]:
        """``{"count", "sum", "max_bucket"}`` summed over the matching series."""
        want = set(_labels(labels))
        count, total, max_le = 0, 0.0, 0.0
        with self._lock:
            for key, hist in self._histograms.get(name, {}).items():
                if not want <= set(key):
                    continue
                count += hist.count
                total += hist.total
                for i, c in enumerate(hist.counts):
                    if c:
                        le = hist.buckets[i] if i < len(hist.buckets) else float("inf")
                        max_le = max(max_le, le)
        return {"count": count, "sum": total, "max_bucket": max_le}

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        out = []
        with self._lock:
            for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
                for name, series in sorted(table.items()):
                    full = f"{self.prefix}_{name}"
                    if name in self._help:
                        out.append(f"# HELP {full} {self._help[name]}")
                    out.append(f"# TYPE {full} {kind}")
                    for key, value in sorted(series.items()):
                        out.append(f"{full}{_fmt_labels(key)} {value:g}")
            for name, series in sorted(self._histograms.items()):
                full = f"{self.prefix}_{name}"
                if name in self._help:
                    out.append(f"# HELP {full} {self._help[name]}")
                out.append(f"# TYPE {full} histogram")
                for key, hist in sorted(series.items()):
                    cumulative = 0
                    for le, c in zip(list(hist.buckets) + [float("inf")], hist.counts):
                        cumulative += c
                        le_text = "+Inf" if le == float("inf") else f"{le:g}"
                        out.append(f"{full}_bucket{_fmt_labels(key, [('le', le_text)])} "
                                   f"{cumulative}")
                    out.append(f"{full}_sum{_fmt_labels(key)} {hist.total:.6g}")
                    out.append(f"{full}_count{_fmt_labels(key)} {hist.count}")
        return "\n".join(out) + "\n"
