"""Network cameras through the GStreamer source, against a real RTSP server
(GStreamer's, from Debian's packages, started by the tests: see
tests/rtsp_camera.py): H.264 and H.265, over TCP and UDP, decoded and scaled
in the decoder, every frame handed on in order.

Marked ``once``: the floor suites' OpenCV is PyPI's wheel, built without
GStreamer (Debian's and NVIDIA's OpenCV have it)."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from conftest import free_port, http_get, run_cli, wait_until
from helpers import wait_exit
from vidpipe.config import CameraConfig, config_from_dict
from vidpipe.decoder import Decoder
from vidpipe.capture.sources import SourceError, make_source

pytestmark = pytest.mark.once
CAMERA = Path(__file__).resolve().parent.parent / "rtsp_camera.py"


class RtspCamera:
    """The test server in a process of its own, on a port that stays the same
    across a stop and a start (a camera that reboots)."""

    def __init__(self, *extra: str, size: str = "640x480") -> None:
        self.port = free_port()
        self.extra = list(extra)
        self.size = size.split("x")
        self.clients: List[float] = []  # when each connection came
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["/usr/bin/python3", str(CAMERA), str(self.port)] +
                                     self.size + ["30"] + self.extra, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, universal_newlines=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise AssertionError("the RTSP server did not start (./dev test installs "
                                 "gir1.2-gst-rtsp-server-1.0): " + line + self.proc.stdout.read())
        threading.Thread(target=self._count, args=(self.proc.stdout,), daemon=True).start()

    def _count(self, stream: Any) -> None:
        for line in stream:
            if line.startswith("client"):
                self.clients.append(time.monotonic())

    def url(self, path: str, auth: str = "") -> str:
        return "rtsp://{}127.0.0.1:{}/{}".format(auth + "@" if auth else "", self.port, path)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    close = stop


@pytest.fixture
def rtsp() -> Iterator[RtspCamera]:
    server = RtspCamera()
    yield server
    server.close()


@pytest.mark.parametrize("codec,transport", [("h264", "tcp"), ("h264", "udp"),
                                             ("h265", "tcp"), ("h265", "udp")])
def test_300_frames_arrive_in_order_scaled_in_the_decoder(rtsp: RtspCamera, pipeline: Any,
                                                          codec: str, transport: str) -> None:
    pipeline.write_config({
        "cameras": {"cam0": {"source": rtsp.url(codec), "decode": "software", "codec": codec,
                             "rtsp_transport": transport, "width": 320, "height": 180,
                             "fps": 30, "frames": 300, "wait_for_handlers": 2}},
        "handlers": {"stages": ["gray"]},
        "collector": {"outputs": ["jsonl"], "exit_on_eos": True},
    })
    collector = pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    pipeline.start("handler", "2")
    decoder = pipeline.start("decoder", "cam0")
    assert wait_exit(decoder, 40, pipeline) == 0
    assert wait_exit(collector, 30, pipeline) == 0
    records = pipeline.results()
    ok = [r for r in records if r["status"] == "ok"]
    assert [r["seq"] for r in ok] == list(range(300)), [r for r in records if
                                                         r["status"] != "ok"][:5]
    assert all(r["shape"] == [180, 320] for r in ok)  # 640x480 scaled before handing out
    gaps = [(b["capture_ns"] - a["capture_ns"]) / 1e6 for a, b in zip(ok, ok[1:])]
    mean = sum(gaps) / len(gaps)
    assert 25 < mean < 45, mean  # the camera's 30 fps, no start-up burst
    name = {"h264": "H.264 on avdec_h264", "h265": "H.265 on avdec_h265"}[codec]
    assert "decoding {} (software)".format(name) in decoder.output()
    print("{} over {}: 300 frames in order, mean interval {:.1f} ms, largest {:.1f} ms".format(
        codec, transport, mean, max(gaps)))


def run_to_the_end(pipeline: Any, cameras: Dict[str, Dict[str, Any]]) -> Tuple[List[Any],
                                                                              List[Any]]:
    """Finite cameras through two handlers with no stages (the frames as
    delivered) to the collector: their decoders and the ok records."""
    for camera in cameras.values():
        camera["wait_for_handlers"] = 2
    pipeline.write_config({"cameras": cameras, "handlers": {"stages": []},
                           "collector": {"outputs": ["jsonl"], "exit_on_eos": True}})
    collector = pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    pipeline.start("handler", "2")
    decoders = [pipeline.start("decoder", name) for name in cameras]
    for decoder in decoders:
        assert wait_exit(decoder, 40, pipeline) == 0
    assert wait_exit(collector, 30, pipeline) == 0
    return decoders, [r for r in pipeline.results() if r["status"] == "ok"]


def test_the_defaults_pick_the_decoder_from_the_cameras_answer(rtsp: RtspCamera,
                                                              pipeline: Any) -> None:
    """Nothing but the URL: the codec comes from the camera's session
    description, GStreamer decodes what it can (H.265 here, straight to
    GRAY when asked), FFmpeg the rest (Motion JPEG), the reason in the log."""
    decoders, ok = run_to_the_end(pipeline, {
        "cam0": {"source": rtsp.url("h265"), "width": 320, "height": 180, "deliver": "gray",
                 "frames": 60},
        "cam1": {"source": rtsp.url("jpeg"), "frames": 60}})
    gray = [r for r in ok if r["camera"] == "cam0"]
    assert [r["seq"] for r in gray] == list(range(60))
    assert all(r["shape"] == [180, 320] for r in gray), gray[0]["shape"]  # GRAY8, scaled
    # FFmpeg's path: full size, BGR; its start-up burst (frames FFmpeg had
    # buffered, handed over at ~45 fps) waits for room instead of being
    # dropped (it cost up to 10 of 60 frames before the decoder paced it).
    # A frame waits at most a frame interval, so on a loaded 2-core box a
    # handler's first frame can still outlast it: one or two reported drops
    # (CI once saw frame 2 dropped, no_capacity), never a frame unaccounted
    mjpeg = [r for r in ok if r["camera"] == "cam1"]
    seqs = [r["seq"] for r in mjpeg]
    assert seqs == sorted(seqs), seqs
    dropped = [r for r in pipeline.results() if r["status"] == "dropped"]
    assert sorted(seqs + [r["seq"] for r in dropped if r["camera"] == "cam1"]) == \
        list(range(60)), seqs
    assert len(seqs) >= 58, (seqs, dropped)
    assert {r["reason"] for r in dropped} <= {"no_capacity"}, dropped
    assert all(r["shape"] == [480, 640, 3] for r in mjpeg), mjpeg[0]["shape"]
    assert "decoding H.265 on avdec_h265 (software)" in decoders[0].output()
    assert "decoding with OpenCV's FFmpeg: JPEG is not a codec the GStreamer path " \
           "decodes" in decoders[1].output()
    # STATUS names what decodes, before any " - why" (a loaded box may add
    # "handlers at capacity" to every one of a short run's statuses)
    statuses = [[m["STATUS"].split(" - ")[0] for m in d.notify.drain() if "STATUS" in m]
                for d in decoders]
    assert any(s.endswith(", decoding H.265 on avdec_h265 (software)") for s in statuses[0]), \
        statuses[0][-5:]
    assert any(s.endswith(", decoding with OpenCV FFmpeg") for s in statuses[1]), \
        statuses[1][-5:]


@pytest.mark.parametrize("decode", ["auto", "ffmpeg"])
def test_a_server_with_shared_media_is_reopened_despite_its_503(rtsp: RtspCamera,
                                                                short_tmp: Path,
                                                                decode: str) -> None:
    """GStreamer's test-launch shares one media among clients; once clients
    have come and gone, it answers the DESCRIBE that follows a describe-only
    visit (the decoder's look before opening) with 503, again and again (8
    of 12 look-then-open tries in a row, 2 s apart, on the FFmpeg path). The
    decoder's next try after a failed open skips the look: each of 5
    reconnects has frames again, most within 5 s (0.9 s GStreamer, 2.5 s
    FFmpeg measured: its open that failed, half a second, the open that
    works; the first reconnect failed without the fix)."""
    run = short_tmp / "run"
    run.mkdir(mode=0o750)
    config = config_from_dict({
        "pipeline": {"runtime_dir": str(run)},
        "cameras": {"cam0": {"source": rtsp.url("h264-shared"), "decode": decode,
                             "wait_for_handlers": 0}}})
    decoder = Decoder(config, "cam0")
    took = []
    try:
        decoder.start()
        for attempt in range(6):
            began, read = time.monotonic(), decoder.read
            while decoder.read < read + 10:
                assert time.monotonic() - began < 15 + (5 if attempt == 0 else 0), \
                    (attempt, decoder.source_error)
                decoder.step()
            took.append(round(time.monotonic() - began, 1))
            decoder._source_failed(SourceError("the test drops the stream"))
    finally:
        decoder.close()
    print("shared media, decode {}: 10 frames after {} s".format(decode, took))
    # the server may still answer 503 to the open itself a few times in a row
    # on a loaded box (CI: once, 10 s of the open's back-off 0.5, 1, 2, 4 s):
    # every reconnect comes back, most of them within 5 s
    assert sorted(took[1:])[2] < 5, took


def resizing_clip(path: Path) -> Path:
    """An H.264 stream that changes size twice: 45 frames of 320x240, 45 of
    640x360, 45 of 320x240 (what a camera does when its profile is changed)."""
    from tests.bench.decode import encode

    segments = []
    for width, height in ((320, 240), (640, 360)):
        part = path.parent / "seg-{}.h264".format(width)
        encode("videotestsrc num-buffers=45 pattern=smpte ! video/x-raw,width={},height={},"
               "framerate=30/1 ! x264enc speed-preset=ultrafast key-int-max=15 ! "
               "video/x-h264,stream-format=byte-stream,profile=baseline ! filesink "
               "location={}".format(width, height, part))
        segments.append(part.read_bytes())
    path.write_bytes(segments[0] + segments[1] + segments[0])
    return path


def test_a_stream_that_changes_size_mid_way_is_delivered_whole(pipeline: Any,
                                                             tmp_path: Path) -> None:
    """Both decode paths keep handing out every frame at one size: GStreamer's
    at the configured width/height (scaled in the pipeline), FFmpeg's at the
    size the stream started with; the codec found by GStreamer's discoverer."""
    clip = resizing_clip(tmp_path / "resizing.h264")
    decoders, ok = run_to_the_end(pipeline, {
        "gst": {"source": "file://{}".format(clip), "decode": "software", "width": 160,
                "height": 120},
        "ffm": {"source": str(clip), "decode": "ffmpeg"}})
    for camera, shape in (("gst", [120, 160, 3]), ("ffm", [240, 320, 3])):
        mine = [r for r in ok if r["camera"] == camera]
        assert [r["seq"] for r in mine] == list(range(135)), camera
        assert {tuple(r["shape"]) for r in mine} == {tuple(shape)}, camera
    assert "decoding H.264 on avdec_h264 (software)" in decoders[0].output()


