"""Keep what the camera sent (issue 28): the decoder records a network
camera's own H.264 stream (``record = "passthrough"``) to MP4 segments
without decoding it, from the camera's main stream (``record_url``) while it
analyses another (``source``); the real RTSP test camera, ffprobe and
ffmpeg (Debian's) judge the files."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from browser import Browser
from conftest import free_port, wait_until
from test_rtsp import RtspCamera

pytestmark = pytest.mark.once


def probe(path: Path) -> Dict[str, Any]:
    """ffprobe's view of a segment's video: codec, size, frames, duration."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0",
                          "-show_entries", "stream=codec_name,width,height,nb_read_packets"
                          ":format=duration", "-of", "json", str(path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=30)
    assert out.returncode == 0 and not out.stderr.strip(), (path, out.stderr)
    data = json.loads(out.stdout)
    stream = data["streams"][0]
    return {"codec": stream["codec_name"], "size": (stream["width"], stream["height"]),
            "frames": int(stream["nb_read_packets"]),
            "duration": float(data["format"]["duration"])}


def first_is_key(path: Path) -> bool:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "packet=flags", "-read_intervals", "%+#1", "-of", "csv=p=0",
                          str(path)], stdout=subprocess.PIPE, universal_newlines=True,
                         timeout=30)
    return out.stdout.strip().startswith("K")


def decode_errors(path: Path) -> str:
    """What ffmpeg says decoding the whole segment ("" when it is clean)."""
    # every frame decoded, none dropped or duplicated on the way out (-vsync
    # passthrough: the null muxer would complain of two frames closer than its
    # time base, which a camera's jittery timestamps give)
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vsync",
                          "passthrough", "-f", "null", "-"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=60)
    if out.returncode:
        return "exit {}: {}".format(out.returncode, out.stderr)
    # the null muxer (the output side, not the segment) still refuses two
    # frames with the same time stamp, which the test camera's encoder gives
    # when a loaded box makes it lag (seen in CI: "non monotonically
    # increasing dts to muxer"); what the decoder says is kept
    return "\n".join(line for line in out.stderr.strip().splitlines()
                     if not (line.startswith("[null @") and "dts to muxer" in line))


def play_in_chromium(port: int, segment: Path) -> Tuple[float, int]:
    """The collector serves the segment (/recordings/CAMERA/FILE/play) and a
    real headless Chromium plays it: its video element gets enough data to
    play (readyState >= 3) and its time advances. (currentTime, readyState)."""
    browser = Browser()
    try:
        browser.open("http://127.0.0.1:{}/recordings/{}/{}/play".format(
            port, segment.parent.name, segment.name))
        state = {"t": 0.0, "ready": 0, "error": None}

        def playing() -> bool:
            got = browser.evaluate("(() => { const v = document.getElementById('v'); "
                                   "return v ? [v.currentTime, v.readyState, v.error && "
                                   "(v.error.code + ' ' + v.error.message)] : null; })()")
            if not got:  # the page is not there yet
                return False
            state.update(t=got[0], ready=got[1], error=got[2])
            assert not got[2], "Chromium cannot play it: {}".format(got[2])
            return got[1] >= 3 and got[0] > 0.3

        wait_until(playing, 20, "Chromium playing the segment")
        return state["t"], state["ready"]
    finally:
        browser.close()


def segments(folder: Path) -> List[Path]:
    return sorted(folder.glob("cam0-*.camera.mp4"))


def record(pipeline: Any, camera: Dict[str, Any], **keys: Any) -> Tuple[Any, Path]:
    """cam0 analysed by a gray handler and recorded passthrough to 2 s
    segments under the pipeline's root (``keys``: more [collector.record]
    keys): its decoder and its recordings' folder."""
    folder = Path(keys.pop("dir", str(pipeline.root / "recordings")))
    pipeline.write_config({
        "cameras": {"cam0": dict({"record": "passthrough", "decode": "software", "fps": 5},
                                 **camera)},
        "handlers": {"stages": ["gray"]},
        "collector": {"outputs": ["jsonl"], "record": dict(
            {"dir": str(folder), "segment_s": 2, "min_free_mb": 0}, **keys)}})
    pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    return pipeline.start("decoder", "cam0"), folder / "cam0"


