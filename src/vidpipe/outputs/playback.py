"""The recordings, listed and served by the collector's HTTP server.

* ``/recordings``: a page of every camera's segments, newest first, each
  with a link to play it in the browser and one to download it;
  ``/recordings.json`` the same for scripts;
* ``/recordings/CAMERA/FILE``: the segment itself, with range requests
  (``206 Partial Content``), so a browser's video element can seek;
* ``/recordings/CAMERA/FILE/play``: a page with a video element playing it.

Only closed segments of vidpipe's own names under ``[collector.record] dir``
are ever listed or served (:data:`vidpipe.outputs.retention.SEGMENT_RE`, the
file's folder named as its camera): never a ``.part`` being written, another
file, a symlink (each step is opened without following links, relative to
the folder above it) or anything outside ``dir``. The routes sit behind the
same Host/Origin checks and password (or local-account check) as the
preview (:mod:`vidpipe.status.web`).
"""

import html
import json
import os
import re
import stat
from typing import Any, Dict, List, Optional, Tuple

from vidpipe import names
from vidpipe.outputs.retention import SEGMENT_RE
from vidpipe.safefile import UnsafeFile, open_plain

CHUNK = 64 * 1024
MAX_LISTED = 500  # per camera, newest first
TYPES = {".mp4": "video/mp4", ".h5": "application/x-hdf5"}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _open_dir(name: str, dir_fd: Optional[int] = None) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                   dir_fd=dir_fd)


def _kind(name: str) -> str:
    """What a listed file is: the camera's stream, an event's clip of it, or
    the processed frames."""
    return "camera" if ".camera." in name else "clip" if ".clip." in name else "processed"


def byte_range(header: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """``(first, last)`` of a ``Range`` header on a file of ``size`` bytes;
    ``None`` for the whole file (no header, or one we do not take: several
    ranges, another unit); ``(-1, -1)`` when it cannot be satisfied."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if len(first) > 18 or len(last) > 18:  # beyond any file (and int() refuses 4300 digits)
        return (-1, -1)
    if not first:  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return (-1, -1)
        return (max(0, size - count), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return (-1, -1)
    return (start, end)


class Library:
    """What is under ``root``, as the routes show it."""

    def __init__(self, root: str) -> None:
        self.root = root

    def listing(self) -> Dict[str, List[Dict[str, Any]]]:
        """camera -> its closed segments, newest first (name, bytes, mtime)."""
        out: Dict[str, List[Dict[str, Any]]] = {}
        try:
            folders = sorted(os.scandir(self.root), key=lambda e: e.name)
        except OSError:
            return out
        for folder in folders:
            if not names.valid(folder.name) or not folder.is_dir(follow_symlinks=False):
                continue
            found = []
            try:
                entries = list(os.scandir(folder.path))
            except OSError:
                continue
            for entry in entries:
                match = SEGMENT_RE.fullmatch(entry.name)
                if not match or match.group("camera") != folder.name:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:  # as open() takes it
                    found.append({"name": entry.name, "bytes": st.st_size,
                                  "mtime": round(st.st_mtime, 3),
                                  "kind": _kind(entry.name)})
            found.sort(key=lambda f: (f["mtime"], f["name"]), reverse=True)
            out[folder.name] = found[:MAX_LISTED]
        return out

    def open(self, camera: str, name: str) -> Optional[int]:
        """An fd on the segment, or None when it is not one of ours."""
        match = SEGMENT_RE.fullmatch(name)
        if not names.valid(camera) or match is None or match.group("camera") != camera:
            return None
        try:
            root = _open_dir(self.root)
        except OSError:
            return None
        try:
            folder = _open_dir(camera, root)
        except OSError:
            os.close(root)
            return None
        try:
            return open_plain(name, dir_fd=folder)
        except (OSError, UnsafeFile):
            return None
        finally:
            os.close(folder)
            os.close(root)

    # ------------------------------------------------------------------ routes

    def routes(self) -> Dict[str, Any]:
        cam, seg = "(" + names.NAME_PATTERN + ")", r"([A-Za-z0-9_.-]{1,120})"
        return {r"/recordings/?": self._page, r"/recordings\.json": self._json,
                r"/recordings/{}/{}".format(cam, seg): self._file,
                r"/recordings/{}/{}/play".format(cam, seg): self._play}

    def _json(self, req: Any, _match: Any) -> None:
        req.send_text(200, json.dumps(self.listing()), "application/json")

    def _page(self, req: Any, _match: Any) -> None:
        parts = ["<!doctype html><meta charset=utf-8><title>vidpipe recordings</title>"
                 "<style>body{font-family:sans-serif}td{padding:0 1em}</style>"
                 "<h1>Recordings</h1>"]
        listing = self.listing()
        if not listing:
            parts.append("<p>No recordings yet.</p>")
        for camera, found in listing.items():
            parts.append("<h2>{}</h2><table>".format(html.escape(camera)))
            for f in found:
                link = "/recordings/{}/{}".format(camera, f["name"])
                play = "<a href=\"{}/play\">play</a>".format(html.escape(link)) \
                    if f["name"].endswith(".mp4") else ""
                parts.append("<tr><td><a href=\"{}\">{}</a></td><td>{:.1f} MB</td><td>{}</td>"
                             "<td>{}</td></tr>".format(html.escape(link), html.escape(f["name"]),
                                                      f["bytes"] / 1e6, f["kind"], play))
            parts.append("</table>")
        req.send_text(200, "".join(parts), "text/html; charset=utf-8")

    def _play(self, req: Any, match: Any) -> None:
        camera, name = match.group(1), match.group(2)
        fd = self.open(camera, name)
        if fd is None or not name.endswith(".mp4"):
            if fd is not None:
                os.close(fd)
            req.send_text(404, "no such recording\n")
            return
        os.close(fd)
        src = html.escape("/recordings/{}/{}".format(camera, name))
        req.send_text(200, "<!doctype html><meta charset=utf-8><title>{0}</title>"
                           "<video id=v src=\"{0}\" controls autoplay muted playsinline "
                           "style=\"max-width:100%\"></video>".format(src),
                      "text/html; charset=utf-8")

    def _file(self, req: Any, match: Any) -> None:
        fd = self.open(match.group(1), match.group(2))
        if fd is None:
            req.send_text(404, "no such recording\n")
            return
        with os.fdopen(fd, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            wanted = byte_range(req.headers.get("Range"), size)
            if wanted == (-1, -1):
                req.send_response(416)
                req.send_header("Content-Range", "bytes */{}".format(size))
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
            first, last = wanted if wanted is not None else (0, size - 1)
            req.send_response(206 if wanted is not None else 200)
            req.send_header("Content-Type", TYPES[os.path.splitext(match.group(2))[1]])
            req.send_header("Accept-Ranges", "bytes")
            req.send_header("Content-Length", str(max(0, last - first + 1)))
            if wanted is not None:
                req.send_header("Content-Range", "bytes {}-{}/{}".format(first, last, size))
            req.send_header("Cache-Control", "no-store")
            req.end_headers()
            handle.seek(first)
            left = last - first + 1
            while left > 0:
                data = handle.read(min(CHUNK, left))
                if not data:  # shorter than it was (retention deleted it): stop
                    break
                req.wfile.write(data)
                left -= len(data)