def test_i420_comes_straight_from_the_decoder(rtsp: RtspCamera, pipeline: Any,
                                              tmp_path: Path) -> None:
    """deliver = "i420": the decoder's own planar YUV 4:2:0, half the bytes
    of BGR -- as GStreamer's decoder made it (no conversion), or converted on
    the FFmpeg path -- the same picture as "bgr" (converted back, within
    rounding); through handlers to the collector in I420's shape."""
    import cv2
    import numpy as np

    clip = resizing_clip(tmp_path / "clip.h264")  # 45 frames of 320x240 first
    pictures = {}
    for decode in ("software", "ffmpeg"):
        for deliver in ("bgr", "i420", "gray"):
            source = make_source(CameraConfig(name="c", source="file://{}".format(clip),
                                              decode=decode, fps=0, deliver=deliver,
                                              width=320, height=240))
            source.open()
            try:
                pictures[decode, deliver] = [source.read() for _ in range(5)]
            finally:
                source.close()
        for bgr, planar, gray in zip(*(pictures[decode, d] for d in ("bgr", "i420", "gray"))):
            assert planar.shape == (360, 320), (decode, planar.shape)
            back = cv2.cvtColor(planar, cv2.COLOR_YUV2BGR_I420)
            assert np.abs(back.astype(int) - bgr).mean() < 3, decode
            # (the bars' saturated colours clip in BGR, so its gray differs there)
            luma = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            assert np.abs(gray.astype(int) - luma).mean() < 8, decode
    # GStreamer's decoder and FFmpeg's, each path's own conversions: one picture
    for ours, theirs in zip(pictures["software", "bgr"], pictures["ffmpeg", "bgr"]):
        assert np.abs(ours.astype(int) - theirs).mean() < 3
    _decoders, ok = run_to_the_end(pipeline, {
        "gst": {"source": rtsp.url("h264"), "width": 320, "height": 180, "deliver": "i420",
                "frames": 30},
        "ffm": {"source": rtsp.url("jpeg"), "deliver": "i420", "frames": 30}})
    for camera, shape in (("gst", [270, 320]), ("ffm", [720, 640])):
        mine = [r for r in ok if r["camera"] == camera]
        assert [r["seq"] for r in mine] == list(range(30)), camera
        assert {tuple(r["shape"]) for r in mine} == {tuple(shape)}, camera