def test_the_cameras_stream_is_recorded_as_it_came_through_a_reboot(pipeline: Any) -> None:
    if shutil.which("ffprobe") is None:
        pytest.fail("ffprobe is missing (Debian: apt install ffmpeg; ./dev test installs it)")
    # a camera as the issue has it: the main stream 1080p, the sub-stream 640x360
    camera = RtspCamera(size="1920x1080")
    port = free_port()
    try:
        record = pipeline.root / "recordings"
        pipeline.write_config({
            "cameras": {"cam0": {"source": camera.url("h264-sub"), "record": "passthrough",
                                 "record_url": camera.url("h264"), "decode": "software",
                                 "fps": 5}},
            "handlers": {"stages": ["gray"]},
            "collector": {"outputs": ["jsonl"], "http": {"listen": "127.0.0.1:{}".format(port)},
                          "record": {"dir": str(record), "segment_s": 2, "min_free_mb": 0}}})
        pipeline.start("collector", "main")
        pipeline.start("handler", "1")
        decoder = pipeline.start("decoder", "cam0")
        folder = record / "cam0"
        wait_until(lambda: len(segments(folder)) >= 2, 30, "two closed segments")
        # the analysis stream flows beside it, decoded at the sub-stream's size
        wait_until(lambda: len(pipeline.results()) >= 10, 30, "analysed frames")
        shapes = {tuple(r["shape"][:2]) for r in pipeline.results() if r.get("shape")}
        assert shapes == {(360, 640)}, shapes
        before = segments(folder)
        camera.stop()  # the camera reboots mid-segment
        wait_until(lambda: not list(folder.glob("*.part.mp4")), 15,
                   "the interrupted segment closed")
        cut = segments(folder)[-1]
        assert cut not in before
        time.sleep(2)
        camera.start()
        wait_until(lambda: len(segments(folder)) >= len(before) + 3, 40,
                   "segments again after the reboot")
        assert decoder.stop() == 0
        assert not list(folder.glob("*.part.mp4")), "the last segment was not closed"
        got = segments(folder)
        figures = []
        for path in got:
            info = probe(path)
            assert info["codec"] == "h264" and info["size"] == (1920, 1080), (path, info)
            # 30 fps as sent: frames and duration agree (to a frame on an idle
            # box; the test camera's encoder lags and catches up when the box is
            # loaded, and its timestamps with it: there, within a half)
            assert abs(info["frames"] / 30.0 - info["duration"]) <= \
                max(1 / 30 + 1e-3, 0.5 * info["duration"]), (path, info)
            assert decode_errors(path) == "", path
            figures.append((path.name, info["frames"], round(info["duration"], 2)))
        # each starts at a key frame (the camera sends one a second), so each
        # plays on its own; whole ones are about segment_s long
        assert all(first_is_key(path) for path in got), got
        whole = [f for name, f, _d in figures[1:-1] if name != cut.name]
        assert whole and all(25 <= f <= 95 for f in whole), figures
        assert probe(cut)["frames"] > 0
        print("\npassthrough segments (name, frames, seconds):", figures)
        played = play_in_chromium(port, got[-2])
        print("Chromium played {} to {:.2f} s (readyState {})".format(got[-2].name, *played))
    finally:
        camera.close()


def test_a_record_url_that_is_not_h264_or_h265_is_a_status_not_a_crash(pipeline: Any) -> None:
    """A camera whose main stream is Motion JPEG: nothing recorded, the
    decoder's status says why, frames of the analysis stream still flow."""
    camera = RtspCamera()
    try:
        decoder, folder = record(pipeline, {"source": camera.url("h264"), "width": 320,
                                            "height": 240, "record_url": camera.url("jpeg")})
        wait_until(lambda: "passthrough records H.264 and H.265 only" in decoder.output(), 20,
                   "the decoder saying why it does not record")
        wait_until(lambda: len(pipeline.results()) >= 10, 30, "analysed frames")
        assert decoder.proc.poll() is None
        assert not list(folder.glob("*.mp4")) if folder.exists() else True
    finally:
        camera.close()


def slices(data: bytes) -> List[bytes]:
    """The coded slices (NAL types 1 and 5) of an H.264 Annex B stream, in
    order: the video payload (parameter sets, delimiters and SEI, which a
    parser may repeat or drop, left out)."""
    out = []
    for nal in re.split(b"\x00\x00\x01", data):
        nal = nal.rstrip(b"\x00")  # a 4-byte start code's first zero
        if nal and nal[0] & 0x1F in (1, 5):
            out.append(nal)
    return out


def annex_b(path: Path) -> bytes:
    return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-c", "copy",
                           "-bsf:v", "h264_mp4toannexb", "-f", "h264", "-"],
                          stdout=subprocess.PIPE, timeout=60, check=True).stdout


