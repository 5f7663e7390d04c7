"""The handler's short receive path (``FrameReader.known``): a shared-memory
FRAME whose bytes, but for stream, sequence number and capture time, equal a
message that passed the full decode is read from those three fields alone.

The properties: it gives exactly what the full decode gives; it takes nothing
that differs from a validated message in any other byte; a rewritten slot and
an unmapped ring send the message the long way, which names the problem.
"""

from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidpipe.link import encodings, wire
from vidpipe.link.payload import FrameReader
from vidpipe.link.ring import RingReader, RingWriter

SHAPE = (4, 6, 3)
NBYTES = 72


def publish(ring: RingWriter, seq: int, camera: str = "cam0", stream: int = 0xAB,
            value: Optional[int] = None) -> List[Any]:
    """Write frame ``seq`` into a free slot (the oldest held one is released
    first when none is free) and return the FRAME message the decoder sends."""
    slot = ring.acquire()
    if slot is None:
        ring.release(min(ring.held))
        slot = ring.acquire()
    image = ring.array(slot, SHAPE)
    image[:] = seq % 256 if value is None else value
    ring.commit(slot, seq, NBYTES)
    ring.hold(seq, slot)
    return wire.frame_parts(np.empty(SHAPE, np.uint8), camera, stream, seq,
                            1_700_000_000_000_000_000 + seq, encoding=wire.SHM,
                            payload=encodings.shm_ref(ring.name, slot))


def read(decoder: FrameReader, parts: List[Any]
         ) -> Tuple[bool, wire.Header, np.ndarray, Tuple[str, int]]:
    """What the handler does: the short path, else the full decode (then learn)."""
    known = decoder.known(parts)
    if known is not None:
        return (True,) + known
    msg = wire.decode(parts)
    pixels, where = decoder.image(msg)
    decoder.learn(parts, msg.header, pixels, where)
    return False, msg.header, pixels, where


def test_known_frames_give_what_the_full_decode_gives(tmp_path: Path) -> None:
    ring = RingWriter(str(tmp_path), "cam0", 0xAB, slots=3, slot_size=NBYTES)
    decoder = FrameReader(str(tmp_path))
    short = []
    for seq in range(40):
        parts = publish(ring, seq)
        was_known, head, pixels, where = read(decoder, parts)
        short.append(was_known)
        assert head == wire.decode(parts).header  # every field, the moving ones too
        assert type(head) is wire.Header and head.camera == "cam0" and head.seq == seq
        assert pixels.shape == SHAPE and not pixels.flags.writeable
        assert np.all(pixels == seq % 256)
        assert where == encodings.parse_shm_ref(memoryview(parts[1]))
    # one full decode per slot, then only the short path
    assert short == [False] * 3 + [True] * 37
    ring.close()


def test_two_cameras_and_shapes_are_kept_apart(tmp_path: Path) -> None:
    rings = [RingWriter(str(tmp_path), cam, 1, slots=2, slot_size=NBYTES)
             for cam in ("cam0", "cam1")]
    decoder = FrameReader(str(tmp_path))
    for seq in range(10):
        for n, ring in enumerate(rings):
            parts = publish(ring, seq, camera="cam{}".format(n), stream=1, value=n * 100 + seq)
            _known, head, pixels, _where = read(decoder, parts)
            assert head.camera == "cam{}".format(n)
            assert np.all(pixels == n * 100 + seq)
    # the same slot described as another shape is not the learned message
    parts = publish(rings[0], 10)
    flat = wire.frame_parts(np.empty((12, 6), np.uint8), "cam0", 1, 10, 0,
                            encoding=wire.SHM, payload=parts[1])
    assert decoder.known(flat) is None
    assert read(decoder, flat)[2].shape == (12, 6)
    for ring in rings:
        ring.close()


def fixed_positions(parts: List[Any]) -> List[int]:
    """Positions in header + reference that are not stream, seq or capture time."""
    return [i for i in range(len(parts[0]) + len(parts[1])) if not 8 <= i < 32]


