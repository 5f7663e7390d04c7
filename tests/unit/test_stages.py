import sys
from pathlib import Path
from typing import Any, Dict

import cv2
import numpy as np
import pytest

from vidpipe.config import ConfigError, config_from_dict
from vidpipe.capture.sources import render_testsrc
from vidpipe.stages import I420, Frame, build_chain


def chain(stages: list, options: Dict[str, Any] = None) -> list:
    config = config_from_dict({"handlers": {"stages": stages}, "stage": options or {}})
    return build_chain(config, stages, "handlers")


def run(stages: list, image: np.ndarray, camera: str = "c", seq: int = 0, **opts: Any) -> Frame:
    frame = Frame(camera=camera, seq=seq, capture_ns=0, image=image)
    for stage in chain(stages, opts):
        stage.process(frame)
    return frame


def test_gray_matches_opencv() -> None:
    image = render_testsrc(3, 64, 48)
    assert np.array_equal(run(["gray"], image).image, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))


def test_resize_keeps_aspect_when_one_side_is_zero() -> None:
    out = run(["resize"], np.zeros((480, 640, 3), np.uint8), resize={"width": 320})
    assert out.image.shape == (240, 320, 3)
    out = run(["resize"], np.zeros((480, 640), np.uint8), resize={"width": 0, "height": 120})
    assert out.image.shape == (120, 160)


def test_motion_finds_the_moving_box() -> None:
    stages = chain(["motion"], {"motion": {"min_area": 50}})
    found = None
    for i in range(11):  # still background, then a box appears
        image = np.full((120, 160, 3), 40, np.uint8)
        if i == 10:
            cv2.rectangle(image, (60, 40), (90, 70), (255, 255, 255), -1)
        frame = Frame("c", i, 0, image)
        stages[0].process(frame)
        found = frame.meta["motion"]
    assert found is not None and len(found["boxes"]) == 1
    x, y, w, h = found["boxes"][0]
    assert abs(x - 60) <= 2 and abs(y - 40) <= 2 and abs(w - 31) <= 3 and abs(h - 31) <= 3


def test_motion_on_a_smaller_gray_copy_gives_boxes_in_the_frames_pixels() -> None:
    """width = 320 on 640x360 frames: MOG2 runs on a 320x180 gray copy; the
    walker's box comes back in the frame's own pixels, min_area too."""
    found = {}
    for width in (0, 320):
        stages = chain(["motion"], {"motion": {"min_area": 400, "width": width}})
        for i in range(12):
            image = np.full((360, 640, 3), 60, np.uint8)
            cv2.rectangle(image, (200, 100), (239, 179), (20, 20, 20), -1)  # still: not found
            if i == 11:
                cv2.rectangle(image, (400, 200), (459, 299), (250, 250, 250), -1)  # 60 x 100
                cv2.rectangle(image, (50, 50), (53, 53), (250, 250, 250), -1)  # under min_area
            frame = Frame("c", i, 0, image)
            stages[0].process(frame)
        found[width] = frame.meta["motion"]["boxes"]
    assert found[0] == [[400, 200, 60, 100]], found
    assert len(found[320]) == 1, found
    x, y, w, h = found[320][0]
    assert abs(x - 400) <= 2 and abs(y - 200) <= 2 and abs(w - 60) <= 4 and abs(h - 100) <= 4


def test_faces_loads_the_shipped_cascade_and_returns_boxes() -> None:
    frame = run(["faces"], np.full((120, 160, 3), 128, np.uint8))
    assert frame.meta["faces"] == []  # a flat grey picture has no faces


def test_faces_without_the_cascade_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        chain(["faces"], {"faces": {"cascade": "/nonexistent/cascade.xml"}})
    assert err.value.key == "stage.faces" and "not found" in err.value.message


def test_optical_flow_measures_a_known_shift_per_camera() -> None:
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 255, (120, 160), dtype=np.uint8), (7, 7), 0)
    stage = chain(["optical_flow"], {"optical_flow": {"scale": 1.0}})[0]
    first = Frame("a", 10, 0, base)
    stage.process(first)
    assert first.meta["optical_flow"]["prev_seq"] is None
    other = Frame("b", 3, 0, np.roll(base, 9, axis=1))
    stage.process(other)  # another camera does not disturb camera a's state
    second = Frame("a", 11, 0, np.roll(base, 3, axis=1))
    stage.process(second)
    flow = second.meta["optical_flow"]
    assert flow["prev_seq"] == 10
    assert 2.0 < flow["mean_dx"] < 3.5 and abs(flow["mean_dy"]) < 0.5


def i420(bgr: np.ndarray) -> Frame:
    return Frame("c", 0, 0, cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), format=I420)


def test_an_i420_frame_is_read_by_every_built_in_stage() -> None:
    """deliver = "i420": gray takes the Y plane (what BGR -> gray gives, within
    rounding), resize scales each plane and stays I420, motion, faces and
    flow read the luma, and the frame converts back to BGR."""
    image = render_testsrc(5, 64, 48)
    frame = i420(image)
    assert frame.size() == (48, 64) and frame.image.shape == (72, 64)
    assert np.abs(frame.bgr().astype(int) - image).mean() < 4  # 4:2:0 colour at edges
    gray = chain(["gray"])[0]
    gray.process(frame)
    assert frame.format == "" and frame.image.shape == (48, 64)
    assert np.abs(frame.image.astype(int) - cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)).max() <= 3
    small = i420(image)
    chain(["resize"], {"resize": {"width": 32}})[0].process(small)
    assert small.format == I420 and small.image.shape == (36, 32) and small.size() == (24, 32)
    expected = cv2.resize(image, (32, 24), interpolation=cv2.INTER_AREA)
    assert np.abs(small.bgr().astype(int) - expected).mean() < 6
    odd = i420(np.zeros((48, 64, 3), np.uint8))
    chain(["resize"], {"resize": {"width": 33, "height": 21}})[0].process(odd)
    assert odd.size() == (22, 34)  # rounded up to even: the colour planes are half size
    for name in ("motion", "faces", "optical_flow"):
        frame = i420(image)
        for stage in chain([name]):
            stage.process(frame)
            stage.process(frame)
        assert name in frame.meta and frame.format == I420


def test_plugins_load_by_module_and_class(tmp_path: Path) -> None:
    (tmp_path / "myplug.py").write_text(
        "from vidpipe.stages import Stage\n"
        "from vidpipe.config import Rule\n"
        "class Invert(Stage):\n"
        "    name = 'myplug.Invert'\n"
        "    OPTIONS = {'level': (Rule(int, 0, 255), 255)}\n"
        "    def process(self, frame):\n"
        "        frame.image = self.options['level'] - frame.image\n"
        "        frame.meta['inverted'] = True\n")
    sys.path.insert(0, str(tmp_path))
    try:
        frame = run(["myplug:Invert"], np.full((2, 2), 5, np.uint8), **{"myplug:Invert":
                                                                      {"level": 10}})
        assert frame.image.tolist() == [[5, 5], [5, 5]] and frame.meta["inverted"]
        with pytest.raises(ConfigError) as err:
            chain(["myplug:Invert"], {"myplug:Invert": {"levle": 1}})
        assert err.value.key == "stage.myplug:Invert.levle"
        with pytest.raises(ConfigError) as err:
            chain(["myplug:Nope"])
        assert "no stage class 'Nope'" in err.value.message
        with pytest.raises(ConfigError) as err:
            chain(["nomodule_here:X"])
        assert "cannot import plugin module" in err.value.message
    finally:
        sys.path.remove(str(tmp_path))
