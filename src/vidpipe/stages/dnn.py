"""The ``dnn`` stage: an ONNX model on the handler's accelerator.

Runtimes:

* OpenCV's DNN module (``python3-opencv``): ``cpu`` runs on the OpenCV
  backend; ``cudaN`` on the CUDA backend, which needs an OpenCV built with
  CUDA: neither Debian's ``python3-opencv`` nor JetPack's packaged
  ``libopencv-python`` is (a source build or jetson-containers' is).
  ``vidpipe devices`` says whether the imported ``cv2`` has CUDA.
* ONNX Runtime (optional, ``python3-onnxruntime`` or NVIDIA's Jetson wheel):
  ``dlaN`` runs through its TensorRT execution provider with DLA core N
  enabled (FP16; the layers the DLA cannot run fall back to the GPU, as
  TensorRT decides), ``cudaN`` through TensorRT then CUDA.

``runtime = "auto"`` takes ONNX Runtime for a DLA and OpenCV otherwise; a
model OpenCV cannot import or run (a dynamic-shape export, an operator its
importer lacks) then goes to ONNX Runtime when it is installed, with a
warning that says why. The provider options are built by
:func:`ort_providers`, the one place that decides what runs where.

Outputs (``output``):

* ``"ssd"``: the usual detection output, N x 7 rows of
  ``[image, class, confidence, x1, y1, x2, y2]`` in 0..1 (OpenCV's face
  detector and most SSD exports).
* ``"heatmap"``: one score per pixel (1 x 1 x H x W, 0..1); every connected
  region above ``confidence`` becomes a box.
* ``"yolov5"``, ``"yolov8"`` (YOLO11 too), ``"yolox"`` and ``"detr"`` (RT-DETR,
  RF-DETR): read by :mod:`vidpipe.stages.layouts`, the frame letterboxed to
  the model's input (``resize = "auto"``: letterbox for the YOLOs, stretch
  for the rest; ``pad`` puts the picture in the centre as Ultralytics does
  or in the top left corner as YOLOX does, ``pad_value`` is the border's
  grey), class-aware NMS at ``nms_iou`` for the YOLOs (``agnostic_nms``:
  across classes, as some projects do).

The model's outputs are checked against ``output`` when the stage is set up
(one inference on a blank frame), and so are the class names: ``labels`` or
``labels_file`` (one name a line) must name every class the model has.
Boxes go to ``frame.meta["detections"]`` as
``{"box": [x, y, w, h], "confidence": c, "label": ...}`` in frame pixels.
"""

import logging
import os
from typing import Any, Dict, List, Optional

import cv2
import numpy as np

from vidpipe.config import Rule
from vidpipe.names import one_line
from vidpipe.stages.layouts import (
    LAYOUTS, READERS, YOLO, LayoutError, Rows, letterbox, nms, stretch)
from vidpipe.stages.base import Frame, Stage, add_detections
from vidpipe.stages.runtimes import (
    OpenCvRefused, OrtRefused, engine_cache, last_line, opencv_has_cuda, opencv_target,
    ort_installed, ort_providers)

log = logging.getLogger("vidpipe.stages.dnn")
MODEL_DIR = "/usr/share/vidpipe/models"


