"""Live preview: an index page and one MJPEG stream per camera, in a browser.

The collector's loop only shrinks a processed frame to the preview width, at
most ``preview_fps`` times a second and only while somebody watches; JPEG
encoding and box drawing happen in a thread of their own, and each browser is
served from its own thread. So a viewer never slows the pipeline, and nobody
watching costs nothing.
"""

import html
import logging
import select
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from vidpipe import names
from vidpipe.analytics.observations import FACE, MOTION, Box, observations
from vidpipe.link.ordering import OK, Entry
from vidpipe.config import CollectorConfig
from vidpipe.outputs import Output, Site, bgr8, picture
from vidpipe.status.web import Request

log = logging.getLogger("vidpipe.preview")
BOUNDARY = "vidpipeframe"
MAX_CAMERAS = 1024
MAX_OBJECTS = 256  # drawn a frame (the collector's scene sends at most this many)
TRAIL = 32  # frames of an object's path drawn


def _colour(track: Any) -> Tuple[int, int, int]:
    """A colour of its own for each track ID (the same every frame)."""
    n = track if isinstance(track, int) else 0
    return (80 + (n * 97) % 176, 80 + (n * 57) % 176, 80 + (n * 31) % 176)


def _drawable(box: Any) -> bool:
    """An object's box as the collector writes it: four numbers."""
    return isinstance(box, list) and len(box) == 4 and \
        all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)


def client_gone(sock: Any) -> bool:
    """The client closed its connection (or it broke): without waiting."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class Feed:
    """The newest JPEG of one camera, and who is waiting for the next."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: Optional[bytes] = None
        self.number = 0
        self.viewers = 0
        self.wanted_until = 0.0
        self.last_take = 0.0
        self.gone = False  # the collector forgot its camera

    def put(self, jpeg: bytes) -> None:
        with self.cond:
            self.jpeg = jpeg
            self.number += 1
            self.cond.notify_all()

    def wait_newer(self, number: int, timeout: float) -> Tuple[Optional[bytes], int]:
        with self.cond:
            self.cond.wait_for(lambda: self.number > number or self.gone, timeout)
            if self.number > number:
                return self.jpeg, self.number
            return None, number

    def watched(self, now: float) -> bool:
        return self.viewers > 0 or now < self.wanted_until


def box_list(meta: Dict[str, Any]) -> List[Tuple[Box, str]]:
    """Boxes ``[x, y, w, h]`` (with a label) found by the stages
    (:mod:`vidpipe.analytics.observations`): faces, motion (no label),
    detections (label and score)."""
    return [(o.box, "face" if o.kind == FACE else "" if o.kind == MOTION else
             "{} {:.2f}".format(o.label, o.score)) for o in observations(meta)]


