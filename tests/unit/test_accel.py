"""Accelerator detection, choice and unit drop-ins, against fake system trees
(no Jetson is lent to this project: the fake is the OS boundary, see
``conftest.fake_jetson``)."""

import sys
import types
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from conftest import fake_jetson
from vidpipe.host import accel
from vidpipe.host import generator
from vidpipe.config import ConfigError, config_from_dict
from vidpipe.host.accel import for_handler
from vidpipe.stages import build_chain
from vidpipe.stages.dnn import ort_providers

MODEL = str(Path(__file__).resolve().parents[1] / "data" / "red_blobs.onnx")


def test_a_jetson_is_detected_with_its_gpu_and_both_dla_cores(tmp_path: Path) -> None:
    found = accel.detect(str(fake_jetson(tmp_path)))
    assert found.jetson_model == "NVIDIA Jetson AGX Xavier Developer Kit"
    assert found.cpus == list(range(8))
    assert found.accelerators == ["cpu", "cuda0", "dla0", "dla1"]
    assert "/dev/nvhost-nvdla1" in found.nodes["dla1"]
    assert "/dev/nvhost-nvdla0" not in found.nodes["dla1"]
    assert "/dev/nvmap" in found.nodes["dla1"] and "/dev/nvmap" in found.nodes["cuda0"]


def test_a_pc_has_the_cpu_and_its_nvidia_gpus_only(tmp_path: Path) -> None:
    assert accel.detect(str(tmp_path)).accelerators == ["cpu"]
    (tmp_path / "dev").mkdir()
    for node in ("nvidia0", "nvidiactl", "nvidia-uvm"):
        (tmp_path / "dev" / node).write_text("")
    found = accel.detect(str(tmp_path))
    assert found.accelerators == ["cpu", "cuda0"]
    assert found.nodes["cuda0"] == ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"]


def _config(handlers: Dict[str, Any]) -> Any:
    return config_from_dict({"handlers": handlers})


def test_the_configured_accelerator_is_chosen_when_present(tmp_path: Path,
                                                           monkeypatch: Any) -> None:
    monkeypatch.setenv("VIDPIPE_SYSROOT", str(fake_jetson(tmp_path)))
    config = _config({"2": {"accelerator": "dla1", "fallback": "fail"}})
    assert for_handler(config, "2") == "dla1"
    assert for_handler(config, "1") == "cpu"


def test_a_missing_dla_fails_naming_the_key_or_falls_back_as_told(tmp_path: Path,
                                                                 monkeypatch: Any) -> None:
    monkeypatch.setenv("VIDPIPE_SYSROOT", str(fake_jetson(tmp_path, dlas=1)))
    config = _config({"2": {"accelerator": "dla1", "fallback": "fail"},
                      "3": {"accelerator": "dla1", "fallback": "cpu"}})
    with pytest.raises(ConfigError) as err:
        for_handler(config, "2")
    assert err.value.key == "handlers.2.accelerator"
    assert "dla1" in str(err.value) and "cpu, cuda0, dla0" in str(err.value)
    assert err.value.exit_code == 78
    assert for_handler(config, "3") == "cpu"


def test_dla1_builds_tensorrt_options_for_dla_core_1() -> None:
    providers = ort_providers("dla1", "/var/cache/vidpipe/trt")
    names = [name for name, _ in providers]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                     "CPUExecutionProvider"]
    trt = providers[0][1]
    assert trt["trt_dla_enable"] is True and trt["trt_dla_core"] == 1
    assert trt["trt_fp16_enable"] is True  # the DLA has no FP32
    assert ort_providers("cpu") == [("CPUExecutionProvider", {})]
    assert ort_providers("cuda0")[0][1].get("trt_dla_enable") is None


class FakeSession:
    """Stands in for onnxruntime.InferenceSession (the Jetson build with
    TensorRT cannot exist here); records what the stage asked for."""

    created: List[Dict[str, Any]] = []

    def __init__(self, path: str, providers: List[str],
                 provider_options: List[Dict[str, Any]]) -> None:
        FakeSession.created.append({"path": path, "providers": providers,
                                    "options": provider_options})
        self.providers = providers

    def get_providers(self) -> List[str]:
        return self.providers

    #: the model's input, as its file names it (the heatmap model: any size)
    shape: List[Any] = ["batch", 3, "height", "width"]

    def get_inputs(self) -> List[Any]:
        return [types.SimpleNamespace(name="input", shape=list(FakeSession.shape))]


def fake_onnxruntime(monkeypatch: Any, tmp_path: Path) -> None:
    fake = types.ModuleType("onnxruntime")
    fake.__version__ = "1.16.0"  # type: ignore[attr-defined]  (JetPack 5's)
    fake.get_available_providers = lambda: [  # type: ignore[attr-defined]
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    fake.InferenceSession = FakeSession  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "cache"))


def test_the_dnn_stage_on_dla1_opens_onnxruntime_with_dla_core_1(tmp_path: Path,
                                                                  monkeypatch: Any) -> None:
    fake_onnxruntime(monkeypatch, tmp_path)
    FakeSession.created.clear()
    config = config_from_dict({"handlers": {"stages": ["dnn"]},
                               "stage": {"dnn": {"model": MODEL, "output": "heatmap"}}})
    (stage,) = build_chain(config, ["dnn"], "handlers", "dla1")
    (session,) = FakeSession.created
    assert session["providers"][0] == "TensorrtExecutionProvider"
    assert session["options"][0]["trt_dla_core"] == 1
    assert session["options"][0]["trt_engine_cache_path"] == str(tmp_path / "cache" / "trt")
    assert stage.running_on == "dla1" and "Tensorrt" in stage.runtime


