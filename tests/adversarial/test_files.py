"""Files: retention deletes only what vidpipe made; nothing in the shared
runtime directory (group vidpipe may write there) can redirect, block or feed
a role."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import child_env
from vidpipe.status import board
from vidpipe.link import ring
from vidpipe import safefile
from vidpipe.config import layout
from vidpipe.outputs.recording import Retention


def aged(path: Path, size: int, age: float) -> Path:
    path.write_bytes(b"x" * size)
    when = time.time() - age
    os.utime(str(path), (when, when))
    return path


def test_retention_touches_only_its_own_segments(tmp_path: Path) -> None:
    victim_dir = tmp_path / "elsewhere"
    victim_dir.mkdir()
    victim = aged(victim_dir / "cam0-20200101T000000Z-000000.mp4", 500, 9000)
    root = tmp_path / "rec"
    cam = root / "cam0"
    cam.mkdir(parents=True)
    ours = aged(cam / "cam0-20261130T100000Z-000000.mp4", 500, 100)
    theirs = [aged(cam / "holiday.mp4", 500, 8000),                       # operator's file
              aged(cam / "cam1-20200101T000000Z-000000.mp4", 500, 8000),  # other camera's name
              aged(root / "cam0-20200101T000000Z-000000.h5", 500, 8000)]  # not in a camera folder
    (cam / "cam0-20200101T000000Z-000001.mp4").symlink_to(victim)  # a link with our name
    (root / "cam9").symlink_to(victim_dir, target_is_directory=True)  # a linked folder
    ret = Retention(str(root), 10 ** 9, 60, 0, lambda: 0)
    assert ret.closed_bytes() == 500  # only ours counts
    ret.expire(time.time())
    assert not ours.exists()
    assert victim.exists() and all(p.exists() for p in theirs)
    assert (cam / "cam0-20200101T000000Z-000001.mp4").is_symlink()
    assert ret.make_room(10 ** 10) and victim.exists()  # nothing of theirs goes, even when full


def test_status_entries_ignore_planted_links_fifos_and_forged_units(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    status = Path(layout.board_dir(str(runtime)))
    status.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    # a link where the writer's entry goes, and one for every temp name it might use
    (status / "handler-1.json").symlink_to(victim)
    os.mkfifo(str(status / "handler-2.json"))
    (status / "handler-3.json").write_text(json.dumps({
        "role": "handler", "name": "3", "unit": "--host=evil vid-x.service", "pid": os.getpid(),
        "state": "running", "updated": time.time()}))
    (status / "handler-4.json").write_text(json.dumps({
        "role": "handler", "name": "4;rm", "pid": os.getpid(), "state": "running"}))
    (status / "handler-6.json").write_text(json.dumps({"role": [], "name": {}}))
    forged = status / "handler-5.json"  # another user's file, well formed
    forged.write_text(json.dumps({"role": "handler", "name": "5", "pid": os.getpid(),
                                  "state": "running", "updated": time.time()}))
    if os.geteuid() == 0:
        os.chown(str(forged), 65534, 65534)
    else:
        forged.unlink()  # (only root can make a file of another user)
    board.Board(str(runtime), "handler", "1").publish({"frames": 1})
    assert victim.read_text() == "precious"
    assert not (status / "handler-1.json").is_symlink()
    # reading never blocks on the FIFO (run in a child with a timeout to prove it)
    code = ("import sys, json; sys.path.insert(0, {!r}); from vidpipe.status import board\n"
            "print(json.dumps(board.read_board({!r})))").format(
        str(Path(board.__file__).parents[2]), str(runtime))
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, timeout=20,
                         env=child_env(), universal_newlines=True, check=True).stdout
    entries = {e["name"]: e for e in json.loads(out)}
    # the FIFO, the bad name, the bad types and another user's file are no entries
    assert set(entries) == {"1", "3"}
    assert entries["3"]["unit"] == "vid-handler@3.service"  # never the file's own text


def test_a_ring_planted_by_another_user_or_as_a_fifo_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "rings"
    folder.mkdir()
    os.mkfifo(str(folder / "cam0-00ff.ring"))
    reader = ring.RingReader(str(folder))
    with pytest.raises(ring.RingError) as err:
        reader.view("cam0-00ff.ring", 0, 0, (4, 4), "uint8")
    assert err.value.reason == "bad_ring" and "not a plain file" in str(err.value)
    if os.geteuid() == 0:
        other = folder / "cam1-00ff.ring"
        other.write_bytes(b"\0" * 4096)
        os.chown(str(other), 65534, 65534)
        with pytest.raises(ring.RingError) as err:
            reader.view("cam1-00ff.ring", 0, 0, (4, 4), "uint8")
        assert "belongs to uid 65534" in str(err.value)


def test_safefile_never_writes_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "entry"
    link.symlink_to(victim)
    safefile.replace(str(link), b"new")
    assert victim.read_text() == "precious" and link.read_bytes() == b"new"
    with pytest.raises(safefile.UnsafeFile):
        os.unlink(str(link))
        link.symlink_to(victim)
        safefile.read_plain(str(link))


def test_only_the_services_user_may_talk_on_the_pipelines_sockets(pipeline: object) -> None:
    """Group vidpipe (operators) may tap, not pose as a handler or a decoder:
    one that holds credits could take every frame."""
    import stat as st

    from conftest import wait_until

    pipeline.write_config({  # type: ignore[attr-defined]
        "cameras": {"cam0": {"source": "testsrc", "width": 64, "height": 48, "fps": 10}},
        "collector": {"outputs": ["log"]}})
    pipeline.start("collector", "main")  # type: ignore[attr-defined]
    pipeline.start("decoder", "cam0")  # type: ignore[attr-defined]
    run = pipeline.runtime  # type: ignore[attr-defined]
    wait_until(lambda: (run / "tap-cam0.sock").exists(), 10, "the tap socket")
    modes = {name: st.S_IMODE((run / name).stat().st_mode)
             for name in ("decoder-cam0.sock", "collector.sock", "tap-cam0.sock",
                          "tap-collector.sock")}
    assert modes == {"decoder-cam0.sock": 0o600, "collector.sock": 0o600,
                     "tap-cam0.sock": 0o660, "tap-collector.sock": 0o660}
