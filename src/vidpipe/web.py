"""The collector's small HTTP server: live preview pages and ``/metrics``.

Runs in daemon threads next to the collector's loop and never touches its
sockets: handlers only read what the loop publishes (JPEGs, the board).
A slow or stalled browser costs one thread that times out, never a frame.
"""

import http.server
import logging
import re
import socket
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from vidpipe.config import split_listen

log = logging.getLogger("vidpipe.web")

Route = Callable[["Request", "re.Match[str]"], None]
MAX_CLIENTS = 32


class Request(http.server.BaseHTTPRequestHandler):
    server_version = "vidpipe"
    protocol_version = "HTTP/1.0"
    routes: Dict[str, Route] = {}

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        path = self.path.split("?", 1)[0]
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
        self.clients = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.clients.acquire(blocking=False):
            self.shutdown_request(request)  # too many at once: refuse, stay bounded
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(10)  # a stalled client cannot hold a thread forever
            super().process_request_thread(request, client_address)
        finally:
            self.clients.release()


class WebServer:
    def __init__(self, listen: str, routes: Dict[str, Route]) -> None:
        self.listen = listen
        self.handler = type("VidpipeRequest", (Request,), {"routes": dict(routes)})
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
