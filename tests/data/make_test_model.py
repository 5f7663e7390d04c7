"""Build the small models the ``dnn`` stage is tested with (tests/data/*.onnx).

    python3 -m venv /tmp/onnx && /tmp/onnx/bin/pip install onnx &&
    /tmp/onnx/bin/python tests/data/make_test_model.py   # (not the test venv: onnx
                                                          # brings a NumPy OpenCV cannot use)

A real ONNX graph (Conv + Sigmoid) with hand-set weights: a heatmap of how red
each pixel is (BGR input scaled to 0..1): sigmoid(10 * (2R - B - G) - 5), so
pure red scores ~1.0, white, gray and black ~0.007. Run with
``output = "heatmap"`` every red region becomes a box. The .onnx file is
committed; this script is how it was made (CI does not need onnx).

``red_cells_yolov8.onnx``, ``red_cells_yolov5.onnx``, ``red_cells_detr.onnx``:
the same redness, averaged over each 32x32 cell of a 320x320 input (a 10x10
grid, 100 candidates): a candidate is its cell (centre, 32x32) scored by how
red the cell is, written in the output layout of YOLOv8 (1 x 6 x 100: cx,
cy, w, h and two class scores -- "red", and "not red" always 0), YOLOv5
(1 x 100 x 7: cx, cy, w, h, objectness, the two class scores) and a
DETR-style model (boxes 1 x 100 x 4 in 0..1, class logits 1 x 100 x 2). So a
red square on a grey frame is found where it is, in each layout, by real
inference in OpenCV's DNN module.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build() -> onnx.ModelProto:
    weights = np.array([-10.0, -10.0, 20.0], np.float32).reshape(1, 3, 1, 1)  # B, G, R
    bias = np.array([-5.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["score"], kernel_shape=[1, 1]),
         helper.make_node("Sigmoid", ["score"], ["heatmap"])],
        "red_blobs",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 240, 320])],
        [helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, [1, 1, 240, 320])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="vidpipe-tests")
    model.ir_version = 8  # readable by OpenCV 4.6 (Debian 12) and onnxruntime
    onnx.checker.check_model(model)
    return model


CELL, SIDE = 32, 320
CELLS = (SIDE // CELL) ** 2


def cell_boxes() -> np.ndarray:
    """cx, cy, w, h of each cell, row by row (4 x 100)."""
    ys, xs = np.mgrid[0:SIDE // CELL, 0:SIDE // CELL]
    centre = (np.stack([xs, ys]).reshape(2, -1) + 0.5) * CELL
    return np.concatenate([centre, np.full((2, CELLS), float(CELL))]).astype(np.float32)


def build_cells(layout: str) -> onnx.ModelProto:
    weights = np.array([-10.0, -10.0, 20.0], np.float32).reshape(1, 3, 1, 1)
    bias = np.array([-5.0], np.float32)
    boxes = cell_boxes()
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["logit"], kernel_shape=[1, 1]),
             helper.make_node("Sigmoid", ["logit"], ["red"]),
             helper.make_node("AveragePool", ["red"], ["pooled"], kernel_shape=[CELL, CELL],
                              strides=[CELL, CELL]),
             helper.make_node("Reshape", ["pooled", "row_shape"], ["score"])]  # 1 x 1 x 100
    consts = [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b"),
              numpy_helper.from_array(np.array([1, 1, CELLS], np.int64), "row_shape"),
              numpy_helper.from_array(np.zeros((1, 1, CELLS), np.float32), "zero")]
    nodes.append(helper.make_node("Mul", ["score", "zero"], ["never"]))  # "not red": 0
    if layout == "yolov8":
        consts.append(numpy_helper.from_array(boxes[None], "boxes"))
        nodes.append(helper.make_node("Concat", ["boxes", "score", "never"], ["out"], axis=1))
        outputs = [("out", [1, 6, CELLS])]
    elif layout == "yolov5":
        consts.append(numpy_helper.from_array(boxes[None], "boxes"))
        consts.append(numpy_helper.from_array(np.ones((1, 1, CELLS), np.float32), "one"))
        nodes += [helper.make_node("Concat", ["boxes", "score", "one", "never"], ["cols"],
                                   axis=1),
                  helper.make_node("Transpose", ["cols"], ["out"], perm=[0, 2, 1])]
        outputs = [("out", [1, CELLS, 7])]
    else:  # detr: normalised boxes, logits (10 * score - 5: red cells well above 0)
        consts += [numpy_helper.from_array((boxes / SIDE)[None], "boxes_t"),
                   numpy_helper.from_array(np.array([10.0], np.float32), "ten"),
                   numpy_helper.from_array(np.array([-5.0], np.float32), "five"),
                   numpy_helper.from_array(np.full((1, 1, CELLS), -20.0, np.float32), "low")]
        nodes += [helper.make_node("Mul", ["score", "ten"], ["scaled"]),
                  helper.make_node("Add", ["scaled", "five"], ["logit_red"]),
                  helper.make_node("Concat", ["logit_red", "low"], ["logits_t"], axis=1),
                  helper.make_node("Transpose", ["logits_t"], ["logits"], perm=[0, 2, 1]),
                  # + 0 from the image: OpenCV drops an output that is a constant
                  helper.make_node("Concat", ["never"] * 4, ["zeros"], axis=1),
                  helper.make_node("Add", ["boxes_t", "zeros"], ["boxes_live"]),
                  helper.make_node("Transpose", ["boxes_live"], ["pred_boxes"], perm=[0, 2, 1])]
        outputs = [("pred_boxes", [1, CELLS, 4]), ("logits", [1, CELLS, 2])]
    graph = helper.make_graph(
        nodes, "red_cells_" + layout,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in outputs],
        consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="vidpipe-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    here = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    onnx.save(build(), str(here / "red_blobs.onnx"))
    for name in ("yolov8", "yolov5", "detr"):
        onnx.save(build_cells(name), str(here / "red_cells_{}.onnx".format(name)))
    print(here)
