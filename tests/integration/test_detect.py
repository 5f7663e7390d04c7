"""Detect only when it matters (issue 27, 2): ``detect_fps`` runs the
detectors on every k-th frame, ``detect_when = "motion"`` only where the
motion stage saw change; the frames between pass through and are counted
as skipped, not dropped; the collector's tracks stand on them."""

from pathlib import Path
from typing import Any, Dict, List

import pytest

from helpers import camera, wait_exit
from vidpipe.config import ConfigError, config_from_dict


def run(pipeline: Any, cam: Dict[str, Any], stages: List[str]) -> List[Dict[str, Any]]:
    # one handler (motion needs consecutive frames) at 15 fps, holding up to 4
    # frames: a box loaded by other suites costs latency, not frames
    pipeline.write_config({"cameras": {"cam0": cam},
                           "handlers": {"stages": stages, "prefetch": 4},
                           "stage": {"motion": {"min_area": 20}},
                           "collector": {"outputs": ["jsonl"], "exit_on_eos": True}})
    collector = pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    decoder = pipeline.start("decoder", "cam0")
    assert wait_exit(decoder, 60, pipeline) == 0
    assert wait_exit(collector, 60, pipeline) == 0
    return [r for r in pipeline.results() if r["camera"] == "cam0"]


def test_detect_fps_runs_the_detector_on_every_kth_frame_and_counts_the_rest(
        pipeline: Any) -> None:
    """15 fps, detect_fps = 2.5: the faces detector runs on frames 0, 6, 12 ...
    only; every frame still arrives processed (none dropped); the detector's
    CPU over the run falls by the factor the frames do (measured side by
    side: the same clip, every frame detected, in the same test)."""
    every = run(pipeline, camera(120, 320, 240, fps=15, wait=1, track=True), ["motion", "faces"])
    pipeline.close()
    pipeline.__init__()
    some = run(pipeline, camera(120, 320, 240, fps=15, wait=1, detect_fps=2.5, track=True),
               ["motion", "faces"])
    for records in (every, some):
        assert sorted(r["seq"] for r in records if r["status"] == "ok") == list(range(120))
    detected = [r["seq"] for r in some if "faces" in r["meta"]]
    assert detected == list(range(0, 120, 6)), detected
    assert all(r["meta"]["skipped"] == ["faces"] for r in some if r["seq"] % 6)
    assert all("objects" in r["meta"] for r in some)  # the tracks stand on skipped frames
    cost = [sum(r["meta"]["timings_ms"].get("faces", 0.0) for r in rs) for rs in (every, some)]
    print("faces detector CPU over 120 frames: every frame {:.1f} ms, detect_fps 2.5 {:.1f} ms "
          "({:.1f}x less)".format(cost[0], cost[1], cost[0] / max(cost[1], 1e-9)))
    assert cost[0] >= 3 * cost[1], cost


def still_then_moving(path: Path) -> Path:
    """A clip that stands still for 30 frames, then has a square moving for 30."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    for n in range(60):
        frame = np.full((240, 320, 3), 90, np.uint8)
        x = 20 + max(0, n - 30) * 8
        cv2.rectangle(frame, (x, 100), (x + 40, 140), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def test_detect_when_motion_runs_the_detector_only_on_frames_with_motion(
        pipeline: Any, tmp_path: Path) -> None:
    clip = still_then_moving(tmp_path / "clip.avi")
    records = run(pipeline, {"source": str(clip), "fps": 15, "wait_for_handlers": 1,
                             "detect_when": "motion"}, ["motion", "faces"])
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 60
    for r in ok:
        moved = bool(r["meta"]["motion"]["boxes"])
        assert ("faces" in r["meta"]) == moved, r["meta"]
        assert r["meta"].get("skipped", []) == ([] if moved else ["faces"])
    assert any("faces" in r["meta"] for r in ok) and any("skipped" in r["meta"] for r in ok)


class _PluginDetector:
    """A plugin that finds things: its class says so, as dnn and faces do."""

    name = "plugin-detector"
    detector = True

    def __init__(self, options: dict) -> None:
        self.options = options

    def process(self, frame: object) -> None:
        pass


@pytest.mark.parametrize("stages", [["faces"], ["faces", "motion"],
                                    ["gray", "test_detect:_PluginDetector", "motion"]])
def test_detect_when_motion_needs_the_motion_stage_first(stages: List[str]) -> None:
    """Checked where the stage classes are known (a plugin detector too), when
    a handler builds its chain and by check-config."""
    from vidpipe.stages import build_chain

    config = config_from_dict({"cameras": {"cam0": {"source": "testsrc",
                                                    "detect_when": "motion"}},
                               "handlers": {"stages": stages}}, "p.toml")
    with pytest.raises(ConfigError) as err:
        build_chain(config, stages, "handlers")
    assert err.value.key == "cameras.cam0.detect_when" and "motion stage" in err.value.message
    fine = ["motion"] + [s for s in stages if s != "motion"]
    assert [type(s).__name__ for s in build_chain(config, fine, "handlers")][0] == "Motion"