def test_a_stream_without_a_size_comes_at_its_own(tmp_path: Path) -> None:
    """A camera section without width/height does not squash a 16:9 stream into
    the 640x480 default: the GStreamer path hands it out at its own size (as
    FFmpeg's does); with a size, at exactly that."""
    from tests.bench.decode import encode

    clip = tmp_path / "wide.h264"
    encode("videotestsrc num-buffers=3 pattern=smpte75 ! video/x-raw,width=320,height=180,"
           "framerate=30/1 ! x264enc speed-preset=ultrafast ! video/x-h264,stream-format="
           "byte-stream,profile=baseline ! filesink location={}".format(clip))
    url = "file://{}".format(clip)
    config = config_from_dict({"cameras": {
        "own": {"source": url, "decode": "software", "fps": 0},
        "gray": {"source": url, "decode": "software", "fps": 0, "deliver": "gray"},
        "sized": {"source": url, "decode": "software", "fps": 0, "width": 160, "height": 120}}})
    for name, shape in (("own", (180, 320, 3)), ("gray", (180, 320)), ("sized", (120, 160, 3))):
        source = make_source(config.camera(name))
        source.open()
        try:
            assert source.read().shape == shape, name
        finally:
            source.close()


def test_a_full_range_stream_looks_as_ffmpeg_shows_it(tmp_path: Path) -> None:
    """Many IP cameras send full-range H.264 (FFmpeg's yuvj420p: luma 0-255, not
    16-235). GStreamer's decoder hands it out as it is, tagged in its caps;
    read as video range, blacks and whites would clip. Every deliver of the
    GStreamer path agrees with FFmpeg's picture, for a full-range stream and
    for a video-range one; I420 is handed on in video range either way."""
    import cv2
    import numpy as np

    from tests.bench.decode import encode

    def clip(range_code: str) -> Path:
        path = tmp_path / "range-{}.h264".format(range_code)
        encode("videotestsrc num-buffers=3 pattern=smpte75 ! video/x-raw,format=I420,width=320,"
               "height=240,framerate=30/1,colorimetry={}:4:0:0 ! x264enc speed-preset=ultrafast "
               "! video/x-h264,stream-format=byte-stream,profile=baseline ! filesink "
               "location={}".format(range_code, path))
        return path

    def first(path: Path, decode: str, deliver: str) -> Any:
        source = make_source(CameraConfig(name="c", source="file://{}".format(path),
                                          decode=decode, fps=0, deliver=deliver,
                                          width=320, height=240))
        source.open()
        try:
            return source.read()
        finally:
            source.close()

    for range_code in ("1", "2"):  # GstVideoColorRange: 1 = 0-255, 2 = 16-235
        path = clip(range_code)
        theirs = first(path, "ffmpeg", "bgr").astype(int)
        ours = {deliver: first(path, "software", deliver) for deliver in ("bgr", "gray", "i420")}
        gray = cv2.cvtColor(theirs.astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(int)
        back = cv2.cvtColor(ours["i420"], cv2.COLOR_YUV2BGR_I420).astype(int)
        differences = {"bgr": np.abs(ours["bgr"] - theirs).mean(),
                       "gray": np.abs(ours["gray"] - gray).mean(),
                       "i420": np.abs(back - theirs).mean()}
        # (measured: under 1 on each; 11.6 in BGR with the full range read as video)
        assert max(differences.values()) < 2, (range_code, differences)


def test_a_hostile_url_stays_inside_its_property() -> None:
    """The URL is quoted in the pipeline description: GStreamer's own parser
    makes one rtspsrc with the whole URL, no element the URL named."""
    from vidpipe.capture import gstreamer

    Gst = gstreamer.gst_modules()[0]  # noqa: N806 (GstApp loaded first: see gstreamer.gst_modules)
    url = 'rtsp://x/a" ! filesink location="/tmp/vidpipe-pwned'
    text = gstreamer.describe_pipeline(url, gstreamer.Choice("software", "avdec_h264", "h264"))
    elements, found = [], Gst.parse_launch(text).iterate_elements()
    while True:  # without python3-gst-1.0's overrides an iterator is not iterable
        result, element = found.next()
        if result != Gst.IteratorResult.OK:
            break
        elements.append(element)
    names = sorted(e.get_factory().get_name() for e in elements)
    assert "filesink" not in names and names.count("rtspsrc") == 1
    src = [e for e in elements if e.get_factory().get_name() == "rtspsrc"][0]
    assert src.get_property("location") == url


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (from /proc)."""
    fields = Path("/proc/{}/stat".format(pid)).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def frames_after(pipeline: Any, wall_ns: int) -> List[Any]:
    return [r for r in pipeline.results() if r["status"] == "ok" and r["capture_ns"] >= wall_ns]


def one_live_camera(pipeline: Any, camera: Dict[str, Any], frames: int) -> Any:
    """cam0 through one handler (gray) to the collector, once ``frames`` of
    it went through: its decoder."""
    pipeline.write_config({"cameras": {"cam0": camera}, "handlers": {"stages": ["gray"]},
                           "collector": {"outputs": ["jsonl"]}})
    pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    decoder = pipeline.start("decoder", "cam0")
    wait_until(lambda: len(frames_after(pipeline, 0)) >= frames, 30, "frames from the camera")
    return decoder


def test_a_camera_that_reboots_or_goes_silent_is_back_within_3_s(rtsp: RtspCamera,
                                                                pipeline: Any) -> None:
    """Away 20 s, then 60 s (a camera rebooting): the decoder waits on cheap
    probes (< 2 % of a core) and frames flow within 3 s of the camera
    answering. Silent without closing the connection (SIGSTOP): noticed
    within 2 s."""
    decoder = one_live_camera(pipeline, {"source": rtsp.url("h264"), "decode": "software",
                                         "width": 320, "height": 240, "fps": 10}, 20)
    figures = []
    for away in (20, 60):
        rtsp.stop()
        gone = time.monotonic()
        wait_until(lambda: "reopening" in decoder.output().split("is back")[-1], 10,
                   "the decoder noticing the camera is gone")
        cpu_before, t_before = cpu_s(decoder.pid), time.monotonic()
        time.sleep(max(0.0, away - (time.monotonic() - gone)))
        waiting_cpu = (cpu_s(decoder.pid) - cpu_before) / (time.monotonic() - t_before)
        rtsp.start()
        back_ns = time.time_ns()
        wait_until(lambda: frames_after(pipeline, back_ns), 15, "frames after the camera is back")
        first = min(r["capture_ns"] for r in frames_after(pipeline, back_ns))
        figures.append((away, waiting_cpu, (first - back_ns) / 1e9))
        assert waiting_cpu < 0.02, figures
        assert (first - back_ns) / 1e9 <= 3.0, figures
    # silent: the process stops answering, the TCP connection stays open
    assert rtsp.proc is not None
    before = decoder.output().count("reopening")
    rtsp.proc.send_signal(signal.SIGSTOP)
    silent = time.monotonic()
    try:
        wait_until(lambda: decoder.output().count("reopening") > before, 10,
                   "the decoder noticing a silent camera")
        noticed = time.monotonic() - silent
    finally:
        rtsp.proc.send_signal(signal.SIGCONT)
    print("camera away {}; silent camera noticed after {:.1f} s".format(
        ", ".join("{} s: decoder CPU {:.2%} while waiting, frames {:.1f} s after it "
                  "answered".format(a, c, f) for a, c, f in figures), noticed))
    assert noticed <= 2.0  # the source's 1.5 s read timeout, and the test's polling


def test_a_silent_camera_is_noticed_on_the_ffmpeg_path_too(rtsp: RtspCamera,
                                                         pipeline: Any) -> None:
    """OpenCV's FFmpeg reads time out after 2 s (not FFmpeg's default of
    never, nor the 5 s it once had): a camera that lost power is noticed."""
    decoder = one_live_camera(pipeline, {"source": rtsp.url("h264"), "decode": "ffmpeg",
                                         "fps": 30}, 10)
    assert rtsp.proc is not None
    rtsp.proc.send_signal(signal.SIGSTOP)
    silent = time.monotonic()
    try:
        wait_until(lambda: "reopening" in decoder.output(), 10,
                   "the decoder noticing a silent camera")
        noticed = time.monotonic() - silent
    finally:
        rtsp.proc.send_signal(signal.SIGCONT)
    print("FFmpeg path: silent camera noticed after {:.1f} s".format(noticed))
    assert noticed <= 3.0  # the 2 s read timeout, the frames buffered before it, polling


def test_a_wrong_password_is_named_and_the_camera_not_hammered(pipeline: Any) -> None:
    camera = RtspCamera("viewer:s3cret")
    try:
        pipeline.write_config({
            "cameras": {"cam0": {"source": camera.url("h264", "viewer:wrong-pw"),
                                 "decode": "software", "width": 320, "height": 240}},
            "handlers": {"stages": ["gray"]},
            "collector": {"outputs": ["jsonl"]},
        })
        decoder = pipeline.start("decoder", "cam0")
        started = time.monotonic()
        wait_until(lambda: "401 Unauthorized" in decoder.output(), 10, "401 in the log")
        status = decoder.notify.last("STATUS") or ""
        assert "401 Unauthorized" in status, status
        time.sleep(max(0.0, 30 - (time.monotonic() - started)))
        tries = len(camera.clients)
        assert 1 <= tries <= 2, camera.clients  # a look every 20 s: 3 a minute at most
        assert "wrong-pw" not in decoder.output() and "wrong-pw" not in status
        decoder.stop()
        # the right password, from a file of its own (not pipeline.toml): frames
        secret = pipeline.root / "cam0.credentials"
        secret.write_text("viewer\ns3cret\n")
        secret.chmod(0o640)
        pipeline.write_config({
            "cameras": {"cam0": {"source": camera.url("h264"), "credentials_file": str(secret),
                                 "decode": "software", "width": 320, "height": 240,
                                 "frames": 30, "wait_for_handlers": 1}},
            "handlers": {"stages": ["gray"]},
            "collector": {"outputs": ["jsonl"], "exit_on_eos": True},
        })
        collector = pipeline.start("collector", "main")
        pipeline.start("handler", "1")
        good = pipeline.start("decoder", "cam0")
        assert wait_exit(good, 40, pipeline) == 0
        assert wait_exit(collector, 30, pipeline) == 0
        assert len([r for r in pipeline.results() if r["status"] == "ok"]) == 30
        assert "s3cret" not in good.output() + (good.notify.last("STATUS") or "")
        print("wrong password: {} connection(s) in 30 s; status: {}".format(tries, status))
    finally:
        camera.close()


def test_no_password_shows_anywhere(pipeline: Any, tmp_path: Path) -> None:
    """The camera's password -- in a credentials file for one camera, in the
    URL for the other -- is in no log line, status, metrics page, STATUS,
    process command line or environment, nor in the demo's output."""
    password = "s3cret-Pw"
    camera = RtspCamera("viewer:" + password)
    try:
        secret = tmp_path / "cam0.credentials"
        secret.write_text("viewer\n{}\n".format(password))
        secret.chmod(0o640)
        port = free_port()
        pipeline.write_config({
            "cameras": {"cam0": {"source": camera.url("h264"), "credentials_file": str(secret),
                                 "width": 320, "height": 240},
                        "cam1": {"source": camera.url("h265", "viewer:" + password),
                                 "width": 320, "height": 240}},
            "handlers": {"stages": ["gray"]},
            "collector": {"outputs": ["jsonl", "preview"], "metrics": True,
                          "http_listen": "127.0.0.1:{}".format(port)},
        })
        roles = [pipeline.start("collector", "main"), pipeline.start("handler", "1"),
                 pipeline.start("decoder", "cam0"), pipeline.start("decoder", "cam1")]
        wait_until(lambda: {r["camera"] for r in frames_after(pipeline, 0)} == {"cam0", "cam1"},
                   30, "frames from both cameras")
        seen = {"status --json": run_cli("--config", str(pipeline.config_path), "status",
                                         "--json", "--no-units").stdout,
                "status": run_cli("--config", str(pipeline.config_path), "status",
                                  "--no-units").stdout,
                "/metrics": http_get("http://127.0.0.1:{}/metrics".format(port)).decode(),
                "/status.json": http_get("http://127.0.0.1:{}/status.json".format(port))
                .decode()}
        assert "cam1" in seen["status --json"] and "vidpipe_" in seen["/metrics"]
        for role in roles:
            proc = Path("/proc/{}".format(role.pid))
            who = "{} {}".format(role.role, role.name)
            seen["cmdline of " + who] = (proc / "cmdline").read_bytes().decode()
            seen["environ of " + who] = (proc / "environ").read_bytes().decode()
            seen["STATUS of " + who] = role.notify.last("STATUS") or ""
        for role in roles:
            role.stop()
            seen["log of {} {}".format(role.role, role.name)] = role.output()
        assert "***" in seen["log of decoder cam1"]  # the URL's password, shown as ***
        demo = run_cli("demo", "--source", camera.url("h264"), "--credentials", str(secret),
                       "--frames", "20", "--http", "", "--handlers", "1", timeout=60)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        seen["demo"] = demo.stdout + demo.stderr
        leaks = [where for where, text in seen.items() if password in text]
        assert not leaks, leaks
    finally:
        camera.close()
