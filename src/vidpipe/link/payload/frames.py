"""FRAME payloads, both sides: :class:`FrameWriter` in the decoder,
:class:`FrameReader` in the handler.

``shm``: the source captures straight into a free slot of the camera's
shared-memory ring and the message carries a reference; the slot stays held
until the frame is done with. ``inline``: the message carries the pixels,
raw, LZ4 or JPEG. ``auto`` picks ``shm`` for a same-host (ipc://) link with
credit-based dispatch, ``inline`` otherwise. The reader never trusts the
writer: a reference names a ring it checks, pixels must have the shape the
header promises.
"""

import logging
import struct
from typing import Any, Dict, List, Optional, Protocol, Tuple

import numpy as np

from vidpipe.link import encodings, wire
from vidpipe.config import CameraConfig
from vidpipe.link.payload.limits import describe as describe_bound, frame_pixels
from vidpipe.link.ring import SLOT_HEADER, RingError, RingReader, RingSpaceError, RingWriter

log = logging.getLogger("vidpipe.payload")
# the fields of a FRAME header that change from frame to frame: stream, seq, capture_ns
# (after magic, version, kind and flags)
_MOVING = struct.Struct("<QQq")
_MOVING_AT = struct.calcsize("<4sBBH")
_MOVING_END = _MOVING_AT + _MOVING.size
MAX_KNOWN = 1024


class FrameSource(Protocol):
    """What :meth:`FrameWriter.read` takes frames from (a capture source: the
    link does not import capture, which loads OpenCV)."""

    def read(self) -> Optional[np.ndarray]:
        ...

    def read_into(self, out: np.ndarray) -> Optional[np.ndarray]:
        ...


class FrameRefused(Exception):
    """A frame the decoder will not hand out (too large, no room for its
    ring): the source is closed and opened again later, with back-off."""


def uses_shm(cam: CameraConfig, dispatch: str) -> bool:
    if cam.transport == "shm":
        return True
    return (cam.transport == "auto" and dispatch != "round-robin"
            and cam.bind.startswith("ipc://"))


class FrameWriter:
    def __init__(self, cam: CameraConfig, dispatch: str, runtime_dir: str, stream: int) -> None:
        self.cam = cam
        self.shm = uses_shm(cam, dispatch)
        self.runtime_dir = runtime_dir
        self.stream = stream
        self.encoding = encodings.ENCODING_CODES[cam.encoding]
        self.ring: Optional[RingWriter] = None
        self.shape: Optional[Tuple[int, ...]] = None
        self.dtype = "uint8"
        self.flags = wire.FLAG_I420 if cam.deliver == "i420" else 0

    def describe(self) -> str:
        if self.shm:
            return "shared memory ({} slots)".format(self.cam.shm_slots)
        return "inline {}".format(self.cam.encoding)

    def read(self, source: FrameSource) -> Tuple[Optional[np.ndarray], Optional[int]]:
        """The next frame and the ring slot it is in (``None``: not in the ring).

        Raises whatever the source raises; ``(None, None)`` at its end."""
        slot = None
        target = None
        if self.ring is not None and self.shape is not None:
            slot = self.ring.acquire()
            if slot is not None:
                target = self.ring.array(slot, self.shape, self.dtype)
        try:
            image = source.read_into(target) if target is not None else source.read()
        except BaseException:
            if slot is not None:
                self.ring.give_back(slot)  # type: ignore[union-attr]
            raise
        if image is None:
            if slot is not None:
                self.ring.give_back(slot)  # type: ignore[union-attr]
            return None, None
        if image is target:  # in a slot of the ring: of a size already checked
            return image, slot
        # inline, first frame, no slot was free, or the camera changed size
        if slot is not None:
            self.ring.give_back(slot)  # type: ignore[union-attr]
        self._check_size(image)
        return image, (self.place(image) if self.shm else None)

    def _check_size(self, image: np.ndarray) -> None:
        """A frame over the camera's bound (:mod:`.limits`) is refused before
        it is sent or a ring is sized for it: a camera does not choose the
        decoder's memory."""
        cam = self.cam
        bound = frame_pixels(cam.width, cam.height, cam.sized)
        rows, width = image.shape[:2]
        height = rows * 2 // 3 if self.flags & wire.FLAG_I420 else rows
        if height * width > bound:
            raise FrameRefused("the source hands out {}x{} frames, over the {} a frame may "
                               "have; none is sent (set cameras.{}.width and height: a "
                               "network stream is scaled to them)".format(width, height,
                                                        describe_bound(cam.width, cam.height,
                                                                       cam.sized, cam.name),
                                                        cam.name))

    def place(self, image: np.ndarray) -> Optional[int]:
        """Copy ``image`` into a slot, making the ring if it needs to be (re)made."""
        if self.ring is None or not self.ring.fits(image.nbytes) or image.shape != self.shape:
            if self.ring is not None:
                log.info("%s: frames are now %s; new ring", self.cam.name, image.shape)
                self.ring.close()
            self.ring = None
            try:
                self.ring = RingWriter(self.runtime_dir, self.cam.name, self.stream,
                                       self.cam.shm_slots, image.nbytes)
            except RingSpaceError as exc:
                raise FrameRefused("{}: {} frames of {}x{}: {} (cameras.{}.shm_slots, or "
                                   "the size of /run)".format(
                                       self.cam.name, self.cam.shm_slots, image.shape[1],
                                       image.shape[0], exc.strerror, self.cam.name)) from None
            self.shape, self.dtype = image.shape, str(image.dtype)
        slot = self.ring.acquire()
        if slot is not None:
            np.copyto(self.ring.array(slot, image.shape, self.dtype), image)
        return slot

    def parts(self, image: np.ndarray, slot: Optional[int], seq: int,
              capture_ns: int, camera: str) -> List[Any]:
        if slot is not None and self.ring is not None:
            self.ring.commit(slot, seq, image.nbytes)
            ref = encodings.shm_ref(self.ring.name, slot)
            return wire.frame_parts(image, camera, self.stream, seq, capture_ns,
                                    encoding=wire.SHM, payload=ref, flags=self.flags)
        if self.encoding != wire.RAW:
            payload = encodings.encode(image, self.encoding, self.cam.jpeg_quality)
            return wire.frame_parts(image, camera, self.stream, seq, capture_ns,
                                    encoding=self.encoding, payload=payload, flags=self.flags)
        return wire.frame_parts(image, camera, self.stream, seq, capture_ns, flags=self.flags)

    def sent(self, seq: int, slot: Optional[int]) -> None:
        if slot is not None and self.ring is not None:
            self.ring.hold(seq, slot)

    def unsent(self, slot: Optional[int]) -> None:
        if slot is not None and self.ring is not None:
            self.ring.give_back(slot)

    def release(self, seq: int) -> None:
        """Frame ``seq`` is done with: its slot may be written again."""
        if self.ring is not None:
            self.ring.release(seq)

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None


