"""A bounded, crash-safe on-disk queue for what a broker output must not lose.

Records (an event, a state update, a result) are appended to segment files
in a directory of their own and removed only when the broker acknowledged
them (:meth:`Spool.ack`), so they survive a broker that is away, a
collector restart and a reboot, and are handed out again in order.

On disk: ``SSSSSSSS.seg`` segment files (sequence-numbered, rolled at
``segment_bytes``), each a run of records ``header + payload``; the header
holds a magic, the record's kind, its sequence number, the time it was
spooled, the payload's length and a CRC-32 of header and payload. ``acked``
holds the highest sequence number below which everything is done (acked or
dropped), written atomically. Opening a spool reads the segments back; a
record cut short or corrupted (a crash mid-write, a disk error) ends its
segment's readable part and is counted as ``torn``.

Durability (the fsync policy): an event is fsynced before :meth:`append`
returns; results and state are fsynced at most ``sync_interval_s`` later
(a crash may lose the last second of those, never an event). Acks are
persisted at most ``sync_interval_s`` later (the writer calls
:meth:`Spool.tick` regularly, so this holds when nothing else happens): after
a crash a few records may be handed out twice, which at-least-once delivery
allows (each carries its own id).

Bound: the segment files on disk (live and dead records) stay under
``max_bytes``. A record that does not fit first gets the dead space back (a
segment rewritten without its done records); then the oldest *results*,
*state* updates and only last *events* are dropped (counted by kind) until
the live records fit with half a segment to spare, and their space is given
back a segment at a time. A write cut short (a full file system) is undone,
so the offsets of later records stay right.
"""

import errno
import os
import struct
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple

from vidpipe import safefile
from vidpipe.stats import Tally

EVENT, STATE, RESULT = 1, 2, 3
KINDS = {EVENT: "event", STATE: "state", RESULT: "result"}
#: which kind goes first when the spool is full
DROP_ORDER = (RESULT, STATE, EVENT)
_HEADER = struct.Struct("<4sBQqII")  # magic, kind, seq, spooled at (ns), length, crc32
HEADER_SIZE = _HEADER.size
MAGIC = b"VPSP"
MAX_RECORD = 16 * 1024 * 1024
ACKED = "acked"


class SpoolError(Exception):
    """The spool cannot take or give back records (a disk error, no room)."""


class SpoolFull(SpoolError):
    """No room even after dropping every less precious record."""

    def __init__(self, kind: str) -> None:
        super().__init__("spool full of records as precious as this {}".format(kind))
        self.kind = kind


@dataclass
class Record:
    seq: int
    kind: int
    spooled_ns: int
    payload: bytes


@dataclass
class _Entry:  # where a live record is
    segment: int
    offset: int
    kind: int
    size: int
    spooled_ns: int


