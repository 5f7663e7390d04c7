"""Payload encodings: raw pixels, LZ4, JPEG, and references into shared-memory rings.

Same-host links carry a reference (``shm``); links to other hosts carry the
pixels, raw or compressed (the seed notes 4K@30 raw needs 6 Gbit/s). Decoding
never trusts the sender: the size the header promises bounds decompression,
and a decoded image must have exactly the promised shape.
"""

import struct
from typing import Any, Optional, Tuple

import numpy as np

from vidpipe.link import wire

_SHM_REF = struct.Struct("<I")
ENCODING_CODES = {"raw": wire.RAW, "lz4": wire.LZ4, "jpeg": wire.JPEG}


def lz4_block() -> Any:
    try:
        import lz4.block
    except ImportError:
        raise ImportError("encoding 'lz4' needs the lz4 module (Debian: python3-lz4)") from None
    return lz4.block


def shm_ref(name: str, slot: int) -> bytes:
    return _SHM_REF.pack(slot) + name.encode("ascii")


def _parse_ref(payload: memoryview, layout: struct.Struct) -> Tuple[Tuple[int, ...], str]:
    """The fixed fields and the ring name of a shared-memory reference."""
    data = bytes(payload)
    if len(data) <= layout.size:
        raise wire.WireError("bad_ref", "shared-memory reference too short")
    try:
        name = data[layout.size:].decode("ascii")
    except UnicodeDecodeError:
        raise wire.WireError("bad_ref", "ring name is not ASCII") from None
    return layout.unpack_from(data), name


def parse_shm_ref(payload: memoryview) -> Tuple[str, int]:
    (slot,), name = _parse_ref(payload, _SHM_REF)
    return name, slot


_RESULT_REF = struct.Struct("<IQ")


def result_ref(name: str, slot: int, stamp: int) -> bytes:
    """A result in a handler's :class:`~vidpipe.link.ring.ResultRing`."""
    return _RESULT_REF.pack(slot, stamp) + name.encode("ascii")


def parse_result_ref(payload: memoryview) -> Tuple[str, int, int]:
    (slot, stamp), name = _parse_ref(payload, _RESULT_REF)
    return name, slot, stamp


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers


def jpeg_size(data: Any) -> Optional[Tuple[int, int]]:
    """(width, height) from a JPEG's frame header(s), read without decoding;
    ``None`` when the markers before the first scan are not a well-formed
    JPEG or two frame headers disagree (a decoder could take either)."""
    buf = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    if len(buf) < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return None
    pos, size = 2, None
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            pos += 2
            continue
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        if length < 2 or pos + 2 + length > len(buf):
            return None
        if marker in _SOF:
            if length < 8:
                return None
            height = (buf[pos + 5] << 8) | buf[pos + 6]
            width = (buf[pos + 7] << 8) | buf[pos + 8]
            if size is not None and size != (width, height):
                return None
            size = (width, height)
        elif marker == 0xDA:  # start of scan: the frame header came before
            return size
        elif marker == 0xD9:
            return None
        pos += 2 + length
    return None


def encode(image: np.ndarray, encoding: int, jpeg_quality: int = 90) -> bytes:
    """The payload of ``image`` in ``encoding`` (LZ4 or JPEG)."""
    image = wire.contiguous(image)
    if encoding == wire.LZ4:
        return lz4_block().compress(memoryview(image).cast("B"), store_size=False)
    if encoding == wire.JPEG:
        import cv2

        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise ValueError("JPEG encoding failed for a {} {} image".format(image.shape,
                                                                            image.dtype))
        return data.tobytes()
    raise ValueError("cannot encode to {}".format(wire.ENCODINGS[encoding]))


def decode_inline(msg: wire.Message) -> np.ndarray:
    """The pixels of a message that carries them (raw, LZ4 or JPEG), checked
    against the header's promise; :class:`wire.WireError` names what is wrong."""
    h = msg.header
    if h.encoding == wire.RAW:
        return msg.image()
    payload = msg.payload
    if payload is None:
        raise wire.WireError("no_payload")
    dtype = wire.DTYPES[h.dtype]
    expected = h.width * h.height * h.channels * wire.ITEMSIZES[h.dtype]
    if h.encoding == wire.LZ4:
        try:
            raw = lz4_block().decompress(payload, uncompressed_size=expected)
        except ImportError:
            raise wire.WireError("codec_unavailable", "python3-lz4 is not installed") \
                from None
        except Exception as exc:  # lz4 raises LZ4BlockError on bad data
            raise wire.WireError("bad_payload", "LZ4: {}".format(exc)) from None
        if len(raw) != expected:
            raise wire.WireError("bad_payload", "LZ4 gave {} bytes, header says {}".format(
                len(raw), expected))
        return np.frombuffer(raw, dtype=dtype).reshape(h.shape)
    if h.encoding == wire.JPEG:
        import cv2

        if dtype != "uint8" or h.channels not in (1, 3):
            raise wire.WireError("bad_payload", "JPEG carries 8-bit gray or BGR only")
        size = jpeg_size(payload)  # before cv2 allocates what the JPEG claims
        if size != (h.width, h.height):
            raise wire.WireError("bad_payload", "JPEG is {}, header says {}x{}".format(
                "{}x{}".format(*size) if size else "unreadable", h.width, h.height))
        flags = cv2.IMREAD_GRAYSCALE if h.channels == 1 else cv2.IMREAD_COLOR
        try:
            image = cv2.imdecode(np.frombuffer(payload, np.uint8), flags)
        except cv2.error as exc:
            raise wire.WireError("bad_payload", "JPEG: {}".format(
                str(exc).strip().splitlines()[-1][:120])) from None
        if image is None or image.shape != h.shape or str(image.dtype) != dtype:
            raise wire.WireError("bad_payload", "JPEG does not decode to {}".format(h.shape))
        return image
    raise wire.WireError("bad_encoding", "encoding {}".format(h.encoding))
