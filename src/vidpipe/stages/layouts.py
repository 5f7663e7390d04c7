"""Reading what a detection model outputs: the layouts the ``dnn`` stage knows.

Every reader takes the model's outputs (a list of arrays, as the runtime
returned them) and gives ``(boxes, scores, classes)``: boxes ``x, y, w, h``
in pixels of the model's input, one row per candidate, before thresholds.

* ``yolov5``: ``1 x N x (5 + C)`` rows of ``cx, cy, w, h, objectness, C class
  scores`` in input pixels; a candidate's score is objectness times its best
  class score (YOLOv5, YOLOv7 exports).
* ``yolov8``: ``1 x (4 + C) x N`` -- columns of ``cx, cy, w, h, C class
  scores``, no objectness (YOLOv8, YOLO11 and later exports; the transposed
  ``1 x N x (4 + C)`` is read too).
* ``yolox``: ``1 x N x (5 + C)`` as YOLOX exports it (``decode_in_inference``
  off, the default): per-anchor offsets on the stride 8, 16 and 32 grids,
  decoded here as YOLOX's own demo does (``(xy + grid) * stride``,
  ``exp(wh) * stride``); already decoded rows (N not the grid's) are refused.
* ``detr``: an end-to-end model (RT-DETR, RF-DETR, D-FINE): boxes ``cx, cy,
  w, h`` in 0..1 of the input, either one output ``1 x N x (4 + C)`` or two
  (boxes ``1 x N x 4`` and class scores ``1 x N x C``); scores that are
  logits (outside 0..1) go through a sigmoid. No NMS is needed.

:func:`letterbox` is the YOLO preprocessing (scale to fit, keep the aspect
ratio, pad with grey 114), and :class:`Fit` maps boxes back to the frame.
:func:`nms` is class-aware non-maximum suppression (boxes of different
classes never suppress each other) unless asked to be class-agnostic.
"""

import functools
from typing import List, NamedTuple, Sequence, Tuple

import cv2
import numpy as np

YOLO = ("yolov5", "yolov8", "yolox")
LAYOUTS = ("ssd", "heatmap") + YOLO + ("detr",)
STRIDES = (8, 16, 32)  # YOLOX's grids
Rows = Tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N x 4 xywh), scores, classes


class LayoutError(ValueError):
    """The model's outputs are not of the configured layout."""


class Fit(NamedTuple):
    """How a frame was brought to the model's input: input = frame * ratio + pad."""

    ratio_x: float
    ratio_y: float
    pad_x: float
    pad_y: float

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """``x, y, w, h`` boxes in input pixels, in frame pixels."""
        out = boxes.astype(np.float64).copy()
        out[:, 0] = (out[:, 0] - self.pad_x) / self.ratio_x
        out[:, 1] = (out[:, 1] - self.pad_y) / self.ratio_y
        out[:, 2] /= self.ratio_x
        out[:, 3] /= self.ratio_y
        return out


def stretch(width: int, height: int, input_w: int, input_h: int) -> Fit:
    return Fit(input_w / width, input_h / height, 0.0, 0.0)


def letterbox(image: np.ndarray, input_w: int, input_h: int, centre: bool = True,
              value: int = 114) -> Tuple[np.ndarray, Fit]:
    """``image`` scaled to fit ``input_w`` x ``input_h`` with its aspect
    ratio kept, padded with ``value`` (grey 114 as the YOLO projects pad;
    centred as YOLOv5/v8 do, at the bottom right as YOLOX does)."""
    height, width = image.shape[:2]
    ratio = min(input_w / width, input_h / height)
    new_w, new_h = max(1, int(round(width * ratio))), max(1, int(round(height * ratio)))
    pad_x = (input_w - new_w) / 2.0 if centre else 0.0
    pad_y = (input_h - new_h) / 2.0 if centre else 0.0
    shape = (input_h, input_w) + image.shape[2:]
    out = np.full(shape, value, dtype=image.dtype)
    left, top = int(round(pad_x - 0.1)), int(round(pad_y - 0.1))
    scaled = image if (new_w, new_h) == (width, height) else \
        cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out[top:top + new_h, left:left + new_w] = scaled
    return out, Fit(new_w / width, new_h / height, float(left), float(top))


def _rows(out: np.ndarray, what: str) -> np.ndarray:
    """A ``1 x A x B`` (or ``A x B``) output as a 2-D float array."""
    if out.ndim == 3 and out.shape[0] == 1:
        out = out[0]
    if out.ndim != 2:
        raise LayoutError("{} wants a 1 x N x K output, the model gave {}".format(
            what, "x".join(str(d) for d in out.shape)))
    return out.astype(np.float32, copy=False)


def _xywh(centre: np.ndarray) -> np.ndarray:
    boxes = centre[:, :4].astype(np.float64).copy()
    boxes[:, 0] -= boxes[:, 2] / 2
    boxes[:, 1] -= boxes[:, 3] / 2
    return boxes


