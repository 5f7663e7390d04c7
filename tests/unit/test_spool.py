"""The broker outputs' disk spool (vidpipe.outputs.spool): in order, removed
only when acked, bounded with results dropped before events, and what was
on disk survives a crash -- a real SIGKILL of a writing process, and a
segment cut at every byte."""

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from conftest import SRC
from vidpipe.outputs.spool import (EVENT, HEADER_SIZE, RESULT, STATE, Spool, SpoolError,
                                   SpoolFull)


def payloads(spool: Spool) -> List[bytes]:
    return [r.payload for r in spool.pending(limit=10 ** 6)]


def test_records_come_back_in_order_and_go_only_when_acked(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s"), max_bytes=1 << 20)
    seqs = [spool.append(EVENT if n % 3 == 0 else RESULT, b"r%d" % n) for n in range(10)]
    assert seqs == list(range(1, 11))
    assert payloads(spool) == [b"r%d" % n for n in range(10)]
    for seq in (1, 2, 4):  # acks may come out of order (AMQP confirms)
        spool.ack(seq)
    assert [r.seq for r in spool.pending(limit=3)] == [3, 5, 6]
    assert [r.seq for r in spool.pending(after=6, limit=2)] == [7, 8]
    assert spool.stats()["depth"] == 7
    spool.close()
    again = Spool(str(tmp_path / "s"), max_bytes=1 << 20)
    # the watermark is 2 (3 is not acked): 4 comes again -- at least once, never lost
    assert [r.seq for r in again.pending(limit=100)] == [3, 4, 5, 6, 7, 8, 9, 10]
    assert again.append(RESULT, b"next") == 11  # numbering goes on
    again.close()


def test_tick_persists_acks_and_results_when_nothing_else_happens(tmp_path: Path) -> None:
    import time

    spool = Spool(str(tmp_path / "s"), max_bytes=1 << 20, sync_interval_s=0.2)
    first = spool.append(RESULT, b"one")
    spool.append(RESULT, b"two")
    spool.ack(first)
    acked = tmp_path / "s" / "acked"
    spool.tick()  # too early: nothing yet
    assert not acked.exists() or acked.read_text().strip() != str(first)
    time.sleep(0.25)
    spool.tick()
    assert acked.read_text().strip() == str(first)
    assert not spool._dirty  # the results are on disk too
    spool.close()


def test_acked_segments_are_deleted_and_the_directory_stays_small(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s"), max_bytes=1 << 20, segment_bytes=4096)
    for n in range(200):
        spool.ack(spool.append(RESULT, bytes(100)))
    spool.close()
    left = [p for p in os.listdir(str(tmp_path / "s")) if p.endswith(".seg")]
    assert left == [] and Spool(str(tmp_path / "s"), 1 << 20).stats()["depth"] == 0


def test_full_drops_the_oldest_results_first_and_events_last(tmp_path: Path) -> None:
    record = HEADER_SIZE + 27
    spool = Spool(str(tmp_path / "s"), max_bytes=10 * record, segment_bytes=4096)
    for n in range(4):
        spool.append(EVENT, b"event %02d" % n + bytes(19))
    for n in range(6):
        spool.append(RESULT, b"result %02d" % n + bytes(18))
    spool.append(STATE, b"state 00" + bytes(19))  # pushes out the oldest result
    spool.append(EVENT, b"event 04" + bytes(19))  # and the next one
    assert spool.dropped.as_dict() == {"result": 2}
    kept = payloads(spool)
    assert [p[:8] for p in kept if p.startswith(b"event")] == [b"event %02d" % n
                                                              for n in range(5)]
    assert [p[:9] for p in kept if p.startswith(b"result")] == [b"result 02", b"result 03",
                                                                b"result 04", b"result 05"]
    for n in range(5):  # only events and state left to drop for events
        spool.append(EVENT, b"event %02d" % (5 + n) + bytes(19))
    assert spool.dropped.as_dict() == {"result": 6, "state": 1}
    with pytest.raises(SpoolFull):  # a result never pushes out an event
        spool.append(RESULT, b"result 06" + bytes(18))
    spool.append(EVENT, b"event 10" + bytes(19))  # the oldest event goes for a new one
    assert spool.dropped.as_dict() == {"result": 7, "state": 1, "event": 1}
    events = [p[:8] for p in payloads(spool)]
    assert events == [b"event %02d" % n for n in range(1, 11)]
    assert spool.stats()["bytes"] <= 10 * record
    spool.close()


def test_a_too_big_record_is_refused(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s"), max_bytes=4096)
    with pytest.raises(SpoolError):
        spool.append(EVENT, bytes(5000))
    spool.close()


def test_dead_records_do_not_hold_disk_forever(tmp_path: Path) -> None:
    """One live event among many acked results: its segment is rewritten."""
    spool = Spool(str(tmp_path / "s"), max_bytes=1 << 20, segment_bytes=8192)
    keep = spool.append(EVENT, b"keep me")
    for n in range(300):
        spool.ack(spool.append(RESULT, bytes(200)))
    segments = sorted((tmp_path / "s").glob("*.seg"))
    assert len(segments) <= 2  # the one holding the event, and the one being written
    assert segments[0].stat().st_size == HEADER_SIZE + len(b"keep me")  # rewritten
    assert [(r.seq, r.payload) for r in spool.pending()] == [(keep, b"keep me")]
    spool.close()
    assert [r.payload for r in Spool(str(tmp_path / "s"), 1 << 20).pending()] == [b"keep me"]


def test_a_segment_cut_anywhere_keeps_every_whole_record_before_the_cut(
        tmp_path: Path) -> None:
    source = tmp_path / "whole"
    spool = Spool(str(source), max_bytes=1 << 20)
    for n in range(5):
        spool.append(EVENT, b"event %d" % n)
    spool.close()
    (segment,) = list(source.glob("*.seg"))
    data = segment.read_bytes()
    size = HEADER_SIZE + len(b"event 0")
    assert len(data) == 5 * size
    for cut in range(len(data) + 1):
        target = tmp_path / "cut{}".format(cut)
        target.mkdir()
        (target / segment.name).write_bytes(data[:cut])
        got = Spool(str(target), max_bytes=1 << 20)
        whole = cut // size
        assert [r.payload for r in got.pending()] == [b"event %d" % n for n in range(whole)]
        assert got.torn == (0 if cut % size == 0 else 1)
        got.close()


def test_a_flipped_byte_ends_the_readable_part_there(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s"), max_bytes=1 << 20)
    for n in range(3):
        spool.append(EVENT, b"event %d" % n)
    spool.close()
    (segment,) = list((tmp_path / "s").glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[HEADER_SIZE + 7 + HEADER_SIZE + 3] ^= 0x40  # in the second record's payload
    segment.write_bytes(bytes(data))
    got = Spool(str(tmp_path / "s"), max_bytes=1 << 20)
    assert [r.payload for r in got.pending()] == [b"event 0"] and got.torn == 1
    got.close()


WRITER = """
import sys
from vidpipe.outputs.spool import EVENT, RESULT, Spool
spool = Spool(sys.argv[1], max_bytes=1 << 26, sync_interval_s=3600)
n = 0
while True:
    seq = spool.append(EVENT if n % 2 else RESULT, b"%08d" % n)
    if n % 2:
        print(seq, flush=True)  # the event is on disk now
    n += 1
"""


def test_every_event_survives_a_sigkill(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "s")],
                            stdout=subprocess.PIPE, universal_newlines=True,
                            env=dict(os.environ, PYTHONPATH=str(SRC)))
    confirmed = []
    assert proc.stdout is not None
    for line in proc.stdout:
        confirmed.append(int(line))
        if len(confirmed) == 300:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    spool = Spool(str(tmp_path / "s"), max_bytes=1 << 26)
    events = {r.seq for r in spool.pending(limit=10 ** 6) if r.kind == EVENT}
    assert set(confirmed) <= events  # nothing an append returned for is lost
    assert spool.torn <= 1  # at most the record being written when killed
    spool.close()


def segment_bytes_on_disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.seg"))


def test_the_files_on_disk_stay_within_the_limit(tmp_path: Path) -> None:
    """Issue 24: the bound counted live bytes only; with spool_max_mb = 1 the
    MQTT spool peaked at 1.41 MB on disk (dead records in segments not yet
    compacted). Now the segment files themselves stay under max_bytes, with
    acks out of order (as a broker's in-flight window gives them)."""
    import random

    rng = random.Random(7)
    directory = tmp_path / "s"
    spool = Spool(str(directory), max_bytes=1 << 20)
    pending: list = []
    peak = 0
    for n in range(6000):
        kind = EVENT if n % 10 == 0 else RESULT
        pending.append(spool.append(kind, bytes(rng.randrange(100, 1500))))
        if len(pending) > 40 and rng.random() < 0.7:  # an in-flight window, acked out of order
            spool.ack(pending.pop(rng.randrange(len(pending) - 20)))
        peak = max(peak, segment_bytes_on_disk(directory))
    assert peak <= 1 << 20, peak
    assert spool.stats()["disk_bytes"] == segment_bytes_on_disk(directory)
    assert spool.dropped.as_dict().get("result", 0) > 0  # it was full: results gave way
    assert "event" not in spool.dropped.as_dict()
    spool.close()


def test_a_write_cut_short_is_undone(tmp_path: Path) -> None:
    """Issue 24: a short os.write on a full disk shifted the spool's offsets,
    so later records read back unreadable. The file-size limit stands for a
    full disk: the write fails whole, and the records after it read back."""
    import subprocess
    import sys

    script = """
import resource, signal, sys
sys.path.insert(0, sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from vidpipe.outputs.spool import Spool, EVENT
spool = Spool(sys.argv[2], max_bytes=1 << 20)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (10000, hard))
written = []
try:
    for n in range(1000):
        written.append(spool.append(EVENT, b"%04d" % n + bytes(300)))
except OSError as exc:
    print("full after", len(written), exc.errno)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
for n in range(3):
    spool.append(EVENT, b"late" + bytes(300))
spool.close()
again = Spool(sys.argv[2], max_bytes=1 << 20)
records = again.pending(limit=2000)
print("read", len(records), "torn", again.torn, "late", sum(r.payload[:4] == b"late" for r in records))
print("in order", [r.payload[:4] for r in records[:len(written)]] == [b"%04d" % n for n in range(len(written))])
"""
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, "-c", script, src, str(tmp_path / "s")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=60)
    assert out.returncode == 0, out.stdout
    full = int(out.stdout.split("full after ")[1].split()[0])
    assert 20 < full < 40, out.stdout
    assert "read {} torn 0 late 3".format(full + 3) in out.stdout, out.stdout
    assert "in order True" in out.stdout
