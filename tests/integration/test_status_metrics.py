"""What operators read: ``vidpipe status`` and the Prometheus ``/metrics`` page,
checked against what the test itself sent through real processes."""

import json
import re
import signal
import time
from collections import Counter
from typing import Any, Dict, FrozenSet, Tuple

import zmq

from conftest import free_port, http_get, run_cli, wait_until
from vidpipe.link import wire

Sample = Tuple[str, FrozenSet[Tuple[str, str]]]


def parse_metrics(text: str) -> Dict[Sample, float]:
    """A strict reader of the text format: every line is a comment or a sample."""
    samples: Dict[Sample, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r'([a-z_]+)(?:\{(.*)\})? (\S+)', line)
        assert match, "not a Prometheus sample line: {!r}".format(line)
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        key = (match.group(1), labels)
        assert key not in samples, "duplicate series {}".format(line)
        samples[key] = float(match.group(3).replace("+Inf", "inf"))
    return samples


def metric(samples: Dict[Sample, float], family: str, **labels: str) -> float:
    want = set(labels.items())
    found = [v for (n, lab), v in samples.items() if n == family and want <= set(lab)]
    assert len(found) == 1, "{}{} matches {} series".format(family, labels, len(found))
    return found[0]


def scrape(port: int) -> Dict[Sample, float]:
    return parse_metrics(http_get("http://127.0.0.1:{}/metrics".format(port)).decode())


def status_json(pipeline: Any) -> Dict[str, Any]:
    out = run_cli("--config", str(pipeline.config_path), "status", "--json", "--no-units")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def entry(report: Dict[str, Any], role: str, name: str) -> Dict[str, Any]:
    for doc in report["roles"]:
        if doc["role"] == role and doc["name"] == name:
            return doc
    raise AssertionError("no {} {} in status: {}".format(role, name, report["roles"]))


def test_status_and_metrics_agree_with_the_frames_that_went_through(pipeline: Any) -> None:
    port = free_port()
    pipeline.write_config({
        "cameras": {"cam0": {"source": "testsrc", "width": 320, "height": 240, "fps": 100,
                             "frames": 300, "wait_for_handlers": 2}},
        "handlers": {"stages": ["gray"]},
        "collector": {"outputs": ["jsonl"], "metrics": True,
                      "http_listen": "127.0.0.1:{}".format(port)},
    })
    pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    pipeline.start("handler", "2")
    decoder = pipeline.start("decoder", "cam0")
    assert decoder.proc.wait(30) == 0, pipeline.logs()

    def ended() -> Any:
        report = status_json(pipeline)
        cam = entry(report, "collector", "main").get("cameras", {}).get("cam0", {})
        return report if cam.get("ended") else None

    report = wait_until(ended, 15, "the collector to see the end of cam0")
    records = [r for r in pipeline.results() if not r.get("late")]
    ok = sum(1 for r in records if r["status"] == "ok")
    dropped = Counter(r["reason"] for r in records if r["status"] == "dropped")
    assert ok + sum(dropped.values()) == 300, (ok, dropped)

    samples = scrape(port)
    assert metric(samples, "vidpipe_frames_total", role="decoder", camera="cam0") == 300
    assert metric(samples, "vidpipe_frames_total", role="collector", camera="cam0") == ok
    assert metric(samples, "vidpipe_latency_seconds_count", camera="cam0") == ok
    assert metric(samples, "vidpipe_latency_seconds_bucket", camera="cam0", le="+Inf") == ok
    # handlers rewrite their entries twice a second: the last ones show within a second
    wait_until(lambda: sum(metric(scrape(port), "vidpipe_frames_total", role="handler", name=n)
                           for n in ("1", "2")) == ok, 3, "the handlers' counts to add up")
    for reason, count in dropped.items():
        assert metric(samples, "vidpipe_frames_dropped_total", role="collector",
                      reason=reason) == count
    assert metric(samples, "vidpipe_up", role="decoder", name="cam0") == 0  # it has ended
    assert metric(samples, "vidpipe_up", role="handler", name="1") == 1

    decoder_entry = entry(report, "decoder", "cam0")
    assert decoder_entry["state"] == "stopped"
    assert decoder_entry["cameras"]["cam0"]["frames"] == 300
    assert entry(report, "collector", "main")["cameras"]["cam0"]["frames"] == ok
    assert sorted(entry(report, "handler", "1")["cpus"]) != []

    # a handler killed without a word shows as dead, and down in the metrics
    pipeline.roles[2].stop(signal.SIGKILL)
    report = status_json(pipeline)
    assert entry(report, "handler", "2")["state"] == "dead"
    assert metric(scrape(port), "vidpipe_up", role="handler", name="2") == 0

    table = run_cli("--config", str(pipeline.config_path), "status", "--no-units")
    assert table.returncode == 0, table.stderr
    rows = {tuple(line.split()[:2]): line for line in table.stdout.splitlines()}
    assert "stopped" in rows[("decoder", "cam0")] and " 300 " in rows[("decoder", "cam0")]
    assert "dead" in rows[("handler", "2")]
    assert "cpu: 2 core(s)" in table.stdout or "cpu:" in table.stdout


def test_injected_drops_are_counted_by_reason_and_restarts_by_role(pipeline: Any) -> None:
    port = free_port()
    pipeline.write_config({"collector": {"outputs": ["jsonl"], "metrics": True,
                                         "http_listen": "127.0.0.1:{}".format(port)}})
    collector = pipeline.start("collector", "main")
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.connect("ipc://{}/collector.sock".format(pipeline.runtime))
    stream = 77
    for seq in range(300):
        now = time.time_ns()
        if seq % 10 == 3:
            parts = wire.control_parts(wire.DROP, {"reason": "injected_a"}, "camX", stream,
                                       seq, now)
        elif seq % 50 == 7:
            parts = wire.control_parts(wire.DROP, {"reason": "injected_b"}, "camX", stream,
                                       seq, now)
        else:
            parts = wire.result_parts(None, {"handler": "t"}, "camX", stream, seq, now)
        push.send_multipart(parts)
    push.send_multipart(wire.control_parts(wire.EOS, {"read": 300}, "camX", stream, 300))

    def delivered() -> Any:
        samples = scrape(port)
        keys = [k for k in samples if k[0] == "vidpipe_frames_total"]
        return samples if keys and metric(samples, "vidpipe_frames_total", role="collector",
                                          camera="camX") == 264 else None

    samples = wait_until(delivered, 10, "264 results at the collector")
    assert metric(samples, "vidpipe_frames_dropped_total", camera="camX",
                  reason="injected_a") == 30
    assert metric(samples, "vidpipe_frames_dropped_total", camera="camX",
                  reason="injected_b") == 6
    assert metric(samples, "vidpipe_frames_missing_total", camera="camX") == 0
    assert metric(samples, "vidpipe_latency_seconds_count", camera="camX") == 264
    assert metric(samples, "vidpipe_restarts_total", role="collector") == 0
    push.close(0)

    collector.stop()
    pipeline.start("collector", "main")
    samples = wait_until(lambda: scrape(port), 10, "metrics after the restart")
    assert metric(samples, "vidpipe_restarts_total", role="collector", name="main") == 1
    assert metric(samples, "vidpipe_up", role="collector", name="main") == 1
