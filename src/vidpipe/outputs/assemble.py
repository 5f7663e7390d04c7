"""The collector's outputs as ``[collector]`` asks for them, built one way,
and the routes its HTTP server answers.

:data:`KINDS` names the class of each output ``collector.outputs`` may list;
its module is imported only when the output is configured (a broker's client
library, OpenCV for image outputs). Before any is built,
:func:`check_requirements` makes sure each has what its class says it needs
(:meth:`~vidpipe.outputs.Output.requirements`): a missing module is a config
error naming the Debian package. An output that then cannot start (its
directory, its credentials file) is logged with the keys to look at and left
out; the collector runs with the rest.
"""

import importlib
import json
import logging
from typing import Any, Dict, List, NamedTuple, Optional, Type

from vidpipe.config import CameraConfig, CollectorConfig, ConfigError
from vidpipe.outputs import Output, Site, needs
from vidpipe.outputs.clips import ClipOutput
from vidpipe.outputs.playback import Library
from vidpipe.outputs.preview import PreviewOutput
from vidpipe.outputs.recording import RecordOutput
from vidpipe.outputs.retention import Keeper
from vidpipe.status import metrics
from vidpipe.status.board import read_board

#: output name -> "module:Class"; the names are config's OUTPUTS (a test
#: holds the two together)
KINDS = {
    "log": "vidpipe.outputs:LogOutput",
    "jsonl": "vidpipe.outputs:JsonlOutput",
    "display": "vidpipe.outputs:DisplayOutput",
    "preview": "vidpipe.outputs.preview:PreviewOutput",
    "record": "vidpipe.outputs.recording:RecordOutput",
    "mqtt": "vidpipe.outputs.mqtt:MqttOutput",
    "amqp": "vidpipe.outputs.amqp:AmqpOutput",
}
#: what can keep a built output from starting: logged, the others go on
BUILD_ERRORS = (OSError, ValueError, RuntimeError)
log = logging.getLogger("vidpipe.collector")


class Outputs(NamedTuple):
    every: List[Output]  # in the order results go through them
    preview: Optional[PreviewOutput]
    recording: Optional[RecordOutput]


class KeeperOutput(Output):
    """Retention of the passthrough recordings (the cameras' own streams,
    written by the decoders) under ``[collector.record]``'s limits."""

    name = "retention"

    def __init__(self, cc: CollectorConfig) -> None:
        self.keeper = Keeper(cc.record_dir, cc.record_max_bytes, cc.record_max_age_s,
                             cc.record_min_free_mb * 2 ** 20)

    def status(self) -> Optional[Dict[str, Any]]:
        return {"deleted": self.keeper.retention.deleted, "short": self.keeper.short}

    def close(self) -> None:
        self.keeper.close()


def output_class(name: str) -> Type[Output]:
    module, _, cls = KINDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def check_requirements(cc: CollectorConfig, path: str) -> None:
    """Raise ConfigError, naming the key and the Debian package, if an output
    ``cc`` configures lacks a module it needs."""
    for name in cc.outputs:
        for req in output_class(name).requirements(cc):
            try:
                importlib.import_module(req.module)
            except ImportError:
                raise ConfigError(path, req.key, needs(name, req.module, req.package)) from None


def assemble(cc: CollectorConfig, cameras: Dict[str, CameraConfig], label: str) -> Outputs:
    """The outputs ``cc.outputs`` names, in that order (``label``: whose log
    lines these are). Call :func:`check_requirements` first."""
    site = Site(cameras)
    every: List[Output] = []
    for name in cc.outputs:
        cls = output_class(name)
        try:
            every.append(cls.build(cc, site))
        except BUILD_ERRORS as exc:
            log.error("%s: output %s is off: %s (%s)", label, name, exc, cls.keys_to_check(cc))
    if any(c.record == "passthrough" for c in cameras.values()):
        try:  # the decoders write the cameras' own streams; retention is kept here
            every.append(KeeperOutput(cc))
        except OSError as exc:
            log.error("%s: retention of the cameras' recordings is off: %s (collector.record"
                      ".dir = %s)", label, exc, cc.record_dir)
    if site.clip_cameras():  # their decoders cut them when told
        every.append(ClipOutput.build(cc, site))
    preview = next((o for o in every if isinstance(o, PreviewOutput)), None)
    recording = next((o for o in every if isinstance(o, RecordOutput)), None)
    return Outputs(every, preview, recording)


def recorded(cc: CollectorConfig, cameras: Dict[str, CameraConfig]) -> bool:
    """Whether anything is recorded under ``[collector.record] dir``."""
    return "record" in cc.outputs or any(c.record == "passthrough" for c in cameras.values())


def web_routes(cc: CollectorConfig, preview: Optional[PreviewOutput], runtime_dir: str,
               cameras: Optional[Dict[str, CameraConfig]] = None) -> Dict[str, Any]:
    """What the collector's HTTP server answers: the preview's pages, the
    recordings (:mod:`.playback`), and ``/metrics`` and ``/status.json``
    from the status board."""
    routes: Dict[str, Any] = {}
    if preview is not None:
        routes.update(preview.routes())
    if recorded(cc, cameras or {}):
        routes.update(Library(cc.record_dir).routes())
    if cc.metrics:
        routes[r"/metrics"] = lambda req, _m: req.send_text(
            200, metrics.render(read_board(runtime_dir)),
            "text/plain; version=0.0.4; charset=utf-8")
        routes[r"/status\.json"] = lambda req, _m: req.send_text(
            200, json.dumps(read_board(runtime_dir)), "application/json")
    return routes
