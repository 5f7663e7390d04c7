"""Pixel layouts shared by the decoder's sources and the handler's stages:
planar I420 (the decoders' own format, a camera's ``deliver = "i420"``; on
the wire, :data:`vidpipe.wire.FLAG_I420`) and gray. NumPy only; OpenCV is
imported where a conversion needs it."""

from typing import Any, Optional, Tuple

import numpy as np

#: video-range luma (16-235, what cameras send) to full-range gray (0-255)
VIDEO_TO_FULL = (255 / 219, -16 * 255 / 219)


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
