"""``detect_when = "motion-region"``: where a detector looks (around what
moved, grown, inside the frame; the whole frame when that is most of it),
and what it finds there comes back in the frame's own pixels."""

from typing import Any, List

import numpy as np

from helpers import vtest
from vidpipe.config import config_from_dict
from vidpipe.stages import build_chain
from vidpipe.stages.base import I420, Frame
from vidpipe.stages.region import MIN_SIDE, motion_region, run_in_region


def frame_with(boxes: Any, shape: tuple = (360, 640, 3), fmt: str = "") -> Frame:
    frame = Frame("c", 0, 0, np.zeros(shape, np.uint8), format=fmt)
    frame.meta["motion"] = {"boxes": boxes, "fraction": 0.01}
    return frame


def test_the_region_grows_around_what_moved_and_stays_inside_the_frame() -> None:
    # two walkers: the box around both, half as much again on each side
    assert motion_region(frame_with([[200, 100, 40, 80], [300, 120, 40, 80]])) == \
        (130, 50, 280, 200)
    # a small blob: at least MIN_SIDE a side, centred on it
    x, y, w, h = motion_region(frame_with([[300, 200, 10, 10]]))
    assert (w, h) == (MIN_SIDE, MIN_SIDE) and x <= 300 and x + w >= 310 and y <= 200
    # at the corner: shifted inside, not cut
    assert motion_region(frame_with([[630, 350, 10, 10]])) == (512, 232, 128, 128)


def test_the_whole_frame_when_the_region_would_be_most_of_it() -> None:
    assert motion_region(frame_with([[100, 50, 400, 250]])) is None
    assert motion_region(frame_with([])) is None
    assert motion_region(frame_with([[1, 1, 8, 8]], (540, 640), I420)) is None
    # what is not a box is not a reason to look anywhere
    assert motion_region(frame_with(["x", [1, 2, -3, 4], [True, 1, 1, 1]])) is None
    assert motion_region(Frame("c", 0, 0, np.zeros((10, 10), np.uint8))) is None


class Finder:
    """A detector that sees a crop: it records what it was given and finds
    one thing at (5, 6) of whatever it sees."""

    name = "finder"
    detector = True

    def __init__(self) -> None:
        self.shapes: List[tuple] = []

    def process(self, frame: Frame) -> None:
        self.shapes.append(frame.image.shape)
        frame.meta["detections"] = [{"box": [5, 6, 20, 30], "label": "x", "confidence": 0.9},
                                    {"label": "no box"}]
        frame.meta["faces"] = [[5, 6, 10, 10], "junk"]
        frame.meta["finder"] = {"version": 1}


def test_what_the_detector_finds_in_the_region_is_moved_into_the_frame() -> None:
    frame = frame_with([[200, 100, 40, 80]])
    frame.meta["detections"] = [{"box": [1, 1, 2, 2], "label": "earlier"}]
    finder = Finder()
    region = motion_region(frame)
    run_in_region(finder, frame, region)  # type: ignore[arg-type]
    x, y, w, h = region  # type: ignore[misc]
    assert finder.shapes == [(h, w, 3)]
    assert frame.meta["detections"][0]["label"] == "earlier"  # kept: added to, not replaced
    assert frame.meta["detections"][1]["box"] == [5 + x, 6 + y, 20, 30]
    assert frame.meta["detections"][2] == {"label": "no box"}
    assert frame.meta["faces"] == [[5 + x, 6 + y, 10, 10], "junk"]
    assert frame.meta["finder"] == {"version": 1} and frame.meta["detect_region"] == list(region)


def test_people_found_in_the_region_are_the_ones_found_in_the_whole_frame() -> None:
    """vtest.avi, OpenCV's HOG: the region around one person finds that
    person where the whole frame does (within a few pixels), at a fraction
    of the pixels."""
    import cv2

    ok, image = cv2.VideoCapture(vtest()).read()
    assert ok
    (stage,) = build_chain(config_from_dict({"stage": {"people": {"upscale": 1.6}}}),
                           ["people"], "handlers")
    whole = Frame("c", 0, 0, image)
    stage.process(whole)
    people = [d["box"] for d in whole.meta["detections"]]
    assert people, "HOG found nobody in vtest's first frame"
    target = max(people, key=lambda b: b[2] * b[3])
    frame = frame_with([list(target)], image.shape)
    frame.image = image
    region = motion_region(frame)
    assert region is not None and region[2] * region[3] < 0.6 * image.shape[0] * image.shape[1]
    run_in_region(stage, frame, region)
    found = [d["box"] for d in frame.meta["detections"]]
    assert any(all(abs(a - b) <= 8 for a, b in zip(box, target)) for box in found), \
        (target, found)
