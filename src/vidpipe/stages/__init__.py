"""Processing stages: functions of a frame plus their own state.

A stage knows nothing of sockets: it gets a :class:`Frame`, may replace
``frame.image`` and adds to ``frame.meta``. Built-in stages are named
(``gray``, ``resize``, ``motion``, ``faces``, ``optical_flow``); a plugin is
named ``package.module:Class`` and is a subclass of :class:`Stage` (or any
class with the same constructor and ``process`` method). Options come from
the ``[stage.NAME]`` table of pipeline.toml.

Writing a plugin::

    # mypkg/edges.py
    import cv2
    from vidpipe.stages import Stage, Frame
    from vidpipe.config import Rule

    class Edges(Stage):
        name = "edges"
        OPTIONS = {"low": (Rule(int, 0, 255), 50), "high": (Rule(int, 0, 255), 150)}

        def process(self, frame: Frame) -> None:
            # frame.output(): a new image the handler sends on without a copy
            frame.image = cv2.Canny(frame.image, self.options["low"],
                                    self.options["high"],
                                    edges=frame.output(frame.image.shape[:2]))
            frame.meta["edges"] = int((frame.image > 0).sum())

and in pipeline.toml::

    [handlers]
    stages = ["gray", "mypkg.edges:Edges"]

    [stage."mypkg.edges:Edges"]
    low = 40
"""

import importlib
from typing import Dict, List

from vidpipe.config import Config, ConfigError, stage_options
from vidpipe.stages.base import I420, Allocator, Frame, Stage

__all__ = ["I420", "Allocator", "Frame", "Stage", "build_chain", "registry", "resolve"]


def registry() -> Dict[str, type]:
    from vidpipe.stages import builtin

    return {cls.name: cls for cls in builtin.BUILTIN}


def resolve(name: str, config: Config, key: str) -> type:
    """The stage class for ``name``: a built-in, or ``package.module:Class``."""
    builtins = registry()
    if name in builtins:
        return builtins[name]
    if ":" not in name:
        raise ConfigError(config.path, key, "unknown stage {!r}; built-in stages: {}; plugins "
                          "are named 'package.module:Class'".format(name, ", ".join(builtins)))
    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import error in a plugin is the operator's to fix
        raise ConfigError(config.path, key, "cannot import plugin module {!r}: {}".format(
            module_name, exc)) from None
    cls = getattr(module, class_name, None)
    if cls is None or not isinstance(cls, type) or not callable(getattr(cls, "process", None)):
        raise ConfigError(config.path, key, "{!r} has no stage class {!r} with a process() "
                          "method".format(module_name, class_name))
    return cls


def build_chain(config: Config, names: List[str], section: str,
                accelerator: str = "cpu") -> List[Stage]:
    """Instantiate the stage chain ``names`` with their validated options, for a
    handler on ``accelerator`` (stages that can use it read ``self.accelerator``)."""
    classes = [resolve(name, config, "{}.stages[{}]".format(section, index))
               for index, name in enumerate(names)]
    _check_detect_when(config, names, classes, section)
    chain = []
    for name, cls in zip(names, classes):
        rules = getattr(cls, "OPTIONS", {}) or {}
        options = stage_options(config, name, rules)
        stage = cls(options)
        stage.accelerator = accelerator
        try:
            if hasattr(stage, "setup"):
                stage.setup()
        except ValueError as exc:
            raise ConfigError(config.path, "stage.{}".format(name), str(exc)) from None
        chain.append(stage)
    return chain


def _check_detect_when(config: Config, names: List[str], classes: List[type],
                       section: str) -> None:
    """``detect_when = "motion"`` (or ``"motion-region"``) reads what the
    motion stage found before the detectors (stages whose class says
    ``detector``, plugins too): a chain that runs a detector first, or no
    motion stage, would never detect."""
    detectors = [i for i, cls in enumerate(classes) if getattr(cls, "detector", False)]
    if not detectors:
        return
    motion = [i for i, cls in enumerate(classes) if getattr(cls, "name", "") == "motion"]
    if motion and motion[0] < detectors[0]:
        return
    for camera in sorted(config.cameras):
        when = config.cameras[camera].detect_when
        if when.startswith("motion"):
            raise ConfigError(config.path, "cameras.{}.detect_when".format(camera),
                              "\"{}\" needs the motion stage before the detectors in "
                              "{}.stages (got {})".format(when, section, names))
