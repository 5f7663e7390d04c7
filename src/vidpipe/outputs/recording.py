"""Recording: each camera's processed frames to segmented MP4 and/or HDF5
files, under a retention limit so the disk never fills.

Layout: ``record_dir/CAMERA/CAMERA-20261123T161500Z-000042.mp4`` (the time and
sequence number of the first frame). A segment being written ends in
``.part.mp4`` / ``.part.h5`` and is renamed when closed.

The collector's loop only copies a frame into a queue (``queue_bytes``, 128 MiB,
at most); a writer thread
encodes and writes. When the writer falls behind, frames are left out of the
recording and counted (``skipped``), never queued without bound.

Retention, checked before every frame is written:

* the files under ``record_dir`` (closed and open, what open ones will be
  once closed) never exceed ``record_max_bytes``: the oldest closed segments
  are deleted first, and a segment is closed once it reaches its share of
  the limit, so there is always something old to delete;
* closed segments older than ``record_max_age_s`` are deleted;
* the file system keeps ``record_min_free_mb`` free for everybody else.
  When that cannot be had by deleting our own old segments (the disk is
  full of other things), recording pauses, says why, and tries again later.
"""

import datetime
import errno
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from vidpipe import names
from vidpipe.outputs.h5store import HEADER_BYTES, require_h5py
from vidpipe.link.ordering import OK, Entry
from vidpipe.config import CollectorConfig
from vidpipe.outputs import Output, Requirement, Site, picture
from vidpipe.outputs.retention import Retention
from vidpipe.outputs.segments import (EXTENSIONS, MP4_SLACK, SEGMENT_TYPES, Mp4Segment,
                                      Segment, choose_codec)
from vidpipe.stats import Tally

log = logging.getLogger("vidpipe.recording")
PAUSE_S = 5.0
RETRY_S = 30.0  # after a writer error


