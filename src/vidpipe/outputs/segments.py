"""The files a recording is written to: an MP4 segment (OpenCV's FFmpeg
writer) or an HDF5 segment (every frame lossless, its disk space reserved
before HDF5 writes into it). A segment being written ends in ``.part.mp4`` /
``.part.h5`` and is renamed when closed."""

import ctypes
import errno
import logging
import os
import time
from typing import Any, Optional, Tuple

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


#: how an MP4 segment's frames are encoded: ``h264`` GStreamer's x264enc
#: (ultrafast, through OpenCV's GStreamer writer), ``avc1`` H.264 by OpenCV's
#: FFmpeg writer (libx264 at its default preset: 2-3x the CPU of ``h264``),
#: ``mp4v`` MPEG-4 Part 2 (OpenCV's FFmpeg writer; cheap, but no browser plays it)
CODECS = {"auto": ("h264", "mp4v"), "h264": ("h264", "avc1"), "mp4v": ("mp4v",)}
CODEC_TEXT = {"h264": "H.264 (GStreamer x264enc)", "avc1": "H.264 (OpenCV's FFmpeg)",
              "mp4v": "MPEG-4 Part 2 (mp4v)"}


def _h264_pipeline(path: str, fps: float) -> str:
    quoted = '"{}"'.format(path.replace("\\", "\\\\").replace('"', '\\"'))
    return ("appsrc ! videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=ultrafast "
            "tune=zerolatency key-int-max={} ! video/x-h264,profile=constrained-baseline ! "
            "h264parse ! mp4mux fragment-duration=1000 ! filesink location={}").format(
                max(1, int(round(fps))), quoted)


def open_writer(codec: str, path: str, fps: float, size: Tuple[int, int]) -> Any:
    """An OpenCV VideoWriter of ``codec`` (see :data:`CODECS`) for BGR frames."""
    import cv2

    if codec == "h264":
        return cv2.VideoWriter(_h264_pipeline(path, fps), cv2.CAP_GSTREAMER, 0, fps, size, True)
    return cv2.VideoWriter(path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*codec), fps, size,
                           True)


def choose_codec(choice: str) -> str:
    """The first codec of ``[collector.record] codec``'s list this box's
    OpenCV writes (a few frames to a file in a temporary folder, once, when
    the recording starts); a fallback is logged with why. OSError when none."""
    import tempfile

    tried = []
    for codec in CODECS[choice]:
        with tempfile.TemporaryDirectory(prefix="vidpipe-codec-") as tmp:
            path = os.path.join(tmp, "probe.mp4")
            writer = open_writer(codec, path, 10.0, (64, 48))
            if writer.isOpened():
                for _ in range(3):
                    writer.write(np.zeros((48, 64, 3), np.uint8))
                writer.release()
                if os.path.exists(path) and os.path.getsize(path) > 0:
                    if tried:
                        log.warning("recording: MP4 segments are %s: %s cannot be written "
                                    "here (%s)", CODEC_TEXT[codec], " or ".join(
                                        CODEC_TEXT[t] for t in tried), _h264_hint())
                    else:
                        log.info("recording: MP4 segments are %s", CODEC_TEXT[codec])
                    return codec
            tried.append(codec)
    raise OSError("[collector.record] codec = {!r}: this box's OpenCV writes "
                  "none of {} ({})".format(choice, ", ".join(CODEC_TEXT[t] for t in tried),
                                           _h264_hint()))


def _h264_hint() -> str:
    return ("H.264 needs OpenCV with GStreamer and x264enc, Debian: gstreamer1.0-plugins-ugly; "
            "mp4v plays in VLC, not in browsers")


class Mp4Segment(Segment):
    #: set once by the recording (:func:`choose_codec`)
    codec = "mp4v"

    def __init__(self, path: str, camera: str, image: np.ndarray, fps: float) -> None:
        super().__init__(path, camera, image, fps)
        height, width = image.shape[:2]
        # H.264 4:2:0 wants an even size (a resize stage may give another)
        codec = Mp4Segment.codec if not (width % 2 or height % 2) else "mp4v"
        self.writer = open_writer(codec, self.path, fps, (width, height))
        self.seen_disk = 0  # the file's size when last looked at
        self.step = 0  # the largest growth between two looks
        if not self.writer.isOpened():
            raise OSError(errno.EIO, "OpenCV cannot write MP4 ({}) to {}".format(
                CODEC_TEXT[codec], self.path))

    #: the most a closed segment grew by at close, beyond its index
    held = MP4_SLACK

    def write(self, image: np.ndarray, seq: int, capture_ns: int) -> None:
        self.writer.write(bgr8(image))
        self.frames += 1

    def size_estimate(self) -> int:
        # + what the muxer holds: at least the slack, at least the largest
        # write to disk seen (H.264's fragmented MP4 writes a fragment, a
        # second of frames, at once: at 1080p more than the slack) + the
        # index written at close
        disk = self.on_disk()
        if disk > self.seen_disk:
            self.step = max(self.step, disk - self.seen_disk)
            self.seen_disk = disk
        return disk + max(Mp4Segment.held, self.step) + INDEX_BYTES_PER_FRAME * self.frames

    def frame_bytes(self, image: np.ndarray) -> int:
        # an MPEG-4 frame is far smaller than the raw one; a key frame can be
        # large, so count a quarter of the raw size (bounded by the slack above)
        return max(4096, int(image.size) // 4)

    def close(self) -> None:
        before = self.on_disk()
        self.writer.release()
        grew = self.on_disk() - before - INDEX_BYTES_PER_FRAME * self.frames
        allowed = max(Mp4Segment.held, self.step)
        if grew > allowed:
            log.warning("recording %s: the MP4 muxer held %d bytes until close, more than "
                        "the %d allowed for; record.max_bytes may have been passed by the "
                        "difference, later segments allow for it", self.camera, grew,
                        allowed)
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
