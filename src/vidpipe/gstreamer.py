"""GStreamer decode pipelines for network cameras, built from what the box has.

A camera's ``decode`` key says which decoder family to use:

* ``nvdec``: a Jetson's NVDEC (``nvv4l2decoder``, then ``nvvidconv`` to bring
  the frame out of NVMM memory, scaling on the way);
* ``v4l2m2m``: a V4L2 memory-to-memory decoder (Raspberry Pi 4's
  ``v4l2h264dec``; a Pi 5 has no H.264 decoder, only H.265: ``v4l2slh265dec``);
* ``vaapi``: an Intel/AMD GPU through VA-API (``vah264dec``, the newer
  plugin, else ``vaapih264dec``);
* ``software``: libav's ``avdec_h264`` / ``avdec_h265`` on the CPU;
* ``auto``: the first family above whose element for the codec exists here;
* ``ffmpeg``: not GStreamer at all -- OpenCV's FFmpeg backend (the sources
  module handles that; this module is not asked).

:func:`choose` picks the element (from the names GStreamer's registry has,
given as a predicate so the choice is testable for every kind of box),
:func:`describe_pipeline` writes the ``gst-launch`` description OpenCV's
``CAP_GSTREAMER`` opens: ``rtspsrc`` (over ``rtsp_transport``) or
``filesrc`` + demuxer, depay, parse, decoder, then scale and rate to the
camera's ``width``/``height``/``fps`` *before* frames are handed out, and
``appsink`` in BGR (or GRAY8).
"""

import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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
        return "decoding {} on {} ({})".format(self.codec.upper().replace("H", "H.", 1),
                                               self.element, self.family)


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
                    "\"ffmpeg\"".format(codec.upper(), decode, ", ".join(tried)))


def describe_pipeline(url: str, choice: Choice, width: int = 0, height: int = 0,
                      fps: float = 0.0, transport: str = "tcp", latency_ms: int = 200,
                      gray: bool = False, exists: Optional[Callable[[str], bool]] = None,
                      timeout_s: float = 2.0) -> str:
    """The ``gst-launch`` description for OpenCV's ``CAP_GSTREAMER``.

    ``width``/``height``/``fps`` of 0 keep the stream's own. A family with a
    scaler of its own (``nvvidconv``, ``vapostproc``) scales there, on the
    accelerator, if ``exists`` says it is here; the rest with ``videoscale``.
    ``timeout_s``: ``rtspsrc`` gives up on a stream that stopped sending
    after this long (a camera that lost power sends no FIN)."""
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
    parts = [head, "{}parse".format(codec), choice.element]
    size = ""
    if width and height:
        size = ",width={},height={}".format(int(width), int(height))
    scaler = SCALERS.get(choice.family)
    if scaler and size and (exists is None or exists(scaler)):
        parts += [scaler, "video/x-raw" + size]  # out of NVMM / VA memory, scaled
    parts += ["videoconvert", "videoscale"]
    caps = "video/x-raw,format={}{}".format("GRAY8" if gray else "BGR", size)
    if fps:
        parts.append("videorate drop-only=true")
        caps += ",framerate={}".format(_fraction(fps))
    # no name=: OpenCV finds the sink by its default name ("appsink0")
    parts += [caps, "appsink drop=false max-buffers=4 sync=false"]
    return " ! ".join(parts)


def _quote(text: str) -> str:
    return '"{}"'.format(text.replace("\\", "\\\\").replace('"', '\\"'))


def _fraction(fps: float) -> str:
    if float(fps).is_integer():
        return "{}/1".format(int(fps))
    return "{}/1000".format(int(round(fps * 1000)))


_KNOWN: Dict[str, bool] = {}


def element_exists(name: str) -> bool:
    """Whether GStreamer's registry on this box has element ``name`` (asked
    once per name: GStreamer's Python bindings if there, else gst-inspect)."""
    if name not in _KNOWN:
        _KNOWN[name] = _ask_registry(name)
    return _KNOWN[name]


def _ask_registry(name: str) -> bool:
    try:
        import gi

        gi.require_version("Gst", "1.0")
        from gi.repository import Gst

        if not Gst.is_initialized():
            Gst.init(None)
        return Gst.ElementFactory.find(name) is not None
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
