"""The ``dnn`` stage's YOLO and DETR layouts (issue 27, item 1).

Two ways, both with stated truth: the readers on output tensors written by
hand (YOLOX's grid decoding, class-aware NMS, logits), and the whole stage
on real inference in OpenCV's DNN module with the models in tests/data
(``red_cells_*.onnx``, made by tests/data/make_test_model.py: each 32x32
cell of a 320x320 input is a candidate scored by how red it is, written in
the layout's own output format). No real YOLO/DETR weights are reachable
from this project's package registries (checked: PyPI's ultralytics,
yolov5, rtdetr and yolox packages download their weights at run time), so
the layouts are held to the format each project documents.
"""

from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest

from vidpipe.config import ConfigError, config_from_dict
from vidpipe.stages import build_chain, layouts
from vidpipe.stages.base import Frame

DATA = Path(__file__).resolve().parents[1] / "data"
#: OpenCV 4.2 (focal's) cannot import an ONNX graph whose Concat or Mul takes a
#: constant (these test models, and the YOLO exports of today, do); 4.5.4
#: (JetPack 5) and 4.6 (Debian 12) can. There the stage must say so at setup.
OLD_IMPORTER = tuple(int(v) for v in cv2.__version__.split(".")[:2]) < (4, 5)


def old_importer_refuses(make: Any) -> bool:
    """On an old OpenCV: the stage refuses the model at setup, naming it."""
    if not OLD_IMPORTER:
        return False
    with pytest.raises(ConfigError) as err:
        make()
    text = err.value.message
    assert err.value.key == "stage.dnn" and text.startswith("model: OpenCV ") and \
        ("cannot run red_cells_" in text or "cannot read " in text) and "red_cells_" in text, text
    return True


def test_letterbox_keeps_the_aspect_ratio_and_maps_boxes_back() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    boxed, fit = layouts.letterbox(image, 640, 640)
    assert boxed.shape == (640, 640, 3) and fit == (0.5, 0.5, 0.0, 140.0)
    assert (boxed[:140] == 114).all() and (boxed[140:500] == 0).all() and (boxed[500:] == 114).all()
    back = fit.to_frame(np.array([[100.0, 240.0, 50.0, 20.0]]))
    assert back.tolist() == [[200.0, 200.0, 100.0, 40.0]]
    _b, corner = layouts.letterbox(image, 640, 640, centre=False)  # YOLOX pads bottom right
    assert corner == (0.5, 0.5, 0.0, 0.0)


def test_yolov8_rows_and_class_aware_nms() -> None:
    # candidates: two overlapping cats (the better kept), a dog on the same
    # place (another class: kept), a faint cat (below confidence)
    cands = [  # cx, cy, w, h, cat, dog
        [100, 100, 40, 40, 0.90, 0.0],
        [102, 101, 40, 40, 0.80, 0.1],
        [101, 100, 40, 40, 0.05, 0.70],
        [300, 300, 20, 20, 0.20, 0.0]]
    cands += [[0, 0, 1, 1, 0.0, 0.0]] * 96  # a model has many more candidates than values
    out = np.array(cands, np.float32).T[None]  # 1 x 6 x 100, as YOLOv8 exports
    boxes, scores, classes = layouts.yolov8([out], 640, 640)
    keep = layouts.nms(boxes, scores, classes, 0.25, 0.45)
    assert keep == [0, 2]
    assert boxes[0].tolist() == [80.0, 80.0, 40.0, 40.0] and classes[2] == 1
    again = layouts.yolov8([out.transpose(0, 2, 1)], 640, 640)  # 1 x N x (4+C) exports
    assert np.array_equal(again[0], boxes) and np.array_equal(again[1], scores)


def test_yolov5_multiplies_objectness_and_class_score() -> None:
    out = np.zeros((1, 100, 7), np.float32)  # a model has many more candidates than values
    out[0, :2] = [[50, 60, 10, 20, 0.5, 0.9, 0.1], [50, 60, 10, 20, 0.9, 0.2, 0.8]]
    boxes, scores, classes = layouts.yolov5([out], 640, 640)
    assert np.allclose(scores[:2], [0.45, 0.72]) and classes[:2].tolist() == [0, 1]
    assert boxes[0].tolist() == [45.0, 50.0, 10.0, 20.0]


