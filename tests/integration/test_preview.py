"""The live preview in a real headless Chromium: the page lists the camera and
its image element shows frames that change."""

import json
import os
import socket
import time
from typing import Any

import numpy as np
import pytest

from browser import Browser, find_chromium, png_pixels
from conftest import free_port, http_get, wait_until


@pytest.fixture
def browser() -> Any:
    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: ./dev test installs chromium-headless-shell")
        pytest.skip("no Chromium here (./dev test installs chromium-headless-shell)")
    chrome = Browser()
    yield chrome
    chrome.close()


def test_browser_shows_the_live_mjpeg_preview(pipeline: Any, browser: Any) -> None:
    port = free_port()
    pipeline.write_config({
        "cameras": {"cam0": {"source": "testsrc", "width": 640, "height": 480, "fps": 30}},
        "handlers": {"stages": ["gray"]},
        "collector": {"outputs": ["jsonl", "preview"], "preview_fps": 10,
                      "http_listen": "127.0.0.1:{}".format(port)},
    })
    pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    pipeline.start("decoder", "cam0")
    wait_until(lambda: len(pipeline.results()) > 10, 20, "results at the collector")

    browser.open("http://127.0.0.1:{}/".format(port))
    shown = wait_until(lambda: browser.evaluate(
        "(() => { const i = document.getElementById('cam-cam0');"
        " return i && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null })()"),
        15, "the preview image to load in Chromium")
    assert shown == [640, 480]
    box = browser.evaluate("(() => { const r = document.getElementById('cam-cam0')"
                           ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height] })()")
    x, y, w, h = (int(v) for v in box)

    first = png_pixels(browser.screenshot())[y:y + h, x:x + w]
    time.sleep(1.0)
    second = png_pixels(browser.screenshot())[y:y + h, x:x + w]
    assert first.shape[0] > 100 and first.shape[1] > 100
    # a real picture (the test pattern's gradient), not a blank or broken image
    assert float(first.std()) > 20, "the image element shows a flat picture"
    changed = np.mean(np.any(first != second, axis=2))
    assert changed > 0.01, "the image did not change in a second ({:.4f})".format(changed)

    # the snapshot URL gives one JPEG
    jpeg = http_get("http://127.0.0.1:{}/snapshot/cam0.jpg".format(port))
    assert jpeg[:2] == b"\xff\xd8"


def test_preview_costs_nothing_without_viewers_and_rejects_unknown_paths(pipeline: Any) -> None:
    import urllib.error

    port = free_port()
    pipeline.write_config({
        "cameras": {"cam0": {"source": "testsrc", "width": 320, "height": 240, "fps": 30,
                             "frames": 60, "wait_for_handlers": 1}},
        "collector": {"outputs": ["jsonl", "preview"],
                      "http_listen": "127.0.0.1:{}".format(port)},
    })
    pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    pipeline.start("decoder", "cam0")
    wait_until(lambda: len(pipeline.results()) >= 60, 20, "60 results")
    board = json.loads((pipeline.runtime / "status" / "collector-main.json").read_text())
    assert board["preview_encoded"] == 0  # nobody watched: not one JPEG made
    page = http_get("http://127.0.0.1:{}/".format(port)).decode()
    assert 'src="/stream/cam0.mjpg"' in page
    for path in ("/stream/nope.mjpg", "/../../etc/passwd", "/metrics"):
        with pytest.raises(urllib.error.HTTPError) as err:
            http_get("http://127.0.0.1:{}{}".format(port, path))
        assert err.value.code == 404
    # issue 24: short visits to an idle camera's stream kept their slots, and
    # every live stream answered 503 afterwards
    request = "GET /stream/cam0.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n".format(port)

    def visit() -> "socket.socket":
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(request.encode())
        assert sock.recv(64).startswith(b"HTTP/1.0 200"), "a stream was refused"
        return sock

    for sock in [visit() for _ in range(16)]:  # every stream slot taken
        sock.close()
    deadline = time.monotonic() + 5
    while True:  # the slots come back within about a second
        try:
            visit().close()
            break
        except AssertionError:
            assert time.monotonic() < deadline, "stream slots not given back"
            time.sleep(0.3)
