"""The collector's small HTTP server: live preview pages and ``/metrics``.

Runs in daemon threads next to the collector's loop and never touches its
sockets: handlers only read what the loop publishes (JPEGs, the board).
A slow or stalled browser costs one thread that times out, never a frame.

What keeps it answering and private:

* a request must be read whole within ``HEADER_DEADLINE`` seconds (not per
  socket read: a byte every few seconds does not keep a slot); when every
  slot is taken, a new connection pushes out the oldest one still sending
  its request, so slow clients cannot shut others out; live streams take at
  most ``MAX_STREAMS`` of the ``MAX_CLIENTS`` slots;
* the ``Host`` header must name this box (an IP address, a localhost name,
  the listen address, the host name, or one of ``http_hosts``) and an
  ``Origin`` must be one of those too: a web page elsewhere cannot read
  snapshots or status through a browser by DNS rebinding;
* with ``http_password_file`` (required when listening beyond localhost)
  every request needs HTTP basic authentication; without one, pictures and
  status go only to root, the collector's account and group ``vidpipe`` (the client
  socket's owner, :mod:`.localpeer`; ``http_local_access = "anyone"``
  answers every local account, as before 0.2).
"""

import base64
import collections
import hmac
import http.server
import ipaddress
import logging
import re
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterable, Optional, Tuple
from urllib.parse import urlsplit

from vidpipe.config import LOCAL_HOSTS, split_listen
from vidpipe.status.localpeer import LocalAccounts

log = logging.getLogger("vidpipe.web")

Route = Callable[["Request", "re.Match[str]"], None]
MAX_CLIENTS = 32
MAX_STREAMS = 16
HEADER_DEADLINE = 5.0
#: what any local account may read without a password: numbers, no pictures
#: (a Prometheus running as its own user scrapes it)
FOR_ANY_ACCOUNT = ("/metrics",)
IO_TIMEOUT = 10.0