def _known_key(parts: List[Any]) -> Optional[bytes]:
    """What identifies a FRAME for :meth:`FrameReader.known`: every byte of its
    header but the moving fields, then its reference; ``None`` for messages of
    another form (part count, part types, header size)."""
    if len(parts) != 2:
        return None
    head, ref = parts
    if type(head) is not bytes or type(ref) is not bytes or len(head) != wire.HEADER_SIZE:
        return None
    return head[:_MOVING_AT] + head[_MOVING_END:] + ref


class FrameReader:
    """Turns a FRAME message into an array; keeps the rings it has mapped.

    A camera sends the same few shared-memory messages over and over: the
    same header but for stream, sequence number and capture time, and one
    reference per ring slot. :meth:`known` takes a message whose other bytes
    are identical to one that passed full validation (:meth:`learn`) and
    reads only the fields that change, then checks the slot's seqlock: the
    handler's receive path, which runs with cold caches at camera rates, then
    touches a fraction of the code the full decode does.
    """

    def __init__(self, runtime_dir: str) -> None:
        self.rings = RingReader(runtime_dir)
        self._refs: Dict[bytes, Tuple[str, int]] = {}  # parsed references
        # header bytes without the moving fields + reference ->
        # (camera, header fields after capture_ns, mapping, slot offset, view, (ring, slot))
        self._known: Dict[bytes, Tuple[str, tuple, Any, int, np.ndarray, Tuple[str, int]]] = {}
        self._evictions = 0

    def known(self, parts: List[Any]) -> Optional[Tuple[wire.Header, np.ndarray,
                                                          Tuple[str, int]]]:
        """Header, pixels and (ring, slot) of a shared-memory FRAME like one
        :meth:`learn` saw, or ``None``: decode it the long way (which also names
        whatever is wrong with it, a rewritten slot included)."""
        key = _known_key(parts)
        if key is None:
            return None
        if self.rings.evictions != self._evictions:  # a ring we cached is unmapped
            self._known.clear()
            self._evictions = self.rings.evictions
        hit = self._known.get(key)
        if hit is None:
            return None
        camera, fixed, mapped, offset, pixels, where = hit
        stream, seq, capture_ns = _MOVING.unpack_from(parts[0], _MOVING_AT)
        if SLOT_HEADER.unpack_from(mapped, offset)[0] != seq:
            return None
        return tuple.__new__(wire.Header, (wire.FRAME, camera, stream, seq, capture_ns)
                             + fixed), pixels, where

    def learn(self, parts: List[Any], header: wire.Header, pixels: np.ndarray,
              where: Optional[Tuple[str, int]]) -> None:
        """Remember a shared-memory FRAME that :meth:`image` read from ``parts``."""
        key = _known_key(parts)
        if key is None or where is None or where[0] not in self.rings.maps:
            return
        if len(self._known) >= MAX_KNOWN:  # a few cameras x slots in practice
            self._known.clear()
        mapped, offset = self.rings.locate(*where)
        self._known[key] = (header.camera, tuple(header[5:]), mapped, offset, pixels, where)

    def image(self, msg: wire.Message) -> Tuple[np.ndarray, Optional[Tuple[str, int]]]:
        """The pixels and, for shared memory, the (ring, slot) to re-check after use."""
        h = msg.header
        if h.encoding != wire.SHM:
            return encodings.decode_inline(msg), None
        payload = msg.payload
        if payload is None:
            raise wire.WireError("no_payload")
        key = bytes(payload)
        ref = self._refs.get(key)
        if ref is None:
            ref = encodings.parse_shm_ref(payload)
            if len(self._refs) >= 1024:  # a handful of rings x slots in practice
                self._refs.clear()
            self._refs[key] = ref
        try:
            return self.rings.view(ref[0], ref[1], h.seq, h.shape, wire.DTYPES[h.dtype]), ref
        except RingError as exc:
            raise wire.WireError(exc.reason, str(exc)) from None

    def still_valid(self, ref: Optional[Tuple[str, int]], seq: int) -> bool:
        return ref is None or self.rings.still(ref[0], ref[1], seq)
