"""Recording: segmented MP4 and HDF5 files that reopen, a retention limit that
is never exceeded, and a full disk that pauses recording without losing a
single result."""

import json
from collections import Counter
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np

from conftest import need_module, wait_until
from helpers import accounted, encodes_h264, load_drops_only

h5py = need_module("h5py")


def config(pipeline: Any, record_dir: Path, frames: int, fps: float = 100,
           **collector: Any) -> None:
    cc: Dict[str, Any] = {"outputs": ["jsonl", "record"], "record_dir": str(record_dir),
                          "record_formats": ["mp4", "hdf5"]}
    cc.update(collector)
    pipeline.write_config({
        "cameras": {"cam0": {"source": "testsrc", "width": 320, "height": 240, "fps": fps,
                             "frames": frames, "wait_for_handlers": 1}},
        "handlers": {"stages": ["gray"]},
        "collector": cc,
    })


def run(pipeline: Any) -> Any:
    collector = pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    pipeline.start("decoder", "cam0")
    return collector


def board(pipeline: Any) -> Dict[str, Any]:
    path = pipeline.runtime / "status" / "collector-main.json"
    return json.loads(path.read_text()) if path.exists() else {}


def files(root: Path, pattern: str = "*") -> List[Path]:
    return sorted(p for p in root.rglob(pattern) if p.is_file())


def mp4_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def test_recorded_mp4_reopens_and_hdf5_has_the_expected_shape(pipeline: Any) -> None:
    record_dir = pipeline.root / "rec"
    config(pipeline, record_dir, frames=60, fps=60)
    run(pipeline)
    wait_until(lambda: files(record_dir, "cam0-*[0-9].mp4") and files(record_dir,
                                                                    "cam0-*[0-9].h5"),
               20, "closed segments after the end of the stream")
    mp4 = files(record_dir, "*.mp4")
    h5 = files(record_dir, "*.h5")
    assert len(mp4) == 1 and len(h5) == 1, files(record_dir)
    assert ".part" not in mp4[0].name and mp4[0].parent.name == "cam0"
    # exactly the processed frames (a loaded box may drop one to no_capacity:
    # the recording then lacks it too, and says so by its seq)
    processed = [r["seq"] for r in pipeline.results() if r["status"] == "ok"]
    assert len(processed) >= 55, processed
    assert mp4_frames(mp4[0]) == len(processed)
    # H.264 (a browser plays it) where OpenCV and GStreamer's x264enc can, as
    # on the main suite's Debian 12; mp4v, the fallback, on the floors' PyPI OpenCV
    codec = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=codec_name", "-of", "csv=p=0", str(mp4[0])],
                           stdout=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert codec.stdout.strip() == ("h264" if encodes_h264() else "mpeg4"), codec
    with h5py.File(h5[0], "r") as f:
        assert f["frames"].shape == (len(processed), 240, 320)
        assert f["frames"].dtype == np.uint8
        assert list(f["seq"][:]) == processed
        assert f.attrs["camera"] == "cam0"
        # the pixels are the processed (gray) frames, not something else
        from vidpipe.capture.sources import render_testsrc

        row = processed.index(17) if 17 in processed else 0
        want = cv2.cvtColor(render_testsrc(processed[row], 320, 240), cv2.COLOR_BGR2GRAY)
        assert np.array_equal(f["frames"][row], want)


