"""Objects, not pixels (issue 27): the plane geometry, the assignment, the
tracker on synthetic scenes whose truth is known exactly, and the zones and
lines an operator writes -- counted and checked."""

import itertools
import random
from typing import Dict, List, Tuple

import numpy as np
import pytest

from vidpipe.analytics import geometry
from vidpipe.analytics.areas import Areas, parse
from vidpipe.analytics.assign import assign
from vidpipe.analytics.tracker import Detection, Tracker, detections_from_meta
from vidpipe.config import ConfigError, config_from_dict

FRAME_NS = 33_333_333  # 30 fps


# ---------------------------------------------------------------- geometry

def test_inside_counts_the_border_and_follows_concave_shapes() -> None:
    ell = [(0, 0), (10, 0), (10, 4), (4, 4), (4, 10), (0, 10)]  # an L
    assert geometry.inside(ell, (2, 8)) and geometry.inside(ell, (8, 2))
    assert not geometry.inside(ell, (8, 8))  # the notch
    assert geometry.inside(ell, (10, 2)) and geometry.inside(ell, (4, 7))  # on edges
    assert not geometry.inside(ell, (-0.1, 5))


def test_segments_cross_touch_and_miss() -> None:
    assert geometry.segments_cross((0, 0), (10, 10), (0, 10), (10, 0))
    assert geometry.segments_cross((0, 0), (5, 5), (5, 5), (9, 0))  # touching ends
    assert not geometry.segments_cross((0, 0), (4, 4), (5, 5), (9, 9))  # collinear apart
    assert not geometry.segments_cross((0, 0), (10, 0), (0, 1), (10, 1))


def test_self_crossing_names_the_edges() -> None:
    assert geometry.self_crossing([(0, 0), (10, 0), (10, 10), (0, 10)]) == (-1, -1)
    assert geometry.self_crossing([(0, 0), (10, 0), (0, 10), (10, 10)]) == (1, 3)  # a bow tie
    assert geometry.self_crossing([(0, 0), (10, 0), (5, 0), (5, 5)]) != (-1, -1)  # folds back


# ---------------------------------------------------------------- assignment

def test_the_assignment_is_optimal_and_respects_the_limit() -> None:
    rng = random.Random(7)
    for _ in range(200):
        rows, cols = rng.randint(1, 6), rng.randint(1, 6)
        cost = np.array([[rng.random() for _ in range(cols)] for _ in range(rows)])
        pairs, free_rows, free_cols = assign(cost, 2.0)
        if rows <= cols:  # every row gets one of the columns
            best = min(sum(cost[r, c] for r, c in enumerate(perm))
                       for perm in itertools.permutations(range(cols), rows))
        else:
            best = min(sum(cost[r, c] for c, r in enumerate(perm))
                       for perm in itertools.permutations(range(rows), cols))
        assert abs(sum(cost[r, c] for r, c in pairs) - best) < 1e-9
        assert len(pairs) == min(rows, cols)
        assert sorted(free_rows + [r for r, _ in pairs]) == list(range(rows))
        assert sorted(free_cols + [c for _, c in pairs]) == list(range(cols))
    pairs, rows, cols = assign(np.array([[0.1, 0.9], [0.95, 0.97]]), 0.8)
    assert pairs == [(0, 0)] and rows == [1] and cols == [1]  # over the limit: apart
    assert assign(np.array([[np.inf]]), 0.8) == ([], [0], [0])  # never: another class


def test_small_and_large_groups_are_solved_alike() -> None:
    """A group of a few pairs is solved in plain Python, a large one with
    NumPy: the same optimal total on the same matrices (with classes that
    never match and pairs over the limit), each pair within the limit."""
    from vidpipe.analytics.assign import _solve, _solve_small

    rng = random.Random(11)
    for rows, cols in [(1, 1), (2, 3), (5, 4), (9, 9), (17, 20), (30, 24)]:
        for _ in range(5):
            cost = np.array([[np.inf if rng.random() < 0.2 else rng.random()
                              for _ in range(cols)] for _ in range(rows)])
            small = _solve_small(cost.tolist(), 0.8)
            large = _solve(cost, 0.8)[0]
            assert all(cost[r, c] <= 0.8 for r, c in small)
            assert len(small) == len(large)
            assert abs(sum(cost[r, c] for r, c in small) -
                       sum(cost[r, c] for r, c in large)) < 1e-9, (rows, cols)