def _best(scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    if scores.shape[1] == 0:
        raise LayoutError("the model's output has no class scores")
    classes = scores.argmax(axis=1)
    return scores[np.arange(len(scores)), classes], classes


def yolov5(outputs: Sequence[np.ndarray], input_w: int, input_h: int) -> Rows:
    rows = _rows(outputs[0], "yolov5")
    if rows.shape[0] < rows.shape[1]:  # fewer candidates than values: 4 + C x N
        raise LayoutError("yolov5 wants 1 x N x (5 + C) rows, the model gave {} x {} "
                          "(a yolov8 layout?)".format(*rows.shape))
    if rows.shape[1] < 6:
        raise LayoutError("yolov5 wants rows of cx, cy, w, h, objectness and class scores "
                          "(at least 6 values), the model gave {}".format(rows.shape[1]))
    best, classes = _best(rows[:, 5:])
    return _xywh(rows), rows[:, 4] * best, classes


def yolov8(outputs: Sequence[np.ndarray], input_w: int, input_h: int) -> Rows:
    rows = _rows(outputs[0], "yolov8")
    if rows.shape[0] < rows.shape[1]:  # 4 + C rows of N candidates: the usual export
        rows = rows.T
    if rows.shape[1] < 5:
        raise LayoutError("yolov8 wants cx, cy, w, h and class scores (at least 5 values "
                          "a candidate), the model gave {}".format(rows.shape[1]))
    best, classes = _best(rows[:, 4:])
    return _xywh(rows), best, classes


def yolox(outputs: Sequence[np.ndarray], input_w: int, input_h: int) -> Rows:
    rows = _rows(outputs[0], "yolox").copy()
    grid, stride = _grid(input_w, input_h)
    if rows.shape[0] != len(grid) or rows.shape[1] < 6:
        raise LayoutError("yolox wants {} rows (the stride 8/16/32 grids of a {}x{} input) of "
                          "at least 6 values, the model gave {}x{} (input_width/input_height "
                          "must be the model's; a model exported with decode_in_inference "
                          "is read as yolov5)".format(len(grid), input_w, input_h,
                                                      *rows.shape))
    rows[:, :2] = (rows[:, :2] + grid) * stride
    rows[:, 2:4] = np.exp(np.clip(rows[:, 2:4], -50, 50)) * stride
    best, classes = _best(rows[:, 5:])
    return _xywh(rows), rows[:, 4] * best, classes


@functools.lru_cache(maxsize=8)
def _grid(input_w: int, input_h: int) -> Tuple[np.ndarray, np.ndarray]:
    """YOLOX's anchor points (cell x, y) and their strides, in its order."""
    grids, strides = [], []
    for stride in STRIDES:
        gw, gh = input_w // stride, input_h // stride
        xs, ys = np.meshgrid(np.arange(gw), np.arange(gh))
        grids.append(np.stack((xs, ys), 2).reshape(-1, 2))
        strides.append(np.full((gw * gh, 1), stride))
    return np.concatenate(grids), np.concatenate(strides)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def detr(outputs: Sequence[np.ndarray], input_w: int, input_h: int) -> Rows:
    if len(outputs) >= 2:
        a, b = _rows(outputs[0], "detr"), _rows(outputs[1], "detr")
        boxes, scores = (a, b) if a.shape[1] == 4 else (b, a)
        if boxes.shape[1] != 4 or len(boxes) != len(scores):
            raise LayoutError("detr wants boxes (1 x N x 4) and class scores (1 x N x C), "
                              "the model gave {} and {}".format(a.shape, b.shape))
    else:
        rows = _rows(outputs[0], "detr")
        if rows.shape[1] < 5:
            raise LayoutError("detr wants rows of cx, cy, w, h and class scores, the model "
                              "gave {} values a row".format(rows.shape[1]))
        boxes, scores = rows[:, :4], rows[:, 4:]
    if scores.size and (scores.min() < 0.0 or scores.max() > 1.0):
        scores = _sigmoid(scores)  # logits
    best, classes = _best(scores)
    scaled = boxes.astype(np.float64) * np.array([input_w, input_h, input_w, input_h])
    return _xywh(scaled), best, classes


READERS = {"yolov5": yolov5, "yolov8": yolov8, "yolox": yolox, "detr": detr}


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, confidence: float,
        iou: float, agnostic: bool = False) -> List[int]:
    """Indices kept, best first: scores at least ``confidence``, then per
    class (across classes when ``agnostic``), no box overlapping a better
    one by more than ``iou``."""
    keep = np.flatnonzero(scores >= confidence)
    if not len(keep):
        return []
    b, s, c = boxes[keep], scores[keep], classes[keep]
    # class-aware in one call: each class moved to a place of its own
    # (cv2.dnn.NMSBoxesBatched needs OpenCV 4.7; focal has 4.2)
    span = float(np.abs(b[:, :2]).max() + np.abs(b[:, 2:]).max()) + 1.0
    shifted = b.copy()
    if not agnostic:
        shifted[:, 0] += c * span * 2
        shifted[:, 1] += c * span * 2
    picked = cv2.dnn.NMSBoxes(shifted.tolist(), s.astype(float).tolist(), float(confidence),
                              float(iou))
    picked = np.asarray(picked, dtype=int).reshape(-1)
    order = picked[np.argsort(-s[picked], kind="stable")]
    return [int(keep[i]) for i in order]
