from vidpipe.link.ordering import DROPPED, MISSING, OK, CameraOrder, Entry


def ok(seq: int, t: float = 0.0) -> Entry:
    return Entry(seq=seq, status=OK, arrived=t)


def drop(seq: int, reason: str = "no_capacity", t: float = 0.0) -> Entry:
    return Entry(seq=seq, status=DROPPED, arrived=t, reason=reason)


def seqs(entries: list) -> list:
    return [(e.seq, e.status) if e.status != MISSING else (e.seq, MISSING, e.count)
            for e in entries]


def test_out_of_order_results_are_released_in_order() -> None:
    order = CameraOrder("c", window=8, timeout=1.0)
    assert order.add(1, ok(1)) == []
    assert order.add(1, ok(2)) == []
    assert seqs(order.add(1, ok(0))) == [(0, OK), (1, OK), (2, OK)]
    assert seqs(order.add(1, drop(3))) == [(3, DROPPED)]
    assert order.processed == 3 and order.dropped == {"no_capacity": 1}


def test_a_gap_is_given_up_after_the_timeout_and_counted() -> None:
    order = CameraOrder("c", window=8, timeout=0.25)
    order.add(1, ok(0, 0.0))
    assert order.add(1, ok(2, 0.1)) == []
    assert order.expire(0.2) == []
    assert seqs(order.expire(0.4)) == [(1, MISSING, 1), (2, OK)]
    assert order.missing == 1
    # a late result for it is counted late, not delivered out of order
    assert order.add(1, ok(1, 0.5))[0].late
    assert order.late == 1 and order.missing == 0


def test_a_late_drop_notice_turns_a_gap_into_an_accounted_drop() -> None:
    order = CameraOrder("c", window=4, timeout=0.1)
    order.add(1, ok(0))
    order.add(1, ok(2, 0.0))
    order.expire(1.0)
    assert order.missing == 1
    entries = order.add(1, drop(1, "handler_lost"))
    assert entries[0].late and order.missing == 0 and order.dropped == {"handler_lost": 1}
    assert order.add(1, drop(1, "handler_lost")) == []  # twice is a duplicate
    assert order.duplicate == 1


def test_the_window_bounds_what_is_held() -> None:
    order = CameraOrder("c", window=4, timeout=100.0)
    order.add(1, ok(0))
    released = []
    for seq in range(2, 7):
        released += order.add(1, ok(seq))
    assert len(order.pending) < 4
    assert (1, MISSING, 1) in seqs(released)


def test_end_of_stream_waits_for_the_rest_then_gives_up() -> None:
    order = CameraOrder("c", window=8, timeout=0.5)
    order.add(1, ok(0))
    order.end(1, 3, {}, now=1.0)
    assert not order.finished
    order.add(1, ok(1, 1.1))
    assert seqs(order.expire(1.2)) == []
    assert seqs(order.expire(2.0)) == [(2, MISSING, 1)]
    assert order.finished and order.summary()["missing"] == 1


def test_a_new_stream_starts_afresh_and_old_stream_messages_are_late() -> None:
    order = CameraOrder("c", window=8, timeout=0.5)
    order.add(1, ok(0))
    order.add(1, ok(2))
    flushed = order.add(2, ok(0))
    assert seqs(flushed)[:2] == [(1, MISSING, 1), (2, OK)]
    assert seqs(flushed)[2:] == [(0, OK)]
    assert order.add(1, ok(3)) == [] and order.late == 1


def test_a_collector_that_joins_mid_stream_starts_where_the_stream_is() -> None:
    order = CameraOrder("c", window=8, timeout=0.5)
    assert seqs(order.add(1, ok(5000))) == [(5000, OK)]
    assert order.missing == 0
