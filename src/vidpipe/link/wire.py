"""The vidpipe wire format: multipart messages with a fixed binary header.

Every message starts with an 84-byte little-endian header::

    magic  4s   b"VPIP"
    version B   WIRE_VERSION
    kind   B    FRAME, RESULT, DROP, EOS, CREDIT, BYE
    flags  H    FLAG_* bits
    stream Q    random id of one decoder run (a restarted decoder is a new stream)
    seq    Q    frame sequence number within the stream (NO_SEQ where none)
    capture_ns q wall-clock capture time, ns since the epoch
    width  I, height I, channels H
    dtype  B    DTYPES index
    encoding B  ENCODINGS index
    payload_len Q  length of the payload part
    camera 32s  camera name, NUL padded: empty (control messages) or a name
                that passes :func:`vidpipe.names.valid` (it becomes a path)

followed, by kind, by a JSON metadata part and/or the payload part (sent with
``copy=False``). Nothing received is deserialised into objects or evaluated: a malformed message
raises :class:`WireError` carrying a short ``reason`` that callers count.
This module imports neither ZeroMQ nor OpenCV.
"""

import json
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from vidpipe import names

MAGIC = b"VPIP"
WIRE_VERSION = 1
HEADER = struct.Struct("<4sBBHQQqIIHBBQ32s")
HEADER_SIZE = HEADER.size
KIND_OFFSET, ENCODING_OFFSET = 5, 43  # where a receiver can peek before decoding
NO_SEQ = 2 ** 64 - 1
MAX_META_BYTES = 64 * 1024
MAX_DIMENSION = 16384
MAX_CHANNELS = 4

# kinds
FRAME = 1   # decoder -> handler: [header, payload]
RESULT = 2  # handler -> collector: [header, meta, payload]
DROP = 3    # decoder/handler -> collector: [header, meta{"reason"}]
EOS = 4     # decoder -> collector: [header, meta{totals}]; seq = frames read
CREDIT = 5  # handler -> decoder: [header, meta{"handler","window","serving"}]; seq = done
BYE = 6     # handler -> decoder: [header, meta{"handler"}]; handler is leaving
KIND_NAMES = {FRAME: "frame", RESULT: "result", DROP: "drop", EOS: "eos", CREDIT: "credit",
              BYE: "bye"}
# how many parts each kind has, and which of them are meta / payload
_LAYOUT = {FRAME: (2, None, 1), RESULT: (3, 1, 2), DROP: (2, 1, None), EOS: (2, 1, None),
           CREDIT: (2, 1, None), BYE: (2, 1, None)}

FLAG_IMAGE = 0x0001  # RESULT carries an image payload
#: the image is planar YUV 4:2:0 (I420) as one uint8 array of height*3/2 rows
#: of width: the Y plane, then U and V at half width and height (OpenCV's
#: COLOR_YUV2BGR_I420 layout); ``height`` is the array's, the picture's is 2/3
FLAG_I420 = 0x0002

DTYPES = ("", "uint8", "uint16", "int16", "float32", "float64", "int32")
ITEMSIZES = (0, 1, 2, 2, 4, 8, 4)
ENCODINGS = ("raw", "jpeg", "lz4", "shm")
RAW, JPEG, LZ4, SHM = 0, 1, 2, 3
MAX_SHM_REF = 128  # a shared-memory reference: slot number and ring file name

Buffer = Union[bytes, memoryview, np.ndarray, Any]


