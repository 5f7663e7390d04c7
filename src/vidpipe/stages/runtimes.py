"""Where a model runs: the choices of ONNX Runtime's execution providers and
OpenCV's DNN backends for an accelerator, and how a runtime says it cannot
run a model (the ``dnn`` stage then tries the other, or names both)."""

import os
from typing import Any, Dict, List, Optional, Tuple

import cv2

from vidpipe.names import one_line


def engine_cache() -> str:
    """Where TensorRT keeps the engines it builds (minutes to build on a Jetson):
    the unit's CacheDirectory (/var/cache/vidpipe), else the user's cache."""
    base = os.environ.get("CACHE_DIRECTORY") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vidpipe")
    return os.path.join(base.split(":")[0], "trt")


def ort_providers(accelerator: str, cache_dir: Optional[str] = None
                  ) -> List[Tuple[str, Dict[str, Any]]]:
    """ONNX Runtime execution providers, best first, with their options."""
    cache_dir = cache_dir or engine_cache()
    cpu = [("CPUExecutionProvider", {})]
    if accelerator.startswith("dla"):
        core = int(accelerator[3:])
        return [("TensorrtExecutionProvider", {
            "device_id": 0, "trt_dla_enable": True, "trt_dla_core": core,
            "trt_fp16_enable": True,  # the DLA runs FP16 or INT8 only
            "trt_engine_cache_enable": True, "trt_engine_cache_path": cache_dir}),
            ("CUDAExecutionProvider", {"device_id": 0})] + cpu
    if accelerator.startswith("cuda"):
        gpu = int(accelerator[4:])
        return [("TensorrtExecutionProvider", {
            "device_id": gpu, "trt_fp16_enable": True,
            "trt_engine_cache_enable": True, "trt_engine_cache_path": cache_dir}),
            ("CUDAExecutionProvider", {"device_id": gpu})] + cpu
    return cpu


def opencv_target(accelerator: str) -> Tuple[int, int]:
    """OpenCV DNN (backend, target) for ``accelerator``."""
    if accelerator.startswith("cuda"):
        return cv2.dnn.DNN_BACKEND_CUDA, cv2.dnn.DNN_TARGET_CUDA
    return cv2.dnn.DNN_BACKEND_OPENCV, cv2.dnn.DNN_TARGET_CPU


class OpenCvRefused(ValueError):
    """OpenCV's DNN module cannot import or run the model."""


class OrtRefused(ValueError):
    """ONNX Runtime cannot load or run the model."""


def ort_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401  (only whether it imports)
    except ImportError:
        return False
    return True


def last_line(exc: Exception) -> str:
    """The last line of a runtime's error (its reason), bounded and printable:
    it quotes what a model file made it say."""
    lines = str(exc).strip().splitlines()
    return one_line(lines[-1] if lines else type(exc).__name__, 200)


def opencv_has_cuda() -> bool:
    try:
        return cv2.cuda.getCudaEnabledDeviceCount() > 0
    except (AttributeError, cv2.error):
        return False
