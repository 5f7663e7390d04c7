"""The files a recording is written to: an MP4 segment (OpenCV's FFmpeg
writer) or an HDF5 segment (every frame lossless, its disk space reserved
before HDF5 writes into it). A segment being written ends in ``.part.mp4`` /
``.part.h5`` and is renamed when closed."""

import ctypes
import errno
import logging
import os
import time
from typing import Any, Optional

import numpy as np

from vidpipe.outputs import bgr8
from vidpipe.outputs.h5store import HEADER_BYTES, ROW_OVERHEAD, H5Writer
from vidpipe.outputs.retention import remove_segment

log = logging.getLogger("vidpipe.recording")
EXTENSIONS = {"mp4": ".mp4", "hdf5": ".h5"}
# What the MP4 muxer may hold in memory, not yet in the file: FFmpeg 5.1 as
# OpenCV 4.6 drives it (Debian 12) writes in 256 KiB blocks, so a short
# segment can stay at 44 bytes on disk until it is closed. A larger hold seen
# when a segment closes raises the bound for the segments after it
# (Mp4Segment.held), in case another FFmpeg build buffers more.
MP4_SLACK = 320 * 1024
INDEX_BYTES_PER_FRAME = 32  # an MP4's sample tables, per frame, at most


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
            remove_segment(self.path)
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
                        "the %d allowed for; record.max_bytes may have been passed by the "
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
            remove_segment(self.path)
            raise
        try:
            self.writer = H5Writer(self.path, image.shape, image.dtype, camera,
                                   fileobj=self.fileobj)
            self.writer.file.attrs["fps"] = fps
        except BaseException:
            self.fileobj.close()
            remove_segment(self.path)
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
    global _warned_unreserved
    while True:
        if _FALLOCATE(fd, FALLOC_FL_KEEP_SIZE, 0, length) == 0:
            return
        err = ctypes.get_errno()
        if err != errno.EINTR:  # a signal: again, as os.posix_fallocate does
            break
    if err in (errno.EOPNOTSUPP, errno.ENOSYS):
        if not _warned_unreserved:
            _warned_unreserved = True
            log.warning("recording: this file system cannot reserve space (fallocate: %s); "
                        "HDF5 segments are written without, and a disk that fills up "
                        "while one is written may leave it broken", os.strerror(err))
        return
    raise OSError(err, os.strerror(err))
