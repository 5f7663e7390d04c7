"""The processed frames' MP4 codec (issue 28): H.264 where the box's OpenCV
and GStreamer encode it, ``mp4v`` only as the fallback, named in the log. A
box without GStreamer's plugins is made real for a child process: an empty
plugin path and a registry of its own (GStreamer then finds no element)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SRC, need_module
from helpers import encodes_h264

need_module("cv2")

PROBE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from vidpipe.outputs.segments import choose_codec
try:
    print("chose", choose_codec(sys.argv[1]))
except OSError as exc:
    print("error", exc)
"""


def choose(choice: str, tmp_path: Path, gstreamer: bool) -> str:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    if not gstreamer:
        env.update(GST_PLUGIN_SYSTEM_PATH_1_0=str(tmp_path), GST_PLUGIN_PATH_1_0=str(tmp_path),
                   GST_PLUGIN_SYSTEM_PATH=str(tmp_path), GST_PLUGIN_PATH=str(tmp_path),
                   GST_REGISTRY_1_0=str(tmp_path / "registry.bin"))
    out = subprocess.run([sys.executable, "-c", PROBE, choice], env=env, timeout=120,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True)
    return out.stdout


@pytest.mark.parametrize("choice", ["auto", "h264", "mp4v"])
def test_h264_where_the_box_encodes_it(tmp_path: Path, choice: str) -> None:
    out = choose(choice, tmp_path, gstreamer=True)
    if choice == "mp4v":
        assert "chose mp4v" in out, out
    elif encodes_h264():  # Debian's OpenCV with GStreamer and x264enc: the suite's boxes
        assert "chose h264" in out and "cannot be written" not in out, out
    else:  # the floor suites' OpenCV from PyPI: no GStreamer
        assert ("chose mp4v" in out and "cannot be written" in out) if choice == "auto" \
            else ("chose avc1" in out or "error [collector.record] codec" in out), out


def test_without_gstreamers_encoder_mp4v_is_the_fallback_and_the_log_says_why(
        tmp_path: Path) -> None:
    out = choose("auto", tmp_path, gstreamer=False)
    assert "chose mp4v" in out, out
    assert "MP4 segments are MPEG-4 Part 2 (mp4v): H.264 (GStreamer x264enc) cannot be " \
        "written here" in out and "gstreamer1.0-plugins-ugly" in out, out
    # codec = "h264" insists: OpenCV's own FFmpeg H.264, or an error naming the key
    out = choose("h264", tmp_path, gstreamer=False)
    assert "chose avc1" in out or ("error [collector.record] codec = 'h264'" in out), out
