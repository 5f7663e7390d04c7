"""The built-in stages."""

import os
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from vidpipe.config import Rule
from vidpipe.link.pixels import i420_planes, luma_to_gray, to_gray
from vidpipe.stages.base import I420, Frame, Stage, add_detections
from vidpipe.stages.dnn import Dnn


def boxes(rects: Any) -> List[List[int]]:
    return [[int(v) for v in rect] for rect in rects]


class Gray(Stage):
    """BGR -> gray (the seed's handler)."""

    name = "gray"

    def process(self, frame: Frame) -> None:
        image = frame.image
        if frame.format == I420:  # the Y plane, from video range to full
            luma = frame.gray()
            frame.image = luma_to_gray(luma, frame.output(luma.shape))
            frame.format = ""
        elif image.ndim == 3:
            frame.image = to_gray(image, frame.output(image.shape[:2]))


_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR,
                  "nearest": cv2.INTER_NEAREST, "cubic": cv2.INTER_CUBIC}


class Resize(Stage):
    """Scale to ``width`` x ``height``; a 0 keeps the aspect ratio from the other."""

    name = "resize"
    OPTIONS = {
        "width": (Rule(int, 0, 16384), 320),
        "height": (Rule(int, 0, 16384), 0),
        "interpolation": (Rule(str, choices=tuple(_INTERPOLATION)), "area"),
    }

    def setup(self) -> None:
        if not self.options["width"] and not self.options["height"]:
            raise ValueError("width and height cannot both be 0")

    def size(self, shape: Tuple[int, ...]) -> Tuple[int, int]:
        height, width = shape[:2]
        w, h = self.options["width"], self.options["height"]
        if not h:
            h = max(1, round(height * w / width))
        if not w:
            w = max(1, round(width * h / height))
        return w, h

    def process(self, frame: Frame) -> None:
        image = frame.image
        if frame.format == I420:
            frame.image = self.resize_i420(frame)
            return
        width, height = self.size(image.shape)
        out = frame.output((height, width) + tuple(image.shape[2:]), image.dtype.name)
        frame.image = cv2.resize(image, (width, height), dst=out,
                                 interpolation=_INTERPOLATION[self.options["interpolation"]])

    def resize_i420(self, frame: Frame) -> np.ndarray:
        """Each plane scaled on its own, staying I420 (the size rounded to even)."""
        w, h = self.size(frame.size())
        w, h = max(2, w + w % 2), max(2, h + h % 2)
        out = frame.output((h * 3 // 2, w))
        how = _INTERPOLATION[self.options["interpolation"]]
        for plane, into in zip(i420_planes(frame.image), i420_planes(out)):
            cv2.resize(plane, (into.shape[1], into.shape[0]), dst=into, interpolation=how)
        return out


class PerCamera(Stage):
    """A stage with state per camera (and per decoder run)."""

    stateful = True

    def __init__(self, options: Dict[str, Any]) -> None:
        super().__init__(options)
        self.state: Dict[str, Any] = {}


class Motion(PerCamera):
    """Background subtraction (MOG2) -> boxes of moving regions.

    ``width``: analyse a gray copy of the picture scaled down to this width
    (0: the picture as it comes). Motion is a gate, not a measurement: a
    320-pixel gray copy finds the same moving people at a small part of the
    cost (the stage took 4-5 ms on a 640x360 colour frame here, about 1 ms
    with its 320-pixel gray copy). The boxes are in the frame's pixels either way."""

    name = "motion"
    OPTIONS = {
        "history": (Rule(int, 1, 100000), 300),
        "var_threshold": (Rule(float, 1, 1000), 16.0),
        "min_area": (Rule(int, 1), 100),
        "learning_rate": (Rule(float, -1, 1), -1.0),
        "width": (Rule(int, 0, 8192), 0),
    }

    def process(self, frame: Frame) -> None:
        sub = self.state.get(frame.camera)
        if sub is None:
            sub = cv2.createBackgroundSubtractorMOG2(
                history=self.options["history"], varThreshold=self.options["var_threshold"],
                detectShadows=False)
            self.state[frame.camera] = sub
        image = frame.gray() if frame.format == I420 else frame.image
        scale = 1.0
        width = self.options["width"]
        if width and image.shape[1] > width:
            scale = image.shape[1] / width
            image = cv2.resize(frame.gray(), (width, max(1, int(round(image.shape[0] / scale)))),
                               interpolation=cv2.INTER_AREA)
        mask = sub.apply(image, learningRate=self.options["learning_rate"])
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        contours = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[-2]
        min_area = self.options["min_area"] / (scale * scale)  # in the frame's pixels
        found = [cv2.boundingRect(c) for c in contours if cv2.contourArea(c) >= min_area]
        if scale != 1.0:
            found = [(round(x * scale), round(y * scale), round(w * scale), round(h * scale))
                     for x, y, w, h in found]
        frame.meta["motion"] = {"boxes": boxes(found),
                                "fraction": round(float(np.count_nonzero(mask)) / mask.size, 5)}


CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades",
                "/usr/local/share/opencv4/haarcascades")


def find_cascade(name: str) -> Optional[str]:
    if os.path.isabs(name):
        return name if os.path.isfile(name) else None
    dirs = list(CASCADE_DIRS)
    data = getattr(cv2, "data", None)
    if data is not None and getattr(data, "haarcascades", None):
        dirs.insert(0, data.haarcascades)
    for directory in dirs:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


class Faces(Stage):
    """Haar cascade face detection (the cascade ships with OpenCV's data)."""

    name = "faces"
    detector = True
    OPTIONS = {
        "cascade": (Rule(str), "haarcascade_frontalface_default.xml"),
        "scale_factor": (Rule(float, 1.01, 2.0), 1.1),
        "min_neighbors": (Rule(int, 0, 100), 5),
        "min_size": (Rule(int, 1, 4096), 30),
    }

    def setup(self) -> None:
        path = find_cascade(self.options["cascade"])
        if path is None:
            raise ValueError("cascade {!r} not found (looked in {}); install opencv-data or "
                             "give an absolute path".format(self.options["cascade"],
                                                            ", ".join(CASCADE_DIRS)))
        self.classifier = cv2.CascadeClassifier(path)
        if self.classifier.empty():
            raise ValueError("cascade {} could not be loaded".format(path))

    def process(self, frame: Frame) -> None:
        size = self.options["min_size"]
        found = self.classifier.detectMultiScale(
            frame.gray(), scaleFactor=self.options["scale_factor"],
            minNeighbors=self.options["min_neighbors"], minSize=(size, size))
        frame.meta["faces"] = boxes(found)


class People(Stage):
    """People, standing or walking, by OpenCV's built-in HOG detector (Dalal
    and Triggs' linear SVM, in every OpenCV: no model file). It looks for
    people at least 128 pixels tall (its window is 64 x 128) -- ``upscale``
    enlarges the picture first for smaller ones (a street seen from a first
    floor: 1.6 finds people 80 pixels tall, at 2.5 times the CPU). Boxes are
    trimmed to the person as OpenCV's own sample does (the window has a
    margin around them), so a zone's bottom-centre anchor is at their feet.
    The SVM's margin becomes ``confidence`` as margin / (margin + 1): a
    margin of 1 is 0.5, the tracker's threshold for a sure box."""

    name = "people"
    detector = True
    OPTIONS = {
        "upscale": (Rule(float, 1.0, 4.0), 1.0),
        "scale": (Rule(float, 1.01, 2.0), 1.1),
        "win_stride": (Rule(int, 4, 64), 8),
        "hit_threshold": (Rule(float, -10.0, 10.0), 0.0),
    }

    def setup(self) -> None:
        if self.options["win_stride"] % 4:
            raise ValueError("win_stride must be a multiple of 4 (HOG's cell grid), got {}"
                             .format(self.options["win_stride"]))
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def process(self, frame: Frame) -> None:
        gray = frame.gray()
        up = self.options["upscale"]
        if up != 1.0:
            gray = cv2.resize(gray, None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR)
        stride = self.options["win_stride"]
        found, margins = self.hog.detectMultiScale(
            gray, hitThreshold=self.options["hit_threshold"], winStride=(stride, stride),
            padding=(8, 8), scale=self.options["scale"])
        people = []
        # plain ints and floats (tolist): the boxes are read as the observation
        # schema's numbers before they cross the wire (detect_when = "motion-region")
        for (x, y, w, h), margin in zip(np.asarray(found).reshape(-1, 4).tolist(),
                                        np.asarray(margins, dtype=float).reshape(-1).tolist()):
            dx, dy = 0.15 * w, 0.05 * h  # the window's margin (OpenCV's peopledetect.py)
            box = [round((x + dx) / up, 1), round((y + dy) / up, 1),
                   round((w - 2 * dx) / up, 1), round((h - 2 * dy) / up, 1)]
            score = max(float(margin), 0.0)
            people.append({"box": box, "label": "person",
                           "confidence": round(score / (score + 1.0), 3)})
        add_detections(frame, people)


class OpticalFlow(PerCamera):
    """Dense Farneback flow against the previous frame of the same camera.

    Needs every frame of a camera on one handler: ``dispatch = "by-camera"``.
    ``meta["optical_flow"]["prev_seq"]`` names the frame it compared with.
    """

    name = "optical_flow"
    OPTIONS = {
        "scale": (Rule(float, 0.05, 1.0), 0.5),
        "levels": (Rule(int, 1, 10), 3),
        "winsize": (Rule(int, 3, 101), 15),
    }

    def process(self, frame: Frame) -> None:
        gray = frame.gray()
        scale = self.options["scale"]
        if scale != 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        previous = self.state.get(frame.camera)
        result: Dict[str, Any] = {"prev_seq": None, "mean_magnitude": 0.0}
        if previous is not None and previous[1].shape == gray.shape:
            prev_seq, prev_gray = previous
            flow = cv2.calcOpticalFlowFarneback(prev_gray, gray, None, 0.5,
                                                self.options["levels"],
                                                self.options["winsize"], 3, 5, 1.2, 0)
            magnitude = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)
            result = {"prev_seq": prev_seq,
                      "mean_magnitude": round(float(magnitude.mean()) / scale, 4),
                      "mean_dx": round(float(flow[..., 0].mean()) / scale, 4),
                      "mean_dy": round(float(flow[..., 1].mean()) / scale, 4)}
        self.state[frame.camera] = (frame.seq, gray)
        frame.meta["optical_flow"] = result


class Sleep(Stage):
    """Waits ``ms`` milliseconds: simulates a slow stage (tests, capacity planning)."""

    name = "sleep"
    OPTIONS = {"ms": (Rule(float, 0, 600000), 100.0)}

    def process(self, frame: Frame) -> None:
        import time

        time.sleep(self.options["ms"] / 1000.0)


BUILTIN = (Gray, Resize, Motion, Faces, People, OpticalFlow, Sleep, Dnn)
