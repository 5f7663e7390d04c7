"""What software this box runs vidpipe with, for ``vidpipe devices``.

On a Jetson two OpenCV builds may be installed side by side: NVIDIA's
``libopencv-python`` (in ``/usr/lib/python3.X/dist-packages``, built with
GStreamer, without CUDA on a stock JetPack) and Ubuntu's ``python3-opencv``
(in ``/usr/lib/python3/dist-packages``). Which one ``import cv2`` takes
depends on ``sys.path`` order, and with it whether GStreamer works. This
module says which ``cv2`` is imported, which others it shadows, and what
the imported one was built with, so an operator sees at once why a stage
or a source fell back.
"""

import os
import re
import sys
from typing import Any, Dict, List, Optional

#: build features that decide what runs where, as named in getBuildInformation()
FEATURES = {"gstreamer": "GStreamer", "ffmpeg": "FFMPEG", "v4l2": "v4l/v4l2",
            "cuda": "NVIDIA CUDA", "cudnn": "cuDNN"}


def opencv_features(build_info: str) -> Dict[str, str]:
    """``{feature: "YES (…)"/"NO"}`` from ``cv2.getBuildInformation()``; a
    feature the text does not mention is "NO" (a build without CUDA leaves the
    CUDA line out altogether)."""
    found: Dict[str, str] = {}
    for key, label in FEATURES.items():
        match = re.search(r"^\s*" + re.escape(label) + r":\s*(.+?)\s*$", build_info, re.M)
        found[key] = match.group(1) if match else "NO"
    return found


def has(features: Dict[str, str], key: str) -> bool:
    return features.get(key, "NO").upper().startswith("YES")


def cv2_copies(paths: Optional[List[str]] = None) -> List[str]:
    """Every ``cv2`` module on ``paths`` (default ``sys.path``), in the order
    Python searches them: the first is what ``import cv2`` takes."""
    out = []
    for entry in paths if paths is not None else sys.path:
        folder = entry or "."
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in sorted(names):
            path = os.path.join(folder, name)
            if name == "cv2" and os.path.isdir(path) and (
                    os.path.exists(os.path.join(path, "__init__.py"))
                    or any(n.startswith("cv2") and n.endswith(".so") for n in os.listdir(path))):
                out.append(path)
            elif name.startswith("cv2.") and name.endswith(".so"):
                out.append(path)
    return out


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except Exception as exc:  # an optional module: its absence is the answer
        return "not installed ({})".format(type(exc).__name__)
    return str(getattr(mod, "__version__", "?"))


def describe() -> Dict[str, Any]:
    """Python, OpenCV (which, version, features, shadowed copies), NumPy,
    ZeroMQ, the TOML parser, ONNX Runtime's providers."""
    from vidpipe.config import tomlread

    info: Dict[str, Any] = {"python": sys.version.split()[0], "numpy": _version("numpy"),
                            "toml": tomlread.BACKEND}
    try:
        import zmq

        info["pyzmq"] = "{} (libzmq {})".format(zmq.__version__, zmq.zmq_version())
    except ImportError:
        info["pyzmq"] = "not installed"
    copies = cv2_copies()
    try:
        import cv2
    except Exception as exc:
        info["opencv"] = {"error": "{}: {}".format(type(exc).__name__, exc), "copies": copies}
    else:
        where = os.path.realpath(getattr(cv2, "__file__", "") or "")
        features = opencv_features(cv2.getBuildInformation())
        info["opencv"] = {"version": cv2.__version__, "file": where, "features": features,
                          "shadowed": [c for c in copies
                                       if not where.startswith(os.path.realpath(c))]}
    try:
        import onnxruntime

        info["onnxruntime"] = "{} ({})".format(onnxruntime.__version__,
                                               ", ".join(onnxruntime.get_available_providers()))
    except Exception:
        info["onnxruntime"] = "not installed"
    return info


def lines(info: Dict[str, Any]) -> List[str]:
    out = ["python: {}, numpy {}, pyzmq {}, toml parser: {}".format(
        info["python"], info["numpy"], info["pyzmq"], info["toml"])]
    cv = info["opencv"]
    if "error" in cv:
        out.append("opencv: cannot import cv2: {}".format(cv["error"]))
    else:
        feats = cv["features"]
        out.append("opencv: {} from {}".format(cv["version"], cv["file"]))
        out.append("  gstreamer {}, ffmpeg {}, v4l2 {}, cuda {}".format(
            *("yes" if has(feats, k) else "no" for k in ("gstreamer", "ffmpeg", "v4l2",
                                                         "cuda"))))
        if not has(feats, "cuda"):
            out.append("  (no CUDA in this build: the dnn stage on cuda0 needs runtime = "
                       "\"onnxruntime\", else it falls back to the CPU or stops, as "
                       "fallback says)")
        for other in cv["shadowed"]:
            out.append("  shadows {} (another OpenCV, not used)".format(other))
    out.append("onnxruntime: {}".format(info["onnxruntime"]))
    return out
