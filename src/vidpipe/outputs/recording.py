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

import ctypes
import datetime
import errno
import logging
import os
import queue
import re
import stat
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from vidpipe import names
from vidpipe.outputs.h5store import HEADER_BYTES, ROW_OVERHEAD, H5Writer, require_h5py
from vidpipe.ordering import OK, Entry
from vidpipe.outputs import Output, bgr8, picture
from vidpipe.stats import Tally

log = logging.getLogger("vidpipe.recording")
EXTENSIONS = {"mp4": ".mp4", "hdf5": ".h5"}
# What the MP4 muxer may hold in memory, not yet in the file: FFmpeg 5.1 as
# OpenCV 4.6 drives it (Debian 12) writes in 256 KiB blocks, so a short
# segment can stay at 44 bytes on disk until it is closed. A larger hold seen
# when a segment closes raises the bound for the segments after it
# (Mp4Segment.held), in case another FFmpeg build buffers more.
MP4_SLACK = 320 * 1024
INDEX_BYTES_PER_FRAME = 32  # an MP4's sample tables, per frame, at most
PAUSE_S = 5.0
RETRY_S = 30.0  # after a writer error


class Segment:
    """One file being written."""

    def __init__(self, path: str, camera: str, image: np.ndarray, fps: float) -> None:
        self.final = path
        stem, ext = os.path.splitext(path)
        self.path = stem + ".part" + ext  # the muxer goes by the extension
        self.camera = camera
        self.opened = time.monotonic()
        self.frames = 0
        self.shape = image.shape
        self.dtype = image.dtype

    def matches(self, image: np.ndarray) -> bool:
        return image.shape == self.shape and image.dtype == self.dtype

    def write(self, image: np.ndarray, seq: int, capture_ns: int) -> None:
        raise NotImplementedError

    def on_disk(self) -> int:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    def size_estimate(self) -> int:
        """A bound on the file's size once closed."""
        raise NotImplementedError

    def frame_bytes(self, image: np.ndarray) -> int:
        """A bound on what one more frame adds."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def finish(self) -> Optional[str]:
        """Close and rename; the final path, or None when it could not be kept."""
        try:
            self.close()
        except Exception as exc:  # a broken file is still removed below
            log.error("recording %s: closing %s failed: %s", self.camera, self.path, exc)
        if self.frames == 0:
            _remove(self.path)
            return None
        try:
            os.replace(self.path, self.final)
        except OSError as exc:
            log.error("recording %s: cannot rename %s: %s", self.camera, self.path, exc)
            return self.path if os.path.exists(self.path) else None
        return self.final


class Mp4Segment(Segment):
    def __init__(self, path: str, camera: str, image: np.ndarray, fps: float) -> None:
        super().__init__(path, camera, image, fps)
        import cv2

        height, width = image.shape[:2]
        self.writer = cv2.VideoWriter(self.path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"),
                                      fps, (width, height), True)
        if not self.writer.isOpened():
            raise OSError(errno.EIO, "OpenCV cannot write MP4 (mp4v) to {}".format(self.path))

    #: the most a closed segment grew by at close, beyond its index
    held = MP4_SLACK

    def write(self, image: np.ndarray, seq: int, capture_ns: int) -> None:
        self.writer.write(bgr8(image))
        self.frames += 1

    def size_estimate(self) -> int:
        # + the index written at close
        return self.on_disk() + Mp4Segment.held + INDEX_BYTES_PER_FRAME * self.frames

    def frame_bytes(self, image: np.ndarray) -> int:
        # an MPEG-4 frame is far smaller than the raw one; a key frame can be
        # large, so count a quarter of the raw size (bounded by the slack above)
        return max(4096, int(image.size) // 4)

    def close(self) -> None:
        before = self.on_disk()
        self.writer.release()
        grew = self.on_disk() - before - INDEX_BYTES_PER_FRAME * self.frames
        if grew > Mp4Segment.held:
            log.warning("recording %s: the MP4 muxer held %d bytes until close, more than "
                        "the %d allowed for; record_max_bytes may have been passed by the "
                        "difference, later segments allow for it", self.camera, grew,
                        Mp4Segment.held)
            Mp4Segment.held = grew


class H5Segment(Segment):
    """An HDF5 segment whose disk space is reserved before HDF5 writes into it:
    the blocks for its headers and first frame before the file is created,
    those for each next frame before it is appended. HDF5 does not survive a
    write that fails half-way (HDF5 1.12 crashed the process when the file's
    handles were freed after its close had failed with ENOSPC), so a disk that
    fills up under us must show as an ordinary ENOSPC from the reservation and
    never reach HDF5. The reservation keeps the file's size
    (``FALLOC_FL_KEEP_SIZE``): HDF5 creates its file in what looks empty, and
    trims the unused blocks when it closes it."""

    def __init__(self, path: str, camera: str, image: np.ndarray, fps: float) -> None:
        super().__init__(path, camera, image, fps)
        self.reserved = 0
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
                          | os.O_NOFOLLOW, 0o644)
        try:
            self._reserve(image)
            self.fileobj = os.fdopen(self.fd, "r+b", buffering=0)
        except BaseException:
            os.close(self.fd)
            _remove(self.path)
            raise
        try:
            self.writer = H5Writer(self.path, image.shape, image.dtype, camera,
                                   fileobj=self.fileobj)
            self.writer.file.attrs["fps"] = fps
        except BaseException:
            self.fileobj.close()
            _remove(self.path)
            raise

    def _reserve(self, image: np.ndarray) -> None:
        """Room for one more frame, and for what closing the file writes."""
        # what the writer's size_estimate() will be with it, and the close
        want = (self.frames + 1) * self.frame_bytes(image) + 2 * HEADER_BYTES
        if want > self.reserved:
            reserve_blocks(self.fd, want)  # OSError(ENOSPC) when the disk is full
            self.reserved = want

    def write(self, image: np.ndarray, seq: int, capture_ns: int) -> None:
        self._reserve(image)
        self.writer.append(image, seq, capture_ns)
        self.frames += 1

    def size_estimate(self) -> int:
        return max(self.on_disk(), self.reserved, self.writer.size_estimate() + HEADER_BYTES)

    def frame_bytes(self, image: np.ndarray) -> int:
        return int(image.nbytes) + ROW_OVERHEAD

    def close(self) -> None:
        try:
            self.writer.close()  # HDF5 trims the file to what it used
        finally:
            self.fileobj.close()


SEGMENT_TYPES = {"mp4": Mp4Segment, "hdf5": H5Segment}


def _fallocate() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    call = getattr(libc, "fallocate64", None) or libc.fallocate  # 64-bit offsets on armhf too
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    call.restype = ctypes.c_int
    return call


_FALLOCATE = _fallocate()
FALLOC_FL_KEEP_SIZE = 1
_warned_unreserved = False


def reserve_blocks(fd: int, length: int) -> None:
    """Allocate the first ``length`` bytes of the file's blocks without changing
    its size; OSError(ENOSPC) when the disk cannot hold them. A file system
    that cannot reserve (no fallocate) is written without, with one warning."""
    if _FALLOCATE(fd, FALLOC_FL_KEEP_SIZE, 0, length) == 0:
        return
    global _warned_unreserved
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS):
        if not _warned_unreserved:
            _warned_unreserved = True
            log.warning("recording: this file system cannot reserve space (fallocate: %s); "
                        "HDF5 segments are written without, and a disk that fills up "
                        "while one is written may leave it broken", os.strerror(err))
        return
    raise OSError(err, os.strerror(err))


#: the names vidpipe gives segments: CAM/CAM-<UTC stamp>-<seq>.mp4|.h5
SEGMENT_RE = re.compile(r"(?P<camera>" + names.NAME_PATTERN
                        + r")-[0-9]{8}T[0-9]{6}Z-[0-9]{6,20}\.(mp4|h5)")
#: ... and of a segment being written
PART_RE = re.compile(SEGMENT_RE.pattern.replace(r"\.(mp4|h5)", r"\.part\.(mp4|h5)"))


def own_segments(root: str) -> List[Tuple[float, str, int]]:
    """(mtime, path, size) of the segments vidpipe made under ``root``: plain
    files named by its pattern, in a real (not linked) folder of the same
    camera. Anything else there is the operator's and is never touched."""
    found = []
    try:
        folders = list(os.scandir(root))
    except OSError:
        return []
    for folder in folders:
        if not names.valid(folder.name) or not folder.is_dir(follow_symlinks=False):
            continue
        try:
            entries = list(os.scandir(folder.path))
        except OSError:
            continue
        for entry in entries:
            match = SEGMENT_RE.fullmatch(entry.name)
            if not match or match.group("camera") != folder.name:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((st.st_mtime, entry.path, st.st_size))
    return sorted(found)


