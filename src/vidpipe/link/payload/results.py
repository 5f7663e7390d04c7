"""RESULT payloads, both sides: :class:`ResultWriter` in the handler,
:class:`ResultReader` in the collector.

A result's image goes in the handler's own shared-memory ring when the
collector is on the same host (``result_transport``): the message carries a
reference, and a stage that wrote its output there saved the copy too.
Otherwise the pixels go inline. The collector maps a referenced image in
place; the handler goes on reusing its slots, so an image held back for
reordering is copied out, and one overwritten before the collector was done
with it is reported. A lost image never costs the result: its metadata
stands, marked ``image_lost``.
"""

import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from vidpipe.link import encodings, wire
from vidpipe.config import HandlerConfig
from vidpipe.config.layout import results_dir
from vidpipe.link.ring import ResultRing, RingError, RingReader
from vidpipe.stats import Tally

log = logging.getLogger("vidpipe.payload")
#: the result image encodings the collector reads (a handler never sends others)
READABLE = (wire.RAW, wire.SHM)
#: (ring, slot, stamp) of a result image in a handler's ring
ResultRef = Tuple[str, int, int]


def uses_ring(hc: HandlerConfig, collector_connect: str) -> bool:
    return hc.send_image and (hc.result_transport == "shm" or (
        hc.result_transport == "auto" and collector_connect.startswith("ipc://")))


class ResultWriter:
    """Builds a handler's RESULT messages."""

    def __init__(self, runtime_dir: str, handler: str, hc: HandlerConfig,
                 collector_connect: str) -> None:
        self.send_image = hc.send_image
        self.ring: Optional[ResultRing] = None
        if uses_ring(hc, collector_connect):
            self.ring = ResultRing(results_dir(runtime_dir), handler,
                                   hc.result_ring_mb * 1024 * 1024)

    @property
    def allocate(self) -> Optional[Callable[..., Optional[np.ndarray]]]:
        """For stages: an output array in the ring (saves the copy), if there is one."""
        return self.ring.claim if self.ring is not None else None

    def prepare(self, image: np.ndarray) -> None:
        """Make the ring now, sized for results like ``image`` (at warm-up)."""
        if self.ring is not None:
            self.ring.claim(image.shape, image.dtype.name)

    def parts(self, head: wire.Header, image: Optional[np.ndarray], pixels: np.ndarray,
              in_slot: bool, meta: Dict[str, Any], flags: int = 0) -> List[Any]:
        """The RESULT for frame ``head`` (read as ``pixels``, from a decoder's
        ring when ``in_slot``) whose stages produced ``image`` (``flags``:
        its format, FLAG_I420)."""
        image = image if self.send_image else None
        args = (meta, head.camera, head.stream, head.seq, head.capture_ns)
        if image is not None and self.ring is not None:
            ref = self.ring.publish(image)
            if ref is not None:
                return wire.result_parts(image, *args, encoding=wire.SHM,
                                         payload=encodings.result_ref(*ref), flags=flags)
        if image is not None and in_slot and np.may_share_memory(image, pixels):
            image = image.copy()  # the slot goes back to the decoder with our credit
        return wire.result_parts(image, *args, flags=flags)

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()


class ResultReader:
    """Gives the collector every RESULT's image as pixels in the message."""

    def __init__(self, runtime_dir: str, label: str) -> None:
        self.label = label
        self.rings = RingReader(results_dir(runtime_dir), keep=256)
        #: images lost, by reason (the results themselves were kept)
        self.lost = Tally()

    def open(self, msg: wire.Message) -> Optional[ResultRef]:
        """Put the image in place in ``msg`` (a view into the handler's ring, no
        copy); the reference to re-check with :meth:`still`, or ``None``
        when the image was inline (or lost)."""
        head = msg.header
        if not head.flags & wire.FLAG_IMAGE:
            return None
        if head.encoding not in READABLE:
            self.image_lost(msg, "bad_encoding")
            return None
        if head.encoding != wire.SHM:
            return None
        try:
            name, slot, stamp = encodings.parse_result_ref(msg.payload)
            view = self.rings.view(name, slot, stamp, head.shape, wire.DTYPES[head.dtype])
        except (wire.WireError, RingError) as exc:
            self.image_lost(msg, getattr(exc, "reason", "bad_ref"))
            return None
        msg.header = head._replace(encoding=wire.RAW, payload_len=view.nbytes)
        msg.payload = memoryview(view).cast("B")
        return name, slot, stamp

    def keep(self, msg: wire.Message, ref: ResultRef) -> None:
        """Copy the image out of the ring: ``msg`` is held (for reordering)
        while the handler reuses its slots."""
        copy = bytearray(msg.payload)
        if self.rings.still(*ref):
            msg.payload = memoryview(copy)
        else:
            self.image_lost(msg, "torn")

    def used(self, msg: wire.Message, ref: Optional[ResultRef]) -> None:
        """After the outputs used the image in place: was it rewritten meanwhile?"""
        if ref is not None and not self.rings.still(*ref):
            self.image_lost(msg, "torn", after_use=True)

    def image_lost(self, msg: wire.Message, reason: str, after_use: bool = False) -> None:
        """The result stands, without its image (the metadata is still good)."""
        count = self.lost.add(reason)
        if count in (1, 10, 100, 1000) or count % 10000 == 0:
            log.warning("%s: %s #%d: image from shared memory %s (%s); %d so far",
                        self.label, msg.header.camera, msg.header.seq,
                        "was overwritten while in use" if after_use else "lost", reason, count)
        if not after_use:
            msg.header = msg.header._replace(
                flags=msg.header.flags & ~(wire.FLAG_IMAGE | wire.FLAG_I420), payload_len=0)
            msg.payload = None
            msg.meta["image_lost"] = reason
