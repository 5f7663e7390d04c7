from vidpipe.dispatch import Balancer


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
