"""The transport helpers against real ZeroMQ sockets."""

import time
from typing import Any, Dict, List

import zmq
from zmq.utils.monitor import recv_monitor_message

from vidpipe.link import sockets as transport, wire
from vidpipe.stats import Tally


def _credit(name: str) -> List[Any]:
    return wire.control_parts(wire.CREDIT, {"handler": name, "window": 1})


def test_routed_receive_names_the_connection_a_disconnect_event_reports(tmp_path: Any) -> None:
    """The decoder tells a dead handler by matching the fd of its messages with
    the fd in the ROUTER's DISCONNECTED event: every peer must get its own
    real fd, and closing a peer must report exactly that fd."""
    sockets = transport.Sockets(1 << 20)
    endpoint = "ipc://{}/r.sock".format(tmp_path)
    router = sockets.make(zmq.ROUTER)
    sockets.bind(router, endpoint)
    monitor = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    peers = []
    for n in range(4):
        dealer = sockets.make(zmq.DEALER)
        dealer.connect(endpoint)
        dealer.send_multipart(_credit(str(n)))
        peers.append(dealer)
    fds: Dict[str, int] = {}
    bad = Tally()
    deadline = time.monotonic() + 5
    while len(fds) < 4 and time.monotonic() < deadline:
        if router.poll(100):
            got = transport.recv_message(router, bad, sockets.max_bytes, routed=True)
            assert got is not None, bad.text()
            _identity, fd, msg = got
            fds[msg.meta["handler"]] = fd
    assert sorted(fds) == ["0", "1", "2", "3"]
    assert all(fd >= 0 for fd in fds.values()), fds
    assert len(set(fds.values())) == 4, fds

    peers[2].close(linger=0)
    assert monitor.poll(5000), "no disconnect event"
    event = recv_monitor_message(monitor)
    assert event["event"] == zmq.EVENT_DISCONNECTED
    assert event["value"] == fds["2"]
    router.disable_monitor()
    monitor.close(linger=0)
    sockets.close()
