"""Event clips, the decoder's half: a pre-roll of the camera's encoded
packets in memory, and the clips cut from it when the collector asks
(:mod:`vidpipe.outputs.clips` says which events and sends the requests).

The passthrough recorder (:mod:`.passthrough`) hands every packet of the
camera's stream -- an access unit as the camera encoded it, with its arrival
time on this host's wall clock, the clock the analysis stamps frames with --
to :meth:`Clips.packet`. :class:`PreRoll` keeps the last ``preroll_s``
seconds and a margin (the event reaches us a little after its first frame),
always from a key frame, bounded in bytes too. A ``start`` request opens a
clip at the last key frame at or before its ``from_ns`` (the event's first
frame less ``preroll_s``) and writes the pre-roll, then every packet as it
comes, until the ``end`` request's ``until_ns`` (the event's last frame plus
``postroll_s``) or :data:`MAX_CLIP_S`. Nothing is decoded or encoded: GStreamer's
parser and ``mp4mux`` put the packets in a fragmented MP4 (a fragment a
second: a clip the power cut short plays up to its last second) next to the
segments, ``record.dir/CAMERA/NAME.clip.mp4`` (``.clip.part.mp4`` while
written), under the same retention. The MP4's comment tag holds the wall
time of its first packet (``first_ns=``): the clip's time 0.

Requests are hostile input like any message: a name that is not this
camera's clip name, a time that is not a number, a request for a clip
already cut are counted and dropped. At most :data:`MAX_OPEN` clips are
written at once.
"""

import collections
import logging
import os
import threading
import time
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional

import zmq

from vidpipe.link.clipwire import MAX_NS, PART_SUFFIX, SUFFIX, name_rule, parse, topic
from vidpipe.link.sockets import CONTROL_PART
from vidpipe.safefile import create_new, settle
from vidpipe.stats import Tally

log = logging.getLogger("vidpipe.clips")
#: kept beyond ``preroll_s``: the time an event takes to reach the decoder
#: (handlers, the collector's order, the events' debounce) with room to spare
MARGIN_S = 10.0
#: the pre-roll's bound in bytes, whatever the seconds say (a 1080p main
#: stream at 8 Mbit/s holds 15 s in 16 MiB)
MAX_BYTES = 64 * 2 ** 20
#: a clip whose end never comes (the collector restarted) stops here
MAX_CLIP_S = 600.0
MAX_OPEN = 8
#: clips cut lately, by name: a request sent again is not a second clip
REMEMBERED = 256
POLL_MS = 200
STOP_WAIT_S = 3.0
NS = 1000 ** 3


class Packet(NamedTuple):
    """One access unit as the camera sent it."""

    ns: int  # when it reached us (wall clock, as frames' capture_ns)
    key: bool
    pts: int  # the recording pipeline's, GStreamer nanoseconds (or -1)
    dts: int
    duration: int
    data: bytes


class PreRoll:
    """The last seconds of packets, from a key frame on."""

    def __init__(self, keep_s: float, max_bytes: int = MAX_BYTES) -> None:
        self.keep_ns = int(keep_s * NS)
        self.max_bytes = max_bytes
        self.packets: Deque[Packet] = collections.deque()
        self.bytes = 0

    def add(self, packet: Packet) -> None:
        if not self.packets and not packet.key:
            return  # nothing decodes before the first key frame
        self.packets.append(packet)
        self.bytes += len(packet.data)
        while self._too_much(packet.ns):
            self._drop_group()

    def _too_much(self, now_ns: int) -> bool:
        packets = self.packets
        if self.bytes > self.max_bytes:
            return len(packets) > 1
        # the oldest group goes once the next group alone covers the time kept
        second = self._second_key()
        return second is not None and now_ns - packets[second].ns >= self.keep_ns

    def _second_key(self) -> Optional[int]:
        for i, p in enumerate(self.packets):
            if i and p.key:
                return i
        return None

    def _drop_group(self) -> None:
        """Drop the oldest key frame and what depends on it."""
        packets = self.packets
        first = packets.popleft()
        self.bytes -= len(first.data)
        while packets and not packets[0].key:
            self.bytes -= len(packets.popleft().data)

    def since(self, from_ns: int) -> List[Packet]:
        """From the last key frame at or before ``from_ns`` (from the first
        one held when none is that old) to now."""
        packets = list(self.packets)
        start = 0
        for i, p in enumerate(packets):
            if p.key and p.ns <= from_ns:
                start = i
            elif p.ns > from_ns:
                break
        return packets[start:]

    def clear(self) -> None:
        self.packets.clear()
        self.bytes = 0


