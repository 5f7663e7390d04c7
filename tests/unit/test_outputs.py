"""The outputs' common ground (vidpipe.outputs): what an image-showing output
gets of a result."""

import cv2
import numpy as np

from vidpipe.link import wire
from vidpipe.outputs import picture
from vidpipe.capture.sources import render_testsrc


def received(parts: list) -> wire.Message:
    """``parts`` as a receiver decodes them (arrays arrive as bytes)."""
    return wire.decode([p.tobytes() if isinstance(p, np.ndarray) else p for p in parts])


def test_an_i420_result_is_shown_in_bgr_and_others_as_they_came() -> None:
    image = render_testsrc(2, 64, 48)
    planar = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
    msg = received(wire.result_parts(planar, {}, "cam0", 1, 0, 0, flags=wire.FLAG_I420))
    shown = picture(msg)
    assert shown.shape == (48, 64, 3)
    assert np.abs(shown.astype(int) - image).mean() < 4  # 4:2:0 colour at edges
    gray = received(wire.result_parts(planar, {}, "cam0", 1, 0, 0))
    assert picture(gray).shape == (72, 64)  # unflagged: a 2-D image is gray, as sent
