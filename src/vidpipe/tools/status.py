"""``vidpipe status``: every role on this host in one table, from the status
board (``RUNTIME_DIR/status``), with systemd's view of each unit when
systemd runs here, and the accelerators handlers can use."""

import json
import shutil
import subprocess
import time
from typing import Any, Dict, List, Optional

from vidpipe.status.board import read_board
from vidpipe.names import one_line
from vidpipe.stats import fmt_ms

STALE_S = 5.0  # a running role rewrites its entry twice a second


def unit_states(units: List[str]) -> Dict[str, Dict[str, str]]:
    """``ActiveState``/``SubState``/``NRestarts`` per unit, or {} without systemd."""
    if not units or not shutil.which("systemctl"):
        return {}
    try:
        out = subprocess.run(["systemctl", "show", "--no-pager",
                              "--property=Id,ActiveState,SubState,NRestarts", "--"] + units,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states: Dict[str, Dict[str, str]] = {}
    for block in out.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields.get("Id"):
            states[fields["Id"]] = fields
    return states


def gather(runtime_dir: str, with_units: bool = True,
           devices_root: Optional[str] = None) -> Dict[str, Any]:
    entries = read_board(runtime_dir)
    now = time.time()
    units = unit_states([e["unit"] for e in entries if e["unit"]]) if with_units else {}
    for entry in entries:
        unit = units.get(entry.get("unit", ""), {})
        active = unit.get("ActiveState", "")
        entry["unit_state"] = "{}/{}".format(active, unit.get("SubState", "")) \
            if active and active != "inactive" else active
        if unit.get("NRestarts", "").isdigit():
            entry["unit_restarts"] = int(unit["NRestarts"])
        entry["age_s"] = round(now - float(entry.get("updated", 0)), 1)
        if entry["alive"] and entry["age_s"] > STALE_S:
            entry["state"] = "stuck"  # alive but not reporting: its loop is not running
    from vidpipe.host.accel import detect

    found = detect(devices_root)
    used: Dict[str, List[str]] = {}
    for entry in entries:
        if entry.get("role") == "handler" and entry["alive"]:
            used.setdefault(str(entry.get("accelerator") or "cpu"), []).append(
                "handler " + str(entry["name"]))
    return {"runtime_dir": runtime_dir, "roles": entries, "devices": found.as_dict(),
            "devices_text": found.describe(), "devices_used": used}


def _drops(entry: Dict[str, Any]) -> str:
    total: Dict[str, int] = {}
    sources = [entry.get("dropped") or {}] + [
        cam.get("dropped") or {} for cam in (entry.get("cameras") or {}).values()]
    if entry.get("role") == "handler":
        sources = sources[:1]
    for tally in sources:
        for reason, count in tally.items():
            total[reason] = total.get(reason, 0) + int(count)
    return " ".join("{}={}".format(k, v) for k, v in sorted(total.items())) or "0"


def _row(entry: Dict[str, Any]) -> List[str]:
    cams = entry.get("cameras") or {}
    role = entry["role"]
    fps = sum(float(c.get("fps") or 0) for c in cams.values()) if role != "handler" \
        else float(entry.get("fps") or 0)
    frames = sum(int(c.get("frames") or 0) for c in cams.values()) if role != "handler" \
        else int(entry.get("frames") or 0)
    if role == "collector":
        p50 = [c.get("latency_p50_ms") for c in cams.values() if c.get("latency_p50_ms")]
        p99 = [c.get("latency_p99_ms") for c in cams.values() if c.get("latency_p99_ms")]
        lat = "{}/{}".format(fmt_ms(max(p50) if p50 else None), fmt_ms(max(p99) if p99 else None))
    elif role == "handler":
        lat = "{}/{}".format(fmt_ms(entry.get("latency_p50_ms")),
                             fmt_ms(entry.get("latency_p99_ms")))
    else:
        lat = "-"
    where = ",".join(map(str, entry.get("cpus") or [])) or "-"
    if entry.get("accelerator") and entry["accelerator"] != "cpu":
        where = "{} cpus {}".format(entry["accelerator"], where)
    restarts = entry.get("unit_restarts", entry.get("restarts", 0))
    state = entry["state"] + (" ({})".format(entry["unit_state"]) if entry.get("unit_state")
                              else "")
    camera = ",".join(sorted(cams)) or "-"
    note = "; ".join(n for n in [entry.get("why_idle") or ""] + _brokers(entry) if n)
    # status files are written by roles that read hostile input: one printable
    # line a cell, so nothing in them can move the cursor or clear the screen
    return [one_line(cell, 160) for cell in (
        role, str(entry["name"]), camera, state, "{:.1f}".format(fps), str(frames), lat,
        _drops(entry), str(restarts), where, note)]


def _brokers(entry: Dict[str, Any]) -> List[str]:
    """Each broker output's state and spool: ``mqtt connected, 0 spooled``."""
    out = []
    for name, st in sorted((entry.get("output_status") or {}).items()):
        if isinstance(st, dict) and "broker" in st:
            text = "{} {}, {} spooled".format(name, st.get("broker"), st.get("depth", 0))
            for counter in ("refused", "errors", "spool_full"):
                if st.get(counter):
                    text += ", {} {}".format(st[counter], counter.replace("_", " "))
            out.append(text)
    return out


HEAD = ["ROLE", "NAME", "CAMERA", "STATE", "FPS", "FRAMES", "P50/P99 MS", "DROPPED",
        "RESTARTS", "CPUS", "NOTE"]


def table(report: Dict[str, Any]) -> str:
    rows = [HEAD] + [_row(e) for e in report["roles"]]
    if len(rows) == 1:
        text = "no vidpipe roles have run on this host since boot ({}/status is empty)\n" \
            .format(report["runtime_dir"])
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
        text = "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n"
                       for r in rows)
    text += "\ndevices:\n"
    used = report.get("devices_used") or {}
    for line in report.get("devices_text") or []:
        name = line.split(":", 1)[0]
        users = used.get(name)
        text += "  {}\n".format(one_line("{}{}".format(line, "  <- " + ", ".join(users)
                                                      if users else ""), 300))
    return text


def as_json(report: Dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True, default=str)
