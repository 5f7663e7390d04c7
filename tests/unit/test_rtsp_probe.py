"""The RTSP probe (vidpipe.capture.rtsp) against servers on real sockets: what a
camera's answer means, Digest as RFC 2617 computes it, and hostile answers
(garbage, endless headers, silence) named without hanging."""

import socket
import threading
import time
from typing import Iterator, List

import pytest

from vidpipe.capture import rtsp


class OneShot:
    """A TCP server that answers each request with the next canned reply."""

    def __init__(self, replies: List[bytes], delay: float = 0.0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.requests: List[str] = []
        self.replies, self.delay = replies, delay
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            for reply in self.replies:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                self.requests.append(data.decode())
                time.sleep(self.delay)
                conn.sendall(reply)
            time.sleep(0.5)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def closing_servers() -> Iterator[List[OneShot]]:
    made: List[OneShot] = []
    yield made
    for server in made:
        server.close()


def test_an_answering_camera_is_up(closing_servers: List[OneShot]) -> None:
    server = OneShot([b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 0\r\n\r\n"])
    closing_servers.append(server)
    answer = rtsp.probe("rtsp://127.0.0.1:{}/live?ch=1".format(server.port))
    assert answer.up and answer.reason == "200 OK"
    assert server.requests[0].startswith(
        "DESCRIBE rtsp://127.0.0.1:{}/live?ch=1 RTSP/1.0\r\n".format(server.port))


def test_basic_credentials_are_sent_when_asked_and_a_refusal_named(
        closing_servers: List[OneShot]) -> None:
    server = OneShot([b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n"
                      b"WWW-Authenticate: Basic realm=\"cam\"\r\n\r\n",
                      b"RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\n\r\n"])
    closing_servers.append(server)
    answer = rtsp.probe("rtsp://admin:p%40ss@127.0.0.1:{}/s".format(server.port))
    assert not answer.up and answer.refused and answer.reason == "401 Unauthorized"
    assert "Authorization: Basic YWRtaW46cEBzcw==" in server.requests[1]  # admin:p@ss
    assert "p%40ss" not in server.requests[1] and "admin" not in server.requests[0]


def test_digest_is_computed_as_rfc_2617_says() -> None:
    # RFC 2617 section 3.5's example (HTTP GET; RTSP uses the same computation)
    header = rtsp._authorization(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"',
        "Mufasa", "Circle Of Life", "/dir/index.html", method="GET", cnonce="0a4f113b")
    assert header is not None
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


@pytest.mark.parametrize("reply,reason", [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not an RTSP server (it answered 'HTTP/1.1 400"),
    (b"RTSP/1.0 200 OK\r\nX: " + b"a" * 20000, "not an RTSP server (an answer over 16384 bytes)"),
])
def test_a_hostile_answer_is_named(closing_servers: List[OneShot], reply: bytes,
                                   reason: str) -> None:
    server = OneShot([reply])
    closing_servers.append(server)
    answer = rtsp.probe("rtsp://127.0.0.1:{}/".format(server.port))
    assert not answer.up and answer.status is None and answer.reason.startswith(reason)


def test_silence_and_absence_take_no_longer_than_the_timeout(
        closing_servers: List[OneShot]) -> None:
    server = OneShot([b"RTSP/1.0 200 OK\r\n\r\n"], delay=5.0)
    closing_servers.append(server)
    began = time.monotonic()
    answer = rtsp.probe("rtsp://127.0.0.1:{}/".format(server.port), timeout=0.5)
    assert answer.reason == "not answering (timed out)" and time.monotonic() - began < 1.5
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    assert rtsp.probe("rtsp://127.0.0.1:{}/".format(port)).reason == \
        "not answering (connection refused)"


SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\n"
       "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n"  # an audio line is not the video
       "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=control:stream=0\r\n")


def test_an_answering_camera_says_its_codec_in_the_sdp(closing_servers: List[OneShot]) -> None:
    body = SDP.encode()
    server = OneShot([b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body])
    closing_servers.append(server)
    answer = rtsp.probe("rtsp://127.0.0.1:{}/live".format(server.port))
    assert answer.up and answer.codec == "h265"


@pytest.mark.parametrize("sdp,codec", [
    (SDP, "h265"),
    ("m=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\n", "h264"),
    ("m=video 0 RTP/AVP 26\na=rtpmap:26 JPEG/90000\n", "jpeg"),
    ("m=video 0 RTP/AVP 96\na=rtpmap:97 H264/90000\n", ""),  # not a payload the line offers
    ("a=rtpmap:96 H264/90000\n", ""),  # no media line at all
    ("m=video 0 RTP/AVP 96\na=rtpmap:96 H264;rm -rf/90000\n", ""),  # hostile: not a name
    ("", ""),
])
def test_the_codec_is_read_from_the_video_media_line(sdp: str, codec: str) -> None:
    assert rtsp.sdp_codec(sdp) == codec


def test_a_body_that_never_comes_leaves_the_codec_unknown(
        closing_servers: List[OneShot]) -> None:
    server = OneShot([b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 900\r\n\r\nm=vid"])
    closing_servers.append(server)
    started = time.monotonic()
    answer = rtsp.probe("rtsp://127.0.0.1:{}/live".format(server.port), timeout=0.5)
    assert answer.up and answer.codec == "" and time.monotonic() - started < 1.0


def test_a_negative_content_length_is_no_body(closing_servers: List[OneShot]) -> None:
    server = OneShot([b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: -5\r\n\r\n" + SDP.encode()])
    closing_servers.append(server)
    answer = rtsp.probe("rtsp://127.0.0.1:{}/live".format(server.port))
    assert answer.up and answer.codec == ""
