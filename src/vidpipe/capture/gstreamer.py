"""GStreamer decode pipelines for network cameras, built from what the box has.

A camera's ``decode`` key says which decoder family to use:

* ``nvdec``: a Jetson's NVDEC (``nvv4l2decoder``, then ``nvvidconv`` to bring
  the frame out of NVMM memory, scaling on the way);
* ``v4l2m2m``: a V4L2 memory-to-memory decoder (Raspberry Pi 4's
  ``v4l2h264dec``; a Pi 5 has no H.264 decoder, only H.265: ``v4l2slh265dec``);
* ``vaapi``: an Intel/AMD GPU through VA-API (``vah264dec``, the newer
  plugin, else ``vaapih264dec``);
* ``software``: libav's ``avdec_h264`` / ``avdec_h265`` on the CPU;
* ``auto`` (the default): the first family above whose element for the codec
  exists here -- and when GStreamer cannot decode the stream on this box at
  all (no Python bindings, a plugin missing, a codec it has no path for),
  OpenCV's FFmpeg backend, the reason logged (:func:`unusable` says it);
* ``ffmpeg``: not GStreamer at all -- OpenCV's FFmpeg backend (the sources
  module handles that; this module is not asked).

The codec (``codec = "auto"``, the default) comes from the camera's session
description (:mod:`vidpipe.capture.rtsp`'s probe) or, for a file, from GStreamer's
discoverer (:func:`file_codec`).

:func:`choose` picks the element (from the names GStreamer's registry has,
given as a predicate so the choice is testable for every kind of box),
:func:`describe_pipeline` writes the ``gst-launch`` description that
:class:`vidpipe.capture.gstplayer.Player` runs (GStreamer's own Python bindings, not OpenCV's
``CAP_GSTREAMER``, whose reads cannot time out and which hides the reason a
stream failed): ``rtspsrc`` (over ``rtsp_transport``) or
``filesrc`` + demuxer, depay, parse, decoder, then scale and rate to the
camera's ``width``/``height``/``fps`` *before* frames are handed out, and
``appsink`` in BGR (or GRAY8).
"""

import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

CODECS = ("h264", "h265")
FAMILIES = ("nvdec", "v4l2m2m", "vaapi", "software")
DECODE_CHOICES = ("auto", "ffmpeg") + FAMILIES
#: family -> codec -> decoder elements, best first
DECODERS: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "nvdec": {"h264": ("nvv4l2decoder",), "h265": ("nvv4l2decoder",)},
    "v4l2m2m": {"h264": ("v4l2h264dec", "v4l2slh264dec"),
                "h265": ("v4l2h265dec", "v4l2slh265dec")},
    "vaapi": {"h264": ("vah264dec", "vaapih264dec"), "h265": ("vah265dec", "vaapih265dec")},
    "software": {"h264": ("avdec_h264",), "h265": ("avdec_h265",)},
}
SINK = "vidpipe_sink"
#: elements every network pipeline needs, and the Debian package that has each
NEEDED = {"rtspsrc": "gstreamer1.0-plugins-good", "rtph264depay": "gstreamer1.0-plugins-good",
          "rtph265depay": "gstreamer1.0-plugins-good", "h264parse": "gstreamer1.0-plugins-bad",
          "h265parse": "gstreamer1.0-plugins-bad", "appsink": "gstreamer1.0-plugins-base",
          "videoconvert": "gstreamer1.0-plugins-base", "videoscale": "gstreamer1.0-plugins-base",
          "videorate": "gstreamer1.0-plugins-base"}
#: what brings a family's frames into system memory, scaled (its own scaler)
SCALERS = {"nvdec": "nvvidconv", "vaapi": "vapostproc"}


class NoDecoder(Exception):
    """No element of the asked family decodes the codec on this box."""


@dataclass
class Choice:
    family: str
    element: str
    codec: str

    def text(self) -> str:
        return "decoding {} on {} ({})".format(codec_text(self.codec), self.element, self.family)


def codec_text(codec: str) -> str:
    """A codec's name as people write it: "h265" -> "H.265"."""
    return codec.upper().replace("H26", "H.26")