def test_a_model_of_another_input_size_is_refused_in_one_bounded_line(
        tmp_path: Path, monkeypatch: Any) -> None:
    """A model fixed at 416x416 asked for 300x300 is refused before ONNX
    Runtime runs it, saying the size it takes; the dimension names a model
    file carries reach the error (a log line, STATUS) bounded and printable."""
    fake_onnxruntime(monkeypatch, tmp_path)
    monkeypatch.setattr(FakeSession, "shape", ["b\n\x1b[2J" + "x" * 5000, 3, 416, 416])
    config = config_from_dict({"handlers": {"stages": ["dnn"]}, "stage": {"dnn": {
        "model": MODEL, "output": "heatmap", "runtime": "onnxruntime"}}})
    with pytest.raises(ConfigError) as err:
        build_chain(config, ["dnn"], "handlers")
    text = err.value.message
    assert text.startswith("model: ONNX Runtime 1.16.0 cannot run red_blobs.onnx on a blank "
                           "300x300 input (input_width/input_height must be the model's "
                           "input size): it takes b??[2J"), text
    assert text.isprintable() and len(text) < 400, text


def test_cuda_on_an_opencv_without_cuda_is_a_clear_error_naming_the_stage() -> None:
    config = config_from_dict({"stage": {"dnn": {"model": MODEL}}})
    with pytest.raises(ConfigError) as err:
        build_chain(config, ["dnn"], "handlers", "cuda0")
    assert err.value.key == "stage.dnn" and "no CUDA support" in str(err.value)


def test_the_dnn_stage_finds_a_known_object_on_the_cpu() -> None:
    config = config_from_dict({"stage": {"dnn": {
        "model": MODEL, "output": "heatmap", "input_width": 320, "input_height": 240,
        "labels": ["red"]}}})
    (stage,) = build_chain(config, ["dnn"], "handlers", "cpu")
    from vidpipe.stages import Frame

    image = np.full((480, 640, 3), 128, np.uint8)
    image[100:200, 300:420] = (0, 0, 255)  # BGR red, 120 x 100 at (300, 100)
    image[300:340, 40:80] = (255, 255, 255)  # white is not red
    frame = Frame(camera="cam0", seq=0, capture_ns=0, image=image)
    stage.process(frame)
    (found,) = frame.meta["detections"]
    assert found["label"] == "red" and found["confidence"] > 0.99
    assert found["box"] == [300, 100, 120, 100]


def test_generator_gives_each_accelerated_handler_its_nodes_only(tmp_path: Path) -> None:
    devices = accel.detect(str(fake_jetson(tmp_path / "root")))
    config = _config({"2": {"accelerator": "dla1"}, "3": {"accelerator": "cuda0"},
                      "4": {"accelerator": "dla7", "fallback": "cpu"}})
    written = generator.write(str(tmp_path / "out"), generator.plan(config, devices))
    names = sorted(Path(p).parent.name for p in written)
    assert names == ["vid-handler@2.service.d", "vid-handler@3.service.d"]
    dla = (tmp_path / "out/vid-handler@2.service.d" / generator.DROPIN).read_text()
    assert "PrivateDevices=no" in dla and "DevicePolicy=closed" in dla
    assert "DeviceAllow=/dev/nvhost-nvdla1 rw" in dla
    assert "nvdla0" not in dla
    assert "SupplementaryGroups=video render" in dla
    gpu = (tmp_path / "out/vid-handler@3.service.d" / generator.DROPIN).read_text()
    assert "DeviceAllow=/dev/nvhost-ctrl-gpu rw" in gpu and "nvdla" not in gpu


def test_the_generator_never_fails_on_a_broken_config(tmp_path: Path, monkeypatch: Any) -> None:
    bad = tmp_path / "pipeline.toml"
    bad.write_text("[handlers\n")
    monkeypatch.setenv("VIDPIPE_CONFIG", str(bad))
    assert generator.main([str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out").exists()


def test_the_generator_sizes_memory_limits_from_the_config(tmp_path: Path,
                                                           monkeypatch: Any) -> None:
    def limit(cameras: dict) -> dict:
        text = generator.limits(config_from_dict({"cameras": cameras}))
        return {unit: int(t.split("MemoryMax=")[1].rstrip("M\n")) for unit, t in text.items()}

    small = limit({"c": {"source": "testsrc"}})
    assert set(small) == {"vid-decoder@.service", "vid-handler@.service",
                          "vid-collector.service"}
    assert all(mib >= 1024 for mib in small.values())
    big = limit({"c": {"source": "testsrc", "width": 3840, "height": 2160, "shm_slots": 16}})
    # a 4K ring of 16 slots alone is 380 MiB: the decoder's limit grows with it
    assert big["vid-decoder@.service"] > small["vid-decoder@.service"] + 2 * 380
    # a network stream may come at its own size: taken as 1080p at least
    stream = limit({"c": {"source": "rtsp://cam/s", "width": 320, "height": 240}})
    assert stream["vid-decoder@.service"] == limit(
        {"c": {"source": "testsrc", "width": 1920, "height": 1080}})["vid-decoder@.service"]
    assert stream["vid-decoder@.service"] > small["vid-decoder@.service"]
    good = tmp_path / "pipeline.toml"
    good.write_text('[cameras.c]\nsource = "testsrc"\n')
    monkeypatch.setenv("VIDPIPE_CONFIG", str(good))
    assert generator.main([str(tmp_path / "out")]) == 0
    dropin = tmp_path / "out" / "vid-collector.service.d" / generator.LIMITS
    assert "MemoryMax=" in dropin.read_text()
