"""Prometheus text exposition (format 0.0.4) of the status board.

Counters are the roles' own totals since they started; a restarted role
starts again from zero, which Prometheus' ``rate()`` handles as a counter
reset. A role that died keeps ``vidpipe_up 0`` until its entry is replaced.
"""

from typing import Any, Dict, Iterable, List, Tuple

Labels = Tuple[Tuple[str, str], ...]

HELP = {
    "vidpipe_up": ("gauge", "1 if the role's process is running"),
    "vidpipe_frames_total": ("counter", "Frames read (decoder), processed (handler) or "
                             "delivered in order (collector)"),
    "vidpipe_frames_dropped_total": ("counter", "Frames given up, by reason"),
    "vidpipe_frames_missing_total": ("counter", "Sequence numbers the collector never "
                                     "heard of (gaps)"),
    "vidpipe_fps": ("gauge", "Frames per second over the last few seconds"),
    "vidpipe_latency_seconds": ("histogram", "Capture to in-order delivery at the "
                                "collector"),
    "vidpipe_restarts_total": ("counter", "Starts of this role since boot, less one"),
    "vidpipe_queue_depth": ("gauge", "Frames in flight (decoder) or held for reordering "
                            "(collector)"),
    "vidpipe_malformed_messages_total": ("counter", "Messages dropped as malformed, by "
                                         "reason"),
    "vidpipe_broker_connected": ("gauge", "1 while a broker output is connected"),
    "vidpipe_spool_messages": ("gauge", "Messages in a broker output's disk spool"),
    "vidpipe_spool_bytes": ("gauge", "Bytes in a broker output's disk spool"),
    "vidpipe_spool_oldest_seconds": ("gauge", "Age of the oldest spooled message"),
    "vidpipe_broker_messages_total": ("counter", "Broker output messages by what became "
                                      "of them (published, acked, dropped_queue, "
                                      "spool_full)"),
    "vidpipe_spool_dropped_total": ("counter", "Spooled messages dropped at the spool's "
                                    "limit, by kind"),
    "vidpipe_detect_skipped_total": ("counter", "Processed frames the detectors passed by "
                                     "(detect_fps, detect_when): not drops"),
    "vidpipe_tracked_objects": ("gauge", "Objects the collector tracks on a camera now"),
    "vidpipe_zone_objects": ("gauge", "Tracked objects in a zone now, by class"),
    "vidpipe_zone_entries_total": ("counter", "Tracked objects that entered a zone, by class"),
    "vidpipe_line_crossings_total": ("counter", "Tracked objects that crossed a line, by "
                                     "direction (in, out) and class"),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Exposition:
    def __init__(self) -> None:
        self.samples: Dict[str, List[Tuple[str, Labels, float]]] = {}

    def add(self, family: str, value: Any, suffix: str = "", **labels: str) -> None:
        if value is None:
            return
        key = tuple(sorted(labels.items()))
        self.samples.setdefault(family, []).append((family + suffix, key, value))

    def text(self) -> str:
        lines: List[str] = []
        for family, (kind, help_text) in HELP.items():
            rows = self.samples.get(family)
            if not rows:
                continue
            lines.append("# HELP {} {}".format(family, help_text))
            lines.append("# TYPE {} {}".format(family, kind))
            for name, labels, value in rows:
                body = ",".join('{}="{}"'.format(k, _escape(str(v))) for k, v in labels)
                lines.append("{}{} {}".format(name, "{" + body + "}" if body else "",
                                              _fmt(value)))
        return "\n".join(lines) + "\n"


def render(entries: Iterable[Dict[str, Any]]) -> str:
    """The ``/metrics`` page for the board ``entries`` (see ``board.read_board``)."""
    out = Exposition()
    for doc in entries:
        role, name = str(doc.get("role")), str(doc.get("name"))
        out.add("vidpipe_up", 1 if doc.get("alive") else 0, role=role, name=name)
        out.add("vidpipe_restarts_total", doc.get("restarts", 0), role=role, name=name)
        out.add("vidpipe_queue_depth", doc.get("queue_depth"), role=role, name=name)
        for reason, count in (doc.get("malformed") or {}).items():
            out.add("vidpipe_malformed_messages_total", count, role=role, name=name,
                    reason=reason)
        for output, st in sorted((doc.get("output_status") or {}).items()):
            if isinstance(st, dict) and "broker" in st:
                _broker(out, st, {"role": role, "name": name, "output": str(output)})
        for camera, cam in sorted((doc.get("cameras") or {}).items()):
            labels = {"camera": camera, "role": role, "name": name}
            out.add("vidpipe_frames_total", cam.get("frames"), **labels)
            out.add("vidpipe_fps", cam.get("fps"), **labels)
            for reason, count in (cam.get("dropped") or {}).items():
                out.add("vidpipe_frames_dropped_total", count, reason=reason, **labels)
            if role == "collector":
                out.add("vidpipe_frames_missing_total", cam.get("missing"), **labels)
                _histogram(out, cam.get("latency_hist"), labels)
                out.add("vidpipe_detect_skipped_total", _number(cam.get("detect_skipped")),
                        **labels)
                _areas(out, cam.get("areas"), labels)
    return out.text()


def _histogram(out: Exposition, hist: Any, labels: Dict[str, str]) -> None:
    if not isinstance(hist, dict) or "counts" not in hist:
        return
    for bound, count in zip(hist["bounds"], hist["counts"]):
        out.add("vidpipe_latency_seconds", count, "_bucket", le=_fmt(bound), **labels)
    out.add("vidpipe_latency_seconds", hist["count"], "_bucket", le="+Inf", **labels)
    out.add("vidpipe_latency_seconds", hist["sum"], "_sum", **labels)
    out.add("vidpipe_latency_seconds", hist["count"], "_count", **labels)


def _broker(out: Exposition, st: Dict[str, Any], labels: Dict[str, str]) -> None:
    def number(value: Any) -> Any:
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else None

    out.add("vidpipe_broker_connected", 1 if st.get("broker") == "connected" else 0, **labels)
    out.add("vidpipe_spool_messages", number(st.get("depth")), **labels)
    out.add("vidpipe_spool_bytes", number(st.get("bytes")), **labels)
    out.add("vidpipe_spool_oldest_seconds", number(st.get("oldest_s")), **labels)
    for what in ("published", "acked", "dropped_queue", "spool_full", "nacked", "unreadable",
                 "snapshot_too_big"):
        out.add("vidpipe_broker_messages_total", number(st.get(what, 0)), what=what, **labels)
    dropped = st.get("dropped")
    for kind, count in sorted(dropped.items() if isinstance(dropped, dict) else []):
        out.add("vidpipe_spool_dropped_total", number(count), kind=str(kind), **labels)


def _areas(out: Exposition, areas: Any, labels: Dict[str, str]) -> None:
    """Tracks, zones and lines (vidpipe.analytics) of a collector's camera.
    The board is a file: anything not shaped as the collector writes it is
    left out."""
    if not isinstance(areas, dict):
        return
    out.add("vidpipe_tracked_objects", _number(areas.get("tracks")), **labels)
    for zone, counts in sorted(_table(areas.get("zones")).items()):
        for cls, n in sorted(_table(_table(counts).get("occupancy")).items()):
            out.add("vidpipe_zone_objects", _number(n), zone=zone, label=cls, **labels)
        for cls, n in sorted(_table(_table(counts).get("entered")).items()):
            out.add("vidpipe_zone_entries_total", _number(n), zone=zone, label=cls, **labels)
    for line, ways in sorted(_table(areas.get("lines")).items()):
        for direction in ("in", "out"):
            for cls, n in sorted(_table(_table(ways).get(direction)).items()):
                out.add("vidpipe_line_crossings_total", _number(n), line=line,
                        direction=direction, label=cls, **labels)


def _table(value: Any) -> Dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _number(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