# ---------------------------------------------------------------- the tracker

from tests.bench.tracking import run_tracker, scene, score  # noqa: E402


def test_the_tracker_keeps_ids_through_crossings_stops_misses_and_returns() -> None:
    """The stated scene: IDF1 >= 0.90 and at most 2 ID switches, with 10 %
    of the boxes missed and a false box in 5 % of the frames; noiseless, the
    IDs are perfect."""
    dets, truth = scene()
    got = score(truth, run_tracker(dets))
    print("tracker on the crossing scene: IDF1 {:.3f}, {} ID switches".format(
        got["idf1"], got["switches"]))
    assert got["idf1"] >= 0.90 and got["switches"] <= 2, got
    clean = score(*((lambda d, t: (t, run_tracker(d)))(*scene(miss=0, false_pos=0, noise=0))))
    assert clean["switches"] == 0 and clean["idf1"] >= 0.97, clean


def test_low_scored_boxes_keep_an_occluded_object_its_id() -> None:
    """ByteTrack's second association: the person hidden behind another
    (boxes scored 0.3) is reported all through; without it the track coasts
    unreported until the person is sure again (frames missed)."""
    dets, truth = scene(miss=0, false_pos=0, noise=0)
    with_low = score(truth, run_tracker(dets))
    without = score(truth, run_tracker(dets, low=0.5))  # unsure boxes never used
    assert with_low["switches"] == 0 and with_low["missed"] < without["missed"], \
        (with_low, without)


def test_an_object_away_longer_than_lost_s_gets_a_new_id() -> None:
    tracker = Tracker(lost_s=1.0)
    box = (100.0, 100.0, 40.0, 100.0)
    for f in range(5):
        seen, _ = tracker.update([Detection(box, "person")], f * FRAME_NS)
    first = seen[0].id
    removed = []
    for f in range(5, 5 + 40):  # 1.3 s without it
        removed += tracker.update([], f * FRAME_NS)[1]
    assert [t.id for t in removed] == [first]
    for f in range(45, 48):
        seen, _ = tracker.update([Detection(box, "person")], f * FRAME_NS)
    assert seen[0].id != first


def test_classes_are_never_mixed_and_hostile_metadata_is_left_out() -> None:
    tracker = Tracker()
    box = (10.0, 10.0, 50.0, 50.0)
    tracker.update([Detection(box, "cat")], 0)
    seen, _ = tracker.update([Detection(box, "dog")], FRAME_NS)
    assert [t.label for t in seen] == []  # the dog is new (tentative); the cat unmatched
    meta = {"detections": [{"box": [1, 2, 3, 4], "label": "car", "confidence": 0.7},
                           {"box": [1, 2, -3, 4]}, {"box": [float("nan"), 1, 1, 1]},
                           {"box": [1, 2, 3]}, "junk", {"box": [True, 1, 1, 1]}],
            "faces": [[5, 5, 10, 10], None], "motion": {"boxes": [[0, 0, 8, 8], "x"]}}
    found = detections_from_meta(meta)
    assert [(d.label, d.box) for d in found] == [("car", (1, 2, 3, 4)),
                                                 ("face", (5, 5, 10, 10)),
                                                 ("motion", (0, 0, 8, 8))]
    assert detections_from_meta({"detections": "x", "faces": {}, "motion": []}) == []


