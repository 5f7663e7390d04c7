"""A real headless Chromium driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: JSON messages, NUL-terminated, on fds 3 and 4),
so one page can be captured twice while it keeps streaming."""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional

BINARIES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def find_chromium() -> Optional[str]:
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    def __init__(self, width: int = 1000, height: int = 700) -> None:
        binary = find_chromium()
        if binary is None:
            raise RuntimeError("no Chromium found (apt install chromium-headless-shell; "
                               "./dev test installs it)")
        self.profile = tempfile.mkdtemp(prefix="vp-chrome-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds_3_and_4() -> None:  # in the child: Chromium reads fd 3, writes fd 4
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 100)
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 100)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
             "--window-size={},{}".format(width, height), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=fds_3_and_4)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.next_id = 0
        self.buffer = b""
        self.session = ""

    def _send(self, method: str, params: Optional[Dict[str, Any]] = None,
              session: str = "", timeout: float = 20) -> Dict[str, Any]:
        self.next_id += 1
        msg: Dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError("{}: {}".format(method, reply["error"]))
                    return reply.get("result", {})
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer {} in {}s".format(method, timeout))
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited (rc={})".format(self.proc.poll()))
            self.buffer += chunk

    def open(self, url: str) -> None:
        target = self._send("Target.createTarget", {"url": url})["targetId"]
        self.session = self._send("Target.attachToTarget",
                                  {"targetId": target, "flatten": True})["sessionId"]

    def evaluate(self, expression: str) -> Any:
        result = self._send("Runtime.evaluate", {"expression": expression,
                                                 "returnByValue": True}, self.session)
        return result.get("result", {}).get("value")

    def screenshot(self) -> bytes:
        data = self._send("Page.captureScreenshot", {"format": "png"}, self.session)["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        try:
            self._send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.to_chrome, self.from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def png_pixels(data: bytes) -> Any:
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


__all__: List[str] = ["Browser", "find_chromium", "png_pixels"]
