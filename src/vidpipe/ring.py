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

import mmap
import os
import re
import struct
from collections import OrderedDict, deque
from typing import Deque, Dict, Optional, Tuple

import numpy as np

MAGIC = b"VPRING\0\1"
FILE_HEADER = struct.Struct("<8sIIQQ")  # magic, slots, reserved, slot_size, stream
SLOT_HEADER = struct.Struct("<QQ")  # seq, nbytes
HEADER_SIZE = 64
WRITING = 2 ** 64 - 1
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,31}-[0-9a-f]{1,16}\.ring$")
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


def _align(n: int) -> int:
    return (n + 63) // 64 * 64


def ring_name(camera: str, stream: int) -> str:
    return "{}-{:x}.ring".format(camera, stream)


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
            os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        FILE_HEADER.pack_into(self.map, 0, MAGIC, slots, 0, self.slot_size, stream)
        for slot in range(slots):
            SLOT_HEADER.pack_into(self.map, self._offset(slot), WRITING, 0)
        self.free: Deque[int] = deque(range(slots))
        self.held: Dict[int, int] = {}  # seq -> slot

    def _offset(self, slot: int) -> int:
        return HEADER_SIZE + slot * self.stride

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
        count = 1
        for dim in shape:
            count *= dim
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

    def _open(self, name: str) -> Tuple[mmap.mmap, int, int, int]:
        if name in self.maps:
            self.maps.move_to_end(name)
            return self.maps[name]
        if not NAME_RE.match(name):
            raise RingError("bad_ring", "ring name {!r}".format(name))
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path, os.O_RDONLY)
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
            _old, (old_map, _s, _z, _t) = self.maps.popitem(last=False)
            try:
                old_map.close()
            except BufferError:
                pass  # still viewed; freed with the last view
        return entry

    def view(self, name: str, slot: int, seq: int, shape: Tuple[int, ...],
             dtype: str) -> np.ndarray:
        """A read-only view of ``slot`` holding frame ``seq`` (no copy)."""
        mapped, slots, slot_size, stride = self._open(name)
        if not 0 <= slot < slots:
            raise RingError("bad_slot", "slot {} of {}".format(slot, slots))
        offset = HEADER_SIZE + slot * stride
        have, nbytes = SLOT_HEADER.unpack_from(mapped, offset)
        if have != seq:
            raise RingError("stale", "slot {} holds frame {}, not {}".format(
                slot, have if have != WRITING else "(being written)", seq))
        count = 1
        for dim in shape:
            count *= dim
        expected = count * _itemsize(dtype)
        if nbytes != expected or expected > slot_size:
            raise RingError("bad_slot", "slot has {} bytes, frame needs {}".format(
                nbytes, expected))
        return np.frombuffer(mapped, dtype=dtype, count=count,
                             offset=offset + HEADER_SIZE).reshape(shape)

    def still(self, name: str, slot: int, seq: int) -> bool:
        """Whether ``slot`` still holds ``seq`` (check after using a view)."""
        entry = self.maps.get(name)
        if entry is None:
            return False
        mapped, _slots, _size, stride = entry
        return SLOT_HEADER.unpack_from(mapped, HEADER_SIZE + slot * stride)[0] == seq
