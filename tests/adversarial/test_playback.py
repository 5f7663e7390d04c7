"""The recordings over HTTP (issue 28): a browser lists, plays and seeks
them; nothing but vidpipe's closed segments under the record dir is ever
served, whatever a request names or another account plants there."""

import base64
import http.client
import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest

from conftest import free_port
from vidpipe.outputs.playback import Library, byte_range
from vidpipe.status import web

CLOSED = "door-20261203T100000Z-000001.camera.mp4"
PROCESSED = "door-20261203T100500Z-000150.mp4"
CLIP = "door-20261203T100200Z-0123456789.clip.mp4"


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    root = tmp_path / "rec"
    door = root / "door"
    door.mkdir(parents=True)
    (door / CLOSED).write_bytes(bytes(range(256)) * 40)  # 10240 bytes, known content
    (door / PROCESSED).write_bytes(b"p" * 100)
    (door / CLIP).write_bytes(b"c" * 50)
    (door / "door-20261203T100300Z-0123456780.clip.part.mp4").write_bytes(b"being cut")
    (door / "door-20261203T101000Z-000002.camera.part.mp4").write_bytes(b"being written")
    (door / "notes.txt").write_text("the operator's")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    os.symlink(str(secret), str(door / "door-20261203T090000Z-000009.camera.mp4"))
    os.symlink(str(tmp_path), str(root / "yard"))  # a folder link: not followed
    (tmp_path / "door-20261203T090000Z-000009.mp4").write_text("outside")
    os.link(str(secret), str(door / "door-20261203T080000Z-000008.mp4"))  # a hard link
    return root


def serve(root: Path, guard: Optional[web.Guard] = None) -> web.WebServer:
    server = web.WebServer("127.0.0.1:{}".format(free_port()), Library(str(root)).routes(),
                           guard)
    assert server.start(), server.error
    return server


def get(server: web.WebServer, path: str, headers: Optional[Dict[str, str]] = None
        ) -> Tuple[int, Dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_only_closed_segments_of_ours_are_listed(recordings: Path) -> None:
    listing = Library(str(recordings)).listing()
    assert list(listing) == ["door"]
    assert sorted((f["name"], f["kind"]) for f in listing["door"]) == sorted(
        [(PROCESSED, "processed"), (CLOSED, "camera"), (CLIP, "clip")])


def test_a_segment_is_served_whole_and_by_range(recordings: Path) -> None:
    server = serve(recordings)
    try:
        content = (recordings / "door" / CLOSED).read_bytes()
        status, head, body = get(server, "/recordings/door/" + CLOSED)
        assert status == 200 and body == content and head["content-type"] == "video/mp4"
        assert head["accept-ranges"] == "bytes"
        status, head, body = get(server, "/recordings/door/" + CLOSED,
                                 {"Range": "bytes=100-199"})
        assert status == 206 and body == content[100:200]
        assert head["content-range"] == "bytes 100-199/10240"
        assert get(server, "/recordings/door/" + CLOSED, {"Range": "bytes=10000-"})[2] == \
            content[10000:]
        assert get(server, "/recordings/door/" + CLOSED, {"Range": "bytes=-10"})[2] == \
            content[-10:]
        status, head, _ = get(server, "/recordings/door/" + CLOSED, {"Range": "bytes=20000-"})
        assert status == 416 and head["content-range"] == "bytes */10240"
        status, _h, page = get(server, "/recordings")
        assert status == 200 and CLOSED.encode() in page and b"play" in page
        status, _h, listing = get(server, "/recordings.json")
        assert [f["name"] for f in json.loads(listing)["door"]] == \
            [f["name"] for f in Library(str(recordings)).listing()["door"]]
        status, _h, page = get(server, "/recordings/door/{}/play".format(CLOSED))
        assert status == 200 and b"<video" in page
    finally:
        server.close()


@pytest.mark.parametrize("path", [
    "/recordings/door/door-20261203T101000Z-000002.camera.part.mp4",  # being written
    "/recordings/door/door-20261203T100300Z-0123456780.clip.part.mp4",  # being cut
    "/recordings/door/notes.txt",                                      # not ours
    "/recordings/door/door-20261203T090000Z-000009.camera.mp4",        # a symlink
    "/recordings/door/door-20261203T080000Z-000008.mp4",               # a hard link
    "/recordings/yard/door-20261203T090000Z-000009.mp4",               # a linked folder
    "/recordings/yard/yard-20261203T090000Z-000009.mp4",
    "/recordings/door/../door/" + CLOSED,
    "/recordings/door/%2e%2e%2fsecret.txt",
    "/recordings/../secret.txt",
    "/recordings/other/" + CLOSED,                                     # camera mismatch
    "/recordings/door/" + CLOSED + "/../../secret.txt",
])
def test_nothing_else_is_ever_served(recordings: Path, path: str) -> None:
    server = serve(recordings)
    try:
        status, _h, body = get(server, path)
        assert status == 404 and b"not for the web" not in body and b"outside" not in body, \
            (path, status, body[:80])
    finally:
        server.close()


def test_recordings_ask_the_same_password_as_the_preview(recordings: Path) -> None:
    server = serve(recordings, web.Guard("127.0.0.1", user="op", password="pw"))
    try:
        assert get(server, "/recordings/door/" + CLOSED)[0] == 401
        assert get(server, "/recordings")[0] == 401
        token = base64.b64encode(b"op:pw").decode()
        assert get(server, "/recordings/door/" + CLOSED,
                   {"Authorization": "Basic " + token})[0] == 200
    finally:
        server.close()


def test_range_headers_are_read_defensively() -> None:
    assert byte_range(None, 100) is None
    assert byte_range("bytes=0-9", 100) == (0, 9)
    assert byte_range("bytes=90-200", 100) == (90, 99)
    assert byte_range("bytes=-200", 100) == (0, 99)
    assert byte_range("bytes=0-1,5-6", 100) is None  # several ranges: the whole file
    assert byte_range("items=0-1", 100) is None
    assert byte_range("bytes=5-2", 100) == (-1, -1)
    assert byte_range("bytes=100-", 100) == (-1, -1)
    assert byte_range("bytes=-0", 100) == (-1, -1)
    assert byte_range("bytes=" + "9" * 5000 + "-", 100) == (-1, -1)