def mutate(parts: List[Any], position: int, value: int) -> List[Any]:
    data = bytearray(parts[0] + parts[1])
    data[position] = value
    return [bytes(data[:len(parts[0])]), bytes(data[len(parts[0]):])]


def test_a_message_differing_in_any_fixed_byte_takes_the_long_way(tmp_path: Path) -> None:
    ring = RingWriter(str(tmp_path), "cam0", 0xAB, slots=1, slot_size=NBYTES)
    decoder = FrameReader(str(tmp_path))
    parts = publish(ring, 0)
    read(decoder, parts)
    assert decoder.known(parts) is not None
    for position in fixed_positions(parts):
        changed = mutate(parts, position, parts[0][position] ^ 0x01
                         if position < len(parts[0]) else parts[1][position - 84] ^ 0x01)
        assert decoder.known(changed) is None, "byte {} was not checked".format(position)
    # part counts and part types the short path does not know are left alone too
    assert decoder.known(parts[:1]) is None
    assert decoder.known(parts + [b""]) is None
    assert decoder.known([parts[0], memoryview(parts[1])]) is None
    ring.close()


def test_a_rewritten_slot_is_left_to_the_full_decode_which_names_it(tmp_path: Path) -> None:
    ring = RingWriter(str(tmp_path), "cam0", 0xAB, slots=1, slot_size=NBYTES)
    decoder = FrameReader(str(tmp_path))
    first = publish(ring, 0)
    read(decoder, first)
    second = publish(ring, 1)  # the only slot now holds frame 1
    assert decoder.known(first) is None
    with pytest.raises(wire.WireError) as err:
        decoder.image(wire.decode(first))
    assert err.value.reason == "stale"
    assert read(decoder, second)[2][0, 0, 0] == 1
    ring.close()


def test_an_unmapped_ring_is_forgotten(tmp_path: Path) -> None:
    old = RingWriter(str(tmp_path), "cam0", 1, slots=1, slot_size=NBYTES)
    new = RingWriter(str(tmp_path), "cam1", 2, slots=1, slot_size=NBYTES)
    decoder = FrameReader(str(tmp_path))
    decoder.rings = RingReader(str(tmp_path), keep=1)
    parts = publish(old, 0)
    read(decoder, parts)
    assert decoder.known(parts) is not None
    read(decoder, publish(new, 0, camera="cam1"))  # the reader keeps one ring: cam0's goes
    assert old.name not in decoder.rings.maps
    assert decoder.known(parts) is None  # and no view of it is kept here either
    assert [where[0] for *_rest, where in decoder._known.values()] == []
    assert read(decoder, parts)[0] is False  # mapped again, the long way
    old.close()
    new.close()


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.integers(0, 84 + 40), st.integers(0, 255)),
                        max_size=4),
       cut=st.integers(0, 3))
def test_the_short_path_takes_only_what_the_full_decode_accepts(
        tmp_path_factory: Any, changes: List[Tuple[int, int]], cut: int) -> None:
    directory = tmp_path_factory.mktemp("known")
    ring = RingWriter(str(directory), "cam0", 0xAB, slots=2, slot_size=NBYTES)
    decoder = FrameReader(str(directory))
    for seq in range(2):
        read(decoder, publish(ring, seq))
    parts = publish(ring, 2)  # a slot the short path knows, with a new seq
    for position, value in changes:
        size = len(parts[0]) + len(parts[1])
        parts = mutate(parts, position % size, value)
    if cut:
        parts = [parts[0], parts[1][:-cut]]
    known = decoder.known(parts)
    if known is None:
        return
    msg = wire.decode(parts)  # accepted by the short path: the long one must agree
    pixels, where = decoder.image(msg)
    assert known[0] == msg.header and known[2] == where
    assert np.shares_memory(known[1], pixels) and known[1].shape == pixels.shape
    ring.close()