def test_tracker_events_and_preview_read_what_stages_found_alike() -> None:
    """One observation schema: on the same hostile and valid metadata the
    tracker, the broker events and the preview see the same boxes and
    labels (each read it its own way before)."""
    from vidpipe.outputs.events import by_label
    from vidpipe.outputs.preview import box_list

    meta = {"detections": [{"box": [1, 2, 3, 4], "label": "car", "confidence": 0.7},
                           {"box": [5, 5, 5, 5], "label": "a#b/\ud800"},
                           {"label": "no box"}, {"box": None}, {"box": [1, 2, 0, 4]},
                           {"box": [1, 2, 3, float("inf")], "label": "car"}, 7],
            "faces": [[5, 5, 10, 10], [1, 1, 1], "x"],
            "motion": {"boxes": [[0, 0, 8, 8], [0, 0, -1, 1]], "fraction": 0.25}}
    tracked = {(d.label, d.box) for d in detections_from_meta(meta)}
    events = {(label, tuple(b)) for label, (boxes, _s) in by_label(meta).items() for b in boxes}
    shown = {b for b, _label in box_list(meta)}
    assert tracked == events
    assert {b for _l, b in tracked} == shown == {(1, 2, 3, 4), (5, 5, 5, 5), (5, 5, 10, 10),
                                                 (0, 0, 8, 8)}
    hostile = next(label for label, _b in tracked if label not in ("car", "face", "motion"))
    assert "#" not in hostile and "/" not in hostile and hostile.isprintable()
    assert by_label(meta)["motion"][1] == 0.25  # events: the share that moved
    assert {d.score for d in detections_from_meta(meta) if d.label == "motion"} == {1.0}


# ---------------------------------------------------------------- zones and lines

class _T:
    def __init__(self, id_: int, box: Tuple[float, float, float, float],
                 label: str = "person") -> None:
        self.id, self.box, self.label = id_, box, label


def test_a_line_counts_each_crossing_once_with_its_direction() -> None:
    """A door line drawn top to bottom, (320, 0) to (320, 480): walking right
    crosses it "in", walking back "out"; a walker stepping onto the line and
    back does not count; one class only."""
    zones, lines = parse(None, {"door": {"points": [[320, 0], [320, 480]],
                                         "classes": ["person"]}}, 640, 480)
    areas = Areas(zones, lines)
    events = []
    for f, x in enumerate(list(range(200, 400, 10)) + list(range(400, 200, -10))):
        events += areas.update([_T(1, (x - 20, 200, 40, 100)),        # crosses, returns
                                _T(2, (280 + (f % 2) * 20, 300, 40, 100)),  # 300 <-> 320
                                _T(3, (x - 20, 100, 40, 100), "car")], [], f * FRAME_NS)
    assert [(e["track"], e["direction"]) for e in events] == [(1, "in"), (1, "out")]
    zones, lines = parse(None, {"door": {"points": [[320, 480], [320, 0]]}}, 640, 480)
    swapped = Areas(zones, lines)  # drawn bottom to top: the directions swap
    for f, x in enumerate(range(200, 400, 10)):
        events = swapped.update([_T(1, (x - 20, 200, 40, 100))], [], f * FRAME_NS) or events
    assert [e["direction"] for e in events] == ["out"]
    assert areas.counts()["lines"]["door"] == {"in": {"person": 1}, "out": {"person": 1}}


