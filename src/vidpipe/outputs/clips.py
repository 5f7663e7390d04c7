"""Event clips, the collector's half: which events get a clip, what the clip
is called, and the requests that tell the camera's decoder to cut it.

An event of a label a camera lists in ``clips`` (``[cameras.NAME] clips =
["person"]``, ``"*"`` for every label) gets a clip of the camera's own
stream (``record = "passthrough"``): from ``preroll_s`` before the event's
first frame to ``postroll_s`` after its last. The decoder holds the encoded
packets of the last seconds in memory and writes the clip
(:mod:`vidpipe.capture.clips`); the collector, which is where events are
known, tells it when. Requests go on a PUB socket (``[collector] clips``,
``ipc:///run/vidpipe/clips.sock`` by default), topic ``CAMERA/``, one JSON
part (:mod:`vidpipe.link.clipwire`).

A clip's name is made from its event's id
(:func:`vidpipe.link.clipwire.clip_name`), so the
broker outputs name it in the event they publish without asking anybody
(:func:`name_clip`), and a request sent twice names the same clip. Events
are debounced as the brokers debounce them (``[collector.events]``), so a
clip and the event that names it begin on the same frame.
"""

import logging
from typing import Any, Dict, List, Mapping, Optional

import zmq

from vidpipe.config import CameraConfig, CollectorConfig
from vidpipe.link.clipwire import clip_name, end_request, start_request, topic
from vidpipe.link.ordering import OK, Entry
from vidpipe.link.sockets import CONTROL_PART
from vidpipe.outputs import Output, Site
from vidpipe.outputs.events import Tracker
from vidpipe.stats import Tally

log = logging.getLogger("vidpipe.clips")
#: requests queued per subscriber before libzmq drops them (a decoder away)
HWM = 1000


def wants(camera: Optional[CameraConfig], label: str) -> bool:
    """Whether ``camera``'s events of ``label`` get clips."""
    return camera is not None and bool(camera.clips) and \
        ("*" in camera.clips or label in camera.clips)


def clip_ref(camera: str, event_id: str, start_ns: int) -> Dict[str, str]:
    """What an event says of its clip: the file's name and where the
    collector's web server serves it (a path on ``[collector.http] listen``)."""
    name = clip_name(camera, event_id, start_ns)
    return {"name": name, "url": "/recordings/{}/{}".format(camera, name)}


def name_clip(event: Dict[str, Any], camera: Optional[CameraConfig], tracker: Tracker) -> None:
    """Put the ``clip`` an event names in it, if its label's events get clips:
    a label's event (``tracker``'s) its own; an object's, zone's or line's
    event the clip of its label's event open at the time (none before it
    starts)."""
    label = event.get("label")
    if camera is None or not isinstance(label, str) or not wants(camera, label):
        return
    if "start_ns" in event:
        event["clip"] = clip_ref(camera.name, event["id"], event["start_ns"])
        return
    state = tracker.cameras.get(camera.name, {}).get(label)
    if state is not None and state.active is not None:
        event["clip"] = clip_ref(camera.name, state.active.id, state.active.start_ns)


class ClipOutput(Output):
    """Turns the in-order results of the cameras with ``clips`` into clip
    requests. Added by the collector itself when a camera asks for clips."""

    name = "clips"

    @classmethod
    def build(cls, cc: CollectorConfig, site: Site) -> "ClipOutput":
        return cls(cc, site.clip_cameras())

    def __init__(self, cc: CollectorConfig, cameras: Mapping[str, CameraConfig]) -> None:
        """``cameras``: those whose events get clips."""
        self.endpoint = cc.clips
        self.cameras = dict(cameras)
        self.tracker = Tracker(cc.events_min_frames, cc.events_end_after_s, cc.events_update_s)
        self.sock: Optional[zmq.Socket] = None
        self.counts = Tally()
        self.error = ""

    def bind(self, sockets: Any) -> None:
        """Bind the requests' socket (:class:`vidpipe.link.sockets.Sockets`:
        Curve on tcp:// as configured); a socket that cannot bind is logged
        and the clips are off, the rest of the collector is not."""
        sock = sockets.make(zmq.PUB, sndhwm=HWM, max_part=CONTROL_PART)
        try:
            sockets.bind(sock, self.endpoint)
        except OSError as exc:
            self.error = str(exc)
            log.error("event clips are off: %s (collector.clips)", exc)
            return
        self.sock = sock

    def emit(self, camera: str, entry: Entry, latency_ms: Optional[float]) -> None:
        cam = self.cameras.get(camera)
        if cam is None or entry.late or entry.status != OK or entry.message is None:
            return
        head = entry.message.header
        self._requests(cam, self.tracker.feed(camera, head.seq, head.capture_ns,
                                              entry.message.meta))

    def _requests(self, cam: CameraConfig, events: List[Dict[str, Any]]) -> None:
        for event in events:
            if not wants(cam, event["label"]):
                continue
            name = clip_name(cam.name, event["id"], event["start_ns"])
            if event["type"] == "start":
                self._send(cam.name, "starts", start_request(
                    name, event["id"], event["label"],
                    max(0, event["start_ns"] - int(cam.preroll_s * 1e9))))
            elif event["type"] == "end":
                self._send(cam.name, "ends", end_request(
                    name, event["capture_ns"] + int(cam.postroll_s * 1e9)))

    def _send(self, camera: str, what: str, request: bytes) -> None:
        if self.sock is None:
            self.counts["unsent"] += 1
            return
        try:
            self.sock.send_multipart([topic(camera), request], zmq.NOBLOCK)
            self.counts[what] += 1
        except zmq.ZMQError:
            self.counts["unsent"] += 1

    def end_of_stream(self, camera: str) -> None:
        cam = self.cameras.get(camera)
        if cam is not None:
            self._requests(cam, self.tracker.end_all(camera))

    def forget(self, camera: str) -> None:
        self.end_of_stream(camera)
        self.tracker.cameras.pop(camera, None)

    def status(self) -> Optional[Dict[str, Any]]:
        return dict(self.counts.as_dict(), **({"error": self.error} if self.error else {}))