def test_yolox_decodes_its_grids_as_its_demo_does() -> None:
    n = sum((64 // s) ** 2 for s in layouts.STRIDES)  # a 64x64 input: 64 + 16 + 4
    out = np.zeros((1, n, 6), np.float32)
    # anchor 9 of the stride 8 grid is cell (1, 1); offsets 0.5, log(2) -> a 16x16 box
    out[0, 9] = [0.5, 0.5, np.log(2.0), np.log(2.0), 0.8, 1.0]
    # the first anchor of the stride 32 grid (index 80): cell (0, 0)
    out[0, 80] = [0.0, 0.0, 0.0, 0.0, 0.6, 0.5]
    boxes, scores, _c = layouts.yolox([out], 64, 64)
    assert np.allclose(boxes[9], [4.0, 4.0, 16.0, 16.0]) and np.isclose(scores[9], 0.8)
    assert np.allclose(boxes[80], [-16.0, -16.0, 32.0, 32.0]) and np.isclose(scores[80], 0.3)
    with pytest.raises(layouts.LayoutError, match="yolox wants 84 rows"):
        layouts.yolox([out[:, :50]], 64, 64)


def test_detr_reads_one_or_two_outputs_and_logits() -> None:
    boxes = np.array([[[0.5, 0.5, 0.25, 0.5]]], np.float32)
    logits = np.array([[[-4.0, 3.0]]], np.float32)
    for outputs in ([boxes, logits], [logits, boxes],
                    [np.concatenate([boxes, logits], 2)]):
        got, scores, classes = layouts.detr(outputs, 640, 480)
        assert got.tolist() == [[240.0, 120.0, 160.0, 240.0]], outputs
        assert classes.tolist() == [1] and np.isclose(scores[0], 1 / (1 + np.exp(-3.0)))


def test_a_model_of_another_layout_is_refused_naming_the_layout() -> None:
    with pytest.raises(layouts.LayoutError, match="yolov5 wants rows"):
        layouts.yolov5([np.zeros((1, 10, 4), np.float32)], 640, 640)
    with pytest.raises(layouts.LayoutError, match="detr wants boxes"):
        layouts.detr([np.zeros((1, 10, 4)), np.zeros((1, 9, 3))], 640, 640)


def frame_with_red(x: int, y: int, w: int, h: int) -> Frame:
    image = np.full((480, 640, 3), 128, np.uint8)
    image[y:y + h, x:x + w] = (0, 0, 255)
    return Frame(camera="cam0", seq=0, capture_ns=0, image=image)


def dnn(layout: str, tmp_path: Path, **options: Any) -> Any:
    stage = dict({"model": str(DATA / "red_cells_{}.onnx".format(layout)), "output": layout,
                  "input_width": 320, "input_height": 320, "labels": ["red", "not red"]},
                 **options)
    config = config_from_dict({"handlers": {"stages": ["dnn"]}, "stage": {"dnn": stage}},
                              str(tmp_path / "pipeline.toml"))
    return build_chain(config, ["dnn"], "handlers")[0]


@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
def test_a_yolo_model_finds_the_red_square_through_the_letterbox(layout: str,
                                                                  tmp_path: Path) -> None:
    """640x480 letterboxed to 320x320: ratio 0.5, 40 px of grey above and
    below. The square at x 128-192, y 112-192 fills the input's cell (2, 3)
    (x 64-96, y 96-128) and a quarter of the cell under it; only the full
    cell is red enough, and it maps back to x 128, y 112, 64x64."""
    if old_importer_refuses(lambda: dnn(layout, tmp_path)):
        return
    stage = dnn(layout, tmp_path)
    frame = frame_with_red(128, 112, 64, 80)
    stage.process(frame)
    assert frame.meta["detections"] == [{"box": [128, 112, 64, 64],
                                         "confidence": pytest.approx(1.0, abs=1e-3),
                                         "label": "red"}]
    empty = frame_with_red(0, 0, 0, 0)
    stage.process(empty)
    assert empty.meta["detections"] == []


def test_a_detr_model_finds_the_red_square_stretched(tmp_path: Path) -> None:
    """DETR-style models take the frame stretched: 640x480 to 320x320 is
    x/2, y*2/3; the input's cell (2, 3) is the frame's x 128-192, y 144-192."""
    if old_importer_refuses(lambda: dnn("detr", tmp_path)):
        return
    stage = dnn("detr", tmp_path)
    frame = frame_with_red(128, 144, 64, 48)
    stage.process(frame)
    found: List[Dict[str, Any]] = frame.meta["detections"]
    assert [d["box"] for d in found] == [[128, 144, 64, 48]] and found[0]["label"] == "red"
    assert found[0]["confidence"] > 0.99


def test_bad_models_and_labels_are_config_errors_naming_the_key(tmp_path: Path) -> None:
    if old_importer_refuses(lambda: dnn("yolov8", tmp_path)):
        return
    with pytest.raises(ConfigError) as err:  # a YOLOv8 model read as YOLOv5
        dnn("yolov8", tmp_path, output="yolov5")
    assert err.value.key == "stage.dnn" and "output:" in err.value.message \
        and "yolov5" in err.value.message
    labels = tmp_path / "labels.txt"
    labels.write_text("red\n")
    with pytest.raises(ConfigError) as err:
        dnn("yolov8", tmp_path, labels=[], labels_file=str(labels))
    assert "labels_file: names 1 classes, the model has 2" in err.value.message
    labels.write_text("red\nnot red\n")
    assert dnn("yolov8", tmp_path, labels=[], labels_file=str(labels)).labels == \
        ["red", "not red"]
    with pytest.raises(ConfigError, match="labels_file: cannot read"):
        dnn("yolov8", tmp_path, labels=[], labels_file=str(tmp_path / "none.txt"))
    with pytest.raises(ConfigError, match="input_width/input_height must be the model's"):
        dnn("yolov8", tmp_path, input_width=640, input_height=640)