class Spool:
    def __init__(self, directory: str, max_bytes: int, segment_bytes: int = 1 << 20,
                 sync_interval_s: float = 1.0) -> None:
        if max_bytes < 4 * _HEADER.size:
            raise SpoolError("spool limit {} bytes is too small".format(max_bytes))
        self.directory = directory
        self.max_bytes = max_bytes
        # 8 segments or more: a full spool makes room half a segment at a time
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 8))
        self.sync_interval = sync_interval_s
        self.dropped = Tally()  # by kind name
        self._dropped_kind = RESULT
        self.torn = 0
        self._lock = threading.Lock()
        self._live: "OrderedDict[int, _Entry]" = OrderedDict()  # seq -> entry, in order
        self._seg_live: Dict[int, List[int]] = {}  # segment -> [live records, their bytes]
        self._bytes = 0  # live records
        self._seg_size: Dict[int, int] = {}  # segment -> bytes of its file
        self._done_above: set = set()  # done seqs above the watermark
        os.makedirs(directory, mode=0o750, exist_ok=True)
        self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        self._acked = self._read_acked()
        self._saved_acked = self._acked
        self._next = self._acked + 1
        self._recover()
        self._segment = max(self._segments(), default=0) + 1
        self._file: Optional[int] = None
        self._file_size = 0
        self._dirty = False
        self._last_sync = time.monotonic()

    # ------------------------------------------------------------------ files

    def _path(self, segment: int) -> str:
        return os.path.join(self.directory, "{:08d}.seg".format(segment))

    def _segments(self) -> List[int]:
        out = []
        for name in os.listdir(self.directory):
            if name.endswith(".seg") and name[:-4].isdigit() and len(name) == 12:
                out.append(int(name[:-4]))
        return sorted(out)

    def _read_acked(self) -> int:
        try:
            text = safefile.read_plain(os.path.join(self.directory, ACKED), limit=64)
        except FileNotFoundError:
            return 0
        try:
            return max(0, int(text.strip() or b"0"))
        except ValueError:
            return 0  # unreadable: everything is handed out again (at least once)

    def _recover(self) -> None:
        for name in os.listdir(self.directory):
            if name.endswith(".seg.tmp"):  # a compaction cut short: the original stands
                os.unlink(os.path.join(self.directory, name))
        found: List[Tuple[int, _Entry]] = []
        for segment in self._segments():
            live = [0, 0]
            for entry, seq in self._scan(segment):
                self._next = max(self._next, seq + 1)
                if seq <= self._acked:
                    continue
                found.append((seq, entry))
                live[0] += 1
                live[1] += entry.size
            if live[0]:
                self._seg_live[segment] = live
                self._seg_size[segment] = os.stat(self._path(segment)).st_size
            else:
                self._unlink(segment)
        for seq, entry in sorted(found, key=lambda item: item[0]):  # compaction moves them
            self._live[seq] = entry
            self._bytes += entry.size

    def _open(self, segment: int) -> BinaryIO:
        # our own plain file, no link followed: the directory is the service's
        return os.fdopen(safefile.open_plain(self._path(segment), owner=os.geteuid()), "rb")

    def _scan(self, segment: int) -> Iterator[Tuple[_Entry, int]]:
        with self._open(segment) as handle:
            data = handle.read()
        offset = 0
        while offset + _HEADER.size <= len(data):
            magic, kind, seq, spooled, length, crc = _HEADER.unpack_from(data, offset)
            end = offset + _HEADER.size + length
            if magic != MAGIC or kind not in KINDS or length > MAX_RECORD or end > len(data) \
                    or zlib.crc32(data[offset + _HEADER.size:end],
                                  zlib.crc32(data[offset:offset + _HEADER.size - 4])) != crc:
                self.torn += 1
                return
            yield _Entry(segment, offset, kind, end - offset, spooled), seq
            offset = end
        if offset != len(data):
            self.torn += 1  # a header cut short

    def _unlink(self, segment: int) -> None:
        self._seg_size.pop(segment, None)
        try:
            os.unlink(self._path(segment))
        except FileNotFoundError:
            pass

    @property
    def disk_bytes(self) -> int:
        """What the segment files hold: live records and dead ones not reclaimed."""
        return sum(self._seg_size.values())

    # ------------------------------------------------------------------ writing

    def append(self, kind: int, payload: bytes, now_ns: Optional[int] = None) -> int:
        """Spool a record; its sequence number. Older records may be dropped
        to make room (see the module's notes); an event is on disk when this
        returns."""
        if kind not in KINDS:
            raise ValueError("unknown record kind {}".format(kind))
        size = _HEADER.size + len(payload)
        if len(payload) > MAX_RECORD or size > self.max_bytes:
            raise SpoolError("a {}-byte record does not fit the spool".format(len(payload)))
        spooled = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            self._make_room(size, kind)
            seq = self._next
            self._next += 1
            head = _HEADER.pack(MAGIC, kind, seq, spooled, len(payload), 0)
            crc = zlib.crc32(payload, zlib.crc32(head[:-4]))
            record = head[:-4] + struct.pack("<I", crc) + payload
            if self._file is None or self._file_size + size > self.segment_bytes:
                self._roll()
            assert self._file is not None
            offset = self._file_size
            _write_all(self._file, record, offset)
            self._file_size += size
            self._seg_size[self._segment] = self._file_size
            self._live[seq] = _Entry(self._segment, offset, kind, size, spooled)
            live = self._seg_live.setdefault(self._segment, [0, 0])
            live[0] += 1
            live[1] += size
            self._bytes += size
            self._dirty = True
            if kind == EVENT or time.monotonic() - self._last_sync >= self.sync_interval:
                self._sync()
            return seq

    def _roll(self) -> None:
        if self._file is not None:
            os.fsync(self._file)
            os.close(self._file)
            self._file = None
            done = self._segment
            self._segment += 1  # from here on it is an old segment: tidy it as one
            live = self._seg_live.get(done)
            if live is None:
                self._unlink(done)
            elif live[1] * 4 < self.segment_bytes:
                self._compact(done)
        else:
            self._segment += 1
        self._file = os.open(self._path(self._segment),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
                             0o640)
        self._file_size = 0
        self._seg_size[self._segment] = 0
        os.fsync(self._dir_fd)  # the new file's name is durable too

    def _sync(self) -> None:
        if self._file is not None and self._dirty:
            os.fsync(self._file)
            self._dirty = False
        if self._acked != self._saved_acked:
            safefile.replace(os.path.join(self.directory, ACKED),
                             "{}\n".format(self._acked).encode(), sync=True)
            self._saved_acked = self._acked
        self._last_sync = time.monotonic()

    def _make_room(self, size: int, incoming: int) -> None:
        """Make ``size`` more bytes fit on disk: reclaim dead space, then drop
        the oldest records of the least precious kinds (never one more
        precious than ``incoming``) down to a low-water mark."""
        if self.disk_bytes + size <= self.max_bytes:
            return
        # half a segment more, in a spool of many: not a rewrite at every append
        slack = self.segment_bytes // 2 if self.max_bytes >= 8 * self.segment_bytes else 0
        target = max(0, self.max_bytes - size - slack)
        while self.disk_bytes > target and self._reclaim():
            pass  # dead space first; then records until the live ones fit, their
        if self.disk_bytes > target:  # space given back after (not a rewrite per drop)
            while self._bytes > target:
                victim = self._victim(incoming)
                if victim is None:
                    break
                self._done(victim, tidy=False)
                self.dropped[KINDS[self._dropped_kind]] += 1
            while self.disk_bytes > target and self._reclaim():
                pass
        if self.disk_bytes + size > self.max_bytes:
            self.dropped[KINDS[incoming]] += 1  # only more precious ones are left
            raise SpoolFull(KINDS[incoming])

    def _victim(self, incoming: int) -> Optional[int]:
        """The oldest of the least precious kind, none more precious than ``incoming``."""
        for kind in DROP_ORDER:
            if DROP_ORDER.index(kind) > DROP_ORDER.index(incoming):
                return None
            for seq, entry in self._live.items():
                if entry.kind == kind:
                    self._dropped_kind = kind
                    return seq
        return None

    def _reclaim(self) -> bool:
        """Give back the dead space of the segment that has the most; the
        segment being written is closed first if it is the one."""
        dead = {seg: size - self._seg_live.get(seg, [0, 0])[1]
                for seg, size in self._seg_size.items()}
        segment = max(dead, key=lambda seg: dead[seg], default=None)
        if segment is None or dead[segment] <= 0:
            return False
        if segment == self._segment and self._file is not None:
            self._roll()  # tidies it as an old segment: compacted or deleted
            return True
        if segment in self._seg_live:
            self._compact(segment)
        else:
            self._unlink(segment)
        return True

    # ------------------------------------------------------------------ reading

    def pending(self, after: int = 0, limit: int = 100) -> List[Record]:
        """Up to ``limit`` live records with a sequence number above ``after``,
        oldest first. Read under the lock: an ack may compact a segment (new
        offsets) at any moment."""
        with self._lock:
            chosen = []
            for seq, entry in self._live.items():
                if seq > after:
                    chosen.append((seq, entry))
                    if len(chosen) >= limit:
                        break
            records = []
            handle: Optional[BinaryIO] = None
            segment = -1
            try:
                for seq, entry in chosen:  # in order: one open per segment
                    if entry.segment != segment:
                        if handle is not None:
                            handle.close()
                        handle, segment = self._open(entry.segment), entry.segment
                    handle.seek(entry.offset + _HEADER.size)
                    records.append(Record(seq, entry.kind, entry.spooled_ns,
                                          handle.read(entry.size - _HEADER.size)))
            finally:
                if handle is not None:
                    handle.close()
            return records

    # ------------------------------------------------------------------ acks

    def ack(self, seq: int) -> None:
        """The broker has record ``seq``: it is done with."""
        with self._lock:
            if seq in self._live:
                self._done(seq)
            if time.monotonic() - self._last_sync >= self.sync_interval:
                self._sync()

    def _done(self, seq: int, tidy: bool = True) -> None:
        """``seq`` is done with; ``tidy``: compact its segment if it is mostly dead."""
        entry = self._live.pop(seq)
        self._bytes -= entry.size
        live = self._seg_live[entry.segment]
        live[0] -= 1
        live[1] -= entry.size
        if not live[0]:
            del self._seg_live[entry.segment]
            if entry.segment != self._segment:
                self._unlink(entry.segment)
        elif tidy and entry.segment != self._segment and live[1] * 4 < self.segment_bytes:
            self._compact(entry.segment)
        self._done_above.add(seq)
        while self._acked + 1 in self._done_above:
            self._acked += 1
            self._done_above.discard(self._acked)
        if not self._live:  # nothing pending: everything up to the last seq is done
            self._acked = max(self._acked, self._next - 1)
            self._done_above.clear()

    def _compact(self, segment: int) -> None:
        """Rewrite a segment with only its live records (the dead ones would
        otherwise hold disk the bound does not count)."""
        moved = [(seq, e) for seq, e in self._live.items() if e.segment == segment]
        path = self._path(segment)
        tmp = path + ".tmp"
        with self._open(segment) as source:
            data = source.read()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o640)
        offsets = []
        try:
            offset = 0
            for _seq, entry in moved:
                os.write(fd, data[entry.offset:entry.offset + entry.size])
                offsets.append(offset)
                offset += entry.size
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        os.fsync(self._dir_fd)
        self._seg_size[segment] = offset
        for (_seq, entry), offset in zip(moved, offsets):
            entry.offset = offset

    def stats(self, now_ns: Optional[int] = None) -> Dict[str, object]:
        """Depth, bytes, the oldest record's age, drops by kind (for status)."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            oldest = next(iter(self._live.values()), None)
            return {"depth": len(self._live), "bytes": self._bytes, "disk_bytes": self.disk_bytes,
                    "oldest_s": round((now_ns - oldest.spooled_ns) / 1e9, 3) if oldest else 0.0,
                    "dropped": self.dropped.as_dict(), "torn": self.torn}

    def flush(self) -> None:
        with self._lock:
            self._sync()

    def tick(self) -> None:
        """Sync what waits, if ``sync_interval_s`` has passed: the writer calls
        this regularly, so the policy holds when no append or ack comes."""
        if time.monotonic() - self._last_sync >= self.sync_interval:
            with self._lock:
                if self._dirty or self._acked != self._saved_acked:
                    self._sync()
                else:
                    self._last_sync = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._sync()
            if self._file is not None:
                os.close(self._file)
                self._file = None
                if self._segment not in self._seg_live:
                    self._unlink(self._segment)
            os.close(self._dir_fd)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """Append all of ``data`` to ``fd`` (``offset`` bytes long) or none of it: a write
    cut short (a full file system) is cut off again, so the next record starts right."""
    written = 0
    try:
        while written < len(data):
            count = os.write(fd, data[written:])
            if count <= 0:
                raise OSError(errno.ENOSPC, "no space left for the spool's record")
            written += count
    except OSError:
        if written:
            os.ftruncate(fd, offset)
        raise

