"""Taps (seed 2): a deliberately slow subscriber reports exactly the frames it
missed, a fast one at the same time misses none, and the pipeline itself
neither slows down nor drops a frame."""

import json
import subprocess
import sys
import time
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import child_env, need_module, wait_until
from vidpipe.capture.sources import render_testsrc

h5py = need_module("h5py")


def tap(pipeline: Any, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vidpipe", "--config",
                             str(pipeline.config_path), "tap"] + list(args) + ["--json"],
                            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)


def report(proc: subprocess.Popen) -> Any:
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("the tap did not end:\n" + err[-3000:]) from None
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_a_slow_tap_counts_exactly_what_it_missed_and_slows_nothing(pipeline: Any) -> None:
    pipeline.write_config({
        "pipeline": {"tap_hwm": 4},
        "cameras": {"cam0": {"source": "testsrc", "width": 320, "height": 240, "fps": 60,
                             "frames": 300, "wait_for_handlers": 2}},
        "handlers": {"stages": ["gray"]},
        "collector": {"outputs": ["jsonl"]},
    })
    saved = pipeline.root / "slow.h5"
    summary = pipeline.root / "summary.npy"
    pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    pipeline.start("decoder", "cam0")
    slow = tap(pipeline, "cam0", "--slow-ms", "40", "--save", str(saved))
    fast = tap(pipeline, "cam0", "--from", "collector", "--summary", str(summary))
    board = pipeline.runtime / "status" / "decoder-cam0.json"
    wait_until(lambda: board.exists() and json.loads(board.read_text()).get("tapped"), 15,
               "the decoder to see the tap's subscription")
    # a fast tap has no board entry to wait on: give its subscription a moment
    wait_until(lambda: (pipeline.runtime / "tap-collector.sock").exists(), 5, "collector tap")
    time.sleep(0.5)
    pipeline.start("handler", "2")  # now the decoder starts

    slow_report = report(slow)
    fast_report = report(fast)

    # the slow tap: joined at frame 0, saw the end, and its count of misses is exact
    assert slow_report["first"] == 0 and slow_report["ended"], slow_report
    assert slow_report["missed"] > 0, "a tap at 25 fps kept up with 60 fps?"
    assert slow_report["received"] + slow_report["missed"] == 300, slow_report
    with h5py.File(saved, "r") as f:
        got = [int(s) for s in f["seq"][:]]
        assert f["frames"].shape == (len(got), 240, 320, 3)
        assert np.array_equal(f["frames"][-1], render_testsrc(got[-1], 320, 240))
    assert len(got) == slow_report["received"] and got == sorted(set(got))
    assert len(set(range(300)) - set(got)) == slow_report["missed"]

    # the fast tap on the collector saw every processed frame (and knew of
    # each the pipeline dropped), and its stats are right
    records = pipeline.results()
    processed = sorted(r["seq"] for r in records if r["status"] == "ok")
    assert fast_report["received"] == len(processed) and fast_report["missed"] == 0, \
        fast_report
    assert fast_report["dropped_by_pipeline"] == 300 - len(processed), fast_report
    rows = np.load(summary)
    assert list(rows["seq"]) == processed
    at = processed.index(123) if 123 in processed else 0
    gray = cv2.cvtColor(render_testsrc(processed[at], 320, 240), cv2.COLOR_BGR2GRAY)
    assert rows["mean"][at] == pytest.approx(float(gray.mean()))
    assert rows["max"][at] == float(gray.max()) and rows["min"][at] == float(gray.min())

    # and the pipeline did not notice the slow subscriber: the decoder kept its
    # pace (its rate over the last seconds) and processed every frame but the
    # few a loaded 2-core box may drop for capacity (2 of 300 once; a tap that
    # held the pipeline back would cost it over half at 25 fps of 60)
    decoder = json.loads(board.read_text())
    assert decoder["cameras"]["cam0"]["fps"] == pytest.approx(60, rel=0.1), decoder
    assert len(processed) >= 294, len(processed)
    assert {r.get("reason") for r in records if r["status"] != "ok"} <= {"no_capacity"}


def test_tap_stats_prints_a_line_per_frame(pipeline: Any) -> None:
    pipeline.write_config({
        "cameras": {"cam0": {"source": "testsrc", "width": 160, "height": 120, "fps": 30,
                             "frames": 0}},
        "collector": {"outputs": ["jsonl"]},
    })
    pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    pipeline.start("decoder", "cam0")
    proc = subprocess.run([sys.executable, "-m", "vidpipe", "--config",
                           str(pipeline.config_path), "tap", "cam0", "--stats", "--frames",
                           "10"], env=child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 10
    assert all(line.startswith("cam0 #") and " mean " in line and " missed " in line
               for line in lines), lines
    assert "tap cam0: received 10" in proc.stderr


def test_a_tap_on_a_camera_that_is_not_running_says_what_it_waits_for(pipeline: Any) -> None:
    pipeline.write_config({"collector": {"outputs": ["jsonl"]}})
    proc = subprocess.run([sys.executable, "-m", "vidpipe", "--config",
                           str(pipeline.config_path), "tap", "nocam", "--duration", "4"],
                          env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "tap nocam: nothing yet on ipc://" in proc.stderr
    assert "is vid-decoder@nocam running?" in proc.stderr
    assert "tap nocam: received 0, missed 0" in proc.stderr
