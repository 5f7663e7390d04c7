"""Pixel layouts: the planes of a packed I420 array, luma to gray, full range to video."""

import cv2
import numpy as np
import pytest

from vidpipe.link.pixels import full_to_video_range, i420_planes, luma_to_gray, to_gray
from vidpipe.capture.sources import render_testsrc


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


def test_full_range_i420_is_brought_into_video_range_in_place_or_into_out() -> None:
    y = np.array([[0, 255, 128, 1]] * 2, np.uint8)
    u, v = np.array([[0, 255]], np.uint8), np.array([[128, 64]], np.uint8)
    packed = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(3, 4)
    out = np.zeros_like(packed)
    assert full_to_video_range(packed, out) is out
    oy, ou, ov = i420_planes(out)
    assert oy[0].tolist() == [16, 235, 126, 17]  # luma 16-235
    assert ou.tolist() == [[16, 240]] and ov.tolist() == [[128, 72]]  # chroma 16-240
    original = packed.copy()
    full_to_video_range(packed, packed)
    assert np.array_equal(packed, out) and not np.array_equal(packed, original)
    with pytest.raises(ValueError):
        full_to_video_range(packed, np.zeros((3, 2), np.uint8))
    # a video-range picture made from full-range planes is what OpenCV reads right:
    # the BGR of white full-range luma is white
    white = np.full((6, 4), 255, np.uint8).reshape(-1)
    white[16:] = 128  # neutral chroma
    bgr = cv2.cvtColor(full_to_video_range(white.reshape(6, 4), np.empty((6, 4), np.uint8)),
                       cv2.COLOR_YUV2BGR_I420)
    assert bgr.min() >= 254