def test_recording_never_exceeds_its_retention_limit(pipeline: Any) -> None:
    record_dir = pipeline.root / "rec"
    limit = 2 * 1024 * 1024
    config(pipeline, record_dir, frames=300, record_max_bytes=limit)
    biggest = [0]
    done = threading.Event()

    def sample() -> None:  # what is on disk, every few milliseconds, all run long
        while not done.is_set():
            total = 0
            listed = files(record_dir) if record_dir.exists() else []
            for path in listed:
                try:
                    total += path.stat().st_size
                except OSError:
                    pass  # deleted between the listing and the stat
            # a file deleted while we summed the others was not there together
            # with what grew meanwhile: that sum never existed on disk
            if all(path.exists() for path in listed):
                biggest[0] = max(biggest[0], total)
            time.sleep(0.003)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run(pipeline)
        wait_until(lambda: len(pipeline.results()) >= 300, 30, "300 results")
        processed = sum(1 for r in pipeline.results() if r["status"] == "ok")
        wait_until(lambda: (board(pipeline).get("recording") or {}).get("written", 0)
                   + sum((board(pipeline).get("recording") or {}).get("skipped", {}).values())
                   >= processed, 20, "the recorder to take every processed frame")
        time.sleep(0.5)
    finally:
        done.set()
        sampler.join()
    raw = 300 * 320 * 240
    rec = board(pipeline)["recording"]
    assert rec["deleted"] > 0, rec  # old segments had to go
    assert rec["written"] == processed, rec
    assert biggest[0] <= limit, "recordings reached {} bytes, limit {}".format(biggest[0], limit)
    assert biggest[0] > limit // 4  # it did record (the limit was the bound, not idleness)
    assert raw > 5 * limit
    kept = files(record_dir, "*[0-9].h5")
    assert kept, files(record_dir)
    # the newest segment holds every processed frame of its span, in order (a
    # frame a loaded box dropped for capacity was never processed: not a gap)
    done_seqs = sorted(r["seq"] for r in pipeline.results() if r["status"] == "ok")
    with h5py.File(kept[-1], "r") as f:
        seq = [int(s) for s in f["seq"][:]]
        assert seq and seq == [s for s in done_seqs if seq[0] <= s <= seq[-1]], seq


