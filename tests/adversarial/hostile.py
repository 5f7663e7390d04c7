"""Hostile messages for every socket a role listens on, each with what the
role must make of it: counted as malformed (by reason), or taken but harmless.

Seeded, so a run is repeatable; every kind, encoding, part count and name
trick the audit of issue 14 named is in here."""

import json
import random
import struct
import time
from typing import List, Tuple

import numpy as np

from vidpipe.link import wire

Message = List[bytes]

NAMES_BAD = [b"../../etc", b"cam0\n", b"a/b", b"x" * 32, b"\xff\xfe", b"cam\0x", b" cam",
             b"cam0;rm", b"..", b"\xc3\xa9t\xc3\xa9"]


#: detection labels that once stopped a broker output for good (issue 24)
LABELS_BAD = ["\U0001F600" * 64, "bad\ud800label", "#", "a/+/b", "x" * 300, "line\nbreak",
              "", None, {"nested": 1}, 7, "\x1b[2J", "a.b.c" * 60]


def header(kind: int, camera: bytes = b"evil", width: int = 0, height: int = 0,
           channels: int = 0, dtype: int = 0, encoding: int = wire.RAW, payload_len: int = 0,
           flags: int = 0, seq: int = 0, magic: bytes = wire.MAGIC,
           version: int = wire.WIRE_VERSION, capture_ns: int = 0) -> bytes:
    return wire.HEADER.pack(magic, version, kind, flags, 7, seq, capture_ns, width, height,
                            channels, dtype, encoding, payload_len, camera)


def jpeg_claiming(width: int, height: int, real: bytes) -> bytes:
    """A real JPEG whose frame header is rewritten to claim ``width`` x ``height``."""
    data = bytearray(real)
    pos = 2
    while pos < len(data):
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker in (0xC0, 0xC2):
            struct.pack_into(">HH", data, pos + 5, height, width)
            break
        pos += 2 + length
    return bytes(data)


def small_jpeg() -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    assert ok
    return data.tobytes()


def malformed_common(rng: random.Random, kind: int, big: bool = True) -> Tuple[Message, str]:
    """A message of ``kind`` broken in one of the ways every role must refuse
    (``big``: including a metadata part over 64 KiB)."""
    choice = rng.randrange(9 if big else 7)
    good_meta = json.dumps({"reason": "x", "handler": "1", "window": 1}).encode()
    if choice == 0:
        return [header(kind, magic=b"XXXX"), good_meta], "bad_magic"
    if choice == 1:
        return [header(kind, version=rng.choice([0, 2, 255])), good_meta], "bad_version"
    if choice == 2:
        return [header(kind)[:rng.randrange(0, wire.HEADER_SIZE)], good_meta], "bad_header"
    if choice == 3:
        return [header(kind, camera=rng.choice(NAMES_BAD)), good_meta], "bad_camera"
    if choice == 4:  # many small parts: fine one by one, not as a message
        return [header(kind)] + [b"p" * 100] * rng.choice([4, 50, 2000]), "bad_parts"
    if choice == 5:
        return [header(200), good_meta], "bad_kind"
    tail = [b""] if kind == wire.RESULT else []  # a result without an image
    if choice == 6 and kind != wire.FRAME:
        return [header(kind), rng.choice([b"{", b"[1]", b"\xff", b"null"])] + tail, "bad_meta"
    if choice == 7 and kind != wire.FRAME:
        return [header(kind), b"{" + b'"a":1,' * 12000 + b'"b":1}'] + tail, "oversized"
    return [header(kind)], "bad_parts"


