"""``vidpipe bench --cameras``: when a box holds N cameras, and what a run's
records say (vidpipe.tools.capacity)."""

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from vidpipe.tools import capacity


def run(per_camera: Dict[str, Dict[str, Any]], e2e: List[float]) -> Dict[str, Any]:
    return {"per_camera": per_camera, "e2e": e2e, "cpu_ms_per_frame": 10.0,
            "delivers": "640x360"}


GOOD = {"processed": 300, "lost": 0, "fps": 29.9}


@pytest.mark.parametrize("cams,e2e,verdict", [
    ({"cam0": GOOD, "cam1": GOOD}, [5.0] * 100, True),
    ({"cam0": GOOD, "cam1": dict(GOOD, fps=27.0)}, [5.0] * 100, False),  # one falls behind
    ({"cam0": GOOD, "cam1": dict(GOOD, processed=280, lost=20)}, [5.0] * 100, False),
    ({"cam0": GOOD, "cam1": dict(GOOD, processed=290, lost=10)}, [5.0] * 100, True),  # 96.7 %
    ({"cam0": GOOD}, [5.0] * 98 + [1500.0] * 2, False),  # p99 over a second
    ({}, [], False),
])
def test_a_box_holds_n_cameras_only_when_every_one_keeps_up(cams: Dict[str, Any],
                                                           e2e: List[float],
                                                           verdict: bool) -> None:
    assert capacity.held(run(cams, e2e), 30.0) is verdict


def test_a_run_that_did_not_end_is_not_held() -> None:
    assert not capacity.held({"error": "the run did not end"}, 30.0)


def test_the_records_are_summed_per_camera(tmp_path: Path) -> None:
    records = [{"camera": "cam0", "seq": n, "status": "ok", "capture_ns": int(n * 1e9 / 30),
                "latency_ms": 4.0, "shape": [360, 640]} for n in range(31)]
    records += [{"camera": "cam1", "seq": 0, "status": "ok", "capture_ns": 0,
                 "latency_ms": 9.0, "shape": [360, 640]},
                {"camera": "cam1", "seq": 1, "status": "dropped", "reason": "no_capacity",
                 "capture_ns": 0},
                {"camera": "cam1", "status": "missing", "count": 3, "capture_ns": 0},
                {"camera": "cam1", "seq": 5, "status": "ok", "late": True, "capture_ns": 0,
                 "latency_ms": 900.0, "shape": [360, 640]}]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = capacity.summarize(path, ["cam0", "cam1", "cam2"], None)
    assert out["per_camera"]["cam0"] == {"processed": 31, "lost": 0, "fps": 30.0}
    assert out["per_camera"]["cam1"]["processed"] == 1
    assert out["per_camera"]["cam1"]["lost"] == 5  # dropped 1, missing 3, late 1
    assert out["per_camera"]["cam2"] == {"processed": 0, "lost": 0, "fps": 0.0}
    assert out["delivers"] == "640x360" and len(out["e2e"]) == 32


def test_bad_arguments_are_named(capsys: Any, tmp_path: Path) -> None:
    assert capacity.main(str(tmp_path / "none.mp4"), "auto", "", 30.0, 1.0, 1) == 2
    assert "none.mp4 is neither" in capsys.readouterr().err
    assert capacity.main("rtsp://cam/live", "auto", "640by360", 30.0, 1.0, 1) == 2
    assert "--size wants WIDTHxHEIGHT, not '640by360'" in capsys.readouterr().err