def _remove(path: str) -> int:
    """Delete one of our segments, closed or being written (checked again: a
    plain file, our name)."""
    name = os.path.basename(path)
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or not (SEGMENT_RE.fullmatch(name)
                                                 or PART_RE.fullmatch(name)):
            log.warning("retention: %s is not a vidpipe segment any more; left alone", path)
            return 0
        os.unlink(path)
        return st.st_size
    except OSError:
        return 0


class Retention:
    """What is on disk under ``root`` and what may be deleted to make room."""

    def __init__(self, root: str, max_bytes: int, max_age_s: float, min_free_bytes: int,
                 open_bytes: Callable[[], int]) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.min_free_bytes = min_free_bytes
        self.open_bytes = open_bytes
        self.closed: List[Tuple[float, str, int]] = []  # (mtime, path, size), oldest first
        self.deleted = 0
        self.last_expiry = 0.0
        self.scan()

    def scan(self) -> None:
        """Our segments already there count (an earlier run's too); other files
        are left alone and not counted."""
        self.closed = own_segments(self.root)

    def add(self, path: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        self.closed.append((st.st_mtime, path, st.st_size))

    def closed_bytes(self) -> int:
        return sum(size for _m, _p, size in self.closed)

    def free_bytes(self) -> int:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def shortfall(self, extra: int) -> str:
        """Why ``extra`` more bytes do not fit now, in words ('' when they do)."""
        if self.closed_bytes() + self.open_bytes() + extra > self.max_bytes:
            return "a frame does not fit in record_max_bytes ({} bytes)".format(self.max_bytes)
        free = self.free_bytes()
        if free - extra < self.min_free_bytes:
            return ("{} MB free on {}, below record_min_free_mb, and no old recording left "
                    "to delete".format(free // 2 ** 20, self.root))
        return ""

    def delete_oldest(self) -> bool:
        if not self.closed:
            return False
        _mtime, path, _size = self.closed.pop(0)
        size = _remove(path)
        self.deleted += 1
        log.info("retention: deleted %s (%d bytes) to keep within record_max_bytes, "
                 "record_max_age_s and record_min_free_mb", path, size)
        return True

    def make_room(self, extra: int) -> str:
        """Delete old segments until ``extra`` bytes fit: '' or why they cannot."""
        while True:
            why = self.shortfall(extra)
            if not why or not self.delete_oldest():
                return why

    def expire(self, now_wall: float) -> None:
        if not self.max_age_s:
            return
        while self.closed and self.closed[0][0] < now_wall - self.max_age_s:
            self.delete_oldest()


class RecordOutput(Output):
    def __init__(self, root: str, formats: List[str], segment_s: float, max_bytes: int,
                 max_age_s: float, min_free_bytes: int, fps: Callable[[str], float],
                 queue_bytes: int = 128 * 2 ** 20) -> None:
        if "hdf5" in formats:
            require_h5py()
        if "mp4" in formats:
            # OpenCV takes most of a second to import: at start, not in the
            # writer thread with the first frames waiting
            import cv2  # noqa: F401
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
