"""Putting one camera's results back in sequence order.

Results and drop notices arrive in any order from many handlers. Each is
held until every earlier sequence number has been accounted for, for at most
``timeout`` seconds and ``window`` entries: then the missing numbers are
given up on (a gap) and later arrivals for them are counted as late. Memory
is bounded by the window. A new decoder run (new stream id) starts a new
sequence; messages of a retired stream are counted as late.
"""

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional

from vidpipe.stats import Tally

OK = "ok"
DROPPED = "dropped"
MISSING = "missing"


@dataclass
class Entry:
    seq: int
    status: str
    arrived: float
    reason: str = ""
    message: Any = None  # the wire.Message of a result
    count: int = 1  # for MISSING: how many consecutive numbers
    late: bool = False  # accounted for after it had been given up on


class CameraOrder:
    def __init__(self, camera: str, window: int, timeout: float) -> None:
        self.camera = camera
        self.window = window
        self.timeout = timeout
        self.stream: Optional[int] = None
        self.retired: Deque[int] = deque(maxlen=8)
        self.next: Optional[int] = None
        self.pending: Dict[int, Entry] = {}
        self.processed = 0
        self.dropped = Tally()
        self.missing = 0
        self.late = 0
        self.duplicate = 0
        self.eos_total: Optional[int] = None
        self.eos_at = 0.0
        self.eos_meta: Dict[str, Any] = {}
        self.streams = 0
        # numbers given up on, so that a late drop notice can still account for them
        self.given_up: "OrderedDict[int, None]" = OrderedDict()
        self.given_up_limit = max(1024, 8 * window)

    # ------------------------------------------------------------------ input

    def add(self, stream: int, entry: Entry) -> List[Entry]:
        """Take a result or drop notice; returns the entries now released in order."""
        released = self._switch(stream)
        if released is None:  # a retired stream
            self.late += 1
            return []
        if self.next is None:
            self.next = 0 if entry.seq < self.window else entry.seq
        if entry.seq < self.next:
            return released + self._late(entry)
        if entry.seq in self.pending:
            self.duplicate += 1
            return released
        self.pending[entry.seq] = entry
        return released + self._release(entry.arrived)

    def end(self, stream: int, total: int, meta: Dict[str, Any], now: float) -> List[Entry]:
        """The decoder's end of stream: ``total`` frames were read."""
        released = self._switch(stream)
        if released is None:
            return []
        self.eos_total = total
        self.eos_at = now
        self.eos_meta = meta
        if self.next is None:
            self.next = 0
        return released + self._release(now)

    def _late(self, entry: Entry) -> List[Entry]:
        """An entry for a number already passed: it resolves a gap if it was one."""
        if self.given_up.pop(entry.seq, 0) is None:
            self.missing -= 1
            entry.late = True
            if entry.status == OK:
                self.late += 1  # processed, but too late to be delivered in order
            else:
                self.dropped.add(entry.reason or "unknown")
            return [entry]
        if entry.status == OK:
            self.late += 1
        else:
            self.duplicate += 1
        return []

    def _gap(self, start: int, stop: int, now: float) -> Entry:
        """Give up on ``start`` .. ``stop - 1``."""
        count = stop - start
        self.missing += count
        if count <= self.given_up_limit:
            for seq in range(start, stop):
                self.given_up[seq] = None
            while len(self.given_up) > self.given_up_limit:
                self.given_up.popitem(last=False)
        return Entry(seq=start, status=MISSING, arrived=now, count=count)

    def _switch(self, stream: int) -> Optional[List[Entry]]:
        if stream == self.stream:
            return []
        if stream in self.retired:
            return None
        flushed: List[Entry] = []
        if self.stream is not None:
            flushed = self.flush()
            self.retired.append(self.stream)
        self.stream = stream
        self.streams += 1
        self.next = None
        self.eos_total = None
        self.given_up.clear()
        return flushed

    # ------------------------------------------------------------------ release

    def _release(self, now: float) -> List[Entry]:
        out: List[Entry] = []
        while self.next is not None:
            entry = self.pending.pop(self.next, None)
            if entry is not None:
                self._emit(entry, out)
                continue
            if not self._give_up(now):
                break
            target = self._first_pending()
            if target is None:  # only the end of stream is left to wait for
                target = self.eos_total if self.eos_total is not None else self.next
            if target <= self.next:
                break
            out.append(self._gap(self.next, target, now))
            self.next = target
        return out

    def _first_pending(self) -> Optional[int]:
        return min(self.pending) if self.pending else None

    def _give_up(self, now: float) -> bool:
        """Whether to stop waiting for ``self.next``."""
        if self.pending:
            if len(self.pending) >= self.window:
                return True
            oldest = min(e.arrived for e in self.pending.values())
            return now - oldest > self.timeout
        return (self.eos_total is not None and self.next is not None
                and self.next < self.eos_total and now - self.eos_at > self.timeout)

    def _emit(self, entry: Entry, out: List[Entry]) -> None:
        if entry.status == OK:
            self.processed += 1
        else:
            self.dropped.add(entry.reason or "unknown")
        self.next = entry.seq + 1
        out.append(entry)

    def expire(self, now: float) -> List[Entry]:
        """Release what waited too long; call it periodically."""
        return self._release(now)

    def flush(self) -> List[Entry]:
        """Release everything pending, in order, with gaps marked missing."""
        out: List[Entry] = []
        for seq in sorted(self.pending):
            if self.next is not None and seq > self.next:
                out.append(self._gap(self.next, seq, 0.0))
            self._emit(self.pending.pop(seq), out)
        if self.eos_total is not None and self.next is not None and self.next < self.eos_total:
            out.append(self._gap(self.next, self.eos_total, 0.0))
            self.next = self.eos_total
        return out

    @property
    def finished(self) -> bool:
        return (self.eos_total is not None and self.next is not None
                and self.next >= self.eos_total and not self.pending)

    def summary(self) -> Dict[str, Any]:
        return {"camera": self.camera, "processed": self.processed,
                "dropped": self.dropped.as_dict(), "missing": self.missing, "late": self.late,
                "duplicate": self.duplicate, "read": self.eos_total,
                "ended": self.finished}
