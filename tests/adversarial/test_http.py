"""The collector's web server against slow clients, DNS rebinding and
strangers: each test does what an attacker would and checks what an
operator still gets."""

import base64
import os
import http.client
import socket
import time
from typing import Dict, List, Optional, Tuple

import pytest

from conftest import free_port
from vidpipe.status import web
from vidpipe.status.web import web_guard
from vidpipe.config import ConfigError, config_from_dict


def serve(guard: Optional[web.Guard] = None) -> web.WebServer:
    routes = {r"/metrics": lambda req, _m: req.send_text(200, "vidpipe_up 1\n")}
    server = web.WebServer("127.0.0.1:{}".format(free_port()), routes, guard)
    assert server.start(), server.error
    return server


def get(server: web.WebServer, path: str = "/metrics", headers: Optional[Dict[str, str]] = None,
        timeout: float = 5.0) -> Tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


@pytest.fixture
def server() -> web.WebServer:
    srv = serve()
    yield srv
    srv.close()


def test_slow_clients_do_not_shut_out_metrics(server: web.WebServer) -> None:
    """64 clients each sending a request a byte at a time: /metrics still answers
    at once, and every slow one is cut by its request deadline."""
    slow: List[socket.socket] = []
    for _ in range(2 * web.MAX_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"G")
        slow.append(sock)
    time.sleep(0.3)
    started = time.monotonic()
    for _ in range(5):
        assert get(server) == (200, "vidpipe_up 1\n")
    assert time.monotonic() - started < 2.0
    time.sleep(web.HEADER_DEADLINE + 1.0)
    cut = 0
    for sock in slow:
        try:
            sock.sendall(b"E")
            cut += sock.recv(1) == b""
        except OSError:
            cut += 1
        sock.close()
    assert cut == len(slow)  # nobody holds a slot past the deadline


def test_a_request_trickled_byte_by_byte_is_cut_at_the_deadline(server: web.WebServer) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    started = time.monotonic()
    request = b"GET /metrics HTTP/1.0\r\nX-Padding: " + b"a" * 100
    closed_at = None
    for byte in request:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            closed_at = time.monotonic()
            break
        time.sleep(0.5)  # each read is quick: only a deadline per request stops this
        sock.setblocking(False)
        try:
            if sock.recv(1) == b"":
                closed_at = time.monotonic()
                break
        except BlockingIOError:
            pass
        finally:
            sock.setblocking(True)
    sock.close()
    assert closed_at is not None
    assert web.HEADER_DEADLINE - 0.5 <= closed_at - started <= web.HEADER_DEADLINE + 2.0


@pytest.mark.parametrize("headers,status", [
    ({"Host": "attacker.example:8090"}, 421),  # DNS rebinding: the page's own name
    ({"Host": "127.0.0.1", "Origin": "http://attacker.example"}, 403),
    ({"Host": "127.0.0.1", "Origin": "null"}, 403),
    ({"Host": "localhost", "Sec-Fetch-Site": "cross-site"}, 403),
    ({"Host": "localhost:8090"}, 200),
    ({"Host": "127.0.0.1:8090", "Origin": "http://127.0.0.1:8090"}, 200),
    ({"Host": "[::1]:8090"}, 200),
])
def test_host_and_origin_checks(server: web.WebServer, headers: Dict[str, str],
                                status: int) -> None:
    code, body = get(server, headers=headers)
    assert code == status, body
    if status != 200:
        assert "vidpipe_up" not in body


def test_a_password_is_asked_for_and_checked(tmp_path) -> None:
    secret = tmp_path / "http-password"
    secret.write_text("s3cret-pw\n")
    config = config_from_dict({"collector": {
        "outputs": ["log"], "metrics": True, "http_listen": "0.0.0.0:8090",
        "http_password_file": str(secret), "http_user": "ops"}})
    srv = serve(web_guard(config.collector))
    try:
        code, _ = get(srv)
        assert code == 401
        bad = base64.b64encode(b"ops:wrong").decode()
        assert get(srv, headers={"Authorization": "Basic " + bad})[0] == 401
        good = base64.b64encode(b"ops:s3cret-pw").decode()
        assert get(srv, headers={"Authorization": "Basic " + good}) == (200, "vidpipe_up 1\n")
    finally:
        srv.close()


def test_serving_the_network_without_a_password_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"collector": {"outputs": ["preview"], "http_listen": "0.0.0.0:8090"}})
    assert "collector.http.password_file" in str(err.value)


GET_AS = """
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
conn.request("GET", sys.argv[2])
resp = conn.getresponse()
print(resp.status, resp.read().decode("latin-1").strip())
"""


def get_as(uid: int, port: int, path: str) -> Tuple[int, str]:
    """GET ``path`` from a process of account ``uid`` (a real other user)."""
    import subprocess
    import sys

    # the system's interpreter: the test's own may sit where only root can
    # reach (pyenv's, a floor suite's venv under /root)
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    out = subprocess.run([python, "-c", GET_AS, str(port), path], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=30,
                         preexec_fn=lambda: (os.setgroups([]), os.setgid(uid), os.setuid(uid)),
                         cwd="/")
    code, _, body = out.stdout.strip().partition(" ")
    assert code.isdigit(), out.stdout
    return int(code), body


@pytest.mark.parametrize("access,password,stranger", [
    ("group", False, 403),   # the default: not every local account sees the cameras
    ("anyone", False, 200),  # as before 0.2, for whoever chose it
    ("group", True, 401),    # a password governs when there is one
])
def test_the_local_preview_is_for_group_vidpipe(tmp_path, access: str, password: bool,
                                                stranger: int) -> None:
    """Issue 24: user nobody got a live JPEG from the preview on 127.0.0.1.
    Without a password it now answers only root, the collector's account and
    group vidpipe: the client socket's owner, as the kernel knows it."""
    import pwd

    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("needs root to connect as another account")
        pytest.skip("needs root to connect as another account")
    cc: Dict[str, object] = {"outputs": ["log"], "metrics": True, "http_local_access": access}
    if password:
        secret = tmp_path / "pw"
        secret.write_text("s3cret\n")
        cc["http_password_file"] = str(secret)
    routes = {r"/metrics": lambda req, _m: req.send_text(200, "vidpipe_up 1\n"),
              r"/snapshot/cam0.jpg": lambda req, _m: req.send_body(200, b"\xff\xd8", "image/jpeg")}
    srv = web.WebServer("127.0.0.1:{}".format(free_port()), routes,
                        web_guard(config_from_dict({"collector": cc}).collector))
    assert srv.start(), srv.error
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
        code, body = get_as(nobody, srv.port, "/snapshot/cam0.jpg")
        assert code == stranger, body
        if code == 403:
            assert "group vidpipe" in body and "uid {}".format(nobody) in body
        if not password:  # numbers for any account (a Prometheus of its own user)
            assert get_as(nobody, srv.port, "/metrics") == (200, "vidpipe_up 1")
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
            conn.request("GET", "/snapshot/cam0.jpg")  # root, this process's account
            assert conn.getresponse().status == 200
            conn.close()
    finally:
        srv.close()


def test_the_owner_of_a_loopback_connection_is_found() -> None:
    from vidpipe.status.localpeer import peer_uid

    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        listener = socket.socket(family)
        listener.bind((host, 0))
        listener.listen()
        client = socket.create_connection((host, listener.getsockname()[1]))
        conn, _ = listener.accept()
        try:
            assert peer_uid(conn) == os.geteuid()
            assert peer_uid(conn, proc="/nonexistent") is None  # unknown: not allowed
        finally:
            for sock in (conn, client, listener):
                sock.close()