def test_a_zone_counts_entries_occupancy_dwell_and_loitering() -> None:
    zones, lines = parse({"hall": {"points": [[100, 100], [300, 100], [300, 300], [100, 300]],
                                   "loiter_s": 1.0}}, None, 640, 480)
    areas = Areas(zones, lines)
    events = []
    # frames 0-9 outside; 10-59 inside (feet at y 250); 60.. outside again
    for f in range(80):
        y = 150 if 10 <= f < 60 else 350
        events += areas.update([_T(7, (180, y, 40, 100))], [], f * FRAME_NS)
        if f == 30:
            assert areas.occupancy() == {("hall", "person"): 1}
    kinds = [(e["action"], round(e["dwell_s"] * 30)) for e in events]
    # dwell to the frame: loitering at the first frame 1 s on (30 frames of
    # 33,333,333 ns are a hair short of it), the exit after 50 frames
    assert kinds == [("enter", 0), ("loiter", 31), ("exit", 50)], kinds
    assert areas.occupancy() == {}
    events = areas.update([_T(8, (180, 150, 40, 100))], [], 90 * FRAME_NS)
    events += areas.update([], [_T(8, (0, 0, 1, 1))], 120 * FRAME_NS)  # the tracker let go
    assert [(e["action"], e.get("lost")) for e in events] == [("enter", None), ("exit", True)]
    assert areas.counts()["zones"]["hall"] == {"occupancy": {}, "entered": {"person": 2}}


@pytest.mark.parametrize("camera, key, text", [
    ({"zones": {"hall": {"points": [[0, 0], [100, 0]]}}}, "zones.hall.points",
     "at least 3 points"),
    ({"zones": {"hall": {"points": [[0, 0], [100, 0], [0, 100], [100, 100]]}}},
     "zones.hall.points", "crosses itself"),
    ({"zones": {"hall": {"points": [[0, 0], [700, 0], [0, 100]]}}}, "zones.hall.points[1]",
     "outside the 640x480 frame"),
    ({"zones": {"hall": {"points": [[0, 0], [10, 10], [20, 20]]}}}, "zones.hall.points",
     "no area"),
    ({"zones": {"hall": {"points": [[5, 5], [5, 5], [9, 9], [5, 5]]}}}, "zones.hall.points",
     "no area"),
    ({"zones": {"hall": {"points": [[0, 0], [10, 0], [0, 10]], "loiter": 3}}},
     "zones.hall.loiter", "unknown key"),
    ({"zones": {"hall": {"points": [[0, 0], [10, 0], [0, 10]], "anchor": "feet"}}},
     "zones.hall.anchor", "bottom-center"),
    ({"zones": {"hall": {"points": [[0, 0], [10, 0], ["a", 10]]}}}, "zones.hall.points[2]",
     "[x, y]"),
    ({"zones": {"a/b": {"points": [[0, 0], [10, 0], [0, 10]]}}}, "zones.a/b", "MQTT topic"),
    ({"lines": {"door": {"points": [[5, 5], [5, 5]]}}}, "lines.door.points", "distinct"),
    ({"lines": {"door": {"points": [[5, 5], [5, 9], [9, 9]]}}}, "lines.door.points",
     "exactly two"),
    ({"lines": {"door": {}}}, "lines.door.points", "missing"),
    ({"lines": {"door": {"points": [[5, 5], [9, 9]], "classes": "person"}}},
     "lines.door.classes", "list"),
    ({"lines": ["door"]}, "lines", "table"),
])
def test_zone_and_line_errors_name_the_key(camera: Dict, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"cameras": {"door": dict(source="testsrc", **camera)}}, "p.toml")
    assert err.value.key == "cameras.door." + key, err.value
    assert text in err.value.message, err.value.message


def test_an_unsized_network_camera_has_its_areas_checked_against_the_largest_frame() -> None:
    config = config_from_dict({"cameras": {"ip": {
        "source": "rtsp://cam/main",
        "zones": {"yard": {"points": [[0, 0], [1900, 0], [1900, 1000]]}}}}})
    assert list(config.cameras["ip"].zones) == ["yard"]
    with pytest.raises(ConfigError) as err:
        config_from_dict({"cameras": {"ip": {"source": "rtsp://cam/main", "width": 1280,
                                             "height": 720, "zones": {"yard": {
                                                 "points": [[0, 0], [1900, 0], [1900, 1000]]}}}}})
    assert "outside the 1280x720 frame" in str(err.value)


# ---------------------------------------------------------------- the collector's scene

