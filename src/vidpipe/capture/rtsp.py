"""A cheap look at an RTSP camera: one DESCRIBE request on a TCP connection
(with Basic or Digest credentials from the URL when the camera asks), read
back to its status line.

The decoder uses it while a camera is away, instead of reopening the whole
decode pipeline: a probe costs one short TCP exchange, so it can run every
second (frames flow again soon after a rebooted camera answers) and it
names the reason a camera refuses (``401 Unauthorized`` -- a wrong
password -- or ``404 Not Found``), which the decode pipeline only prints to
its own stderr. An answering camera's session description (SDP) also says
which codec its video is in, so ``codec = "auto"`` needs no extra
connection. Everything the camera sends is read with a size limit and a
deadline, and parsed as untrusted text.
"""

import base64
import hashlib
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

DEFAULT_PORT = 554
MAX_RESPONSE = 16384
STATUS_RE = re.compile(r"^RTSP/1\.[01] ([0-9]{3}) ?([^\r\n]{0,100})")
RTPMAP_RE = re.compile(r"^a=rtpmap:\s*([0-9]{1,3})\s+([A-Za-z0-9._-]{1,32})/")
#: RTP encoding names (RFC 6184, RFC 7798) -> the codec names of the config
ENCODINGS = {"h264": "h264", "h265": "h265", "hevc": "h265"}


@dataclass
class Answer:
    """What a probe found: ``status`` is the RTSP status code, ``None`` when
    no RTSP answer came; ``reason`` says it in words."""

    status: Optional[int]
    reason: str
    #: the video's codec from the SDP: "h264", "h265", another RTP encoding
    #: name in lower case ("jpeg", "mp4v-es"), or "" when not known
    codec: str = ""

    @property
    def up(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """The camera answers but will not serve (credentials, path): trying
        again soon will not help."""
        return self.status is not None and self.status in (401, 403, 404)


def probe(url: str, timeout: float = 1.0) -> Answer:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        return Answer(None, "bad port in the URL")
    target = "{}://{}{}{}".format(parts.scheme, _host_text(host), ":{}".format(port)
                                  if parts.port else "", parts.path or "/")
    if parts.query:
        target += "?" + parts.query
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if parts.scheme == "rtsps":  # TLS: that it answers is all we look at
                return Answer(200, "answering (rtsps: TLS not probed)")
            status, reason, headers, body = _ask(sock, target, 1, None, deadline)
            if status == 401 and user:
                auth = _authorization(headers.get("www-authenticate", ""), user, password,
                                      target)
                if auth:
                    status, reason, headers, body = _ask(sock, target, 2, auth, deadline)
            codec = sdp_codec(body.decode("latin-1")) if 200 <= status < 300 else ""
            return Answer(status, "{} {}".format(status, reason).strip(), codec)
    except socket.timeout:
        return Answer(None, "not answering (timed out)")
    except ConnectionRefusedError:
        return Answer(None, "not answering (connection refused)")
    except ValueError as exc:
        return Answer(None, str(exc))
    except OSError as exc:
        return Answer(None, "not answering ({})".format(exc.strerror or exc))


def _host_text(host: str) -> str:
    return "[{}]".format(host) if ":" in host else host


def sdp_codec(sdp: str) -> str:
    """The codec of the first video stream a session description offers."""
    video = False
    payloads: List[str] = []
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("m="):
            video = line.startswith("m=video ")
            payloads = line.split()[3:]
        elif video and line.startswith("a=rtpmap:"):
            found = RTPMAP_RE.match(line)
            if found and found.group(1) in payloads:
                name = found.group(2).lower()
                return ENCODINGS.get(name, name)
    return ""


def _ask(sock: socket.socket, target: str, cseq: int, auth: Optional[str],
         deadline: float) -> Tuple[int, str, Dict[str, str], bytes]:
    """One DESCRIBE: the status, its reason, the headers and as much of the
    body (the SDP) as came within the deadline and MAX_RESPONSE."""
    request = "DESCRIBE {} RTSP/1.0\r\nCSeq: {}\r\nAccept: application/sdp\r\n" \
              "User-Agent: vidpipe probe\r\n".format(target, cseq)
    if auth:
        request += "Authorization: {}\r\n".format(auth)
    sock.sendall((request + "\r\n").encode("utf-8", "replace"))
    data = b""
    while b"\r\n\r\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        sock.settimeout(remaining)
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_RESPONSE:
            raise ValueError("not an RTSP server (an answer over {} bytes)".format(
                MAX_RESPONSE))
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    found = STATUS_RE.match(head)
    if not found:
        raise ValueError("not an RTSP server (it answered {!r})".format(head[:40]))
    headers: Dict[str, str] = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "www-authenticate" and name in headers:  # prefer Digest when offered
            if value.strip().lower().startswith("digest"):
                headers[name] = value.strip()
            continue
        headers[name] = value.strip()
    return int(found.group(1)), found.group(2).strip(), headers, \
        _body(sock, data.split(b"\r\n\r\n", 1)[1], headers, deadline)


def _body(sock: socket.socket, data: bytes, headers: Dict[str, str], deadline: float) -> bytes:
    try:
        length = max(0, min(int(headers.get("content-length", "0")), MAX_RESPONSE))
    except ValueError:
        return b""
    try:
        while len(data) < length and time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass  # the status was enough; the codec stays unknown
    return data[:length]


def _authorization(challenge: str, user: str, password: str, target: str,
                   method: str = "DESCRIBE", cnonce: str = "") -> Optional[str]:
    scheme, _, rest = challenge.partition(" ")
    if scheme.lower() == "basic":
        token = base64.b64encode("{}:{}".format(user, password).encode("utf-8")).decode()
        return "Basic " + token
    if scheme.lower() != "digest":
        return None
    params = dict((k.lower(), v.strip('"')) for k, v in
                  re.findall(r'([A-Za-z]+)=("[^"]*"|[^,\s]*)', rest))
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    if not nonce:
        return None

    def md5(text: str) -> str:
        return hashlib.md5(text.encode("utf-8")).hexdigest()  # RTSP Digest is MD5

    ha1 = md5("{}:{}:{}".format(user, realm, password))
    ha2 = md5("{}:{}".format(method, target))
    fields = 'username="{}", realm="{}", nonce="{}", uri="{}"'.format(
        user.replace('"', ""), realm, nonce, target)
    if "auth" in [q.strip() for q in params.get("qop", "").split(",")]:
        cnonce = cnonce or os.urandom(8).hex()
        response = md5("{}:{}:00000001:{}:auth:{}".format(ha1, nonce, cnonce, ha2))
        fields += ', qop=auth, nc=00000001, cnonce="{}"'.format(cnonce)
    else:
        response = md5("{}:{}:{}".format(ha1, nonce, ha2))
    if params.get("opaque"):
        fields += ', opaque="{}"'.format(params["opaque"])
    return "Digest {}, response=\"{}\"".format(fields, response)
