"""``detect_when = "motion-region"``: where a detector looks (around what
moved, grown, inside the frame, one region per place; the whole frame when
that is most of it), and what it finds there comes back in the frame's own
pixels."""

from typing import Any, List

import numpy as np

from helpers import vtest
from vidpipe.config import config_from_dict
from vidpipe.stages import build_chain
from vidpipe.stages.base import I420, Frame
from vidpipe.stages.region import MAX_REGIONS, MIN_SIDE, motion_regions, run_in_regions


def frame_with(boxes: Any, shape: tuple = (360, 640, 3), fmt: str = "") -> Frame:
    frame = Frame("c", 0, 0, np.zeros(shape, np.uint8), format=fmt)
    frame.meta["motion"] = {"boxes": boxes, "fraction": 0.01}
    return frame


def test_the_region_grows_around_what_moved_and_stays_inside_the_frame() -> None:
    # a walker: half as much again on each side, at least MIN_SIDE wide
    assert motion_regions(frame_with([[200, 100, 40, 80]])) == [(156, 60, 128, 160)]
    # two walkers side by side: their grown regions overlap, so one region
    # around both (x 156-384, y 60-240)
    assert motion_regions(frame_with([[200, 100, 40, 80], [300, 120, 40, 80]])) == \
        [(156, 60, 228, 180)]
    # a small blob: at least MIN_SIDE a side, centred on it
    ((x, y, w, h),) = motion_regions(frame_with([[300, 200, 10, 10]]))
    assert (w, h) == (MIN_SIDE, MIN_SIDE) and x <= 300 and x + w >= 310 and y <= 200
    # at the corner: shifted inside, not cut
    assert motion_regions(frame_with([[630, 350, 10, 10]])) == [(512, 232, 128, 128)]


def test_movers_far_apart_are_looked_at_in_regions_of_their_own() -> None:
    """Two walkers at opposite corners of a 1280x720 frame: two small
    regions (5 % of the pixels), where one region around both would be
    the whole frame."""
    far = frame_with([[50, 40, 40, 80], [1180, 600, 40, 80]], (720, 1280, 3))
    assert motion_regions(far) == [(6, 0, 128, 160), (1136, 560, 128, 160)]
    # five places, far apart: joined to MAX_REGIONS, each box still inside one
    boxes = [[20, 20, 20, 40], [600, 20, 20, 40], [1200, 20, 20, 40], [20, 600, 20, 40],
             [1200, 600, 20, 40]]
    regions = motion_regions(frame_with(boxes, (720, 1280, 3)))
    assert regions is not None and len(regions) == MAX_REGIONS
    for bx, by, bw, bh in boxes:
        assert any(x <= bx and bx + bw <= x + w and y <= by and by + bh <= y + h
                   for x, y, w, h in regions), (bx, by, regions)
    for i, a in enumerate(regions):  # and none overlaps another
        for b in regions[i + 1:]:
            assert a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or \
                a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1], (a, b)


def test_the_whole_frame_when_the_region_would_be_most_of_it() -> None:
    assert motion_regions(frame_with([[100, 50, 400, 250]])) is None
    assert motion_regions(frame_with([])) is None
    assert motion_regions(frame_with([[1, 1, 8, 8]], (540, 640), I420)) is None
    # what is not a box is not a reason to look anywhere
    assert motion_regions(frame_with(["x", [1, 2, -3, 4], [True, 1, 1, 1]])) is None
    assert motion_regions(Frame("c", 0, 0, np.zeros((10, 10), np.uint8))) is None
    # rain: hundreds of specks all over are the whole frame, and cheap to decide
    specks = [[x, y, 2, 2] for x in range(0, 640, 20) for y in range(0, 360, 20)]
    assert motion_regions(frame_with(specks)) is None


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
    regions = motion_regions(frame)
    assert regions is not None
    run_in_regions(finder, frame, regions)  # type: ignore[arg-type]
    ((x, y, w, h),) = regions
    assert finder.shapes == [(h, w, 3)]
    assert frame.meta["detections"][0]["label"] == "earlier"  # kept: added to, not replaced
    assert frame.meta["detections"][1]["box"] == [5 + x, 6 + y, 20, 30]
    assert frame.meta["detections"][2] == {"label": "no box"}
    assert frame.meta["faces"] == [[5 + x, 6 + y, 10, 10], "junk"]
    assert frame.meta["finder"] == {"version": 1} and \
        frame.meta["detect_regions"] == [[x, y, w, h]]


def test_each_region_s_finds_are_moved_by_its_own_corner() -> None:
    frame = frame_with([[50, 40, 40, 80], [1180, 600, 40, 80]], (720, 1280, 3))
    finder = Finder()
    regions = motion_regions(frame)
    assert regions is not None and len(regions) == 2
    run_in_regions(finder, frame, regions)  # type: ignore[arg-type]
    assert finder.shapes == [(h, w, 3) for _x, _y, w, h in regions]
    boxes = [d["box"] for d in frame.meta["detections"] if "box" in d]
    assert boxes == [[5 + x, 6 + y, 20, 30] for x, y, _w, _h in regions]
    assert [f for f in frame.meta["faces"] if f != "junk"] == \
        [[5 + x, 6 + y, 10, 10] for x, y, _w, _h in regions]
    assert frame.meta["detect_regions"] == [list(r) for r in regions]


def test_people_found_in_the_region_are_the_ones_found_in_the_whole_frame() -> None:
    """vtest.avi, OpenCV's HOG: the regions around the two people farthest
    apart find them where the whole frame does (within a few pixels), at a
    fraction of the pixels."""
    import cv2

    ok, image = cv2.VideoCapture(vtest()).read()
    assert ok
    (stage,) = build_chain(config_from_dict({"stage": {"people": {"upscale": 1.6}}}),
                           ["people"], "handlers")
    whole = Frame("c", 0, 0, image)
    stage.process(whole)
    people = [d["box"] for d in whole.meta["detections"]]
    assert people, "HOG found nobody in vtest's first frame"
    assert len(people) >= 2, people
    targets = max(((a, b) for a in people for b in people),
                  key=lambda p: abs(p[0][0] - p[1][0]) + abs(p[0][1] - p[1][1]))
    frame = frame_with([list(t) for t in targets], image.shape)
    frame.image = image
    regions = motion_regions(frame)
    assert regions is not None and len(regions) == 2, regions
    assert sum(w * h for _x, _y, w, h in regions) < 0.6 * image.shape[0] * image.shape[1]
    run_in_regions(stage, frame, regions)
    found = [d["box"] for d in frame.meta["detections"]]
    for target in targets:
        assert any(all(abs(a - b) <= 8 for a, b in zip(box, target)) for box in found), \
            (target, found)
