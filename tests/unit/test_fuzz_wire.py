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

from typing import Any, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzing import messages
from vidpipe.link import encodings, wire
from vidpipe.link.payload import FrameReader
from vidpipe.collector import Collector
from vidpipe.config import config_from_dict

FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
LIMIT = 1 << 20

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
    decoder = FrameReader(str(tmp_path_factory.getbasetemp()))
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
    for parse in (encodings.parse_shm_ref, encodings.parse_result_ref):
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


@pytest.mark.once  # tests the fuzzing, not the parser: the main suite only
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
        decoder.out._on_message(identity, msg, 0.0)
    for peer in decoder.out.balancer.peers.values():  # what it keeps is sane
        assert 1 <= peer.window <= 64 and len(peer.name) <= 64
