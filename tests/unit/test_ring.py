"""The shared-memory ring: slot ownership, seqlock checks, hostile references."""

import os
from pathlib import Path

import numpy as np
import pytest

from vidpipe.link import encodings, wire
from vidpipe.link.payload import FrameReader
from vidpipe.link.ring import RingError, RingReader, RingWriter, remove_stale


def frame(value: int) -> np.ndarray:
    return np.full((4, 6, 3), value, np.uint8)


def test_a_slot_is_never_reused_while_held(tmp_path: Path) -> None:
    ring = RingWriter(str(tmp_path), "cam0", 0xAB, slots=3, slot_size=72)
    taken = [ring.acquire() for _ in range(3)]
    assert sorted(taken) == [0, 1, 2]
    for seq, slot in enumerate(taken):
        ring.commit(slot, seq, 72)
        ring.hold(seq, slot)
    assert ring.acquire() is None  # all held: the decoder must drop, not overwrite
    ring.release(1)
    assert ring.acquire() == taken[1]
    assert ring.acquire() is None
    ring.release(99)  # unknown frames are ignored
    assert ring.acquire() is None
    ring.close()


def test_reader_gets_a_view_and_detects_a_rewritten_slot(tmp_path: Path) -> None:
    ring = RingWriter(str(tmp_path), "cam0", 7, slots=2, slot_size=72)
    slot = ring.acquire()
    ring.array(slot, (4, 6, 3))[:] = frame(5)
    ring.commit(slot, 10, 72)
    ring.hold(10, slot)
    reader = RingReader(str(tmp_path))
    view = reader.view(ring.name, slot, 10, (4, 6, 3), "uint8")
    assert np.array_equal(view, frame(5)) and not view.flags.writeable
    assert reader.still(ring.name, slot, 10)
    # the decoder gives the slot to another frame while the view is in use
    ring.release(10)
    again = ring.acquire()
    assert again == slot or ring.acquire() == slot
    ring.array(slot, (4, 6, 3))[:] = frame(9)
    ring.commit(slot, 11, 72)
    assert not reader.still(ring.name, slot, 10)  # torn: detected after use
    with pytest.raises(RingError) as err:
        reader.view(ring.name, slot, 10, (4, 6, 3), "uint8")
    assert err.value.reason == "stale"  # stale: detected before use
    ring.close()


@pytest.mark.parametrize("name,slot,shape,reason", [
    ("../../etc/passwd", 0, (4, 6, 3), "bad_ring"),
    ("cam0-ff.ring", 0, (4, 6, 3), "ring_unavailable"),
    ("{ring}", 5, (4, 6, 3), "bad_slot"),
    ("{ring}", 0, (40, 60, 3), "bad_slot"),
])
def test_hostile_references_are_refused(tmp_path: Path, name: str, slot: int, shape: tuple,
                                        reason: str) -> None:
    ring = RingWriter(str(tmp_path), "cam0", 1, slots=2, slot_size=72)
    s = ring.acquire()
    ring.commit(s, 0, 72)
    with pytest.raises(RingError) as err:
        RingReader(str(tmp_path)).view(name.format(ring=ring.name), slot, 0, shape, "uint8")
    assert err.value.reason == reason
    ring.close()


def test_a_truncated_ring_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cam0-1.ring").write_bytes(b"VPRING\0\1" + b"\0" * 100)
    with pytest.raises(RingError) as err:
        RingReader(str(tmp_path)).view("cam0-1.ring", 0, 0, (1, 1), "uint8")
    assert err.value.reason == "bad_ring"


def test_a_new_decoder_run_removes_its_camera_s_stale_rings(tmp_path: Path) -> None:
    for name in ("cam0-1a.ring", "cam0-2b.ring", "cam1-3c.ring", "cam0-notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    ring = RingWriter(str(tmp_path), "cam0", 0xFF, slots=2, slot_size=8)
    assert sorted(os.listdir(str(tmp_path))) == ["cam0-ff.ring", "cam0-notes.txt",
                                                 "cam1-3c.ring"]
    ring.close()
    assert remove_stale(str(tmp_path), "cam1") == 1


def test_codec_round_trips_and_refuses_garbage(tmp_path: Path) -> None:
    image = (np.arange(48 * 64 * 3) % 256).astype(np.uint8).reshape(48, 64, 3)
    decoder = FrameReader(str(tmp_path))
    for encoding in (wire.LZ4, wire.JPEG):
        payload = encodings.encode(image, encoding, 95)
        parts = wire.frame_parts(image, "c", 1, 0, 0, encoding=encoding, payload=payload)
        out, ref = decoder.image(wire.decode(parts))
        assert ref is None and out.shape == image.shape
        if encoding == wire.LZ4:
            assert np.array_equal(out, image)
        bad = wire.frame_parts(image, "c", 1, 0, 0, encoding=encoding, payload=b"garbage!")
        with pytest.raises(wire.WireError) as err:
            decoder.image(wire.decode(bad))
        assert err.value.reason == "bad_payload"
    # an LZ4 bomb: a payload that would expand past what the header promises
    bomb = encodings.encode(np.zeros((480, 640, 3), np.uint8), wire.LZ4)
    parts = wire.frame_parts(image, "c", 1, 0, 0, encoding=wire.LZ4, payload=bomb)
    with pytest.raises(wire.WireError):
        decoder.image(wire.decode(parts))


def test_a_ring_that_does_not_fit_is_an_error_not_sigbus(tmp_path: Path) -> None:
    """Issue 24: a ring was only ftruncated, so on a full /run tmpfs its first
    write killed the decoder with SIGBUS. It is reserved (posix_fallocate): no
    room is a RingSpaceError naming the size and the directory, and no file
    is left. Here the file-size limit stands for a full tmpfs (no root needed)."""
    import subprocess
    import sys

    script = """
import resource, signal, sys
sys.path.insert(0, sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, 8 << 20))
from vidpipe.link.ring import RingSpaceError, RingWriter
try:
    RingWriter(sys.argv[2], "cam0", 1, 8, 10 << 20)
except RingSpaceError as exc:
    print("refused:", exc.strerror)
small = RingWriter(sys.argv[2], "cam0", 1, 2, 1 << 20)
small.array(0, (1024,), "uint8")[:] = 7
print("small ok")
"""
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, "-c", script, src, str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=60)
    assert out.returncode == 0, out.stdout
    assert "refused: a ring of 80 MiB does not fit in {}".format(tmp_path) in out.stdout
    assert "small ok" in out.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["cam0-1.ring"]  # the refused one is gone