def test_the_segments_hold_the_cameras_payload_bit_for_bit(pipeline: Any,
                                                           tmp_path: Path) -> None:
    """A second client of the same media (the server's shared mount: one
    encoder for every client) keeps what the camera sent, with FFmpeg's stream
    copy; the segments' coded slices, one segment after the other, are a run
    of that stream's, byte for byte: nothing re-encoded, nothing lost between
    segments."""
    camera = RtspCamera()
    url = camera.url("h264-shared")
    reference = tmp_path / "camera.h264"
    copy = subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp",
                             "-i", url, "-c", "copy", "-an", "-f", "h264", str(reference)])
    try:
        wait_until(lambda: reference.exists() and reference.stat().st_size > 10000, 20,
                   "the reference client receiving")
        decoder, folder = record(pipeline, {"source": camera.url("h264"), "record_url": url,
                                            "codec": "h264", "width": 320, "height": 240})
        wait_until(lambda: len(segments(folder)) >= 3, 40, "three closed segments")
        assert decoder.stop() == 0
        time.sleep(1.0)  # the reference holds a little more than the last segment
    finally:
        copy.terminate()
        copy.wait(10)
        camera.close()
    sent = slices(reference.read_bytes())
    kept = [s for path in segments(folder) for s in slices(annex_b(path))]
    assert len(kept) >= 90 and len(sent) > len(kept), (len(kept), len(sent))
    # the test pattern repeats itself (a slice may be sent many times over):
    # the segments are somewhere in the stream, whole
    assert any(sent[i:i + len(kept)] == kept for i in range(len(sent) - len(kept) + 1)), \
        "the segments differ from what was sent"
    print("\n{} slices kept of {} sent, identical".format(len(kept), len(sent)))


def test_a_camera_that_changes_its_size_mid_stream_is_recorded_and_analysed_on(
        pipeline: Any) -> None:
    """The camera's picture halves and doubles every 3 s (a new SPS in the
    stream): the decoder goes on analysing (at its configured size), the
    recording goes on in segments that each decode cleanly, at the size the
    camera sent, and nothing lands outside record.dir."""
    camera = RtspCamera()
    try:
        decoder, folder = record(pipeline, {"source": camera.url("h264-resize"),
                                            "codec": "h264", "width": 320, "height": 240,
                                            "fps": 10, "clips": ["*"]})
        wait_until(lambda: len(segments(folder)) >= 5, 60, "segments across size changes")
        wait_until(lambda: len(pipeline.results()) >= 100, 60, "analysed frames across them")
        assert decoder.proc.poll() is None
        assert decoder.stop() == 0
        sizes = set()
        for path in segments(folder):
            assert decode_errors(path) == "", path
            sizes.add(probe(path)["size"])
        assert sizes <= {(640, 480), (320, 240)} and len(sizes) == 2, sizes
        assert {p.name for p in folder.parent.rglob("*")} <= {"cam0"} | {
            p.name for p in folder.iterdir()}
        print("\nsizes recorded:", sorted(sizes), "segments:", len(segments(folder)))
    finally:
        camera.close()


def fill(path: Path) -> int:
    """Another program takes every byte left on the disk; what it wrote."""
    written = 0
    with open(str(path), "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
                written += 65536
        except OSError:
            pass
    return os.path.getsize(str(path))


def test_a_disk_that_fills_is_a_status_and_recording_resumes_when_there_is_room(
        pipeline: Any, small_disk: Path) -> None:
    """The recordings' disk fills up (another program's file): the decoder
    says why it does not record, goes on analysing, touches nothing that is
    not its own; the collector's retention deletes only vidpipe's segments;
    once the other file goes, recording resumes."""
    disk = small_disk
    camera = RtspCamera()
    try:
        decoder, folder = record(pipeline, {"source": camera.url("h264"), "width": 320,
                                            "height": 240},
                                 dir=str(disk / "rec"), min_free_mb=1, max_bytes=4 * 2 ** 20)
        wait_until(lambda: len(segments(folder)) >= 2, 30, "two segments")
        other = disk / "somebody-else.bin"
        size = fill(other)
        board = pipeline.runtime / "status" / "decoder-cam0.json"

        def waiting() -> str:
            state = json.loads(board.read_text()).get("recording", {}).get("state", "") \
                if board.exists() else ""
            return state if "min_free_mb" in state else ""

        said = wait_until(waiting, 30, "the decoder saying the disk is full")
        results = len(pipeline.results())
        wait_until(lambda: len(pipeline.results()) >= results + 15, 30,
                   "analysed frames while the disk is full")
        assert decoder.proc.poll() is None
        assert other.stat().st_size == size  # not ours: never touched
        assert sorted(p.name for p in disk.iterdir()) == ["rec", "somebody-else.bin"]
        other.unlink()
        before = set(segments(folder))
        wait_until(lambda: len(set(segments(folder)) - before) >= 2, 40,
                   "segments again once there is room")
        assert decoder.stop() == 0
        assert not list(folder.glob("*.part.mp4"))
        for path in segments(folder):
            assert first_is_key(path) and probe(path)["frames"] > 0, path
        print("\nthe decoder said:", said)
    finally:
        camera.close()
