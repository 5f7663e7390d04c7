"""Events from results (vidpipe.outputs.events): debounced start, update and end per
camera and label, from the metadata the stages write."""

from typing import Any, Dict, List

from vidpipe.outputs.events import MAX_LABELS, Tracker, by_label

MS = 1_000_000


def motion(on: bool, fraction: float = 0.01) -> Dict[str, Any]:
    return {"motion": {"boxes": [[1, 2, 3, 4]] if on else [], "fraction": fraction}}


def run(tracker: Tracker, pattern: str, camera: str = "cam0",
        period_ms: int = 100) -> List[Dict[str, Any]]:
    """Feed one frame per character ('x': motion, '.': none) at 10 fps."""
    out = []
    for seq, char in enumerate(pattern):
        out += tracker.feed(camera, seq, seq * period_ms * MS, motion(char == "x"))
    return out


def test_a_blip_shorter_than_min_frames_makes_no_event() -> None:
    assert run(Tracker(min_frames=3, end_after_s=0.5), "..xx....x.....") == []


def test_start_then_end_after_the_quiet_time() -> None:
    events = run(Tracker(min_frames=2, end_after_s=0.5), "..xxxx.........")
    assert [(e["type"], e["seq"]) for e in events] == [("start", 3), ("end", 5)]
    start, end = events
    assert start["id"] == end["id"] == "cam0-motion-{}".format(2 * 100 * MS)
    assert start["start_seq"] == 2 and end["frames"] == 4 and end["duration_s"] == 0.3
    assert start["boxes"] == [[1, 2, 3, 4]] and end["boxes"] == []


def test_short_gaps_inside_an_occurrence_do_not_end_it() -> None:
    events = run(Tracker(min_frames=2, end_after_s=0.5), "xx..xx..xx........")
    assert [e["type"] for e in events] == ["start", "end"]
    assert events[1]["frames"] == 6 and events[1]["seq"] == 9


def test_a_rising_score_is_an_update() -> None:
    tracker = Tracker(min_frames=1, end_after_s=1, update_s=100)
    out = []
    for seq, fraction in enumerate([0.1, 0.05, 0.3, 0.2]):
        out += tracker.feed("cam0", seq, seq * 100 * MS, motion(True, fraction))
    assert [(e["type"], e["seq"], e["score"]) for e in out] == [("start", 0, 0.1),
                                                               ("update", 2, 0.3)]
    end = tracker.end_all("cam0")
    assert [(e["type"], e["best_score"], e["best_seq"]) for e in end] == [("end", 0.3, 2)]
    assert tracker.end_all("cam0") == []


def test_cameras_and_labels_are_tracked_apart() -> None:
    tracker = Tracker(min_frames=1, end_after_s=10)
    a = tracker.feed("cam0", 0, 0, motion(True))
    b = tracker.feed("cam1", 0, 0, {"detections": [
        {"box": [0, 0, 5, 5], "confidence": 0.9, "label": "person"},
        {"box": [9, 9, 5, 5], "confidence": 0.6, "label": "person"},
        {"box": [1, 1, 2, 2], "confidence": 0.7, "label": 3}]})
    assert [(e["camera"], e["label"]) for e in a] == [("cam0", "motion")]
    assert sorted((e["camera"], e["label"], e["score"], len(e["boxes"])) for e in b) == [
        ("cam1", "3", 0.7, 1), ("cam1", "person", 0.9, 2)]


def test_hostile_metadata_is_read_defensively() -> None:
    assert by_label({"motion": "yes", "faces": 3, "detections": [1, None, {}]}) == {}
    tracker = Tracker(min_frames=1)
    for n in range(MAX_LABELS + 50):  # a model with endless labels
        tracker.feed("cam0", n, n, {"detections": [{"label": "l%d" % n, "box": [0, 0, 1, 1]}]})
    assert len(tracker.cameras["cam0"]) == MAX_LABELS