def test_the_scene_owns_its_keys_and_bounds_what_the_wire_can_grow() -> None:
    """A handler cannot forge objects or zone events: the collector's keys
    are replaced; thousands of boxes or labels in one frame are cut, counted
    and leave the counts bounded."""
    from vidpipe.analytics import scene as scene_module
    from vidpipe.analytics.scene import Scene

    zones, lines = parse({"hall": {"points": [[0, 0], [640, 0], [640, 480], [0, 480]]}}, None,
                         640, 480)
    scene = Scene(zones, lines)
    meta = {"objects": [{"id": 666}], "areas": [{"type": "line", "line": "forged"}],
            "detections": [{"box": [i % 600, (i * 7) % 400, 20, 20], "label": "x{}".format(i),
                            "confidence": 0.9} for i in range(1000)]}
    for f in range(3):
        frame = dict(meta)
        scene.observe(frame, f * FRAME_NS)
    assert not any(o["id"] == 666 for o in frame["objects"])
    assert not any(e.get("line") == "forged" for e in frame["areas"])
    assert scene.cut == 3 * (1000 - scene_module.MAX_DETECTIONS)
    counts = scene.counts()
    assert len(counts["zones"]["hall"]["entered"]) <= scene_module.MAX_LABELS + 1
    assert "other" in counts["zones"]["hall"]["entered"]
    no_scene = {"objects": [1], "areas": [2], "motion": {}}
    scene_module.strip(no_scene)
    assert no_scene == {"motion": {}}


def test_metrics_show_zones_lines_and_tracks_and_skip_a_garbled_board() -> None:
    from vidpipe.status.metrics import render

    areas = {"tracks": 2, "zones": {"hall": {"occupancy": {"person": 1},
                                             "entered": {"person": 5}}},
             "lines": {"door": {"in": {"person": 3}, "out": {}}}}
    doc = {"role": "collector", "name": "main", "alive": True,
           "cameras": {"cam0": {"frames": 1, "areas": areas},
                       "cam1": {"frames": 1, "areas": {"zones": {"z": "junk"}, "lines": [],
                                                       "tracks": "many"}}}}
    text = render([doc])
    assert 'vidpipe_zone_objects{camera="cam0",label="person",name="main",role="collector",' \
           'zone="hall"} 1' in text
    assert 'vidpipe_line_crossings_total{camera="cam0",direction="in",label="person",' \
           'line="door",name="main",role="collector"} 3' in text
    assert 'vidpipe_tracked_objects{camera="cam0",name="main",role="collector"} 2' in text
    assert 'zone="z"' not in text and 'camera="cam1",name="main",role="collector"} many' \
        not in text


def test_the_array_forms_agree_with_the_plain_geometry() -> None:
    """Areas tests every track at once; the results are those of
    geometry.inside and geometry.anchor_point point by point (the border too)."""
    from vidpipe.analytics.arrays import anchors as _anchors, inside as _inside

    rng = random.Random(5)
    ell = [(0, 0), (10, 0), (10, 4), (4, 4), (4, 10), (0, 10)]
    points = [(float(rng.randint(-2, 12)), float(rng.randint(-2, 12))) for _ in range(400)]
    got = _inside(ell, np.array(points))
    assert [bool(v) for v in got] == [geometry.inside(ell, p) for p in points]
    boxes = [(rng.uniform(0, 100), rng.uniform(0, 100), rng.uniform(1, 50), rng.uniform(1, 50))
             for _ in range(20)]
    for anchor in geometry.ANCHORS:
        arr = _anchors(np.array(boxes), anchor)
        assert np.allclose(arr, [geometry.anchor_point(b, anchor) for b in boxes]), anchor


