"""Network cameras through the GStreamer source, against a real RTSP server
(GStreamer's, from Debian's packages, started by the tests: see
tests/rtsp_camera.py): H.264 and H.265, over TCP and UDP, decoded and scaled
in the decoder, every frame handed on in order.

Marked ``once``: the floor suites' OpenCV is PyPI's wheel, built without
GStreamer (Debian's and NVIDIA's OpenCV have it)."""

import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import free_port
from helpers import wait_exit

pytestmark = pytest.mark.once
CAMERA = Path(__file__).resolve().parent.parent / "rtsp_camera.py"


class RtspCamera:
    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(["/usr/bin/python3", str(CAMERA), str(self.port), "640",
                                      "480", "30"] + list(extra), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, universal_newlines=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise AssertionError("the RTSP server did not start (./dev test installs "
                                 "gir1.2-gst-rtsp-server-1.0): " + line + self.proc.stdout.read())

    def url(self, path: str, auth: str = "") -> str:
        return "rtsp://{}127.0.0.1:{}/{}".format(auth + "@" if auth else "", self.port, path)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


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


def test_a_hostile_url_stays_inside_its_property() -> None:
    """The URL is quoted in the pipeline description: GStreamer's own parser
    makes one rtspsrc with the whole URL, no element the URL named."""
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    from vidpipe import gstreamer

    Gst.init(None)
    url = 'rtsp://x/a" ! filesink location="/tmp/vidpipe-pwned'
    text = gstreamer.describe_pipeline(url, gstreamer.Choice("software", "avdec_h264", "h264"))
    elements = list(Gst.parse_launch(text).iterate_elements())
    names = sorted(e.get_factory().get_name() for e in elements)
    assert "filesink" not in names and names.count("rtspsrc") == 1
    src = [e for e in elements if e.get_factory().get_name() == "rtspsrc"][0]
    assert src.get_property("location") == url
