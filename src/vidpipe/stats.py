"""Counters, rates and latency percentiles kept by every role."""

import time
from collections import Counter, deque
from typing import Deque, Dict, Optional, Tuple


class LatencyWindow:
    """The last ``size`` latency samples (ms) and their percentiles."""

    def __init__(self, size: int = 1024) -> None:
        self._samples: Deque[float] = deque(maxlen=size)

    def add(self, ms: float) -> None:
        self._samples.append(ms)

    def __len__(self) -> int:
        return len(self._samples)

    def percentile(self, pct: float) -> Optional[float]:
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        index = min(len(ordered) - 1, max(0, int(round(pct / 100.0 * (len(ordered) - 1)))))
        return ordered[index]


class RateMeter:
    """Events per second over a sliding interval of about ``span`` seconds."""

    def __init__(self, span: float = 5.0) -> None:
        self.span = span
        self._times: Deque[float] = deque()

    def tick(self, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.span:
            self._times.popleft()

    def rate(self, now: Optional[float] = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        elapsed = now - self._times[0]
        return (len(self._times) - 1) / elapsed if elapsed > 0 else 0.0


def often(count: int) -> bool:
    """Whether the ``count``-th occurrence of something is worth a log line:
    the 1st, 10th, 100th, 1000th, then every 10000th."""
    return count in (1, 10, 100, 1000) or count % 10000 == 0


class Tally(Counter):  # type: ignore[type-arg]
    """A ``Counter`` of reasons with a compact text form: ``no_capacity=3 stale=1``.

    Reasons that come from outside (a DROP notice's text, a stage's name)
    are counted with :meth:`add`, which keeps at most ``MAX_KEYS`` distinct
    keys: the rest count as ``other``, so a hostile sender cannot grow a
    metrics page without bound."""

    MAX_KEYS = 64

    def add(self, key: str, count: int = 1) -> int:
        """Count ``key`` (``other`` once the table is full); the new count."""
        if key not in self and len(self) >= self.MAX_KEYS:
            key = "other"
        self[key] += count
        return int(self[key])

    def text(self) -> str:
        return " ".join("{}={}".format(k, v) for k, v in sorted(self.items()) if v) or "0"

    def as_dict(self) -> Dict[str, int]:
        return {k: int(v) for k, v in sorted(self.items()) if v}


def fmt_ms(value: Optional[float]) -> str:
    return "-" if value is None else "{:.1f}".format(value)


LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """Cumulative counts of samples at or under each bound (seconds), the way a
    Prometheus histogram counts them; never reset while the process runs."""

    def __init__(self, bounds: Tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.count = 0
        self.sum = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.sum += seconds
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += 1

    def as_dict(self) -> Dict[str, object]:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "count": self.count,
                "sum": round(self.sum, 6)}


class Throttle:
    """Say a recurring problem at most once per ``period`` seconds per key:
    :meth:`due` is true for the first time and then once a period, with how
    many times it happened unsaid in between (for a log line that counts them)."""

    def __init__(self, period: float = 60.0) -> None:
        self.period = period
        self._last: Dict[str, float] = {}
        self._unsaid: Counter = Counter()

    def due(self, key: str, now: Optional[float] = None) -> Optional[int]:
        """``None`` to stay quiet; else the number of times not said since."""
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._unsaid[key] += 1
            return None
        if len(self._last) >= 256 and key not in self._last:  # keys come from a few call sites
            self._last.clear()
        self._last[key] = now
        return self._unsaid.pop(key, 0)
