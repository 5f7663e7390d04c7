"""Frames into an HDF5 file (seed 2's recorder): one growing dataset of images
plus their sequence numbers and capture times, so a reader can see gaps.

h5py is optional (Debian: python3-h5py, a Recommends of the package); only
the recording and ``vidpipe tap --save`` need it.
"""

from typing import IO, Any, Optional, Tuple

import numpy as np

HEADER_BYTES = 64 * 1024  # superblock, object headers, the small datasets
ROW_OVERHEAD = 64  # chunk index entries and the seq/capture_ns rows, per frame


def require_h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise RuntimeError("HDF5 needs the h5py module (Debian: apt install python3-h5py)") \
            from None
    return h5py


class H5Writer:
    """``frames`` (N x H x W [x C]), ``seq`` and ``capture_ns`` datasets, one row
    per frame; attributes name the camera. Grows in blocks of ``grow`` rows.

    With ``fileobj`` (an empty file open for reading and writing) HDF5 writes
    through that object (h5py's fileobj driver) instead of opening ``path``
    itself, so the caller can reserve the file's disk space first."""

    def __init__(self, path: str, shape: Tuple[int, ...], dtype: Any, camera: str,
                 grow: int = 64, fileobj: Optional[IO[bytes]] = None) -> None:
        h5py = require_h5py()
        self.path = path
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.grow = grow
        self.count = 0
        self.file = h5py.File(fileobj if fileobj is not None else path, "w")
        self.file.attrs["camera"] = camera
        self.file.attrs["writer"] = "vidpipe"
        self.frames = self.file.create_dataset(
            "frames", shape=(0,) + self.shape, maxshape=(None,) + self.shape,
            dtype=self.dtype, chunks=(1,) + self.shape)
        self.seq = self.file.create_dataset("seq", shape=(0,), maxshape=(None,),
                                            dtype="u8", chunks=(1024,))
        self.capture_ns = self.file.create_dataset("capture_ns", shape=(0,), maxshape=(None,),
                                                   dtype="i8", chunks=(1024,))

    @property
    def frame_bytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def size_estimate(self) -> int:
        """Bytes on disk once closed: data plus index rows plus headers (chunks of
        unused rows are never allocated)."""
        return self.count * (self.frame_bytes + ROW_OVERHEAD) + HEADER_BYTES

    def append(self, image: np.ndarray, seq: int, capture_ns: int) -> None:
        if image.shape != self.shape or image.dtype != self.dtype:
            raise ValueError("frame {} {} does not match the file's {} {}".format(
                image.shape, image.dtype, self.shape, self.dtype))
        n = self.count
        if n >= self.frames.shape[0]:
            rows = n + self.grow
            for dataset in (self.frames, self.seq, self.capture_ns):
                dataset.resize(rows, axis=0)
        self.frames[n] = image
        self.seq[n] = seq
        self.capture_ns[n] = capture_ns
        self.count = n + 1

    def close(self) -> None:
        if self.file is None:
            return
        try:
            for dataset in (self.frames, self.seq, self.capture_ns):
                dataset.resize(self.count, axis=0)
            self.file.close()
        finally:
            self.file = None