class RecordOutput(Output):
    name = "record"
    TABLE = "record"

    @classmethod
    def requirements(cls, cc: CollectorConfig) -> List[Requirement]:
        return [Requirement("h5py", "python3-h5py", "collector.record.formats")] \
            if "hdf5" in cc.record_formats else []

    @classmethod
    def build(cls, cc: CollectorConfig, site: Site) -> "Output":
        return cls(cc.record_dir, cc.record_formats, cc.record_segment_s, cc.record_max_bytes,
                   cc.record_max_age_s, cc.record_min_free_mb * 2 ** 20, site.fps,
                   codec=cc.record_codec)

    @classmethod
    def keys_to_check(cls, cc: CollectorConfig) -> str:
        return "collector.record.dir = {}, collector.record.codec = {!r}".format(
            cc.record_dir, cc.record_codec)

    def __init__(self, root: str, formats: List[str], segment_s: float, max_bytes: int,
                 max_age_s: float, min_free_bytes: int, fps: Callable[[str], float],
                 queue_bytes: int = 128 * 2 ** 20, codec: str = "auto") -> None:
        if "hdf5" in formats:
            require_h5py()
        if "mp4" in formats:
            # OpenCV takes most of a second to import, and the codec is tried:
            # at start, not in the writer thread with the first frames waiting
            Mp4Segment.codec = choose_codec(codec)
        os.makedirs(root, exist_ok=True)
        self.root = root
        self.formats = list(formats)
        self.segment_s = segment_s
        self.fps = fps
        self.open: Dict[Tuple[str, str], Segment] = {}
        self.lock = threading.Lock()
        self.retention = Retention(root, max_bytes, max_age_s, min_free_bytes, self.open_bytes)
        self.segment_cap = max(1, max_bytes // (2 * len(self.formats)))
        # frames waiting for the writer, bounded in bytes (at least one frame fits)
        self.queue: "queue.Queue[Optional[Tuple[str, Optional[np.ndarray], int, int]]]" = \
            queue.Queue()
        self.queue_bytes = queue_bytes
        self.queued_bytes = 0
        self.lock_queue = threading.Lock()
        self.skipped = Tally()
        self.written = 0
        self.paused_until = 0.0
        self.pause_reason = ""
        self.broken_until: Dict[Tuple[str, str], float] = {}
        self.thread = threading.Thread(target=self._writer, name="recording", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ collector side

    def emit(self, camera: str, entry: Entry, latency_ms: Optional[float]) -> None:
        if entry.status != OK or entry.late:
            return
        msg = entry.message
        if msg.payload is None or not len(msg.payload):
            self.skipped["no_image"] += 1
            return
        if time.monotonic() < self.paused_until:
            self.skipped["paused"] += 1
            return
        image = picture(msg)
        if self.queued_bytes + image.nbytes > self.queue_bytes:
            self.skipped["writer_behind"] += 1  # the disk or the encoder is too slow
            return
        with self.lock_queue:
            self.queued_bytes += image.nbytes
        # a copy: the image may live in a handler's ring that is reused
        self.queue.put((camera, np.array(image), msg.header.seq, msg.header.capture_ns))

    def end_of_stream(self, camera: str) -> None:
        self.queue.put((camera, None, 0, 0))  # close its segments once its frames are written

    def close(self) -> None:
        # the unit has seconds to stop: frames still queued are left out (and
        # counted), the segments being written are closed properly
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[1] is not None:
                self.skipped["shutdown"] += 1
        self.queue.put(None)
        self.thread.join(30)
        with self.lock:
            for key in list(self.open):
                self._finish(key)

    def open_bytes(self) -> int:
        return sum(seg.size_estimate() for seg in list(self.open.values()))

    def status(self) -> Dict[str, Any]:
        return {"written": self.written, "skipped": self.skipped.as_dict(),
                "deleted": self.retention.deleted, "paused": self.pause_reason
                if time.monotonic() < self.paused_until else ""}

    # ------------------------------------------------------------------ writer thread

    def _writer(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            camera, image, seq, capture_ns = item
            if image is not None:
                with self.lock_queue:
                    self.queued_bytes -= image.nbytes
            if image is None:
                with self.lock:
                    for key in [k for k in self.open if k[0] == camera]:
                        self._finish(key)
                continue
            with self.lock:
                for fmt in self.formats:
                    if time.monotonic() < self.broken_until.get((camera, fmt), 0.0):
                        continue
                    try:
                        self._write(fmt, camera, image, seq, capture_ns)
                    except Exception as exc:  # recording trouble never stops the collector
                        self._trouble(fmt, camera, exc)
            self.written += 1

    def _write(self, fmt: str, camera: str, image: np.ndarray, seq: int,
               capture_ns: int) -> None:
        key = (camera, fmt)
        seg = self.open.get(key)
        now = time.monotonic()
        self.retention.expire(time.time())
        if seg is not None and (not seg.matches(image) or now - seg.opened >= self.segment_s
                                or seg.size_estimate() + seg.frame_bytes(image)
                                > self.segment_cap):
            self._finish(key)
            seg = None
        if seg is None:
            seg = self._start(fmt, camera, image, seq, capture_ns)
            if seg is None:
                return
        extra = seg.frame_bytes(image)
        if self.retention.make_room(extra):
            # nothing old left to delete: close the biggest open segment so that
            # it can go, and try once more
            biggest = max(self.open, key=lambda k: self.open[k].size_estimate())
            self._finish(biggest)
            why = self.retention.make_room(extra + MP4_SLACK)
            if why:
                return self._pause(camera, why)
            if biggest == key:
                return  # this frame is not recorded; the next one starts anew
        seg.write(image, seq, capture_ns)

    def _start(self, fmt: str, camera: str, image: np.ndarray, seq: int,
               capture_ns: int) -> Optional[Segment]:
        if not names.valid(camera):  # it becomes a path (the wire checks it too)
            raise ValueError("camera name {!r} is not a valid name".format(camera[:40]))
        folder = os.path.join(self.root, camera)
        os.makedirs(folder, exist_ok=True)
        when = datetime.datetime.fromtimestamp(capture_ns / 1e9, datetime.timezone.utc)
        stamp = when.strftime("%Y%m%dT%H%M%SZ")
        path = os.path.join(folder, "{}-{}-{:06d}{}".format(camera, stamp, seq,
                                                            EXTENSIONS[fmt]))
        why = self.retention.make_room(2 * HEADER_BYTES)  # room for its headers first
        if why:
            self._pause(camera, why)
            return None
        seg = SEGMENT_TYPES[fmt](path, camera, image, self.fps(camera))
        self.open[(camera, fmt)] = seg
        return seg

    def _finish(self, key: Tuple[str, str]) -> None:
        seg = self.open.pop(key)
        path = seg.finish()
        if path is not None:
            self.retention.add(path)
            log.info("recording %s: %s, %d frames", seg.camera, path, seg.frames)

    def _pause(self, camera: str, reason: str) -> None:
        self.pause_reason = reason
        if time.monotonic() >= self.paused_until:
            log.error("recording paused for %.0f s: %s", PAUSE_S, self.pause_reason)
        self.paused_until = time.monotonic() + PAUSE_S
        for key in [k for k in self.open if k[0] == camera]:
            self._finish(key)

    def _trouble(self, fmt: str, camera: str, exc: Exception) -> None:
        key = (camera, fmt)
        full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
        if not full:  # a full disk is handled by the pause below
            log.error("recording %s (%s): %s; trying again in %.0f s", camera, fmt, exc,
                      RETRY_S)
            self.broken_until[key] = time.monotonic() + RETRY_S
        if key in self.open:
            self._finish(key)
        if full:
            self.retention.delete_oldest()
            self._pause(camera, "the disk is full ({}), {} MB free on {}".format(
                os.strerror(exc.errno), self.retention.free_bytes() // 2 ** 20, self.root))
        self.skipped["error"] += 1