def choose(codec: str, decode: str, exists: Callable[[str], bool]) -> Choice:
    """The decoder for ``codec`` that ``decode`` asks for, among elements that
    ``exists``; :class:`NoDecoder` says what is missing."""
    if codec not in CODECS:
        raise ValueError("codec must be one of {}, not {!r}".format(", ".join(CODECS), codec))
    families: Sequence[str] = FAMILIES if decode == "auto" else (decode,)
    if decode != "auto" and decode not in FAMILIES:
        raise ValueError("decode must be one of {}, not {!r}".format(
            ", ".join(DECODE_CHOICES), decode))
    tried: List[str] = []
    for family in families:
        for element in DECODERS[family][codec]:
            if exists(element):
                return Choice(family, element, codec)
            tried.append(element)
    raise NoDecoder("no GStreamer element decodes {} with decode = {!r} here (tried {}); "
                    "install its plugin (software: gstreamer1.0-libav) or set decode = "
                    "\"ffmpeg\"".format(codec_text(codec), decode, ", ".join(tried)))


def bindings_missing() -> str:
    """Why GStreamer's Python bindings cannot be used here ("": they can)."""
    try:
        gst_modules()
    except PlayerError as exc:
        return str(exc)
    return ""


def unusable(codec: str, exists: Callable[[str], bool],
             bindings: Callable[[], str] = bindings_missing) -> str:
    """Why GStreamer cannot decode a ``codec`` network stream on this box
    (``""``: it can), for ``decode = "auto"`` to fall back to FFmpeg."""
    if codec not in CODECS:
        return "{} is not a codec the GStreamer path decodes ({})".format(
            "the camera named no codec" if not codec else codec_text(codec),
            ", ".join(codec_text(c) for c in CODECS))
    missing = bindings()
    if missing:
        return missing
    for element, package in NEEDED.items():
        if element.startswith(("rtph", "h26")) and codec not in element:
            continue
        if not exists(element):
            return "no GStreamer element {} (Debian: apt install {})".format(element, package)
    try:
        choose(codec, "auto", exists)
    except NoDecoder as exc:
        return str(exc)
    return ""


def file_codec(path: str, timeout_s: float = 5.0) -> str:
    """The codec of a file's first video stream ("h264", "h265", another
    name, or "" when GStreamer cannot tell), by GStreamer's discoverer."""
    gst_modules()
    try:
        import gi

        gi.require_version("GstPbutils", "1.0")
        from gi.repository import GLib, GstPbutils
    except (ImportError, ValueError):
        return ""
    try:
        info = GstPbutils.Discoverer.new(int(timeout_s * 1e9)).discover_uri(
            "file://" + path if path.startswith("/") else path)
    except GLib.Error:
        return ""
    for stream in info.get_video_streams():
        caps = stream.get_caps()
        if caps is not None and caps.get_size():
            name = caps.get_structure(0).get_name()  # e.g. video/x-h264
            return {"video/x-h264": "h264", "video/x-h265": "h265"}.get(
                name, name.split("/")[-1])
    return ""