def _host_name(value: str) -> str:
    """The host of a ``Host`` header or an origin's netloc, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Guard:
    """Who may ask: the Host/Origin check and the optional password."""

    def __init__(self, listen_host: str, extra_hosts: Iterable[str] = (),
                 user: str = "", password: str = "",
                 local: Optional[LocalAccounts] = None) -> None:
        names = set(LOCAL_HOSTS) | {listen_host.lower()} | {h.lower() for h in extra_hosts}
        if not _is_ip(listen_host) or listen_host in ("0.0.0.0", "::"):
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.names = names
        self.credentials = base64.b64encode("{}:{}".format(user, password).encode()) \
            if password else b""
        #: without a password: only these local accounts (None: anyone)
        self.local = None if password else local

    def allowed_host(self, name: str) -> bool:
        # a DNS-rebinding page always reaches us under a domain name, never an IP
        return name in self.names or _is_ip(name)

    def refuse(self, headers: Any, sock: Any = None,
               path: str = "") -> Optional[Tuple[int, str]]:
        """``(status, reason)`` when the request must be refused, else None."""
        if self.local is not None and sock is not None and path not in FOR_ANY_ACCOUNT:
            allowed, uid = self.local.allows(sock)
            if not allowed:
                return 403, ("the preview on this box is for root and group {} (adduser USER "
                             "{}), uid {} is neither; or set collector.http.password_file"
                             .format(self.local.group, self.local.group,
                                     "unknown" if uid is None else uid))
        host = headers.get("Host")
        if host is not None and not self.allowed_host(_host_name(host)):
            return 421, "unknown host name {!r} (add it to collector.http.hosts)".format(
                host[:80])
        origin = headers.get("Origin")
        if origin is not None and (origin == "null" or not self.allowed_host(
                _host_name(urlsplit(origin).netloc))):
            return 403, "requests from other origins are refused"
        if headers.get("Sec-Fetch-Site") == "cross-site":
            return 403, "cross-site requests are refused"
        if self.credentials:
            given = headers.get("Authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "basic" or not hmac.compare_digest(
                    token.strip().encode("ascii", "replace"), self.credentials):
                return 401, "authentication required"
        return None


def web_guard(cc: Any) -> Guard:
    """The guard ``[collector]`` asks for; reads ``[collector.http]`` ``password_file``."""
    password = ""
    if cc.http_password_file:
        with open(cc.http_password_file, encoding="utf-8") as handle:
            password = handle.readline().strip()
        if not password:
            raise OSError("{} holds no password".format(cc.http_password_file))
    local = LocalAccounts() if cc.http_local_access == "group" else None
    return Guard(split_listen(cc.http_listen)[0], cc.http_hosts, cc.http_user, password, local)


class Request(http.server.BaseHTTPRequestHandler):
    server_version = "vidpipe"
    protocol_version = "HTTP/1.0"
    routes: Dict[str, Route] = {}

    guard: Optional[Guard] = None

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.request_read(self.request)  # type: ignore[attr-defined]
        return ok

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        path = self.path.split("?", 1)[0]
        refused = self.guard.refuse(self.headers, self.connection, path) \
            if self.guard is not None else None
        if refused is not None:
            code, why = refused
            log.info("refused %s %s from %s: %s", self.command, path[:80],
                     self.address_string(), why)
            self.send_response(code)
            if code == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="vidpipe", charset="UTF-8"')
            body = (why + "\n").encode("utf-8")
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        for pattern, route in self.routes.items():
            match = re.fullmatch(pattern, path)
            if match:
                try:
                    route(self, match)
                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                    pass  # the browser went away
                except Exception as exc:  # one bad page never takes the server down
                    log.warning("GET %s: %s: %s", path, type(exc).__name__, exc)
                    try:
                        self.send_text(500, "error: {}\n".format(exc))
                    except OSError:
                        pass
                return
        self.send_text(404, "not found: {}\n".format(path))

    def send_text(self, code: int, text: str, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_body(code, text.encode("utf-8"), ctype)

    def send_body(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], handler: Any) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.lock = threading.Lock()
        self.active = 0
        #: connections still sending their request, oldest first -> deadline
        self.reading: "collections.OrderedDict[Any, float]" = collections.OrderedDict()
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        self.closing = threading.Event()
        super().__init__(address, handler)
        self.reaper = threading.Thread(target=self._reap, name="http-deadline", daemon=True)
        self.reaper.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            if self.active >= MAX_CLIENTS:
                if not self.reading:  # every slot busy serving: refuse, stay bounded
                    self.shutdown_request(request)
                    return
                oldest, _deadline = self.reading.popitem(last=False)
                _cut(oldest)  # a slow sender gives way to a new client
            self.active += 1
            self.reading[request] = time.monotonic() + HEADER_DEADLINE
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(IO_TIMEOUT)  # a stalled client cannot hold a thread forever
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.active -= 1
                self.reading.pop(request, None)

    def server_close(self) -> None:
        self.closing.set()
        super().server_close()

    def request_read(self, request: Any) -> None:
        with self.lock:
            self.reading.pop(request, None)

    def _reap(self) -> None:
        """Cut connections whose request is not in by its deadline."""
        while not self.closing.wait(0.25):
            now = time.monotonic()
            with self.lock:
                late = [r for r, deadline in self.reading.items() if deadline <= now]
                for request in late:
                    del self.reading[request]
            for request in late:
                _cut(request)


def _cut(request: Any) -> None:
    try:
        request.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class WebServer:
    def __init__(self, listen: str, routes: Dict[str, Route],
                 guard: Optional[Guard] = None) -> None:
        self.listen = listen
        if guard is None:
            guard = Guard(split_listen(listen)[0])
        self.handler = type("VidpipeRequest", (Request,), {"routes": dict(routes),
                                                          "guard": guard})
        self.server: Optional[_Server] = None
        self.thread: Optional[threading.Thread] = None
        self.error = ""

    def start(self) -> bool:
        """Bind and serve; False (and ``error`` says why) if the address is unusable."""
        try:
            self.server = _Server(split_listen(self.listen), self.handler)
        except (OSError, ValueError) as exc:
            self.error = "cannot serve http on {}: {}".format(self.listen, exc)
            return False
        self.thread = threading.Thread(target=self.server.serve_forever, name="http",
                                       kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()
        return True

    @property
    def port(self) -> int:
        return self.server.server_address[1] if self.server else 0

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