class WireError(ValueError):
    """A message that is not a valid vidpipe message; ``reason`` is a counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__("{}{}".format(reason, ": " + detail if detail else ""))


class Header(NamedTuple):
    """A decoded header (a tuple: cheap to make on every frame; ``_replace`` to
    change a field)."""

    kind: int
    camera: str = ""
    stream: int = 0
    seq: int = NO_SEQ
    capture_ns: int = 0
    width: int = 0
    height: int = 0
    channels: int = 0
    dtype: int = 0
    encoding: int = RAW
    payload_len: int = 0
    flags: int = 0
    version: int = WIRE_VERSION

    def pack(self) -> bytes:
        name = self.camera.encode("utf-8")
        if len(name) > 32:
            raise WireError("bad_camera", "camera name longer than 32 bytes")
        return HEADER.pack(MAGIC, self.version, self.kind, self.flags, self.stream, self.seq,
                           self.capture_ns, self.width, self.height, self.channels, self.dtype,
                           self.encoding, self.payload_len, name)

    @property
    def shape(self) -> tuple:
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)


@dataclass
class Message:
    header: Header
    meta: Dict[str, Any] = field(default_factory=dict)
    payload: Optional[memoryview] = None

    def image(self) -> np.ndarray:
        """The payload as a read-only array view (no copy); raw encoding only."""
        if self.payload is None:
            raise WireError("no_payload")
        h = self.header
        if h.encoding != RAW:
            raise WireError("bad_encoding", "image() needs raw pixels; decode first")
        return np.frombuffer(self.payload, dtype=DTYPES[h.dtype]).reshape(h.shape)


def _buffer(part: Any) -> memoryview:
    """A memoryview on a received part (bytes or zmq.Frame)."""
    if isinstance(part, (bytes, bytearray, memoryview)):
        return memoryview(part)
    buf = getattr(part, "buffer", None)
    if buf is None:
        raise WireError("bad_part", "unsupported part type {}".format(type(part).__name__))
    return buf


_NAMES: Dict[bytes, str] = {}  # camera names as sent -> decoded


def parse_header(raw: Any) -> Header:
    buf = raw if isinstance(raw, bytes) else _buffer(raw)
    if len(buf) != HEADER_SIZE:
        raise WireError("bad_header", "header is {} bytes, expected {}".format(len(buf),
                                                                           HEADER_SIZE))
    (magic, version, kind, flags, stream, seq, capture_ns, width, height, channels, dtype,
     encoding, payload_len, camera) = HEADER.unpack(buf)
    if magic != MAGIC:
        raise WireError("bad_magic")
    if version != WIRE_VERSION:
        raise WireError("bad_version", "version {} (this build speaks {})".format(
            version, WIRE_VERSION))
    if kind not in _LAYOUT:
        raise WireError("bad_kind", "kind {}".format(kind))
    name = _NAMES.get(camera)
    if name is None:
        name = _camera_name(camera)
        if len(_NAMES) >= 4096:  # hostile senders cannot grow it without bound
            _NAMES.clear()
        _NAMES[camera] = name
    return Header(kind, name, stream, seq, capture_ns, width, height, channels, dtype,
                  encoding, payload_len, flags, version)


def _camera_name(raw: bytes) -> str:
    """The header's camera field as a name: NUL padding only at the end, and
    the camera-name rule (it names files and units downstream)."""
    text = raw.rstrip(b"\0")
    if not text:
        return ""
    try:
        name = text.decode("ascii")
    except UnicodeDecodeError:
        raise WireError("bad_camera", "camera name is not ASCII") from None
    if not names.valid(name):
        raise WireError("bad_camera", "camera name {!r} does not match {}".format(
            name[:40], names.NAME_RULE))
    return name


def _check_image(h: Header, payload: memoryview, max_bytes: int) -> None:
    (_kind, _camera, _stream, _seq, _capture, width, height, channels, dtype, encoding,
     payload_len, flags, _version) = h  # locals: this runs on every frame
    if payload_len != len(payload):
        raise WireError("bad_length", "header says {} bytes, payload has {}".format(
            payload_len, len(payload)))
    if payload_len > max_bytes:
        raise WireError("oversized", "{} bytes > limit {}".format(payload_len, max_bytes))
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION
            and 0 < channels <= MAX_CHANNELS):
        raise WireError("bad_shape", "{}x{}x{}".format(width, height, channels))
    if not 0 < dtype < len(DTYPES):
        raise WireError("bad_dtype", "dtype code {}".format(dtype))
    if flags & FLAG_I420 and (channels != 1 or dtype != 1 or height % 3 or width % 2):
        raise WireError("bad_shape", "I420 needs one uint8 channel, even width and "
                                     "height*3/2 rows; got {}x{}x{}".format(width, height,
                                                                           channels))
    if encoding >= len(ENCODINGS):
        raise WireError("bad_encoding", "encoding code {}".format(encoding))
    expected = width * height * channels * ITEMSIZES[dtype]
    if expected > max_bytes:
        raise WireError("oversized", "{} bytes of pixels > limit {}".format(expected, max_bytes))
    if encoding == RAW and expected != payload_len:
        raise WireError("bad_length", "{}x{}x{} {} needs {} bytes, got {}".format(
            width, height, channels, DTYPES[dtype], expected, payload_len))
    if encoding == SHM and payload_len > MAX_SHM_REF:
        raise WireError("bad_length", "shared-memory reference of {} bytes".format(
            payload_len))


def _parse_meta(raw: Any) -> Dict[str, Any]:
    buf = _buffer(raw)
    if len(buf) > MAX_META_BYTES:
        raise WireError("oversized", "metadata is {} bytes".format(len(buf)))
    try:
        meta = json.loads(bytes(buf).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WireError("bad_meta", "metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise WireError("bad_meta", "metadata is not a JSON object")
    return meta


def decode(parts: Sequence[Any], max_bytes: int = 256 * 1024 * 1024) -> Message:
    """Validate and decode a received multipart message.

    ``parts`` are bytes or ``zmq.Frame`` objects (received with ``copy=False``);
    the payload stays a view on the received buffer.
    """
    if not parts:
        raise WireError("empty")
    header = parse_header(parts[0])
    count, meta_at, payload_at = _LAYOUT[header.kind]
    if len(parts) != count:
        raise WireError("bad_parts", "{} has {} parts, expected {}".format(
            KIND_NAMES[header.kind], len(parts), count))
    meta = _parse_meta(parts[meta_at]) if meta_at is not None else {}
    payload = None
    if payload_at is not None:
        payload = _buffer(parts[payload_at])
        if header.kind == FRAME or header.flags & FLAG_IMAGE:
            _check_image(header, payload, max_bytes)
        elif len(payload) or header.payload_len:
            raise WireError("bad_length", "payload without FLAG_IMAGE")
    return Message(header=header, meta=meta, payload=payload)


def dtype_code(dtype: np.dtype) -> int:
    try:
        return DTYPES.index(np.dtype(dtype).name)
    except ValueError:
        raise WireError("bad_dtype", "unsupported dtype {}".format(dtype)) from None


def image_header(kind: int, image: np.ndarray, camera: str, stream: int, seq: int,
                 capture_ns: int, flags: int = 0, encoding: int = RAW,
                 payload_len: Optional[int] = None) -> Header:
    """A header describing ``image`` (its payload is the raw bytes unless encoded)."""
    if image.ndim == 2:
        height, width = image.shape
        channels = 1
    elif image.ndim == 3:
        height, width, channels = image.shape
    else:
        raise WireError("bad_shape", "images are 2-D or 3-D, got {}-D".format(image.ndim))
    return Header(kind=kind, camera=camera, stream=stream, seq=seq, capture_ns=capture_ns,
                  width=width, height=height, channels=channels, dtype=dtype_code(image.dtype),
                  encoding=encoding,
                  payload_len=image.nbytes if payload_len is None else payload_len,
                  flags=flags)


def contiguous(image: np.ndarray) -> np.ndarray:
    """``image`` itself when C-contiguous (zero-copy send), else a contiguous copy."""
    return image if image.flags["C_CONTIGUOUS"] else np.ascontiguousarray(image)


def frame_parts(image: np.ndarray, camera: str, stream: int, seq: int,
                capture_ns: int, encoding: int = RAW, payload: Optional[Buffer] = None,
                flags: int = 0) -> List[Buffer]:
    """A FRAME message: the raw pixels, or an encoded ``payload`` describing ``image``."""
    image = contiguous(image) if payload is None else image
    if payload is None:
        head = image_header(FRAME, image, camera, stream, seq, capture_ns, flags=flags)
        return [head.pack(), image]
    length = memoryview(payload).nbytes
    head = image_header(FRAME, image, camera, stream, seq, capture_ns, encoding=encoding,
                        payload_len=length, flags=flags)
    return [head.pack(), payload]


def meta_bytes(meta: Dict[str, Any]) -> bytes:
    data = json.dumps(meta, separators=(",", ":"), default=_json_default).encode("utf-8")
    if len(data) > MAX_META_BYTES:
        raise WireError("oversized", "metadata is {} bytes".format(len(data)))
    return data


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError("not JSON serialisable: {}".format(type(value).__name__))


def result_parts(image: Optional[np.ndarray], meta: Dict[str, Any], camera: str, stream: int,
                 seq: int, capture_ns: int, encoding: int = RAW,
                 payload: Optional[bytes] = None, flags: int = 0) -> List[Buffer]:
    """A RESULT message: metadata, and the image's raw pixels or an encoded
    ``payload`` describing it (a shared-memory reference); ``flags``: the
    image's (FLAG_I420)."""
    if image is None:
        head = Header(kind=RESULT, camera=camera, stream=stream, seq=seq, capture_ns=capture_ns)
        return [head.pack(), meta_bytes(meta), b""]
    flags |= FLAG_IMAGE
    if payload is not None:
        head = image_header(RESULT, image, camera, stream, seq, capture_ns, flags=flags,
                            encoding=encoding, payload_len=len(payload))
        return [head.pack(), meta_bytes(meta), payload]
    image = contiguous(image)
    head = image_header(RESULT, image, camera, stream, seq, capture_ns, flags=flags)
    return [head.pack(), meta_bytes(meta), image]


def control_parts(kind: int, meta: Dict[str, Any], camera: str = "", stream: int = 0,
                  seq: int = NO_SEQ, capture_ns: int = 0) -> List[bytes]:
    """DROP, EOS, CREDIT and BYE messages: a header and a JSON part."""
    head = Header(kind=kind, camera=camera, stream=stream, seq=seq, capture_ns=capture_ns)
    return [head.pack(), meta_bytes(meta)]
