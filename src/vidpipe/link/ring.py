"""Frames in shared memory: a ring of slots per camera, one file per decoder run.

The decoder captures straight into a free slot and sends only a small
reference (ring file name, slot, sequence number) over ZeroMQ; handlers on the
same host map the file read-only and get a NumPy view with no copy. The ring
lives in the runtime directory (``/run/vidpipe``, a tmpfs) rather than
``/dev/shm``, which services with ``PrivateDevices=yes`` do not share.

Slots are never reused while held: the decoder releases a slot only when the
handler's credit for that frame comes back (or the frame is given up). As a
second line of defence each slot carries its sequence number, written last
(a seqlock): a reader checks it before and after using the pixels, so a slot
that was rewritten under it (a torn or stale read) is detected, never
processed silently.

Layout: a 64-byte file header (magic, version, slot count, slot size, stream),
then per slot a 64-byte header (seq, nbytes) and ``slot_size`` bytes of
pixels, slot starts aligned to 64 bytes.
"""

import errno
import mmap
import os
import re
import struct
from collections import OrderedDict, deque
from typing import Deque, Dict, Optional, Tuple

import numpy as np

from vidpipe import names, safefile
from vidpipe.config.layout import ring_name

MAGIC = b"VPRING\0\1"
FILE_HEADER = struct.Struct("<8sIIQQ")  # magic, slots, reserved, slot_size, stream
SLOT_HEADER = struct.Struct("<QQ")  # seq, nbytes
HEADER_SIZE = 64
WRITING = 2 ** 64 - 1
# a ring file's name (it comes from the wire): \Z, so no trailing newline passes
NAME_RE = re.compile(r"\A" + names.NAME_PATTERN + r"-[0-9a-f]{1,16}\.ring\Z")
MAX_RING_BYTES = 8 * 1024 ** 3


