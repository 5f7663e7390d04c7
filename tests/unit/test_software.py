"""vidpipe devices: which OpenCV is imported, what it was built with, and
which other copy it shadows (NVIDIA's and Ubuntu's side by side on a Jetson)."""

import json
from pathlib import Path

from conftest import run_cli
from vidpipe.host import software

# as NVIDIA's libopencv-python 4.5.4 on JetPack 5 reports itself (trimmed):
# GStreamer yes, no CUDA section at all
JETPACK = """
General configuration for OpenCV 4.5.4 =====================================
  Video I/O:
    FFMPEG:                      YES
      avcodec:                   YES (58.54.100)
    GStreamer:                   YES (1.16.3)
    v4l/v4l2:                    YES (linux/videodev2.h)
  Python 3:
    Interpreter:                 /usr/bin/python3 (ver 3.8.10)
"""
CUDA_BUILD = JETPACK + """
  NVIDIA CUDA:                   YES (ver 11.4, CUFFT CUBLAS FAST_MATH)
    NVIDIA GPU arch:             72 87
  cuDNN:                         YES (ver 8.6.0)
"""


def test_features_from_the_build_information() -> None:
    jp = software.opencv_features(JETPACK)
    assert software.has(jp, "gstreamer") and software.has(jp, "ffmpeg")
    assert not software.has(jp, "cuda") and jp["cuda"] == "NO"
    cuda = software.opencv_features(CUDA_BUILD)
    assert software.has(cuda, "cuda") and cuda["cuda"].startswith("YES (ver 11.4")
    assert software.has(cuda, "cudnn")


def test_the_first_cv2_on_the_path_wins_and_the_others_are_named(tmp_path: Path) -> None:
    nvidia = tmp_path / "usr/lib/python3.8/dist-packages"
    ubuntu = tmp_path / "usr/lib/python3/dist-packages"
    (nvidia / "cv2").mkdir(parents=True)
    (nvidia / "cv2" / "__init__.py").write_text("")
    ubuntu.mkdir(parents=True)
    (ubuntu / "cv2.cpython-38-aarch64-linux-gnu.so").write_bytes(b"")
    (ubuntu / "numpy").mkdir()
    copies = software.cv2_copies([str(ubuntu), str(tmp_path / "missing"), str(nvidia)])
    assert copies == [str(ubuntu / "cv2.cpython-38-aarch64-linux-gnu.so"), str(nvidia / "cv2")]


def test_vidpipe_devices_names_the_imported_opencv() -> None:
    result = run_cli("devices")
    assert result.returncode == 0, result.stderr
    assert "opencv: " in result.stdout and "gstreamer " in result.stdout
    result = run_cli("devices", "--json")
    info = json.loads(result.stdout)["software"]
    assert info["opencv"]["file"].endswith(".so") or "cv2" in info["opencv"]["file"]
    assert info["toml"] in ("tomllib", "tomli", "toml")
    assert set(info["opencv"]["features"]) == set(software.FEATURES)