def to_collector(rng: random.Random, jpeg: bytes) -> Tuple[Message, str]:
    """For the collector's results socket. ``reason`` is the malformed counter
    it must bump, or ``image:REASON`` (result kept, image dropped), or ``ok``."""
    choice = rng.randrange(6)
    if choice == 0:  # a JPEG/LZ4 result: passes the wire, the collector does not read it
        enc = rng.choice([wire.JPEG, wire.LZ4])
        return [header(wire.RESULT, b"evil", 64, 48, 3, 1, enc, len(jpeg), wire.FLAG_IMAGE,
                       seq=rng.randrange(10 ** 6)), b"{}", jpeg], "image:bad_encoding"
    if choice == 1:  # a valid int32 image (a plugin could send it): outputs must cope;
        # what it found carries labels that once stopped the broker outputs
        img = np.arange(12 * 16 * 3, dtype=np.int32).reshape(12, 16, 3)
        meta = {"detections": [{"label": rng.choice(LABELS_BAD), "box": [1, 1, 4, 4],
                                "confidence": rng.choice([0.9, "x", None, 1e308])}
                               for _ in range(rng.randrange(1, 4))]}
        return [header(wire.RESULT, b"evil", 16, 12, 3, wire.DTYPES.index("int32"), wire.RAW,
                       img.nbytes, wire.FLAG_IMAGE, seq=rng.randrange(10 ** 6)),
                json.dumps(meta).encode(), img.tobytes()], "ok"
    if choice == 2:  # a DROP whose reason would make a new metrics label each time
        reason = "x{}\n{{evil=\"1\"}}".format(rng.randrange(10 ** 9))
        return [header(wire.DROP, b"evil", seq=rng.randrange(10 ** 6)),
                json.dumps({"reason": reason}).encode()], "ok"
    if choice == 3:  # a result that claims more pixels than the limit allows
        return [header(wire.RESULT, b"evil", 16000, 16000, 4, 5, wire.RAW, 64, wire.FLAG_IMAGE),
                b"{}", b"\0" * 64], "oversized"
    return malformed_common(rng, rng.choice([wire.RESULT, wire.DROP, wire.EOS]))


def to_handler(rng: random.Random, jpeg: bytes) -> Tuple[Message, str]:
    """For a handler, from a decoder it connected to: what it counts. (Frames
    carry the current time: an old one is dropped as stale before its pixels
    are looked at.)"""
    choice = rng.randrange(6)
    now = time.time_ns()
    if choice == 0:  # a JPEG that claims 30000x30000 (a decompression bomb)
        bomb = jpeg_claiming(30000, 30000, jpeg)
        return [header(wire.FRAME, b"evil", 64, 48, 3, 1, wire.JPEG, len(bomb),
                       capture_ns=now), bomb], "bad_payload"
    if choice == 1:  # a JPEG cut short: libjpeg errors
        cut = jpeg[:len(jpeg) // 3]
        return [header(wire.FRAME, b"evil", 64, 48, 3, 1, wire.JPEG, len(cut),
                       capture_ns=now), cut], "bad_payload"
    if choice == 2:  # a shared-memory reference to a ring that is not there / not a name
        ref = struct.pack("<I", rng.randrange(8)) + rng.choice(
            [b"../../etc/passwd", b"cam0-00ff.ring", b"evil-1.ring", b"\xff"])
        return [header(wire.FRAME, b"evil", 64, 48, 3, 1, wire.SHM, len(ref),
                       capture_ns=now), ref], "ref"
    if choice == 3:  # LZ4 that is not
        junk = bytes(rng.randrange(256) for _ in range(64))
        return [header(wire.FRAME, b"evil", 64, 48, 3, 1, wire.LZ4, len(junk),
                       capture_ns=now), junk], "bad_payload"
    return malformed_common(rng, wire.FRAME)


def to_decoder(rng: random.Random) -> Tuple[Message, str]:
    """For a decoder's frame socket, as a handler would talk to it."""
    choice = rng.randrange(3)
    if choice == 0:
        window = rng.choice([0, -1, 65, 10 ** 9, "1", None, True])
        return [header(wire.CREDIT, b""), json.dumps({"handler": "evil\nx",
                                                      "window": window}).encode()], \
            "bad_credit"
    # (a part over 64 KiB is refused by libzmq itself: the peer is cut off)
    return malformed_common(rng, rng.choice([wire.CREDIT, wire.BYE]), big=False)