def test_objects_carry_the_zones_they_are_in_by_name() -> None:
    """Overlapping zones: each object lists the zones its anchor is in,
    sorted, as the zone events said (the scene reads them off its arrays)."""
    from vidpipe.analytics.scene import Scene

    zones, lines = parse({"west": {"points": [[0, 0], [400, 0], [400, 480], [0, 480]]},
                          "all": {"points": [[0, 0], [640, 0], [640, 480], [0, 480]]},
                          "door": {"points": [[300, 0], [640, 0], [640, 480], [300, 480]],
                                   "classes": ["person"]}}, None, 640, 480)
    scene = Scene(zones, lines)
    walkers = {"person": 100.0, "car": 350.0}
    for f in range(20):
        meta = {"detections": [{"box": [x + 10 * f, 100, 40, 80], "label": label,
                                "confidence": 0.9} for label, x in walkers.items()]}
        scene.observe(meta, f * FRAME_NS)
        for obj in meta["objects"]:
            assert obj["zones"] == scene.areas.zones_of(obj["id"])
            feet = obj["box"][0] + obj["box"][2] / 2
            want = sorted(["all"] + (["west"] if feet <= 400 else []) +
                          (["door"] if feet >= 300 and obj["label"] == "person" else []))
            assert obj["zones"] == want, (f, obj)
    assert {o["label"]: o["zones"] for o in meta["objects"]} == \
        {"person": ["all", "door", "west"], "car": ["all"]}


def test_an_object_updates_when_its_best_score_rises_at_most_every_update_s() -> None:
    """start (its first picture), an update each time the best score rose
    but no sooner than track_update_s after the last, then end; each start
    and update says this frame is the best so far (the snapshot)."""
    from vidpipe.analytics.scene import Scene

    def scores(update_s: float) -> List[Tuple[str, int, float]]:
        scene = Scene({}, {}, lost_s=0.5, update_s=update_s)
        out = []
        # 30 fps; the score climbs every frame for 2 s, then holds
        for f in range(90):
            meta = {"detections": [{"box": [100 + f, 100, 40, 80], "label": "person",
                                    "confidence": min(0.6 + f * 0.005, 0.9)}]}
            scene.observe(meta, f * FRAME_NS)
            out += [(e["action"], f, e.get("best_score", e.get("score")))
                    for e in meta["areas"] if e["type"] == "object"]
            assert all(e.get("best") is True for e in meta["areas"]
                       if e["type"] == "object" and e["action"] != "end")
        return out + [(e["action"], 90, e["best_score"]) for e in scene.end_all(90 * FRAME_NS)
                      if e["type"] == "object"]

    got = scores(1.0)
    # the first frame confirms (nothing to wait for); 30 frames are a hair
    # short of a second, so each update comes on the 31st frame after the last
    assert [(a, f) for a, f, _ in got] == [("start", 0), ("update", 31), ("update", 62),
                                           ("end", 90)], got
    assert got[1][2] == 0.755 and got[2][2] == 0.9 and got[3][2] == 0.9, got
    assert [a for a, _f, _s in scores(0)] == ["start", "end"]  # 0: no updates


def test_a_flood_of_labels_cannot_grow_the_tracker() -> None:
    """A label per box, never the same twice: the tracker's label table
    forgets the labels no track holds."""
    tracker = Tracker(max_tracks=8)
    for f in range(200):
        tracker.update([Detection((float(i * 30), 0.0, 20.0, 20.0), "l{}-{}".format(f, i))
                        for i in range(40)], f * FRAME_NS)
    assert len(tracker._codes) <= 4 * 8 + 1024 + 40
    assert all(isinstance(t.label, str) and t.label.startswith("l") for t in tracker.tracks)


def test_a_flood_of_new_boxes_cannot_grow_the_tracks_without_bound() -> None:
    """256 new boxes a frame from a hostile handler, each confirmed on its
    second frame and kept lost_s: the tracker stops at max_tracks and counts
    what it did not start."""
    tracker = Tracker(max_tracks=300)
    for f in range(20):
        boxes = [Detection((float((f * 256 + i) % 1000) * 2, float(f * 40 % 600), 1.0, 1.0))
                 for i in range(256)]
        tracker.update(boxes, f * FRAME_NS)
        assert len(tracker.tracks) <= 300
    assert tracker.refused > 0
