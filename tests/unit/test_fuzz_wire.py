"""Property-based fuzzing of everything that reads bytes from the network.

Messages are generated from valid ones with fields lied about (lengths,
shapes, dtypes, encodings, versions, kinds, part counts), plus pure noise.
The properties: reading never raises anything but ``WireError`` (which every
role counts and drops), and whatever is accepted is consistent (the payload
has exactly the bytes the header promises, an image has the promised shape).
A planted parser bug is caught, which shows the suite can fail.

Bounded for CI: a fixed number of examples, no deadline (a shared 2-core
machine), derandomised so a failure reproduces.
"""

import json
from typing import Any, List

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidpipe import codec, wire
from vidpipe.collector import Collector
from vidpipe.config import config_from_dict

FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
LIMIT = 1 << 20

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


def metas() -> Any:
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                               lambda inner: st.lists(inner, max_size=4)
                               | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                               max_leaves=10)
    return (st.dictionaries(st.text(max_size=8), json_values, max_size=4)
            .map(lambda d: json.dumps(d).encode()) | st.binary(max_size=64))


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
            meta = json.loads(draw(metas().filter(lambda b: b.startswith(b"{"))))
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


def check_accepted(msg: wire.Message) -> None:
    """What decode() accepted must be what the header says."""
    h = msg.header
    assert h.version == wire.WIRE_VERSION and h.kind in wire.KIND_NAMES
    assert isinstance(msg.meta, dict)
    if msg.payload is not None and (h.kind == wire.FRAME or h.flags & wire.FLAG_IMAGE):
        assert len(msg.payload) == h.payload_len <= LIMIT
        if h.encoding == wire.RAW:
            image = msg.image()
            assert image.shape == h.shape and image.nbytes == h.payload_len


@FUZZ
@given(messages())
def test_decode_raises_only_wire_errors_and_accepts_only_consistent_messages(
        parts: List[bytes]) -> None:
    try:
        msg = wire.decode(parts, LIMIT)
    except wire.WireError as exc:
        assert exc.reason  # every drop is counted under a reason
        return
    check_accepted(msg)


@FUZZ
@given(messages())
def test_frame_decoder_raises_only_wire_errors(tmp_path_factory: Any,
                                               parts: List[bytes]) -> None:
    decoder = codec.FrameDecoder(str(tmp_path_factory.getbasetemp()))
    try:
        msg = wire.decode(parts, LIMIT)
        if msg.header.kind != wire.FRAME:
            return
        image, _ref = decoder.image(msg)
    except wire.WireError:
        return
    assert image.shape == msg.header.shape


@FUZZ
@given(st.binary(max_size=200))
def test_shared_memory_references_raise_only_wire_errors(data: bytes) -> None:
    for parse in (codec.parse_shm_ref, codec.parse_result_ref):
        try:
            parse(memoryview(data))
        except wire.WireError:
            pass


@pytest.fixture(scope="module")
def collector(tmp_path_factory: Any) -> Any:
    root = tmp_path_factory.mktemp("fuzzcoll")
    coll = Collector(config_from_dict({"pipeline": {"runtime_dir": str(root / "run")},
                                       "cameras": {"cam0": {"source": "testsrc"}}}),
                     outputs=[])
    yield coll
    coll.close()


@FUZZ
@given(st.lists(messages(), min_size=1, max_size=5))
def test_the_collector_takes_any_decodable_message_without_failing(
        collector: Any, batch: List[List[bytes]]) -> None:
    for parts in batch:
        try:
            msg = wire.decode(parts, LIMIT)
        except wire.WireError:
            continue
        collector.on_message(msg, 0.0)
    assert len(collector.cameras) <= 1024  # a flood of names cannot grow it without bound


def test_a_planted_parser_bug_is_caught(monkeypatch: Any) -> None:
    """Break the length check the way a careless edit would: the property test
    must fail (a payload shorter than the header says gets accepted)."""
    original = wire._check_image

    def careless(h: wire.Header, payload: memoryview, max_bytes: int) -> None:
        try:
            original(h, payload, max_bytes)
        except wire.WireError as exc:
            if exc.reason != "bad_length":
                raise

    monkeypatch.setattr(wire, "_check_image", careless)
    with pytest.raises(AssertionError):
        test_decode_raises_only_wire_errors_and_accepts_only_consistent_messages()


def test_the_header_strategy_reaches_valid_frames() -> None:
    """The generator is not all noise: it makes frames the parser accepts."""
    accepted = []

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(messages())
    def probe(parts: List[bytes]) -> None:
        try:
            accepted.append(wire.decode(parts, LIMIT).header.kind)
        except wire.WireError:
            pass

    probe()
    assert set(accepted) == set(wire.KIND_NAMES), "some kinds are never generated valid"




@pytest.fixture(scope="module")
def decoder(tmp_path_factory: Any) -> Any:
    from vidpipe.decoder import Decoder

    root = tmp_path_factory.mktemp("fuzzdec")
    dec = Decoder(config_from_dict({"pipeline": {"runtime_dir": str(root / "run")},
                                    "cameras": {"cam0": {"source": "testsrc"}}}), "cam0")
    yield dec
    dec.close()


@FUZZ
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=8), messages()), min_size=1,
                max_size=5))
def test_the_decoder_takes_any_handler_message_without_failing(
        decoder: Any, batch: List[Any]) -> None:
    for identity, parts in batch:
        try:
            msg = wire.decode(parts, LIMIT)
        except wire.WireError:
            continue
        decoder._on_message(identity, msg, 0.0)
    for peer in decoder.balancer.peers.values():  # what it keeps is sane
        assert 1 <= peer.window <= 64 and len(peer.name) <= 64
