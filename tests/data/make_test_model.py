"""Build tests/data/red_blobs.onnx, the small model the ``dnn`` stage is tested with.

    python3 -m venv /tmp/onnx && /tmp/onnx/bin/pip install onnx &&
    /tmp/onnx/bin/python tests/data/make_test_model.py   # (not the test venv: onnx
                                                          # brings a NumPy OpenCV cannot use)

A real ONNX graph (Conv + Sigmoid) with hand-set weights: a heatmap of how red
each pixel is (BGR input scaled to 0..1): sigmoid(10 * (2R - B - G) - 5), so
pure red scores ~1.0, white, gray and black ~0.007. Run with
``output = "heatmap"`` every red region becomes a box. The .onnx file is
committed; this script is how it was made (CI does not need onnx).
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


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("red_blobs.onnx")
    onnx.save(build(), str(out))
    print(out)