class Dnn(Stage):
    """Run an ONNX model on each frame; boxes into ``meta["detections"]``."""

    name = "dnn"
    detector = True
    OPTIONS = {
        "model": (Rule(str), ""),
        "runtime": (Rule(str, choices=("auto", "opencv", "onnxruntime")), "auto"),
        "output": (Rule(str, choices=LAYOUTS), "ssd"),
        "resize": (Rule(str, choices=("auto", "letterbox", "stretch")), "auto"),
        "pad": (Rule(str, choices=("auto", "centre", "corner")), "auto"),
        "pad_value": (Rule(int, 0, 255), 114),
        "nms_iou": (Rule(float, 0.0, 1.0), 0.45),
        "agnostic_nms": (Rule(bool), False),
        "labels_file": (Rule(str), ""),
        "input_width": (Rule(int, 16, 4096), 300),
        "input_height": (Rule(int, 16, 4096), 300),
        "scale": (Rule(float, 0.0, 1000.0), 1.0 / 255.0),
        "mean": (Rule(list, item=float), [0.0, 0.0, 0.0]),
        "swap_rb": (Rule(bool), False),
        "confidence": (Rule(float, 0.0, 1.0), 0.5),
        "min_area": (Rule(int, 0, 1 << 30), 4),
        "labels": (Rule(list, item=str), []),
        "max_detections": (Rule(int, 1, 10000), 100),
    }

    def __init__(self, options: Dict[str, Any]) -> None:
        super().__init__(options)
        self.net: Any = None
        self.session: Any = None
        self.runtime = ""
        self.running_on = ""
        self.labels: List[str] = list(options.get("labels") or [])
        self.class_count = 0  # the model's, once it ran
        self.letterbox = options.get("resize") == "letterbox" or (
            options.get("resize") == "auto" and options.get("output") in YOLO)

    def model_path(self) -> str:
        model = self.options["model"]
        if not model:
            raise ValueError("model: the path of an .onnx file is required")
        path = model if os.path.isabs(model) else os.path.join(MODEL_DIR, model)
        if not os.path.isfile(path):
            raise ValueError("model: {} does not exist".format(path))
        return path

    def setup(self) -> None:
        path = self.model_path()
        if len(self.options["mean"]) not in (1, 3):
            raise ValueError("mean: one value or three (B, G, R)")
        runtime = self.options["runtime"]
        self._read_labels()
        if runtime == "onnxruntime" or (runtime == "auto" and self.accelerator.startswith("dla")):
            self._setup_ort(path)
            self._check_layout()
        elif runtime == "opencv":
            self._setup_opencv(path, alternative=False)
        else:
            self._setup_auto(path)
        log.info("dnn: %s on %s via %s", os.path.basename(path), self.running_on, self.runtime)

    def _cannot_run(self, why: str) -> ValueError:
        """The error for a model the runtime in use cannot run at
        input_width x input_height (:class:`OrtRefused` or :class:`OpenCvRefused`)."""
        refused = OrtRefused if self.session is not None else OpenCvRefused
        return refused("model: {} cannot run {} on a blank {}x{} input "
                       "(input_width/input_height must be the model's input size): "
                       "{}".format(self._runtime_name(), os.path.basename(self.model_path()),
                                   self.options["input_width"], self.options["input_height"],
                                   why))

    def _runtime_name(self) -> str:
        if self.session is not None:
            import onnxruntime as ort
            return "ONNX Runtime " + ort.__version__
        return "OpenCV " + cv2.__version__

    def _setup_auto(self, path: str) -> None:
        """OpenCV, else ONNX Runtime for a model OpenCV cannot import or run."""
        try:
            self._setup_opencv(path, alternative=True)
        except OpenCvRefused as exc:
            if not ort_installed():
                raise
            log.warning("dnn: %s; running it with ONNX Runtime instead", exc)
            self.net = None
            try:
                self._setup_ort(path)
                self._check_layout()
            except OrtRefused as again:
                raise ValueError("{}; and {}".format(exc, str(again)[len("model: "):])) \
                    from None

    def _read_labels(self) -> None:
        name = self.options["labels_file"]
        if not name:
            return
        if self.options["labels"]:
            raise ValueError("labels_file: give the class names once, in labels or in "
                             "labels_file, not both")
        path = name if os.path.isabs(name) else os.path.join(MODEL_DIR, name)
        try:
            with open(path, encoding="utf-8") as handle:
                self.labels = [line.strip() for line in handle.read(1 << 20).splitlines()
                               if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError("labels_file: cannot read {}: {}".format(path, exc)) from None
        if not self.labels:
            raise ValueError("labels_file: {} names no class".format(path))

    def _check_layout(self) -> None:
        """One inference on a blank frame: the outputs must be of the
        configured layout, and the class names (if any) cover its classes."""
        layout = self.options["output"]
        if layout not in READERS:
            return
        blank = np.zeros((self.options["input_height"], self.options["input_width"], 3),
                         np.uint8)
        try:
            self.read(self.infer_all(self.blob(blank)))
        except LayoutError as exc:
            raise ValueError("output: {} (output = {!r})".format(exc, layout)) from None
        except Exception as exc:  # OpenCV's cv2.error, ONNX Runtime's own classes
            if self.session is None and not isinstance(exc, cv2.error):
                raise
            raise self._cannot_run(last_line(exc)) from None
        count = self.class_count
        if self.labels and len(self.labels) < count:
            key = "labels_file" if self.options["labels_file"] else "labels"
            raise ValueError("{}: names {} classes, the model has {}".format(
                key, len(self.labels), count))

    def _setup_opencv(self, path: str, alternative: bool) -> None:
        """OpenCV's DNN on the model, checked by one inference; a model it
        cannot import or run is :class:`OpenCvRefused`, whose message says
        whether ONNX Runtime is there to try (``alternative``: the caller
        tries it)."""
        try:
            self._open_opencv(path)
            self._check_layout()
        except OpenCvRefused as exc:
            if alternative and ort_installed():
                raise
            hint = ("ONNX Runtime may run it, but it is not installed" if alternative else
                    "runtime = \"onnxruntime\" or \"auto\" may run it")
            raise OpenCvRefused("{} ({}; a static-shape export at opset 12 suits OpenCV "
                                "best)".format(exc, hint)) from None

    def _open_opencv(self, path: str) -> None:
        if self.accelerator.startswith("dla"):
            raise ValueError("runtime: OpenCV cannot run on a DLA; use runtime = "
                             "\"onnxruntime\" (with TensorRT) or \"auto\"")
        if self.accelerator.startswith("cuda") and not opencv_has_cuda():
            raise ValueError("this OpenCV ({}) has no CUDA support, so it cannot run on {} "
                             "(JetPack's packaged OpenCV has none either); use runtime = "
                             "\"onnxruntime\" (TensorRT/CUDA providers), an OpenCV built with "
                             "CUDA, or accelerator = \"cpu\"".format(cv2.__version__,
                                                                  self.accelerator))
        try:
            self.net = cv2.dnn.readNetFromONNX(path)
        except cv2.error as exc:
            raise OpenCvRefused("model: OpenCV {} cannot read {}: {}".format(
                cv2.__version__, path, last_line(exc))) from None
        backend, target = opencv_target(self.accelerator)
        if self.accelerator.startswith("cuda"):
            cv2.cuda.setDevice(int(self.accelerator[4:]))
        self.net.setPreferableBackend(backend)
        self.net.setPreferableTarget(target)
        self.runtime = "opencv"
        self.running_on = self.accelerator

    def _setup_ort(self, path: str) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ValueError("runtime: onnxruntime is not installed (the DLA path needs "
                             "ONNX Runtime with TensorRT: NVIDIA's onnxruntime-gpu wheel "
                             "for JetPack)") from None
        cache = engine_cache()
        wanted = ort_providers(self.accelerator, cache)
        available = set(ort.get_available_providers())
        providers = [(name, opts) for name, opts in wanted if name in available]
        if wanted[0][0] not in available:
            log.warning("dnn: %s is not in this onnxruntime (it has %s); %s will not run "
                        "on %s", wanted[0][0], ", ".join(sorted(available)),
                        os.path.basename(path), self.accelerator)
        if wanted[0][0] == "TensorrtExecutionProvider" and wanted[0][0] in available:
            os.makedirs(cache, exist_ok=True)
        try:
            self.session = ort.InferenceSession(path, providers=[p[0] for p in providers],
                                                provider_options=[p[1] for p in providers])
        except Exception as exc:  # its own classes (Fail, InvalidProtobuf, ...)
            raise OrtRefused("model: ONNX Runtime {} cannot load {}: {}".format(
                ort.__version__, path, last_line(exc))) from None
        self._check_input()
        active = self.session.get_providers()[0]
        self.runtime = "onnxruntime " + active
        self.running_on = self.accelerator if active != "CPUExecutionProvider" else "cpu"

    def _check_input(self) -> None:
        """The blob the stage makes (1 x 3 x input_height x input_width) must
        fit the model's input, where the model fixes its size: checked here,
        not left to ONNX Runtime, whose error for it was once seen to crash
        the process instead of raising (a loaded test process, not reproduced)."""
        wanted = (1, 3, self.options["input_height"], self.options["input_width"])
        shape = list(self.session.get_inputs()[0].shape)
        fits = len(shape) == 4 and all(
            not isinstance(d, int) or d <= 0 or d == w for d, w in zip(shape, wanted))
        if not fits:
            # the dimensions' names come from the model file: bounded, printable
            raise self._cannot_run("it takes {}".format(
                one_line("x".join(str(d) for d in shape[:8]), 120)))

    # ------------------------------------------------------------------ per frame

    def blob(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        mean = self.options["mean"]
        mean = tuple(mean * 3 if len(mean) == 1 else mean)
        return cv2.dnn.blobFromImage(
            image, self.options["scale"],
            (self.options["input_width"], self.options["input_height"]),
            mean, swapRB=self.options["swap_rb"], crop=False)

    def infer_all(self, blob: np.ndarray) -> List[np.ndarray]:
        """Every output of the model, in its order."""
        if self.session is not None:
            name = self.session.get_inputs()[0].name
            return [np.asarray(o) for o in self.session.run(None, {name: blob})]
        self.net.setInput(blob)
        names = self.net.getUnconnectedOutLayersNames()
        if len(names) > 1:
            return [np.asarray(o) for o in self.net.forward(names)]
        return [np.asarray(self.net.forward())]

    def process(self, frame: Frame) -> None:
        image = frame.bgr() if frame.format else frame.image
        height, width = frame.size()
        layout = self.options["output"]
        if layout in READERS:
            found = self.from_model(image, width, height)
        else:
            out = self.infer_all(self.blob(image))[0]
            found = self.from_heatmap(out, width, height) if layout == "heatmap" else \
                self.from_ssd(out, width, height)
        add_detections(frame, found[:self.options["max_detections"]])

    def label(self, index: int) -> Optional[str]:
        return self.labels[index] if 0 <= index < len(self.labels) else None

    # ------------------------------------------------------------------ YOLO, DETR

    def read(self, outputs: List[np.ndarray]) -> Rows:
        boxes, scores, classes = READERS[self.options["output"]](
            outputs, self.options["input_width"], self.options["input_height"])
        self.class_count = int(_classes_in(outputs, self.options["output"]))
        return boxes, scores, classes

    def from_model(self, image: np.ndarray, width: int, height: int) -> List[Dict[str, Any]]:
        in_w, in_h = self.options["input_width"], self.options["input_height"]
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if self.letterbox:
            pad = self.options["pad"]
            corner = pad == "corner" or (pad == "auto" and self.options["output"] == "yolox")
            image, fit = letterbox(image, in_w, in_h, centre=not corner,
                                   value=self.options["pad_value"])
        else:
            fit = stretch(width, height, in_w, in_h)
        boxes, scores, classes = self.read(self.infer_all(self.blob(image)))
        confidence = self.options["confidence"]
        if self.options["output"] == "detr":  # end to end: nothing to suppress
            keep = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= confidence]
        else:
            keep = nms(boxes, scores, classes, confidence, self.options["nms_iou"],
                       agnostic=self.options["agnostic_nms"])
        framed = fit.to_frame(boxes[keep]) if keep else np.zeros((0, 4))
        found = []
        for (x, y, w, h), i in zip(framed, keep):
            left, top = max(0, int(round(x))), max(0, int(round(y)))
            right, bottom = min(width, int(round(x + w))), min(height, int(round(y + h)))
            if right - left < 1 or bottom - top < 1 or (right - left) * (bottom - top) < \
                    self.options["min_area"]:
                continue
            cls = int(classes[i])
            found.append({"box": [left, top, right - left, bottom - top],
                          "confidence": round(float(scores[i]), 4),
                          "label": self.label(cls) or cls})
        return found

    def from_ssd(self, out: np.ndarray, width: int, height: int) -> List[Dict[str, Any]]:
        rows = out.reshape(-1, 7) if out.size % 7 == 0 else np.zeros((0, 7))
        found = []
        for _img, cls, conf, x1, y1, x2, y2 in rows:
            if conf < self.options["confidence"]:
                continue
            left, top = int(round(x1 * width)), int(round(y1 * height))
            right, bottom = int(round(x2 * width)), int(round(y2 * height))
            left, top = max(0, left), max(0, top)
            right, bottom = min(width, right), min(height, bottom)
            if right <= left or bottom <= top:
                continue
            found.append({"box": [left, top, right - left, bottom - top],
                          "confidence": round(float(conf), 4),
                          "label": self.label(int(cls)) or int(cls)})
        found.sort(key=lambda d: -d["confidence"])
        return found

    def from_heatmap(self, out: np.ndarray, width: int, height: int) -> List[Dict[str, Any]]:
        scores = out.reshape(out.shape[-2], out.shape[-1]).astype(np.float32)
        mask = (scores >= self.options["confidence"]).astype(np.uint8)
        count, _labels, stats, _centroids = cv2.connectedComponentsWithStats(mask, 8)
        sx, sy = width / scores.shape[1], height / scores.shape[0]
        found = []
        for index in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[index])
            if area < self.options["min_area"]:
                continue
            region = scores[y:y + h, x:x + w]
            found.append({"box": [int(round(x * sx)), int(round(y * sy)),
                                  int(round(w * sx)), int(round(h * sy))],
                          "confidence": round(float(region.max()), 4),
                          "label": self.label(0) or 0})
        found.sort(key=lambda d: -d["confidence"])
        return found


def _classes_in(outputs: List[np.ndarray], layout: str) -> int:
    """How many classes a model of ``layout`` scores (its outputs' width)."""
    first = outputs[0][0] if outputs[0].ndim == 3 else outputs[0]
    if layout == "yolov8":
        return min(first.shape) - 4
    if layout in ("yolov5", "yolox"):
        return first.shape[1] - 5
    if len(outputs) >= 2:
        second = outputs[1][0] if outputs[1].ndim == 3 else outputs[1]
        return second.shape[1] if first.shape[1] == 4 else first.shape[1]
    return first.shape[1] - 4
