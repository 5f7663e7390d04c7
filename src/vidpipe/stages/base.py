"""What a stage is: :class:`Stage` and the :class:`Frame` it works on.

Stages and plugins import these (also re-exported as ``vidpipe.stages.Stage``
and ``vidpipe.stages.Frame``); this module imports nothing of vidpipe's but
the config's :class:`~vidpipe.config.Rule` and the pixel layouts.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from vidpipe.config import CameraConfig, Rule
from vidpipe.link.pixels import i420_planes, to_gray

Allocator = Callable[[Tuple[int, ...], str], Optional[np.ndarray]]
#: ``Frame.format`` of planar YUV 4:2:0 (a camera's ``deliver = "i420"``)
I420 = "I420"


@dataclass
class Frame:
    camera: str
    seq: int
    capture_ns: int
    image: np.ndarray
    meta: Dict[str, Any] = field(default_factory=dict)
    #: where :meth:`output` gets memory from (the handler's shared-memory results)
    allocate: Optional[Allocator] = field(default=None, repr=False)
    #: ``""``: the array says what it is (2-D gray, 3-D BGR); :data:`I420`:
    #: planar YUV 4:2:0, one uint8 array of height*3/2 rows -- the Y plane,
    #: then U and V at half size. A stage that replaces ``image`` with one
    #: of another kind sets it to ``""``; :meth:`gray` and :meth:`bgr` read
    #: any of them.
    format: str = ""

    def size(self) -> Tuple[int, int]:
        """The picture's (height, width)."""
        rows, width = self.image.shape[:2]
        return (rows * 2 // 3, width) if self.format == I420 else (rows, width)

    def gray(self) -> np.ndarray:
        """The picture in gray: I420's Y plane (a view: no copy, no
        conversion), the image itself when gray, else converted from BGR."""
        if self.format == I420:
            return i420_planes(self.image)[0]
        return to_gray(self.image)

    def bgr(self) -> np.ndarray:
        """The picture in BGR (converted when it is I420 or gray)."""
        image = self.image
        if self.format != I420 and image.ndim == 3:
            return image
        import cv2

        return cv2.cvtColor(image, cv2.COLOR_YUV2BGR_I420 if self.format == I420
                            else cv2.COLOR_GRAY2BGR)

    def output(self, shape: Tuple[int, ...], dtype: str = "uint8") -> np.ndarray:
        """A new array for a stage to write its output image into, e.g.
        ``cv2.cvtColor(src, code, dst=frame.output(shape))``. The first one is
        in shared memory when results go to the collector that way, so the
        image the stage makes is sent without being copied again."""
        if self.allocate is not None:
            allocate, self.allocate = self.allocate, None
            out = allocate(tuple(shape), dtype)
            if out is not None:
                return out
        return np.empty(shape, dtype)


class Stage:
    """Base class of every stage."""

    name = "stage"
    #: needs consecutive frames of one camera: use ``dispatch = "by-camera"``
    stateful = False
    #: option name -> (Rule, default)
    OPTIONS: Mapping[str, Tuple[Rule, Any]] = {}
    #: what the handler runs on ("cpu", "cuda0", "dla1"), set before ``setup()``
    accelerator = "cpu"
    #: finds objects (dnn, faces): run only on the frames a camera's
    #: ``detect_fps`` and ``detect_when`` choose; the others pass it by
    detector = False

    def __init__(self, options: Dict[str, Any]) -> None:
        self.options = options

    def setup(self) -> None:
        """Load models, check option combinations; raise ValueError naming the option."""

    def process(self, frame: Frame) -> None:
        raise NotImplementedError


def add_detections(frame: Frame, found: List[Dict[str, Any]]) -> None:
    """Add boxes to ``frame.meta["detections"]`` (two detectors in one chain
    both count: the second does not replace the first one's boxes)."""
    known = frame.meta.get("detections")
    if isinstance(known, list):
        known.extend(found)
    else:
        frame.meta["detections"] = found


def detect_now(cam: Optional[CameraConfig], frame: Frame) -> bool:
    """Whether a detector runs on ``frame``. ``detect_fps``: every k-th frame
    by sequence number (k = the camera's fps over detect_fps, rounded), a
    rule every handler applies alike without talking to the others;
    ``detect_when = "motion"``: only when the motion stage found something
    in this frame."""
    if cam is None:
        return True  # a camera udev named without a section: its defaults detect always
    if cam.detect_fps and cam.fps > cam.detect_fps:
        every = max(1, int(round(cam.fps / cam.detect_fps)))
        if frame.seq % every:
            return False
    if cam.detect_when.startswith("motion"):  # motion, motion-region
        motion = frame.meta.get("motion")
        return isinstance(motion, dict) and bool(motion.get("boxes"))
    return True