class ClipWriter:
    """One clip: ``appsrc`` -> parser -> ``mp4mux`` (fragmented) -> file."""

    def __init__(self, Gst: Any, codec: str, caps: Any, path: str, event: str,
                 first: Packet) -> None:
        self.Gst = Gst
        self.path = path
        self.until_ns = MAX_NS
        self.first_ns = first.ns
        self.base_pts = first.pts if first.pts >= 0 else 0
        self.base_dts = first.dts if first.dts >= 0 else self.base_pts
        self.last_ns = first.ns  # the last packet written
        self.latest_ns = first.ns  # the last packet seen
        self.packets = 0
        self.failed = ""
        self.pipeline = Gst.parse_launch(
            "appsrc name=src format=time ! {}parse ! mp4mux fragment-duration=1000 ! "
            "filesink name=sink".format(codec))
        self.pipeline.get_by_name("sink").set_property("location", path)
        self.src = self.pipeline.get_by_name("src")
        self.src.set_property("caps", caps)
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise OSError("the clip's pipeline would not start")
        tags = Gst.TagList.new_empty()
        tags.add_value(Gst.TagMergeMode.REPLACE, Gst.TAG_COMMENT,
                       "vidpipe clip: event={} first_ns={}".format(event, first.ns))
        self.src.send_event(Gst.Event.new_tag(tags))

    def push(self, packet: Packet) -> None:
        Gst = self.Gst
        buf = Gst.Buffer.new_wrapped(packet.data)
        none = Gst.CLOCK_TIME_NONE
        buf.pts = packet.pts - self.base_pts if packet.pts >= self.base_pts else none
        buf.dts = packet.dts - self.base_dts if packet.dts >= self.base_dts else none
        buf.duration = packet.duration if packet.duration >= 0 else none
        if not packet.key:
            buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
        self.src.emit("push-buffer", buf)
        self.packets += 1
        self.last_ns = packet.ns

    def error(self) -> str:
        """The pipeline's error, if it met one (a full disk)."""
        message = self.pipeline.get_bus().pop_filtered(self.Gst.MessageType.ERROR)
        if message is not None:
            err, _debug = message.parse_error()
            self.failed = err.message
        return self.failed

    def close(self) -> bool:
        """End the file (the muxer's last fragment) and give it its final
        name; ``False`` when it holds nothing (then it is removed)."""
        Gst = self.Gst
        if not self.failed:
            self.src.emit("end-of-stream")
            self.pipeline.get_bus().timed_pop_filtered(
                int(STOP_WAIT_S * NS), Gst.MessageType.EOS | Gst.MessageType.ERROR)
        self.pipeline.set_state(Gst.State.NULL)
        try:
            return settle(self.path, self.path[:-len(PART_SUFFIX)] + SUFFIX) > 0
        except OSError as exc:
            log.error("clip %s: cannot close it: %s", self.path, exc)
            return False


