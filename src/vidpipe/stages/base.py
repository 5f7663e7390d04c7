"""What a stage is: :class:`Stage` and the :class:`Frame` it works on.

Stages and plugins import these (also re-exported as ``vidpipe.stages.Stage``
and ``vidpipe.stages.Frame``); this module imports nothing of vidpipe's but
the config's :class:`~vidpipe.config.Rule`.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from vidpipe.config import Rule

Allocator = Callable[[Tuple[int, ...], str], Optional[np.ndarray]]


@dataclass
class Frame:
    camera: str
    seq: int
    capture_ns: int
    image: np.ndarray
    meta: Dict[str, Any] = field(default_factory=dict)
    #: where :meth:`output` gets memory from (the handler's shared-memory results)
    allocate: Optional[Allocator] = field(default=None, repr=False)

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

    def __init__(self, options: Dict[str, Any]) -> None:
        self.options = options

    def setup(self) -> None:
        """Load models, check option combinations; raise ValueError naming the option."""

    def process(self, frame: Frame) -> None:
        raise NotImplementedError
