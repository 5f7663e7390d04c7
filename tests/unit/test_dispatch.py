from vidpipe.link.dispatch import Balancer


def test_balanced_prefers_the_handler_with_most_room() -> None:
    b = Balancer("balanced", "cam0", timeout=1.0)
    b.heard(b"a", "1", 2, 0.0)
    b.heard(b"b", "2", 1, 0.0)
    first = b.choose()
    assert first is not None and first.identity == b"a"
    b.sent(first, 0, [], 0.0)
    second = b.choose()
    assert second is not None
    b.sent(second, 1, [], 0.1)
    third = b.choose()
    assert third is not None
    b.sent(third, 2, [], 0.2)
    assert b.choose() is None  # a: 2/2, b: 1/1
    assert b.done(b"b", 1) and not b.done(b"b", 1)
    chosen = b.choose()
    assert chosen is not None and chosen.identity == b"b"


def test_by_camera_sticks_to_one_handler_until_it_goes() -> None:
    b = Balancer("by-camera", "cam0", timeout=1.0)
    for ident, name in ((b"a", "1"), (b"b", "2"), (b"c", "3")):
        b.heard(ident, name, 4, 0.0)
    sticky = b.choose()
    assert sticky is not None
    for seq in range(4):
        assert b.choose() is sticky
        b.sent(sticky, seq, ["parts"], 0.0)
    assert b.choose() is None  # full: wait for it rather than go elsewhere
    frames = b.remove(sticky.identity)
    assert [f[0] for f in frames] == [0, 1, 2, 3]
    other = b.choose()
    assert other is not None and other is not sticky


def test_silence_forgets_idle_handlers_but_not_busy_ones() -> None:
    b = Balancer("balanced", "cam0", timeout=1.0)
    busy = b.heard(b"a", "1", 2, 0.0)
    b.sent(busy, 5, [], 0.0)  # in a slow stage: no heartbeats meanwhile
    b.heard(b"b", "2", 2, 0.0)
    b.heard(b"c", "3", 2, 0.5)
    assert [p.identity for p in b.expired(1.2)] == [b"b"]
    assert b.overdue(1.2, 1.0) == [(busy, 5)]
    assert b.in_flight() == 1


def test_a_dropped_connection_names_its_handlers() -> None:
    b = Balancer("balanced", "cam0", timeout=1.0)
    b.heard(b"a", "1", 1, 0.0).fd = 15
    b.heard(b"b", "2", 1, 0.0).fd = 16
    assert [p.identity for p in b.on_fd(15)] == [b"a"]
    assert b.on_fd(-1) == [] and b.on_fd(99) == []


def run_by_camera(cameras, handlers, rounds, start=0.0, balancers=None, joins=None):
    """Decoders' balancers side by side; after each round every handler
    reports (as its credits do) the cameras that sent it frames. ``joins``:
    round -> handlers that connect then. Returns the balancers and the moves."""
    from typing import Dict, List

    balancers = balancers or {cam: Balancer("by-camera", cam, timeout=60.0) for cam in cameras}
    present: List[str] = list(handlers)
    moves = 0
    last: Dict[str, bytes] = {}
    for r in range(rounds):
        now = start + r * 0.5
        present += (joins or {}).get(r, [])
        serving = {h: sorted(c for c, b in balancers.items()
                             if b.sticky == h.encode()) for h in present}
        for cam, b in balancers.items():
            for h in present:
                peer = b.heard(h.encode(), h, 4, now)
                peer.serving = frozenset(serving[h])
            chosen = b.choose(now)
            assert chosen is not None
            if cam in last and last[cam] != chosen.identity:
                moves += 1
            last[cam] = chosen.identity
    return balancers, moves


def placement(balancers) -> dict:
    out: dict = {}
    for cam, b in balancers.items():
        out.setdefault(b.sticky.decode(), []).append(cam)
    return out


def test_by_camera_spreads_any_names_evenly() -> None:
    """Issue 24: crc32(name) % handlers put cam0..cam3 all on handler 1 of 2.
    Now k cameras on n handlers come to at most ceil(k/n) each, whatever the
    names, also when every decoder chooses at the same moment."""
    for cams, handlers in ((["cam0", "cam1", "cam2", "cam3"], ["1", "2"]),
                           (["cam0", "cam1", "cam2", "cam3"], ["1", "2", "3", "4"]),
                           (["a", "b", "c", "d", "e"], ["1", "2"]),
                           (["door", "yard", "gate"], ["x", "y", "z"])):
        balancers, _ = run_by_camera(cams, handlers, rounds=40)
        loads = [len(v) for v in placement(balancers).values()]
        ceiling = -(-len(cams) // len(handlers))
        assert max(loads) <= ceiling, (cams, handlers, placement(balancers))
        # settled: nothing moves any more
        _, moves = run_by_camera(cams, handlers, rounds=20, start=100.0, balancers=balancers)
        assert moves == 0


def test_by_camera_fills_a_late_handler_and_moves_only_what_it_must() -> None:
    cams = ["cam0", "cam1", "cam2", "cam3"]
    balancers, _ = run_by_camera(cams, ["1"], rounds=4)
    assert placement(balancers) == {"1": cams}  # one handler: it takes them all
    balancers, moves = run_by_camera(cams, ["1"], rounds=40, start=10.0, balancers=balancers,
                                     joins={2: ["2"]})
    assert sorted(len(v) for v in placement(balancers).values()) == [2, 2]
    assert moves == 2  # two cameras moved, once each
    # a handler goes away: only its cameras move
    before = placement(balancers)
    for b in balancers.values():
        b.remove(b"2")
    balancers, _ = run_by_camera(cams, ["1"], rounds=2, start=100.0, balancers=balancers)
    assert set(placement(balancers)["1"]) == set(cams) and before["1"] == \
        [c for c in cams if c in before["1"]]
