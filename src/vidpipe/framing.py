"""How a decoder turns captured frames into FRAME messages.

``shm``: the source captures straight into a free slot of the camera's
shared-memory ring and the message carries a reference; the slot stays held
until the frame is done with. ``inline``: the message carries the pixels,
raw, LZ4 or JPEG. ``auto`` picks ``shm`` for a same-host (ipc://) link with
credit-based dispatch, ``inline`` otherwise.
"""

import logging
from typing import Any, List, Optional, Tuple

import numpy as np

from vidpipe import codec, wire
from vidpipe.config import CameraConfig
from vidpipe.ring import RingWriter
from vidpipe.sources import Source

log = logging.getLogger("vidpipe.framing")


def uses_shm(cam: CameraConfig, dispatch: str) -> bool:
    if cam.transport == "shm":
        return True
    return (cam.transport == "auto" and dispatch != "round-robin"
            and cam.bind.startswith("ipc://"))


class Framer:
    def __init__(self, cam: CameraConfig, dispatch: str, runtime_dir: str, stream: int) -> None:
        self.cam = cam
        self.shm = uses_shm(cam, dispatch)
        self.runtime_dir = runtime_dir
        self.stream = stream
        self.encoding = codec.ENCODING_CODES[cam.encoding]
        self.ring: Optional[RingWriter] = None
        self.shape: Optional[Tuple[int, ...]] = None
        self.dtype = "uint8"

    def describe(self) -> str:
        if self.shm:
            return "shared memory ({} slots)".format(self.cam.shm_slots)
        return "inline {}".format(self.cam.encoding)

    def read(self, source: Source) -> Tuple[Optional[np.ndarray], Optional[int]]:
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
        if not self.shm:
            return image, None
        if image is not target:
            # first frame, no slot was free, or the camera changed size
            if slot is not None:
                self.ring.give_back(slot)  # type: ignore[union-attr]
            slot = self._place(image)
        return image, slot

    def _place(self, image: np.ndarray) -> Optional[int]:
        """Copy ``image`` into a slot, making the ring if it needs to be (re)made."""
        if self.ring is None or not self.ring.fits(image.nbytes) or image.shape != self.shape:
            if self.ring is not None:
                log.info("%s: frames are now %s; new ring", self.cam.name, image.shape)
                self.ring.close()
            self.ring = RingWriter(self.runtime_dir, self.cam.name, self.stream,
                                   self.cam.shm_slots, image.nbytes)
            self.shape, self.dtype = image.shape, str(image.dtype)
        slot = self.ring.acquire()
        if slot is not None:
            np.copyto(self.ring.array(slot, image.shape, self.dtype), image)
        return slot

    def parts(self, image: np.ndarray, slot: Optional[int], seq: int,
              capture_ns: int, camera: str) -> List[Any]:
        if slot is not None and self.ring is not None:
            self.ring.commit(slot, seq, image.nbytes)
            ref = codec.shm_ref(self.ring.name, slot)
            return wire.frame_parts(image, camera, self.stream, seq, capture_ns,
                                    encoding=wire.SHM, payload=ref)
        if self.encoding != wire.RAW:
            payload = codec.encode(image, self.encoding, self.cam.jpeg_quality)
            return wire.frame_parts(image, camera, self.stream, seq, capture_ns,
                                    encoding=self.encoding, payload=payload)
        return wire.frame_parts(image, camera, self.stream, seq, capture_ns)

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
