"""The ``people`` stage (OpenCV's HOG people detector): its options checked
with errors that name the key, boxes in the frame's own pixels whatever the
``upscale``, and a second detector in a chain adding to the first's boxes."""

import numpy as np
import pytest

from helpers import vtest
from vidpipe.config import ConfigError, config_from_dict
from vidpipe.stages import build_chain
from vidpipe.stages.base import Frame, add_detections


def test_a_window_step_off_the_cell_grid_is_refused_naming_the_key() -> None:
    config = config_from_dict({"stage": {"people": {"win_stride": 6}}})
    with pytest.raises(ConfigError) as err:
        build_chain(config, ["people"], "handlers")
    assert err.value.key == "stage.people" and "win_stride" in str(err.value)


def test_a_frame_smaller_than_the_window_finds_nobody() -> None:
    (stage,) = build_chain(config_from_dict({}), ["people"], "handlers")
    frame = Frame("c", 0, 0, np.zeros((60, 40), np.uint8))
    stage.process(frame)
    assert frame.meta["detections"] == []


def test_upscaled_boxes_are_in_the_frames_own_pixels() -> None:
    import cv2

    ok, image = cv2.VideoCapture(vtest()).read()
    assert ok
    found = {}
    for up in (1.6, 2.0):
        config = config_from_dict({"stage": {"people": {"upscale": up}}})
        (stage,) = build_chain(config, ["people"], "handlers")
        frame = Frame("c", 0, 0, image)
        stage.process(frame)
        found[up] = frame.meta["detections"]
        for d in found[up]:
            x, y, w, h = d["box"]
            assert d["label"] == "person" and 0 < d["confidence"] < 1
            assert 0 <= x and x + w <= 768 and 0 <= y and y + h <= 576 and 30 < h < 200, d
    # the same people at both sizes: every box at 1.6 has one at 2.0 near it
    for d in found[1.6]:
        cx = d["box"][0] + d["box"][2] / 2
        assert any(abs(cx - (e["box"][0] + e["box"][2] / 2)) < 20 for e in found[2.0]), d


def test_a_second_detector_adds_to_the_first_ones_boxes() -> None:
    frame = Frame("c", 0, 0, np.zeros((4, 4), np.uint8))
    add_detections(frame, [{"box": [0, 0, 1, 1], "label": "car"}])
    add_detections(frame, [{"box": [1, 1, 1, 1], "label": "person"}])
    assert [d["label"] for d in frame.meta["detections"]] == ["car", "person"]
