"""Handlers' result rings and how the collector reads them: no copy in order,
a copy when held for reordering, and an overwritten slot never passed on as
good pixels."""

import os
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import pytest

from vidpipe.link import encodings, wire
from vidpipe.collector import Collector
from vidpipe.config import load_config
from vidpipe.tools.tomlwrite import dump_toml
from vidpipe.link.ordering import Entry
from vidpipe.outputs import Output
from vidpipe.config.layout import results_dir
from vidpipe.link.ring import ResultRing, RingError, RingReader

SHAPE = (4, 6)
NBYTES = 24


def test_a_stage_writing_into_the_claimed_slot_is_published_without_a_copy(
        tmp_path: Path) -> None:
    ring = ResultRing(str(tmp_path), "h1", budget=4096)
    out = ring.claim(SHAPE)
    assert out is not None
    out[:] = 7
    ref = ring.publish(out)
    assert ref is not None
    name, slot, stamp = ref
    view = RingReader(str(tmp_path)).view(name, slot, stamp, SHAPE, "uint8")
    assert np.shares_memory(out, ring.ring.array(slot, SHAPE))  # type: ignore
    assert (view == 7).all()
    ring.close()
    assert not os.listdir(str(tmp_path))  # the file goes with the handler


def test_an_image_made_elsewhere_is_copied_in_and_slots_are_reused_oldest_first(
        tmp_path: Path) -> None:
    ring = ResultRing(str(tmp_path), "h1", budget=4096)
    slots = ring.ring.slots if ring.ring else None
    refs = [ring.publish(np.full(SHAPE, n, np.uint8)) for n in range(ResultRing.MAX_SLOTS + 1)]
    assert slots is None and ring.ring is not None
    assert ring.ring.slots == ResultRing.MAX_SLOTS  # 4096 bytes hold 16 slots of 24+64
    reader = RingReader(str(tmp_path))
    # the first result's slot was reused by the last one: its stamp says so
    name, slot, stamp = refs[0]  # type: ignore
    assert refs[-1][1] == slot  # type: ignore
    with pytest.raises(RingError) as err:
        reader.view(name, slot, stamp, SHAPE, "uint8")
    assert err.value.reason == "stale"
    name, slot, stamp = refs[-1]  # type: ignore
    assert (reader.view(name, slot, stamp, SHAPE, "uint8") == ResultRing.MAX_SLOTS).all()
    ring.close()


def test_results_too_big_for_the_budget_stay_inline_and_bigger_ones_get_a_new_ring(
        tmp_path: Path) -> None:
    ring = ResultRing(str(tmp_path), "h1", budget=4 * (64 + 64))
    assert ring.publish(np.zeros((8, 8), np.uint8)) is not None
    first = ring.ring.name  # type: ignore
    assert ring.publish(np.zeros((8, 9), np.uint8)) is None  # 4 slots of 128 do not fit
    ring.budget = 4096
    assert ring.publish(np.zeros((8, 9), np.uint8)) is not None
    assert ring.ring.name != first  # type: ignore
    assert os.listdir(str(tmp_path)) == [ring.ring.name]  # type: ignore
    ring.close()


class Recorder(Output):
    def __init__(self) -> None:
        self.images: List[Optional[bytes]] = []
        self.metas: List[Any] = []

    def emit(self, camera: str, entry: Entry, latency_ms: Optional[float]) -> None:
        msg = entry.message
        self.images.append(None if msg is None or msg.payload is None else bytes(msg.payload))
        self.metas.append(None if msg is None else msg.meta)


@pytest.fixture
def collector(tmp_path: Path) -> Any:
    path = tmp_path / "pipeline.toml"
    path.write_text(dump_toml({"pipeline": {"runtime_dir": str(tmp_path / "run")},
                               "cameras": {"cam0": {"source": "testsrc"}}}))
    recorder = Recorder()
    coll = Collector(load_config(str(path)), outputs=[recorder])
    coll.recorder = recorder  # type: ignore
    yield coll
    coll.close()


def _result(ring: ResultRing, seq: int, value: int) -> wire.Message:
    image = np.full(SHAPE, value, np.uint8)
    ref = ring.publish(image)
    assert ref is not None
    parts = wire.result_parts(image, {"handler": "h1"}, "cam0", 5, seq, 1,
                              encoding=wire.SHM, payload=encodings.result_ref(*ref))
    return wire.decode(parts)


def test_collector_reads_results_in_place_and_copies_those_it_must_hold(
        collector: Any) -> None:
    ring = ResultRing(results_dir(collector.config.pipeline.runtime_dir), "h1", budget=4096)
    collector.on_message(_result(ring, 0, 10), 0.0)
    held = _result(ring, 2, 12)  # seq 1 is not there yet: held for reordering
    collector.on_message(held, 0.0)
    assert collector.recorder.images == [bytes([10] * NBYTES)]
    for n in range(ResultRing.MAX_SLOTS):  # the handler goes round its whole ring
        ring.publish(np.full(SHAPE, 99, np.uint8))
    collector.on_message(_result(ring, 1, 11), 0.0)
    assert collector.recorder.images == [bytes([v] * NBYTES) for v in (10, 11, 12)]
    assert not collector.results_in.lost
    ring.close()


def test_an_overwritten_slot_loses_the_image_not_the_result(collector: Any) -> None:
    ring = ResultRing(results_dir(collector.config.pipeline.runtime_dir), "h1", budget=4096)
    late = _result(ring, 0, 10)
    for n in range(ResultRing.MAX_SLOTS):  # the collector fell a whole ring behind
        ring.publish(np.full(SHAPE, 99, np.uint8))
    collector.on_message(late, 0.0)
    assert collector.recorder.images == [None]
    assert collector.recorder.metas[0]["image_lost"] == "stale"
    assert collector.recorder.metas[0]["handler"] == "h1"
    assert collector.results_in.lost["stale"] == 1
    ring.close()