class Clips:
    """A camera's pre-roll and clips. :meth:`packet` is called by the
    recording's streaming thread; the requests are read, and the clips
    opened and closed, in a thread of its own (:meth:`start`)."""

    def __init__(self, camera: str, folder: str, preroll_s: float, sockets: Any,
                 endpoint: str, space: Callable[[], str]) -> None:
        self.camera = camera
        self.folder = folder
        self.preroll = PreRoll(preroll_s + MARGIN_S)
        self.sockets = sockets
        self.endpoint = endpoint
        self.space = space  # "" when there is room to write, else why not
        self.names = name_rule(camera)
        self.lock = threading.Lock()
        self.open: Dict[str, ClipWriter] = {}
        self.done: "collections.OrderedDict[str, bool]" = collections.OrderedDict()
        self.stream: Optional[tuple] = None  # (Gst, codec, caps) of this run's packets
        self.counts = Tally()
        self.last_clip = ""
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="clips", daemon=True)

    # ------------------------------------------------------------ the recording's side

    def new_stream(self, Gst: Any, codec: str, caps: Any) -> None:
        """The recording (re)connected, or the camera's stream changed (its
        size: the recorder starts a new run then): what was held belongs to
        another stream, whose time stamps start anew; the clips being
        written end here."""
        with self.lock:
            self.stream = (Gst, codec, caps)
            self.preroll.clear()
            for writer in self.open.values():
                writer.until_ns = 0  # closed by the thread
        self.counts["streams"] += 1

    def packet(self, packet: Packet) -> None:
        with self.lock:
            self.preroll.add(packet)
            for writer in self.open.values():
                writer.latest_ns = packet.ns
                if packet.ns <= writer.until_ns and not writer.failed:
                    writer.push(packet)

    # ------------------------------------------------------------ requests

    def request(self, raw: bytes) -> None:
        """One request off the wire; a bad one is counted, never raised."""
        request = parse(raw, self.names)
        if request is None:
            self.counts["bad_requests"] += 1
        elif request.op == "start":
            self._open(request.name, request.when_ns, request.event)
        else:
            self._end(request.name, request.when_ns)

    def _open(self, name: str, from_ns: int, event: str) -> None:
        if name in self.open or name in self.done:
            self.counts["again"] += 1
            return
        if len(self.open) >= MAX_OPEN:
            self.counts["too_many"] += 1
            log.warning("%s: clip %s not cut: %d clips are being written already",
                        self.camera, name, MAX_OPEN)
            return
        why = self.space()
        if why:
            self.counts["no_space"] += 1
            log.warning("%s: clip %s not cut: %s", self.camera, name, why)
            return
        with self.lock:
            if self.stream is None or not self.preroll.packets:
                self.counts["no_stream"] += 1
                log.warning("%s: clip %s not cut: no packets of the camera's stream yet",
                            self.camera, name)
                return
            Gst, codec, caps = self.stream
            packets = self.preroll.since(from_ns)
            path = os.path.join(self.folder, name[:-len(SUFFIX)] + PART_SUFFIX)
            try:
                os.makedirs(self.folder, mode=0o750, exist_ok=True)
                create_new(path)
                writer = ClipWriter(Gst, codec, caps, path, event, packets[0])
                for p in packets:
                    writer.push(p)
            except Exception as exc:  # noqa: BLE001 - an OSError, a GLib.Error: one clip
                self.counts["failed"] += 1
                log.error("%s: clip %s not cut: %s", self.camera, name, exc)
                return
            self.open[name] = writer
        late = (packets[0].ns - from_ns) / NS
        if late > 0.5:
            log.warning("%s: clip %s starts %.1f s after the pre-roll asked (the camera's "
                        "stream did not reach that far back)", self.camera, name, late)
        self.counts["opened"] += 1

    def _end(self, name: str, until_ns: int) -> None:
        with self.lock:
            writer = self.open.get(name)
            if writer is None:
                self.counts["end_unknown"] += 1  # cut before we started, or already done
                return
            writer.until_ns = until_ns

    def _close_due(self, everything: bool = False) -> None:
        now_ns = time.time_ns()
        with self.lock:
            due = [(n, w) for n, w in self.open.items()
                   if everything or w.error() or w.latest_ns > w.until_ns or
                   now_ns > w.until_ns + 2 * NS or  # the stream stopped after its end
                   w.last_ns - w.first_ns > MAX_CLIP_S * NS]
            for name, _w in due:
                del self.open[name]
        for name, writer in due:
            if writer.failed:
                log.error("%s: clip %s: %s", self.camera, name, writer.failed)
            if writer.close():
                self.last_clip = name
                self.counts["written"] += 1
                log.info("%s: clip %s (%d packets, %.1f s)", self.camera, name,
                         writer.packets, (writer.last_ns - writer.first_ns) / NS)
            self.done[name] = True
            while len(self.done) > REMEMBERED:
                self.done.popitem(last=False)

    # ------------------------------------------------------------ the thread

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(STOP_WAIT_S * 2)

    def _run(self) -> None:
        sock = self.sockets.make(zmq.SUB, rcvhwm=1000, max_part=CONTROL_PART)
        sock.setsockopt(zmq.SUBSCRIBE, topic(self.camera))
        self.sockets.connect(sock, self.endpoint)
        try:
            while not self._stop.is_set():
                if sock.poll(POLL_MS):
                    while True:
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        if len(parts) == 2:
                            self.request(parts[1])
                        else:
                            self.counts["bad_requests"] += 1
                self._close_due()
        except Exception:  # noqa: BLE001 - clips stop; the recording and analysis go on
            log.exception("%s: event clips stopped", self.camera)
        finally:
            self._close_due(everything=True)

    def status(self) -> Dict[str, Any]:
        with self.lock:
            return dict(self.counts.as_dict(), open=len(self.open), last=self.last_clip,
                        preroll_s=round((self.preroll.packets[-1].ns -
                                         self.preroll.packets[0].ns) / NS, 1)
                        if self.preroll.packets else 0.0)
