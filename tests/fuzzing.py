"""Hypothesis strategies for vidpipe wire messages, shared by the in-process
fuzz tests (tests/unit/test_fuzz_wire.py) and the live-socket ones
(tests/integration/test_fuzz_live.py): valid messages as the roles send them,
the same with one lie, and noise."""

import json
from typing import Any, List

import numpy as np
from hypothesis import strategies as st

from vidpipe.link import wire

u8 = st.integers(0, 255)
u16 = st.integers(0, 2 ** 16 - 1)
u32 = st.integers(0, 2 ** 32 - 1)
u64 = st.integers(0, 2 ** 64 - 1)
small = st.integers(0, 64)


@st.composite
def headers(draw: Any) -> bytes:
    """A header with every field drawn, mostly near the valid values."""
    magic = draw(st.sampled_from([wire.MAGIC, wire.MAGIC, wire.MAGIC, b"XXXX"]))
    version = draw(st.sampled_from([wire.WIRE_VERSION] * 4 + [0, 2, 255]))
    kind = draw(st.sampled_from(sorted(wire.KIND_NAMES)) | u8)
    flags = draw(st.sampled_from([0, wire.FLAG_IMAGE]) | u16)
    width, height = draw(small | u32), draw(small | u32)
    channels = draw(st.sampled_from([1, 3, 4]) | u16)
    dtype = draw(st.integers(0, len(wire.DTYPES)) | u8)
    encoding = draw(st.integers(0, len(wire.ENCODINGS)) | u8)
    payload_len = draw(st.integers(0, 4096) | u64)
    camera = draw(st.binary(max_size=32))
    return wire.HEADER.pack(magic, version, kind, flags, draw(u64), draw(u64),
                            draw(st.integers(-2 ** 63, 2 ** 63 - 1)), width, height, channels,
                            dtype, encoding, payload_len, camera)


def json_objects() -> Any:
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                               lambda inner: st.lists(inner, max_size=4)
                               | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                               max_leaves=10)
    return st.dictionaries(st.text(max_size=8), json_values, max_size=4)


def metas() -> Any:
    return json_objects().map(lambda d: json.dumps(d).encode()) | st.binary(max_size=64)


@st.composite
def valid(draw: Any) -> List[bytes]:
    """A message as vidpipe's own roles send it."""
    camera = draw(st.sampled_from(["cam0", "cam1", "x" * 32, "Kamera\u00e9"]))
    stream, seq, ts = draw(st.integers(0, 3)), draw(st.integers(0, 100)), draw(u32)
    kind = draw(st.sampled_from(["frame", "result", "drop", "eos", "credit", "bye"]))
    if kind in ("frame", "result"):
        h, w = draw(st.integers(1, 16)), draw(st.integers(1, 16))
        c = draw(st.sampled_from([1, 3, 4]))
        dtype = draw(st.sampled_from(["uint8", "uint16", "float32"]))
        image = np.zeros((h, w, c) if c > 1 else (h, w), dtype)
        if kind == "frame":
            parts = wire.frame_parts(image, camera, stream, seq, ts)
        else:
            meta = draw(json_objects())
            parts = wire.result_parts(image if draw(st.booleans()) else None, meta,
                                      camera, stream, seq, ts)
    else:
        code = {"drop": wire.DROP, "eos": wire.EOS, "credit": wire.CREDIT,
                "bye": wire.BYE}[kind]
        meta = {"reason": draw(st.text(max_size=40))} if kind == "drop" else \
            {"read": draw(st.integers(-5, 10 ** 6))} if kind == "eos" else \
            {"handler": draw(st.text(max_size=70)), "window": draw(st.integers(-2, 100))}
        parts = wire.control_parts(code, meta, camera, stream, seq, ts)
    return [bytes(p) if not isinstance(p, np.ndarray) else p.tobytes() for p in parts]


@st.composite
def mutated(draw: Any) -> List[bytes]:
    """A valid message with one lie: a header field, a part cut, added or dropped."""
    parts = draw(valid())
    fields = list(wire.HEADER.unpack(parts[0]))
    what = draw(st.integers(0, 4))
    if what == 0:  # one header field replaced
        index = draw(st.integers(1, len(fields) - 1))
        if index == len(fields) - 1:
            fields[index] = draw(st.binary(max_size=32))
        elif index in (6,):
            fields[index] = draw(st.integers(-2 ** 63, 2 ** 63 - 1))
        else:
            limit = {1: 255, 2: 255, 3: 2 ** 16 - 1, 9: 2 ** 16 - 1, 10: 255,
                     11: 255}.get(index, 2 ** 32 - 1 if index in (7, 8) else 2 ** 64 - 1)
            fields[index] = draw(st.integers(0, limit))
        parts[0] = wire.HEADER.pack(*fields)
    elif what == 1 and len(parts) > 1:  # the last part cut or grown
        last = parts[-1]
        parts[-1] = last[:draw(st.integers(0, len(last)))] + draw(st.binary(max_size=8))
    elif what == 2:
        parts.append(draw(st.binary(max_size=16)))
    elif what == 3 and len(parts) > 1:
        del parts[draw(st.integers(1, len(parts) - 1))]
    else:
        parts[0] = parts[0][:draw(st.integers(0, wire.HEADER_SIZE))]
    return parts


@st.composite
def noise(draw: Any) -> List[bytes]:
    parts = [draw(headers() | st.binary(max_size=100))]
    for _ in range(draw(st.integers(0, 3))):
        parts.append(draw(metas() | st.binary(max_size=4096)))
    return parts


def messages() -> Any:
    return st.one_of(valid(), mutated(), mutated(), noise())
