"""The label rule (vidpipe.names.label): whatever a model or a hostile
handler calls a thing, what reaches a topic, routing key, event id or
metrics label is short, of a fixed alphabet, stable, and tells labels apart."""

from hypothesis import given, settings, strategies as st

from vidpipe import names
from vidpipe.outputs.events import by_label


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")),
                 st.integers(), st.floats(allow_nan=True), st.none(), st.lists(st.integers())))
def test_any_label_becomes_one_of_the_rule_and_stays_it(raw: object) -> None:
    label = names.label(raw)
    assert names._LABEL_RE.match(label), label
    assert len(label.encode()) <= names.LABEL_MAX
    assert names.label(label) == label  # idempotent
    assert names.label(raw) == label  # stable across calls (and processes: CRC-32)


def test_ordinary_labels_are_kept_and_hostile_ones_told_apart() -> None:
    assert [names.label(l) for l in ("person", "traffic light", "cat-2", 3)] == \
        ["person", "traffic_light", "cat-2", "3"]
    hostile = ["a#b", "a+b", "a/b", "\U0001F600" * 64, "\ud800", "x" * 300, "x" * 301, ""]
    made = [names.label(l) for l in hostile]
    assert len(set(made)) == len(hostile)
    assert names.label(None) == names.label({"a": 1}) == names.NO_LABEL


def test_an_event_id_fits_amqps_message_id_whatever_the_label() -> None:
    from vidpipe.outputs.events import Tracker

    tracker = Tracker(min_frames=1)
    meta = {"detections": [{"label": "\U0001F600" * 64, "box": [0, 0, 1, 1]},
                           {"label": "bad\ud800", "box": [0, 0, 1, 1]}]}
    events = tracker.feed("c" * 31, 1, 2 ** 63 - 1, meta)
    assert len(events) == 2
    assert all(len(e["id"].encode()) <= 255 for e in events)
    assert set(by_label(meta)) == {e["label"] for e in events}


def test_one_line_keeps_text_on_one_printable_line() -> None:
    assert names.one_line("a\nb\r\x00c\ud800") == "a?b??c?"
    assert names.one_line("ok") == "ok"
    assert names.one_line("y" * 300, 10) == "yyyyyyy..."
