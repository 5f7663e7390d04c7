"""Pixel layouts shared by the decoder's sources and the handler's stages:
planar I420 (the decoders' own format, a camera's ``deliver = "i420"``; on
the wire, :data:`vidpipe.link.wire.FLAG_I420`) and gray. NumPy only; OpenCV is
imported where a conversion needs it.

I420 in vidpipe is video range (luma 16-235, chroma 16-240), as most cameras
send it and as OpenCV's conversions read it. A decoder whose frames are full
range (JPEG's, and many IP cameras' H.264: FFmpeg calls them yuvj420p) brings
them into video range first (:func:`full_to_video_range`)."""

from typing import Any, Optional, Tuple

import numpy as np

#: video-range luma (16-235, what cameras send) to full-range gray (0-255)
VIDEO_TO_FULL = (255 / 219, -16 * 255 / 219)
#: full-range luma and chroma (0-255) to video range (16-235, 16-240)
LUMA_TO_VIDEO = np.round(16 + np.arange(256) * (219 / 255)).astype(np.uint8)
CHROMA_TO_VIDEO = np.round(128 + (np.arange(256) - 128) * (224 / 255)).astype(np.uint8)


def i420_planes(packed: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a packed I420 array (height*3/2 rows
    of width: Y, then U and V at half width and height, one after the other)."""
    if not packed.flags["C_CONTIGUOUS"]:
        raise ValueError("a packed I420 array must be contiguous")
    rows, width = packed.shape
    height = rows * 2 // 3
    flat, luma, chroma = packed.reshape(-1), height * width, (height // 2) * (width // 2)
    return (flat[:luma].reshape(height, width),
            flat[luma:luma + chroma].reshape(height // 2, width // 2),
            flat[luma + chroma:luma + 2 * chroma].reshape(height // 2, width // 2))


def full_to_video_range(packed: np.ndarray, out: np.ndarray) -> np.ndarray:
    """A full-range packed I420 array in video range, into ``out`` (same shape;
    may be ``packed`` itself): a table lookup per byte, ~1 ms at 1080p."""
    import cv2

    if out.shape != packed.shape or not out.flags["C_CONTIGUOUS"]:
        raise ValueError("full_to_video_range: out must be a contiguous array like packed")
    luma = packed.shape[0] * 2 // 3 * packed.shape[1]
    src, dst = packed.reshape(-1), out.reshape(-1)
    cv2.LUT(src[:luma], LUMA_TO_VIDEO, dst=dst[:luma])
    cv2.LUT(src[luma:], CHROMA_TO_VIDEO, dst=dst[luma:])
    return out


def luma_to_gray(luma: np.ndarray, out: Optional[np.ndarray] = None) -> Any:
    """I420's Y plane as full-range gray (what BGR -> gray gives, within rounding)."""
    import cv2

    return cv2.convertScaleAbs(luma, out, *VIDEO_TO_FULL)


def to_gray(image: np.ndarray, out: Optional[np.ndarray] = None) -> Any:
    """A BGR or BGRA image in gray; a 2-D one is gray already."""
    if image.ndim == 2:
        return image
    import cv2

    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code) if out is None else cv2.cvtColor(image, code, dst=out)