def describe_pipeline(url: str, choice: Choice, width: int = 0, height: int = 0,
                      fps: float = 0.0, transport: str = "tcp", latency_ms: int = 200,
                      pixels: str = "BGR", exists: Optional[Callable[[str], bool]] = None,
                      timeout_s: float = 2.0) -> str:
    """The ``gst-launch`` description :class:`Player` runs.

    ``width``/``height``/``fps`` of 0 keep the stream's own; ``pixels``:
    ``BGR``, ``GRAY8`` or ``I420`` (the decoders' own format: no conversion). A family with a
    scaler of its own (``nvvidconv``, ``vapostproc``) scales there, on the
    accelerator, if ``exists`` says it is here; the rest with ``videoscale``.
    ``timeout_s``: a stream that stopped sending fails after this long (a
    camera that lost power sends no FIN): ``rtspsrc``'s TCP timeout and, if
    ``exists`` says it is here, a ``watchdog`` element (gst-plugins-bad)."""
    codec = choice.codec
    if url.startswith(("rtsp://", "rtsps://")):
        protocols = {"tcp": "tcp", "udp": "udp", "auto": "tcp+udp"}[transport]
        head = ("rtspsrc location={} protocols={} latency={} timeout={} tcp-timeout={} "
                "drop-on-latency=true ! rtp{}depay").format(
                    _quote(url), protocols, int(latency_ms), int(timeout_s * 1e6),
                    int(timeout_s * 1e6), codec)
    else:
        path = url[len("file://"):] if url.startswith("file://") else url
        head = "filesrc location={} ! parsebin".format(_quote(path))
    parts = [head]
    if url.startswith(("rtsp://", "rtsps://")) and (exists is None or exists("watchdog")):
        # a camera that stops sending without closing the connection (power
        # lost): an error after timeout_s without data, so the read fails
        parts.append("watchdog timeout={}".format(int(timeout_s * 1000)))
    parts += ["{}parse".format(codec), choice.element]
    size = ""
    if width and height:
        size = ",width={},height={}".format(int(width), int(height))
    scaler = SCALERS.get(choice.family)
    if scaler and (exists is None or exists(scaler)):
        # out of NVMM / VA memory (videoconvert cannot read it), scaled if asked
        parts += [scaler, "video/x-raw" + size]
    # thin, then scale, then convert: each step works on as little as it can
    rate = ""
    if fps:
        parts.append("videorate drop-only=true")
        rate = ",framerate={}".format(_fraction(fps))
    if size or rate:
        parts += ["videoscale", "video/x-raw{}{}".format(size, rate)]
    parts.append("videoconvert")
    caps = "video/x-raw,format={}".format(pixels)
    parts += [caps, "appsink name={} drop=false max-buffers=4 sync=false".format(SINK)]
    return " ! ".join(parts)


def _quote(text: str) -> str:
    return '"{}"'.format(text.replace("\\", "\\\\").replace('"', '\\"'))


def _fraction(fps: float) -> str:
    if float(fps).is_integer():
        return "{}/1".format(int(fps))
    return "{}/1000".format(int(round(fps * 1000)))


_KNOWN: Dict[str, bool] = {}
#: GStreamer is imported and initialised by one thread at a time
_GST_LOCK = threading.Lock()


def element_exists(name: str) -> bool:
    """Whether GStreamer's registry on this box has element ``name`` (asked
    once per name: GStreamer's Python bindings if there, else gst-inspect)."""
    if name not in _KNOWN:
        _KNOWN[name] = _ask_registry(name)
    return _KNOWN[name]


def _ask_registry(name: str) -> bool:
    try:
        return _gst().ElementFactory.find(name) is not None
    except (ImportError, ValueError):
        pass
    inspect = shutil.which("gst-inspect-1.0")
    if inspect is None:
        return False
    try:
        return subprocess.run([inspect, "--exists", name], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class PlayerError(Exception):
    """The pipeline would not start or stopped: the reason GStreamer gave."""


class StreamEnded(PlayerError):
    """End of stream: the end of a file; for a camera, a failure."""


def _gst() -> Any:
    """Gst, imported and initialised by one thread at a time: the passthrough
    recorder's thread and the decoder's own may come here at once, and a
    thread that saw the other's import half done found no decoder element
    (one test run in four). ImportError/ValueError without the bindings."""
    import gi

    gi.require_version("Gst", "1.0")
    with _GST_LOCK:
        from gi.repository import Gst

        if not Gst.is_initialized():
            Gst.init(None)
    return Gst


def gst_modules() -> Any:
    """Gst, GstApp and GstVideo, initialised. GstApp must be loaded before
    the first appsink is made, or PyGObject wraps it without its methods."""
    try:
        import gi

        gi.require_version("GstVideo", "1.0")
        gi.require_version("GstApp", "1.0")
        Gst = _gst()
        from gi.repository import GstApp, GstVideo
    except (ImportError, ValueError):
        raise PlayerError("GStreamer's Python bindings are missing (Debian: apt install "
                          "python3-gi gir1.2-gst-plugins-base-1.0)") from None
    return Gst, GstApp, GstVideo
