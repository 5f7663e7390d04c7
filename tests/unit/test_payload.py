"""The payload boundary (vidpipe.link.payload), writer to reader, as the roles use
it: FrameWriter (decoder) -> FrameReader (handler) over every transport and
encoding, ResultWriter (handler) -> ResultReader (collector) through the
handler's ring and inline. Real shared memory; messages go through the wire
codec as bytes, as they do over ZeroMQ."""

from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import pytest

from helpers import Numbered
from vidpipe.link import wire
from vidpipe.config import config_from_dict
from vidpipe.link.payload import FrameReader, FrameWriter, ResultReader, ResultWriter


def over_the_wire(parts: List[Any]) -> List[Any]:
    """What a peer receives: every part as bytes."""
    return [bytes(p) for p in parts]


def camera(run: Path, **options: Any) -> Any:
    return config_from_dict({"pipeline": {"runtime_dir": str(run)},
                             "cameras": {"cam0": dict(source="testsrc", **options)}}
                            ).camera("cam0")


@pytest.mark.parametrize("transport,encoding,exact", [
    ("shm", "raw", True), ("inline", "raw", True), ("inline", "lz4", True),
    ("inline", "jpeg", False)])
def test_frames_arrive_as_written(tmp_path: Path, transport: str, encoding: str,
                                  exact: bool) -> None:
    if encoding == "lz4":
        pytest.importorskip("lz4.block")  # Debian: python3-lz4 (./dev test installs it)
    cam = camera(tmp_path, transport=transport, encoding=encoding)
    writer = FrameWriter(cam, "balanced", str(tmp_path), stream=7)
    reader = FrameReader(str(tmp_path))
    source = Numbered(cam, (48, 64, 3))
    try:
        for seq in range(5):
            image, slot = writer.read(source)
            assert image is not None and (slot is not None) == (transport == "shm")
            parts = writer.parts(image, slot, seq, 1000 + seq, "cam0")
            writer.sent(seq, slot)
            msg = wire.decode(over_the_wire(parts))
            assert msg.header.encoding == {"shm": wire.SHM}.get(
                transport, {"raw": wire.RAW, "lz4": wire.LZ4, "jpeg": wire.JPEG}[encoding])
            pixels, where = reader.image(msg)
            assert pixels.shape == (48, 64, 3)
            if exact:
                assert (pixels == seq).all()
            else:  # JPEG: lossy, but a flat frame stays within a step or two
                assert np.abs(pixels.astype(int) - seq).max() <= 2
            assert reader.still_valid(where, seq)
            writer.release(seq)
    finally:
        writer.close()


def test_a_shared_memory_frame_rewritten_in_use_is_caught(tmp_path: Path) -> None:
    cam = camera(tmp_path, transport="shm", shm_slots=2)
    writer = FrameWriter(cam, "balanced", str(tmp_path), stream=7)
    reader = FrameReader(str(tmp_path))
    source = Numbered(cam)
    try:
        image, slot = writer.read(source)
        msg = wire.decode(over_the_wire(writer.parts(image, slot, 0, 1, "cam0")))
        writer.sent(0, slot)
        pixels, where = reader.image(msg)
        writer.release(0)  # given up by the decoder while the handler still reads
        for seq in (1, 2):  # two slots: the ring comes round to frame 0's slot
            image, slot = writer.read(source)
            writer.parts(image, slot, seq, 1 + seq, "cam0")
            writer.sent(seq, slot)
            writer.release(seq)
        assert not reader.still_valid(where, 0)
    finally:
        writer.close()


def handler_config(run: Path, **options: Any) -> Any:
    return config_from_dict({"pipeline": {"runtime_dir": str(run)},
                             "handlers": options}).handler("1")


def result(writer: ResultWriter, seq: int, image: Optional[np.ndarray]) -> wire.Message:
    head = wire.Header(wire.FRAME, "cam0", 5, seq, 1000 + seq, 0, 0, 0, 0, 0, 0, 0)
    pixels = np.zeros((8, 8), np.uint8)
    return wire.decode(over_the_wire(writer.parts(head, image, pixels, False,
                                                  {"handler": "1"})))


@pytest.mark.parametrize("connect,ring", [("ipc:///run/x/collector.sock", True),
                                          ("tcp://10.0.0.2:5600", False)])
def test_results_arrive_with_their_image_through_the_ring_or_inline(
        tmp_path: Path, connect: str, ring: bool) -> None:
    writer = ResultWriter(str(tmp_path), "1", handler_config(tmp_path), connect)
    reader = ResultReader(str(tmp_path), "collector main")
    try:
        assert (writer.ring is not None) == ring
        msg = result(writer, 3, np.full((16, 16), 42, np.uint8))
        assert msg.header.encoding == (wire.SHM if ring else wire.RAW)
        ref = reader.open(msg)
        assert (ref is not None) == ring
        assert (msg.image() == 42).all() and msg.meta["handler"] == "1"
        reader.used(msg, ref)
        assert not reader.lost
    finally:
        writer.close()


def test_a_held_result_is_copied_out_before_the_handler_reuses_its_slot(
        tmp_path: Path) -> None:
    writer = ResultWriter(str(tmp_path), "1", handler_config(tmp_path, result_ring_mb=8),
                          "ipc:///run/x/collector.sock")
    reader = ResultReader(str(tmp_path), "collector main")
    try:
        held = result(writer, 1, np.full((512, 512), 7, np.uint8))
        ref = reader.open(held)
        assert ref is not None
        reader.keep(held, ref)  # held for reordering: copied
        for n in range(64):  # the handler goes round its ring many times
            result(writer, 2 + n, np.full((512, 512), 99, np.uint8))
        assert (held.image() == 7).all() and not reader.lost
    finally:
        writer.close()


def test_without_send_image_only_metadata_travels(tmp_path: Path) -> None:
    writer = ResultWriter(str(tmp_path), "1", handler_config(tmp_path, send_image=False),
                          "ipc:///run/x/collector.sock")
    assert writer.ring is None and writer.allocate is None
    msg = result(writer, 0, np.ones((4, 4), np.uint8))
    assert not msg.header.flags & wire.FLAG_IMAGE and msg.header.payload_len == 0


def test_an_unreadable_result_encoding_loses_the_image_not_the_result(tmp_path: Path) -> None:
    reader = ResultReader(str(tmp_path), "collector main")
    image = np.zeros((4, 4), np.uint8)
    msg = wire.decode(over_the_wire(wire.result_parts(
        image, {"handler": "1"}, "cam0", 5, 0, 1, encoding=wire.JPEG, payload=b"\xff\xd8")))
    assert reader.open(msg) is None
    assert msg.meta == {"handler": "1", "image_lost": "bad_encoding"}
    assert not msg.header.flags & wire.FLAG_IMAGE
    assert reader.lost.as_dict() == {"bad_encoding": 1}