class Filler:
    """Another program that keeps the disk full: whatever gets freed, it takes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._fill, daemon=True)
        self.thread.start()

    def _fill(self) -> None:
        chunk = b"\0" * 4096
        while True:
            try:
                handle = open(self.path, "wb")
                break
            except OSError:  # not even room for a new file yet
                time.sleep(0.002)
        while not self.stop.is_set():
            try:
                handle.write(chunk)
                handle.flush()
            except OSError:
                time.sleep(0.002)
        try:
            handle.close()
        except OSError:
            pass  # what did not fit is not flushed

    def release(self) -> None:
        self.stop.set()
        self.thread.join()
        self.path.unlink()


def test_a_full_disk_pauses_recording_and_loses_no_result(pipeline: Any,
                                                          small_disk: Path) -> None:
    record_dir = small_disk / "rec"
    config(pipeline, record_dir, frames=900, record_formats=["hdf5"],
           record_min_free_mb=1, record_max_bytes=3 * 1024 ** 2)
    collector = run(pipeline)
    wait_until(lambda: len(pipeline.results()) >= 150, 20, "150 results")
    assert not (board(pipeline).get("recording") or {}).get("paused")
    filler = Filler(small_disk / "somebody-else.bin")
    wait_until(lambda: (board(pipeline).get("recording") or {}).get("paused"), 10,
               "the recorder to pause")
    time.sleep(1.0)
    filler.release()
    at_release = len(pipeline.results())
    wait_until(lambda: len(pipeline.results()) >= 900, 30, "all 900 results")
    assert collector.proc.poll() is None, pipeline.logs()
    records = pipeline.results()
    # every frame is accounted for; any the pipeline could not process (the
    # filler above eats a core) is a counted drop with its reason, none is lost
    assert sorted(r["seq"] for r in records if r["status"] in ("ok", "dropped")) == \
        list(range(900)), Counter(r.get("reason", r["status"]) for r in records)
    assert not [r for r in records if r["status"] == "missing"]
    # most are processed; what a loaded box (the floors run side by side, the
    # filler eats a core) could not process is dropped for load, nothing else
    assert sum(1 for r in records if r["status"] == "ok") > 600
    assert load_drops_only(accounted(records, "cam0")) == []
    log = collector.output()
    if "recording paused" not in log:
        os.kill(collector.pid, 10)
        time.sleep(1)
        log = collector.output()
        print("BOARD", board(pipeline))
    assert "recording paused" in log and " MB free on " in log, log[-3000:]
    assert "Traceback" not in log
    rec = board(pipeline)["recording"]
    assert rec["skipped"].get("paused", 0) > 0, rec
    # recording came back once there was room again
    wait_until(lambda: any(
        int(h5py.File(p, "r")["seq"][-1]) > at_release + 100
        for p in files(record_dir, "*[0-9].h5")), 20, "recording to resume")


# A disk that fills and frees under the recorder as fast as another program
# can make it: the HDF5 segments it starts and extends meet ENOSPC in every
# place they can. Run in a child: what this guards against is a crash.
CHURN = r'''
import os, sys, threading, time
import numpy as np
from vidpipe.outputs import recording, retention

disk, seconds = sys.argv[1], float(sys.argv[2])
stop = threading.Event()

def churn():
    rng = np.random.default_rng(7)
    path = os.path.join(disk, "somebody-else.bin")
    while not stop.is_set():
        time.sleep(0.001 * rng.integers(0, 20))
        try:
            os.truncate(path, max(0, os.path.getsize(path) - int(rng.integers(1, 400)) * 4096))
        except OSError:
            pass
        time.sleep(0.001 * rng.integers(0, 20))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        os.close(fd)

threading.Thread(target=churn, daemon=True).start()
recording.PAUSE_S = 0.05  # try again at once: meet the full disk as often as possible
out = recording.RecordOutput(os.path.join(disk, "rec"), ["hdf5"], segment_s=0.1,
                             max_bytes=3 * 2 ** 20, max_age_s=0, min_free_bytes=0,
                             fps=lambda camera: 30.0)
image = np.zeros((240, 320, 3), np.uint8)
deadline = time.monotonic() + seconds
seq = 0
while time.monotonic() < deadline:
    if out.queue.qsize() < 4:  # what emit() queues, at the pace the writer takes it
        out.queue.put(("cam0", image, seq, time.time_ns()))
        seq += 1
    else:
        time.sleep(0.001)
out.end_of_stream("cam0")
stop.set()  # the other program stops and frees the disk: the next segment is whole
time.sleep(0.2)
os.truncate(os.path.join(disk, "somebody-else.bin"), 0)
time.sleep(0.2)  # past any pause
for n in range(5):
    out.queue.put(("cam0", image, seq + 1000 + n, time.time_ns()))
out.end_of_stream("cam0")
until = time.monotonic() + 30
while out.queue.qsize() and time.monotonic() < until:  # close() leaves out what is queued
    time.sleep(0.01)
time.sleep(0.2)
out.close()
kept = out.retention.deleted + len(retention.own_segments(os.path.join(disk, "rec")))
print("kept", kept, "full", out.skipped["error"] + out.skipped["paused"])
'''


def test_hdf5_segments_survive_a_disk_that_fills_and_frees_under_them(small_disk: Path) -> None:
    # HDF5 1.12 (Ubuntu 22.04's h5py) crashed the process within a second of
    # this when a failed write reached it
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    child = subprocess.run([sys.executable, "-X", "faulthandler", "-c", CHURN, str(small_disk),
                            "8"], env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stdout + child.stderr[-4000:]
    kept, full = (int(word) for word in child.stdout.split()[1::2])
    said = child.stdout + child.stderr[-4000:]
    assert kept > 0 and full > 0, said  # both happened, many times over
    # what could not be written was removed, not left as .part files
    left = sorted((small_disk / "rec" / "cam0").iterdir())
    assert not [p.name for p in left if ".part." in p.name], said
    assert left, said  # at least the segment written once the disk had room again
    for path in left:  # what was kept is whole
        with h5py.File(path, "r") as f:
            seq = [int(n) for n in f["seq"][:]]
            assert seq and seq == list(range(seq[0], seq[0] + len(seq))), path
            assert f["frames"].shape == (len(seq), 240, 320, 3), path