class RingError(Exception):
    """A reference that cannot be honoured; ``reason`` is a counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__("{}{}".format(reason, ": " + detail if detail else ""))


_ITEMSIZE: Dict[str, int] = {}


def _itemsize(dtype: str) -> int:
    size = _ITEMSIZE.get(dtype)
    if size is None:
        size = _ITEMSIZE[dtype] = np.dtype(dtype).itemsize
    return size


def _count(shape: Tuple[int, ...]) -> int:
    """Elements in an array of ``shape`` (without NumPy's overhead per frame)."""
    count = 1
    for dim in shape:
        count *= dim
    return count


def _align(n: int) -> int:
    return (n + 63) // 64 * 64


class RingSpaceError(OSError):
    """The ring's file cannot have its memory (the runtime directory's tmpfs is full)."""


def _reserve(fd: int, size: int, path: str) -> None:
    try:
        os.ftruncate(fd, size)
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
            raise
        try:
            st = os.statvfs(os.path.dirname(path))
            free = "{} MiB free".format(st.f_bavail * st.f_frsize >> 20)
        except OSError:
            free = "its free space unknown"
        raise RingSpaceError(exc.errno, "a ring of {} MiB does not fit in {} ({})".format(
            size >> 20, os.path.dirname(path), free)) from None


class RingWriter:
    """The decoder's side: owns the file, hands out free slots."""

    def __init__(self, directory: str, camera: str, stream: int, slots: int,
                 slot_size: int) -> None:
        os.makedirs(directory, exist_ok=True)
        remove_stale(directory, camera)
        self.name = ring_name(camera, stream)
        self.path = os.path.join(directory, self.name)
        self.slots = slots
        self.slot_size = _align(slot_size)
        self.stride = HEADER_SIZE + self.slot_size
        size = HEADER_SIZE + slots * self.stride
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            # reserved, not just sized: on a full tmpfs a sparse file's first
            # write is SIGBUS; this is an error with a message instead
            _reserve(fd, size, self.path)
            self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.unlink(self.path)
            raise
        finally:
            os.close(fd)
        FILE_HEADER.pack_into(self.map, 0, MAGIC, slots, 0, self.slot_size, stream)
        for slot in range(slots):
            SLOT_HEADER.pack_into(self.map, self._offset(slot), WRITING, 0)
        self.free: Deque[int] = deque(range(slots))
        self.held: Dict[int, int] = {}  # seq -> slot

    def _offset(self, slot: int) -> int:
        return HEADER_SIZE + slot * self.stride

    def prefault(self) -> None:
        """Give every page of the ring its memory now, not on a frame's time
        (a fresh tmpfs file faults in page by page on first write)."""
        for slot in range(self.slots):
            start = self._offset(slot) + HEADER_SIZE
            np.frombuffer(self.map, np.uint8, self.slot_size, start)[:] = 0

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.slot_size

    def acquire(self) -> Optional[int]:
        """A free slot, marked as being written; ``None`` when all are held."""
        if not self.free:
            return None
        slot = self.free.popleft()
        SLOT_HEADER.pack_into(self.map, self._offset(slot), WRITING, 0)
        return slot

    def array(self, slot: int, shape: Tuple[int, ...], dtype: str = "uint8") -> np.ndarray:
        """A writable view of ``slot`` to capture into."""
        count = _count(shape)
        start = self._offset(slot) + HEADER_SIZE
        return np.frombuffer(self.map, dtype=dtype, count=count, offset=start).reshape(shape)

    def commit(self, slot: int, seq: int, nbytes: int) -> None:
        """The pixels are in: publish the slot under ``seq`` (seq written last)."""
        offset = self._offset(slot)
        struct.pack_into("<Q", self.map, offset + 8, nbytes)
        struct.pack_into("<Q", self.map, offset, seq)

    def hold(self, seq: int, slot: int) -> None:
        self.held[seq] = slot

    def release(self, seq: int) -> None:
        """The frame ``seq`` is done with (processed, dropped or lost)."""
        slot = self.held.pop(seq, None)
        if slot is not None:
            SLOT_HEADER.pack_into(self.map, self._offset(slot), WRITING, 0)
            self.free.append(slot)

    def give_back(self, slot: int) -> None:
        """A slot acquired but never sent."""
        SLOT_HEADER.pack_into(self.map, self._offset(slot), WRITING, 0)
        self.free.append(slot)

    def close(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass
        try:
            self.map.close()
        except BufferError:  # a view is still alive; the mapping goes with the process
            pass


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """``b`` is ``a`` (OpenCV may hand back a new array object on ``dst``'s memory)."""
    return a is b or (a.shape == b.shape and a.dtype == b.dtype and b.flags["C_CONTIGUOUS"]
                      and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


class ResultRing:
    """A handler's processed images for a collector on the same host.

    Nobody hands result slots back: the collector reads a result as soon as it
    arrives (and copies the few it must hold for reordering), so slots are
    reused oldest first, and the seqlock catches a collector that fell a whole
    ring behind. Every publication gets a stamp of its own, written last, that
    the reference carries (frame numbers repeat across cameras). The ring is
    sized on first use from the result's size within ``budget`` bytes, and
    made afresh, bigger, if results grow; results too big for at least
    ``MIN_SLOTS`` slots are not put here (the caller sends them inline).
    """

    MIN_SLOTS = 4
    MAX_SLOTS = 16

    def __init__(self, directory: str, owner: str, budget: int) -> None:
        self.directory = directory
        self.owner = owner
        self.budget = budget
        self.ring: Optional[RingWriter] = None
        self.cursor = 0
        self.stamp = 0
        self.generation = 0
        self.claimed: Optional[Tuple[int, np.ndarray]] = None

    def _fit(self, nbytes: int) -> bool:
        if self.ring is not None and self.ring.fits(nbytes):
            return True
        slots = min(self.MAX_SLOTS, self.budget // max(1, _align(nbytes) + HEADER_SIZE))
        if slots < self.MIN_SLOTS:
            return False
        if self.ring is not None:
            self.ring.close()
        self.generation += 1
        stream = (os.getpid() << 8) | (self.generation & 0xFF)
        self.ring = RingWriter(self.directory, self.owner, stream, slots, nbytes)
        self.ring.prefault()
        self.cursor = 0
        return True

    def _take(self, shape: Tuple[int, ...], dtype: str) -> Optional[Tuple[int, np.ndarray]]:
        if not self._fit(_count(shape) * _itemsize(dtype)):
            return None
        assert self.ring is not None
        slot = self.cursor
        self.cursor = (self.cursor + 1) % self.ring.slots
        SLOT_HEADER.pack_into(self.ring.map, self.ring._offset(slot), WRITING, 0)
        return slot, self.ring.array(slot, shape, dtype)

    def claim(self, shape: Tuple[int, ...], dtype: str = "uint8") -> Optional[np.ndarray]:
        """A writable slot for the result image about to be made, or ``None``."""
        self.claimed = self._take(shape, dtype)
        return self.claimed[1] if self.claimed is not None else None

    def publish(self, image: np.ndarray) -> Optional[Tuple[str, int, int]]:
        """Put ``image`` in the ring: (ring name, slot, stamp) for the reference,
        or ``None`` when it does not go in shared memory. No copy when ``image``
        is the array :meth:`claim` gave out."""
        taken, self.claimed = self.claimed, None
        if taken is None or not _same_array(taken[1], image):
            taken = self._take(image.shape, image.dtype.name)
            if taken is None:
                return None
            np.copyto(taken[1], image)
        assert self.ring is not None
        self.stamp += 1
        self.ring.commit(taken[0], self.stamp, image.nbytes)
        return self.ring.name, taken[0], self.stamp

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None


def remove_stale(directory: str, camera: str) -> int:
    """Remove rings a crashed run of this camera's decoder left behind."""
    removed = 0
    prefix = camera + "-"
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.startswith(prefix) and NAME_RE.match(name) and \
                re.match(r"^[0-9a-f]+\.ring$", name[len(prefix):]):
            try:
                os.unlink(os.path.join(directory, name))
                removed += 1
            except OSError:
                pass
    return removed


class RingReader:
    """A handler's side: maps rings read-only on demand (a few at a time)."""

    def __init__(self, directory: str, keep: int = 16) -> None:
        self.directory = directory
        self.keep = keep
        self.maps: "OrderedDict[str, Tuple[mmap.mmap, int, int, int]]" = OrderedDict()
        # (ring, slot, shape, dtype) -> (mapping, slot offset, view)
        self.views: Dict[Tuple[str, int, Tuple[int, ...], str],
                         Tuple[mmap.mmap, int, np.ndarray]] = {}
        #: how many rings were let go so far (callers caching views drop theirs)
        self.evictions = 0

    def _open(self, name: str) -> Tuple[mmap.mmap, int, int, int]:
        if name in self.maps:
            self.maps.move_to_end(name)
            return self.maps[name]
        if not NAME_RE.match(name):
            raise RingError("bad_ring", "ring name {!r}".format(name))
        path = os.path.join(self.directory, name)
        try:
            # only our user's rings: one another user made could be truncated
            # under the mapping (SIGBUS), and links and FIFOs are refused
            fd = safefile.open_plain(path, owner=os.geteuid())
        except safefile.UnsafeFile as exc:
            raise RingError("bad_ring", str(exc)) from None
        except OSError as exc:
            raise RingError("ring_unavailable", "{}: {}".format(path, exc.strerror)) from None
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE or size > MAX_RING_BYTES:
                raise RingError("bad_ring", "{} is {} bytes".format(path, size))
            mapped = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, slots, _reserved, slot_size, _stream = FILE_HEADER.unpack_from(mapped, 0)
        if magic != MAGIC or not slots or not slot_size or \
                size < HEADER_SIZE + slots * (HEADER_SIZE + slot_size):
            mapped.close()
            raise RingError("bad_ring", "{} is not a vidpipe ring".format(path))
        entry = (mapped, slots, slot_size, HEADER_SIZE + slot_size)
        self.maps[name] = entry
        while len(self.maps) > self.keep:
            old_name, (old_map, _s, _z, _t) = self.maps.popitem(last=False)
            for key in [k for k in self.views if k[0] == old_name]:
                del self.views[key]
            self.evictions += 1
            try:
                old_map.close()
            except BufferError:
                pass  # still viewed; freed with the last view
        return entry

    def view(self, name: str, slot: int, seq: int, shape: Tuple[int, ...],
             dtype: str) -> np.ndarray:
        """A read-only view of ``slot`` holding frame ``seq`` (no copy)."""
        key = (name, slot, shape, dtype)
        cached = self.views.get(key)
        if cached is not None:  # the same slot and shape again: only the seqlock to check
            mapped, offset, array = cached
            have = SLOT_HEADER.unpack_from(mapped, offset)[0]
            if have == seq:
                return array
        array = self._view(name, slot, seq, shape, dtype)
        if len(self.views) >= 4096:
            self.views.clear()
        mapped, _slots, _size, stride = self.maps[name]
        self.views[key] = (mapped, HEADER_SIZE + slot * stride, array)
        return array

    def _view(self, name: str, slot: int, seq: int, shape: Tuple[int, ...],
              dtype: str) -> np.ndarray:
        mapped, slots, slot_size, stride = self._open(name)
        if not 0 <= slot < slots:
            raise RingError("bad_slot", "slot {} of {}".format(slot, slots))
        offset = HEADER_SIZE + slot * stride
        have, nbytes = SLOT_HEADER.unpack_from(mapped, offset)
        if have != seq:
            raise RingError("stale", "slot {} holds frame {}, not {}".format(
                slot, have if have != WRITING else "(being written)", seq))
        count = _count(shape)
        expected = count * _itemsize(dtype)
        if nbytes != expected or expected > slot_size:
            raise RingError("bad_slot", "slot has {} bytes, frame needs {}".format(
                nbytes, expected))
        return np.frombuffer(mapped, dtype=dtype, count=count,
                             offset=offset + HEADER_SIZE).reshape(shape)

    def locate(self, name: str, slot: int) -> Tuple[mmap.mmap, int]:
        """The mapping of a ring already viewed and the offset of ``slot``'s
        header in it (whose first field is the seqlock)."""
        mapped, _slots, _size, stride = self.maps[name]
        return mapped, HEADER_SIZE + slot * stride

    def still(self, name: str, slot: int, seq: int) -> bool:
        """Whether ``slot`` still holds ``seq`` (check after using a view)."""
        entry = self.maps.get(name)
        if entry is None:
            return False
        mapped, _slots, _size, stride = entry
        return SLOT_HEADER.unpack_from(mapped, HEADER_SIZE + slot * stride)[0] == seq
