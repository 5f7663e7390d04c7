"""The benchmark harness works (figures present and plausible); no timing asserted."""

import pytest

from vidpipe.tools.bench import run_vidpipe, table
from tests.bench.seed_pipeline import run_seed


def test_both_pipelines_measure_the_same_frames() -> None:
    seed = run_seed("640x480", 640, 480, 1, 30.0, 45)
    vp = run_vidpipe("640x480", 1, 30.0, 45, "shm")
    for res in (seed, vp):
        assert res.received >= 40, res
        assert res.e2e_p50 is not None and 0 < res.e2e_p50 < res.e2e_p99 + 1e-9
        assert res.hop_p50 is not None and res.hop_p50 <= res.e2e_p50
        assert set(res.cpu_ms) == {"decoder", "handler", "collector"}
        assert all(v > 0 for v in res.rss_mb.values())
    assert vp.receive_p50 is not None and vp.bytes_per_frame < 200  # a reference, not pixels
    assert seed.bytes_per_frame > 640 * 480 * 3
    assert "| seed |" in table([seed]) and "| vidpipe |" in table([vp])


def test_the_startup_benchmark_measures_every_role() -> None:
    from tests.bench.startup import measure, table

    results = measure(1, ["gray"])
    assert set(results) == {"collector", "decoder", "handler"}
    for runs in results.values():
        assert 0 < runs[0]["ready"] <= runs[0]["working"] < 120
    assert "| handler |" in table(results)


@pytest.mark.once  # two brokers started: the main suite only
def test_the_event_latency_benchmark_measures_both_brokers() -> None:
    from tests.bench.events import measure, table

    run = measure(150)
    # every frame accounted; a loaded 2-core box may drop a few (it did: not
    # what this measures)
    assert run["received"] + run["dropped"] == 150 and run["received"] >= 135, run
    for broker in ("mqtt", "amqp"):
        lat = run[broker]
        assert lat["events"] >= 10, run  # a start, updates every 0.1 s, an end
        assert 0 < lat["p50"] <= lat["p99"] < 5000, run
        assert lat["glass_p50"] is not None and lat["glass_p50"] > lat["p50"], run
    assert "| amqp |" in table(run)


@pytest.mark.once  # Debian's OpenCV and GStreamer: the main suite only
def test_the_decode_benchmark_measures_every_path() -> None:
    from tests.bench.decode import run, table

    rows = run(60)
    assert [r["frames"] for r in rows] == [60] * 6, rows
    assert [r["shape"] for r in rows] == ["1920x1080", "1920x1080", "640x360", "640x360",
                                          "1920x1080 I420", "640x360 I420"], rows
    assert all(float(r["cpu_ms"]) > 0 for r in rows), rows
    assert "| OpenCV FFmpeg (baseline) |" in table(rows)


@pytest.mark.once  # Debian's OpenCV and GStreamer: the main suite only
def test_the_camera_capacity_benchmark_runs_the_seed_and_every_path() -> None:
    from tests.bench.cameras import run, table

    rows = run(seconds=1.5, most=1)
    assert [r["path"].split(",")[0] for r in rows] == ["seed (pickle)"] + ["vidpipe"] * 4
    for row in rows:
        first = row["runs"][0]
        assert first["cameras"] == 1 and first["per_camera"]["cam0"]["processed"] > 0, row
        assert first["cpu_ms_per_frame"] > 0, row
    assert [r["runs"][0]["delivers"] for r in rows] == ["1920x1080"] * 3 + ["640x360"] * 2
    assert "| vidpipe, GStreamer scaled to 640x360 | 640x360 |" in table(rows)


def test_the_objects_benchmark_tracks_and_counts() -> None:
    from tests.bench.objects import measure

    r = measure(20, 90)
    assert r["ms_per_frame"] > 0 and r["events"] > 0 and r["tracks"] >= 20, r


@pytest.mark.once  # two pipelines on a clip: the main suite only
def test_the_gating_benchmark_runs_the_detector_only_where_it_matters() -> None:
    """detect_fps 5 with the motion gate on a still scene: the detector runs
    on the moving frames of every 6th only, every frame still arrives, and
    the handler pays less (the benchmark's own run gives the ratio: 5.3x here)."""
    from tests.bench.gating import RUNS, measure, table

    run = measure(90)
    every, gated, region = (run[label] for label in RUNS)
    assert every["frames"] + every["dropped"] == 90 and every["frames"] >= 80, run
    assert every["detected"] == every["frames"], run
    for one in (gated, region):
        assert one["frames"] + one["dropped"] == 90 and one["frames"] >= 85, run
        assert 1 <= one["detected"] <= 3 and one["moved"] >= 8, run  # 0; 40-49 move: 42, 48
        assert one["ratio"] > 1.5, run
    # frame 0 is all "motion" to a background model that has seen nothing:
    # the whole frame; the walker's frames are looked at in their region
    assert gated["in_region"] == 0 and 1 <= region["in_region"] <= region["detected"], run
    assert "x |" in table(run)


@pytest.mark.once  # two RTSP cameras and two pipelines: the main suite only
def test_passthrough_holds_four_times_the_cameras_of_decoding_everything() -> None:
    """Issue 28's capacity benchmark, short: recording the 1080p main stream
    as it came and analysing the 640x360 sub-stream at 5 fps costs a quarter
    of the CPU (or less) of decoding the main stream, analysing and recording
    it (12x in the benchmark's own 15 s run on an idle box). Both runs did
    their work: every frame processed, the camera's segments and the
    processed ones written."""
    from tests.bench.passthrough import measure, table

    run = measure(6.0)
    keep, decode = run["runs"]  # decoding with the processed frames in mp4v
    assert keep["frames"] >= 0.9 * 30 and decode["frames"] >= 0.8 * 180, run
    assert run["camera_segments"] and run["processed_segments"], run
    assert run["ratio"] >= 4.0, table(run)


@pytest.mark.once  # a venv of its own from PyPI (supervision, py-motmetrics): the main suite only
def test_the_tracker_is_at_least_as_good_as_supervisions_bytetrack() -> None:
    """Issue 27's goal, on a clean clone: on every stated scene and seed,
    vidpipe's IDF1 (scored by py-motmetrics) at least the peer's on the same
    detections, and at least 0.90 on the noiseless and 10 %-missed scenes;
    no more ID switches than the peer."""
    import json
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([str(root / "dev"), "bench-tracking", "--json"], cwd=str(root),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
    if run.returncode != 0 and not os.environ.get("CI"):
        pytest.skip("./dev bench-tracking could not run here (it installs supervision and "
                    "py-motmetrics from PyPI): {}".format(run.stderr.decode()[-300:]))
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    rows = json.loads(run.stdout.decode().strip().splitlines()[-1])
    assert len(rows) == 18, rows
    ours = {(r["scene"], r["seed"]): r for r in rows if r["tracker"] == "vidpipe"}
    peer = {(r["scene"], r["seed"]): r for r in rows if r["tracker"] != "vidpipe"}
    for key, mine in ours.items():
        theirs = peer[key]
        assert mine["idf1"] >= theirs["idf1"] - 1e-9, (key, mine, theirs)
        assert mine["switches"] <= theirs["switches"], (key, mine, theirs)
        if not key[0].startswith("20%"):
            assert mine["idf1"] >= 0.90, (key, mine)
    print("\n" + "\n".join("{scene} seed {seed}: {tracker} IDF1 {idf1:.3f}, MOTA {mota:.3f}, "
                           "{switches} switches".format(**r) for r in rows))
