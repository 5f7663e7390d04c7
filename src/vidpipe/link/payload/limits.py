"""How large a camera's frames may be: the one bound the decoder's ring, the
FFmpeg path's scaling and the generated ``MemoryMax=`` all use.

A camera's frames may have at most :func:`frame_pixels` pixels: its
configured ``width`` x ``height`` when its section sets a size, and never
less than 1920x1080 (what a network stream of unknown size is taken to be;
a V4L2 camera may give the nearest size it has). A source that hands out a
larger frame is refused before any ring is sized for it -- a network camera
does not choose the decoder's memory. The FFmpeg path scales a stream to the
configured size (as the GStreamer path does), or, without one, down to fit
the bound; a stream over :data:`STREAM_MAX` is never decoded at all.
"""

from typing import Tuple

#: what a frame may have without a configured size (and at least with one)
DEFAULT_BOUND = (1920, 1080)
#: a stream with more pixels than this is refused at open (8K UHD): decoding
#: one such frame costs ~100 MB and over a second of CPU here
STREAM_MAX = (7680, 4320)
#: bytes per pixel of the largest format a frame is handed out in (BGR)
MAX_BYTES_PER_PIXEL = 3


def frame_pixels(width: int, height: int, sized: bool) -> int:
    """The most pixels a camera's frame may have (``sized``: the section gave
    width or height)."""
    bound = DEFAULT_BOUND[0] * DEFAULT_BOUND[1]
    return max(width * height, bound) if sized else bound


def frame_bytes(width: int, height: int, sized: bool) -> int:
    """The most bytes a camera's frame may take (BGR at :func:`frame_pixels`)."""
    return frame_pixels(width, height, sized) * MAX_BYTES_PER_PIXEL


def fit(width: int, height: int, pixels: int) -> Tuple[int, int]:
    """``width`` x ``height`` scaled down, aspect kept and both even, to at
    most ``pixels`` pixels (unchanged when it already fits)."""
    if width * height <= pixels:
        return width, height
    scale = (pixels / float(width * height)) ** 0.5
    w, h = max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
    return w, h


def describe(width: int, height: int, sized: bool, camera: str) -> str:
    """The bound in words, naming the keys that set it."""
    if sized:
        return "{} pixels (cameras.{}.width x height, at least {}x{})".format(
            frame_pixels(width, height, sized), camera, *DEFAULT_BOUND)
    return "{}x{} (a camera without cameras.{}.width/height)".format(*DEFAULT_BOUND, camera)
