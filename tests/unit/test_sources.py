from pathlib import Path

import numpy as np
import pytest

from conftest import write_clip
from vidpipe import redact
from vidpipe.config import ConfigError, config_from_dict
from vidpipe.capture.sources import (AutoSource, FileSource, GstSource, PatternSource, SourceError,
                             StreamSource, URLSource, V4L2Source, make_source,
                             render_testsrc)


def cam(**values: object):
    values.setdefault("source", "testsrc")
    return config_from_dict({"cameras": {"c": values}}).camera("c")


def test_testsrc_is_deterministic_numbered_and_finite() -> None:
    source = make_source(cam(width=160, height=120, frames=3))
    assert isinstance(source, PatternSource)
    source.open()
    frames = [source.read() for _ in range(4)]
    assert frames[3] is None
    assert np.array_equal(frames[1], render_testsrc(1, 160, 120))
    assert not np.array_equal(frames[0], frames[1])
    assert frames[0].shape == (120, 160, 3)


def test_testsrc_reads_into_a_given_buffer() -> None:
    source = make_source(cam(width=64, height=48))
    source.open()
    buf = np.empty((48, 64, 3), np.uint8)
    assert source.read_into(buf) is buf
    assert np.array_equal(buf, render_testsrc(0, 64, 48))


def test_file_source_reads_to_the_end(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.avi", 10, 64, 48)
    source = make_source(cam(source=str(path)))
    assert isinstance(source, FileSource) and not source.live
    source.open()
    assert source.info["width"] == 64 and source.info["height"] == 48
    count = 0
    while source.read() is not None:
        count += 1
    assert count == 10
    looped = make_source(cam(source=str(path), loop=True, frames=25))
    looped.open()
    count = 0
    while looped.read() is not None:
        count += 1
    assert count == 25


def test_source_kinds_are_chosen_from_the_string() -> None:
    assert isinstance(make_source(cam(source="/dev/video7")), V4L2Source)
    assert isinstance(make_source(cam(source="auto")), AutoSource)
    # a camera: GStreamer or FFmpeg, decided when it answers; other URLs: FFmpeg
    assert isinstance(make_source(cam(source="rtsp://h/s")), StreamSource)
    assert isinstance(make_source(cam(source="http://h/s.mjpg")), URLSource)
    assert isinstance(make_source(cam(source="rtsp://h/s", decode="ffmpeg")), URLSource)
    assert isinstance(make_source(cam(source="rtsp://h/s", decode="nvdec")), GstSource)
    with pytest.raises(ConfigError):
        make_source(cam(source="no/such/file.mp4"))


def test_an_absent_camera_is_a_source_error_not_a_crash() -> None:
    source = make_source(cam(source="/dev/video-vidpipe-test-absent"))
    with pytest.raises(SourceError, match="does not exist"):
        source.open()


def test_unreachable_stream_is_a_source_error() -> None:
    source = make_source(cam(source="rtsp://127.0.0.1:9/nothing"))
    with pytest.raises(SourceError, match="cannot open stream"):
        source.open()


def test_passwords_are_not_logged() -> None:
    assert redact.url("rtsp://admin:s3cret@10.0.0.1/live") == "rtsp://admin:***@10.0.0.1/live"
    assert redact.url("rtsp://10.0.0.1/live?user=admin&pwd=s3cret&channel=1") == \
        "rtsp://10.0.0.1/live?user=***&pwd=***&channel=1"
    assert redact.url("http://cam/mjpg?token=abc;Password=x") == "http://cam/mjpg?token=***;Password=***"
    assert redact.url("rtsp://tok3n@cam/s") == "rtsp://***@cam/s"
    assert redact.url("/dev/video0") == "/dev/video0"
    # issue 24: a password holding "@" was shown from its last "@" on;
    # pw= and loginpas= values were shown
    assert redact.url("rtsp://admin:p@ss@t-tail-1234/live") == "rtsp://admin:***@t-tail-1234/live"
    assert redact.url("http://cam/cgi?loginuse=admin&loginpas=s3cret&pw=x&res=1") == \
        "http://cam/cgi?loginuse=***&loginpas=***&pw=***&res=1"
    assert redact.url("decoding stream rtsp://cam:554/x (user a@b)") == \
        "decoding stream rtsp://cam:554/x (user a@b)"


def test_url_source_reads_a_stream_over_http(tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    write_clip(tmp_path / "clip.avi", 12, 64, 48)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = "http://127.0.0.1:{}/clip.avi".format(server.server_address[1])
        source = make_source(cam(source=url))
        assert isinstance(source, URLSource) and source.live
        source.open()
        frames = [source.read() for _ in range(5)]
        assert all(f is not None and f.shape == (48, 64, 3) for f in frames)
    finally:
        server.shutdown()
        server.server_close()
    # the stream ends (a camera going away): a live source reports an error to
    # retry on, never a silent end of stream
    with pytest.raises(SourceError):
        for _ in range(20):
            source.read()
    source.close()


def test_camera_names_come_from_the_udev_links(tmp_path: Path) -> None:
    from vidpipe.capture.cameras import camera_names

    (tmp_path / "video3").write_text("")
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "cam2").symlink_to(tmp_path / "video3")
    assert camera_names(str(tmp_path / "links")) == {str(tmp_path / "video3"): "cam2"}


def test_a_cameras_credentials_file_goes_into_its_url_and_nowhere_else(tmp_path: Path) -> None:
    from vidpipe.config import CameraConfig
    from vidpipe.capture.base import stream_url
    from vidpipe.capture.sources import SourceError, make_source

    secret = tmp_path / "cam0.secret"
    secret.write_text("admin\np@ss:w/rd\n")
    secret.chmod(0o640)
    cam = CameraConfig(name="cam0", source="rtsp://old:creds@10.0.0.5:554/stream1?x=1",
                       credentials_file=str(secret))
    assert stream_url(cam) == "rtsp://admin:p%40ss%3Aw%2Frd@10.0.0.5:554/stream1?x=1"
    source = make_source(cam)
    assert "p%40ss" not in source.describe() and "p@ss" not in source.describe()
    missing = CameraConfig(name="cam1", source="rtsp://10.0.0.6/s",
                           credentials_file=str(tmp_path / "nope"))
    with pytest.raises(SourceError, match=r"^cameras.cam1.credentials_file: .*nope"):
        stream_url(missing)
    secret.write_text("only-a-user\n")
    with pytest.raises(SourceError, match="expected the user name on the first line"):
        stream_url(cam)
