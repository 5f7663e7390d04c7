"""Pixel layouts: the planes of a packed I420 array, luma to gray."""

import cv2
import numpy as np
import pytest

from vidpipe.pixels import i420_planes, luma_to_gray, to_gray
from vidpipe.sources import render_testsrc


def test_the_planes_of_a_packed_i420_array_are_views_in_opencvs_order() -> None:
    y = np.arange(48 * 64).astype(np.uint8).reshape(48, 64)
    u, v = np.full((24, 32), 100, np.uint8), np.full((24, 32), 200, np.uint8)
    packed = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(72, 64)
    planes = i420_planes(packed)
    assert [p.shape for p in planes] == [(48, 64), (24, 32), (24, 32)]
    assert all(np.shares_memory(p, packed) for p in planes)
    assert all(np.array_equal(p, q) for p, q in zip(planes, (y, u, v)))
    # OpenCV's I420 has U before V (its YV12, the other way round)
    image = render_testsrc(4, 64, 48)
    i420 = i420_planes(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420))
    yv12 = i420_planes(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_YV12))
    assert np.array_equal(i420[1], yv12[2]) and np.array_equal(i420[2], yv12[1])
    with pytest.raises(ValueError):
        i420_planes(packed[:, ::2])  # not contiguous: writes would be lost


def test_luma_becomes_the_gray_that_bgr_gives() -> None:
    image = render_testsrc(4, 64, 48)
    y = i420_planes(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420))[0]
    assert np.abs(luma_to_gray(y).astype(int) - to_gray(image)).max() <= 3
    assert to_gray(y) is y  # gray already