class PreviewOutput(Output):
    name = "preview"
    TABLE = "preview"

    @classmethod
    def build(cls, cc: CollectorConfig, site: Site) -> "Output":
        return cls(cc.preview_fps, cc.preview_width, cc.preview_quality, cc.preview_boxes,
                   site.names(), {n: (c.zones, c.lines) for n, c in site.cameras.items()
                                  if c.zones or c.lines})

    def __init__(self, fps: float, width: int, quality: int, boxes: bool,
                 cameras: List[str], areas: Optional[Dict[str, Tuple[Any, Any]]] = None) -> None:
        import cv2  # here, not at the top: a collector without a preview never loads OpenCV

        self.cv2 = cv2
        self.interval = 1.0 / fps
        self.width = width
        self.quality = quality
        self.boxes = boxes
        self.feeds: Dict[str, Feed] = {name: Feed() for name in cameras}
        self.areas = areas or {}  # camera -> (zones, lines) to draw (vidpipe.analytics)
        self.trails: Dict[str, Dict[int, List[Tuple[float, float]]]] = {}  # camera -> id -> feet
        self.pending: Dict[str, Tuple[np.ndarray, Dict[str, Any], float, int]] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.closed = False
        self.encoded = 0
        self.thread = threading.Thread(target=self._encoder, name="preview", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ collector side

    def feed(self, camera: str) -> Optional[Feed]:
        feed = self.feeds.get(camera)
        if feed is None and len(self.feeds) < MAX_CAMERAS:
            feed = self.feeds[camera] = Feed()
        return feed

    def emit(self, camera: str, entry: Entry, latency_ms: Optional[float]) -> None:
        if entry.status != OK or entry.late:
            return
        feed = self.feed(camera)
        now = time.monotonic()
        if feed is None or not feed.watched(now) or now - feed.last_take < self.interval:
            return
        msg = entry.message
        if msg.payload is None or not len(msg.payload):
            return
        feed.last_take = now
        image = picture(msg)
        if image.dtype != np.uint8:  # cv2.resize takes no int32, for one
            image = bgr8(image)
        scale = min(1.0, self.width / float(image.shape[1]))
        if scale < 1.0:  # the small copy is all that leaves the loop
            size = (self.width, max(1, int(round(image.shape[0] * scale))))
            small = self.cv2.resize(image, size, interpolation=self.cv2.INTER_AREA)
        else:
            small = np.array(image)
        meta = msg.meta
        if isinstance(meta.get("objects"), list):
            meta = dict(meta, trails=self._trails(camera, meta["objects"]))
        with self.lock:
            self.pending[camera] = (small, meta, scale, msg.header.seq)
        self.wake.set()

    def _trails(self, camera: str, objects: List[Any]) -> Dict[int, List[Tuple[float, float]]]:
        """The feet of each object on screen over the last TRAIL frames shown
        (objects gone from the picture are let go)."""
        old = self.trails.get(camera, {})
        now: Dict[int, List[Tuple[float, float]]] = {}
        for obj in objects[:MAX_OBJECTS]:
            if not isinstance(obj, dict):
                continue
            box = obj.get("box")
            if isinstance(obj.get("id"), int) and _drawable(box):
                feet = (box[0] + box[2] / 2.0, box[1] + box[3])
                now[obj["id"]] = (old.get(obj["id"], []) + [feet])[-TRAIL:]
        self.trails[camera] = now
        return now

    def forget(self, camera: str) -> None:
        """Its feed goes (viewers of it see the stream end) and with it the
        place it took among MAX_CAMERAS."""
        with self.lock:
            self.pending.pop(camera, None)
        self.trails.pop(camera, None)
        feed = self.feeds.pop(camera, None)
        if feed is not None:
            with feed.cond:
                feed.gone = True
                feed.cond.notify_all()

    def close(self) -> None:
        self.closed = True
        self.wake.set()
        for feed in self.feeds.values():
            with feed.cond:
                feed.cond.notify_all()
        self.thread.join(2)

    # ------------------------------------------------------------------ encoder thread

    def _encoder(self) -> None:
        while not self.closed:
            self.wake.wait(0.5)
            self.wake.clear()
            with self.lock:
                work, self.pending = self.pending, {}
            for camera, (image, meta, scale, seq) in work.items():
                try:
                    jpeg = self.render(camera, image, meta, scale, seq)
                except Exception as exc:  # a preview problem never stops the collector
                    log.warning("preview of %s: %s", camera, exc)
                    continue
                self.encoded += 1
                feed = self.feeds.get(camera)
                if feed is not None:  # not forgotten meanwhile
                    feed.put(jpeg)

    def render(self, camera: str, image: np.ndarray, meta: Dict[str, Any], scale: float,
               seq: int) -> bytes:
        cv2 = self.cv2
        image = bgr8(image)
        if self.boxes and camera in self.areas:
            self._draw_areas(image, *self.areas[camera], scale)
        if self.boxes and isinstance(meta.get("objects"), list):
            self._draw_objects(image, meta["objects"], meta.get("trails") or {}, scale)
        elif self.boxes:
            for (x, y, w, h), label in box_list(meta):
                p1 = (int(x * scale), int(y * scale))
                p2 = (int((x + w) * scale), int((y + h) * scale))
                cv2.rectangle(image, p1, p2, (0, 255, 0), 2)
                if label:
                    cv2.putText(image, label, (p1[0], max(12, p1[1] - 4)),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 0), 1)
        cv2.putText(image, "{} #{}".format(camera, seq), (6, 18), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (0, 255, 255), 1)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return data.tobytes()

    def _draw_areas(self, image: np.ndarray, zones: Any, lines: Any, scale: float) -> None:
        cv2 = self.cv2
        for zone in zones.values():
            pts = np.array([[x * scale, y * scale] for x, y in zone.points], np.int32)
            cv2.polylines(image, [pts], True, (255, 160, 0), 1)
            cv2.putText(image, zone.name, tuple(int(v) for v in pts[0] + (3, 14)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 160, 0), 1)
        for line in lines.values():
            a = (int(line.a[0] * scale), int(line.a[1] * scale))
            b = (int(line.b[0] * scale), int(line.b[1] * scale))
            cv2.arrowedLine(image, a, b, (255, 0, 255), 2, tipLength=0.03)
            cv2.putText(image, line.name, (a[0] + 3, a[1] + 14), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4, (255, 0, 255), 1)

    def _draw_objects(self, image: np.ndarray, objects: List[Any],
                      trails: Dict[int, List[Tuple[float, float]]], scale: float) -> None:
        """Tracked objects: box, "#ID label", and the trail of their feet."""
        cv2 = self.cv2
        for obj in objects[:MAX_OBJECTS]:
            box = obj.get("box") if isinstance(obj, dict) else None
            if not _drawable(box):
                continue
            x, y, w, h = (v * scale for v in box)
            colour = _colour(obj.get("id"))
            cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), colour, 2)
            cv2.putText(image, "#{} {}".format(obj.get("id"), names.label(obj.get("label"))),
                        (int(x), max(12, int(y) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
            trail = trails.get(obj.get("id")) or []
            if len(trail) > 1:
                pts = np.array([[px * scale, py * scale] for px, py in trail], np.int32)
                cv2.polylines(image, [pts], False, colour, 1)

    # ------------------------------------------------------------------ HTTP side

    def routes(self) -> Dict[str, Any]:
        name = "(" + names.NAME_PATTERN + ")"
        return {r"/": self.page_index, r"/stream/" + name + r"\.mjpg": self.page_stream,
                r"/snapshot/" + name + r"\.jpg": self.page_snapshot}

    def cameras(self) -> List[str]:
        return sorted(self.feeds)  # the configured ones from the start, others as they come

    def page_index(self, req: Request, _match: Any) -> None:
        items = "\n".join(
            '<figure><figcaption>{0}</figcaption><img id="cam-{0}" alt="{0}" '
            'src="/stream/{0}.mjpg"></figure>'.format(html.escape(c)) for c in self.cameras())
        body = ("<!doctype html><html><head><meta charset=utf-8><title>vidpipe preview</title>"
                "<style>body{{font-family:sans-serif;background:#111;color:#ddd;margin:1em}}"
                "figure{{display:inline-block;margin:0 1em 1em 0}}img{{max-width:100%;"
                "background:#222;min-width:160px;min-height:120px}}</style></head><body>"
                "<h1>vidpipe preview</h1>{}<p><a href=/metrics>metrics</a> "
                "<a href=/status.json>status</a></p></body></html>").format(
                    items or "<p>No camera has sent a frame yet.</p>")
        req.send_text(200, body, "text/html; charset=utf-8")

    def page_stream(self, req: Request, match: Any) -> None:
        feed = self.feeds.get(match.group(1))
        if feed is None:
            req.send_text(404, "no camera {}\n".format(match.group(1)))
            return
        streams = req.server.streams  # type: ignore[attr-defined]
        if not streams.acquire(blocking=False):
            req.send_text(503, "too many live streams at once; try a snapshot\n")
            return
        try:
            self._stream(req, feed)
        finally:
            streams.release()

    def _stream(self, req: Request, feed: Feed) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY)
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        with feed.cond:
            feed.viewers += 1
        try:
            number = 0
            while not self.closed:
                jpeg, number = feed.wait_newer(number, 1.0)
                if feed.gone:
                    return
                if jpeg is None:
                    if client_gone(req.connection):  # an idle camera writes nothing that
                        return                        # would fail: the slot is given back
                    continue
                req.wfile.write("--{}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n"
                                .format(BOUNDARY, len(jpeg)).encode("ascii") + jpeg + b"\r\n")
                req.wfile.flush()
        finally:
            with feed.cond:
                feed.viewers -= 1

    def page_snapshot(self, req: Request, match: Any) -> None:
        feed = self.feeds.get(match.group(1))
        if feed is None:
            req.send_text(404, "no camera {}\n".format(match.group(1)))
            return
        feed.wanted_until = time.monotonic() + 3.0
        jpeg, _ = feed.wait_newer(feed.number, 3.0)
        if jpeg is None:
            req.send_text(503, "no frame from {} in 3 s\n".format(match.group(1)))
            return
        req.send_body(200, jpeg, "image/jpeg")
