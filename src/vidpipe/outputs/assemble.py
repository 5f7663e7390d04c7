"""The collector's outputs as ``[collector]`` asks for them, and the routes
its HTTP server answers: one place that knows which output needs what (a
broker's client library only when that broker is configured, OpenCV only
for image outputs). An output that cannot start is logged with the key to
look at and left out; the collector runs with the rest."""

import importlib
import json
import logging
from typing import Any, Dict, List, NamedTuple, Optional

from vidpipe.status.board import read_board
from vidpipe.config import CameraConfig, CollectorConfig
from vidpipe.outputs import Output, make_outputs
from vidpipe.status import metrics
from vidpipe.outputs.preview import PreviewOutput
from vidpipe.outputs.recording import RecordOutput

#: outputs that publish to a broker: vidpipe.outputs.NAME.OUTPUT
BROKERS = ("mqtt", "amqp")
log = logging.getLogger("vidpipe.collector")


class Outputs(NamedTuple):
    every: List[Output]  # in the order results go through them
    preview: Optional[PreviewOutput]
    recording: Optional[RecordOutput]


def assemble(cc: CollectorConfig, cameras: Dict[str, CameraConfig], label: str) -> Outputs:
    """The outputs ``cc.outputs`` names (``label``: whose log lines these are)."""
    every = make_outputs(cc)
    preview = recording = None
    if "preview" in cc.outputs:
        preview = PreviewOutput(cc.preview_fps, cc.preview_width, cc.preview_quality,
                                cc.preview_boxes, sorted(cameras),
                                {n: (c.zones, c.lines) for n, c in cameras.items()
                                 if c.zones or c.lines})
        every.append(preview)
    for name in BROKERS:
        if name in cc.outputs:  # its client library only when configured
            module = importlib.import_module("vidpipe.outputs." + name)
            try:
                every.append(module.OUTPUT(cc, sorted(cameras), areas={
                    n: (sorted(c.zones), sorted(c.lines)) for n, c in cameras.items()
                    if c.zones or c.lines}))
            except (OSError, ValueError) as exc:  # the spool or the credentials file
                log.error("%s: output %s is off: %s (collector.spool.dir = %s, "
                          "collector.%s.credentials_file = %s)", label, name, exc,
                          cc.spool_dir, name, getattr(cc, name + "_credentials_file") or '""')
    if "record" in cc.outputs:
        try:
            recording = RecordOutput(
                cc.record_dir, cc.record_formats, cc.record_segment_s, cc.record_max_bytes,
                cc.record_max_age_s, cc.record_min_free_mb * 2 ** 20,
                lambda cam: cameras[cam].fps if cam in cameras and cameras[cam].fps else 30.0)
            every.append(recording)
        except (OSError, RuntimeError) as exc:
            log.error("%s: recording is off: %s (collector.record.dir = %s)", label, exc,
                      cc.record_dir)
    return Outputs(every, preview, recording)


def web_routes(cc: CollectorConfig, preview: Optional[PreviewOutput],
               runtime_dir: str) -> Dict[str, Any]:
    """What the collector's HTTP server answers: the preview's pages, and
    ``/metrics`` and ``/status.json`` from the status board."""
    routes: Dict[str, Any] = {}
    if preview is not None:
        routes.update(preview.routes())
    if cc.metrics:
        routes[r"/metrics"] = lambda req, _m: req.send_text(
            200, metrics.render(read_board(runtime_dir)),
            "text/plain; version=0.0.4; charset=utf-8")
        routes[r"/status\.json"] = lambda req, _m: req.send_text(
            200, json.dumps(read_board(runtime_dir)), "application/json")
    return routes
