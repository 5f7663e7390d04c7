"""systemd generator: device access for the handlers that run on an accelerator.

``vid-handler@.service`` gives a handler no devices at all
(``PrivateDevices=yes``). A handler with ``accelerator = "cuda0"`` or
``"dla1"`` in pipeline.toml needs that unit's device nodes, and only that
handler should get them. systemd runs this at boot and on every
``systemctl daemon-reload`` (installed as
``/lib/systemd/system-generators/vidpipe-generator``); it writes a drop-in::

    <normal dir>/vid-handler@2.service.d/50-vidpipe-accelerator.conf

with ``PrivateDevices=no``, ``DevicePolicy=closed``, one ``DeviceAllow=``
per node of that accelerator found on this box, and the ``video``/``render``
groups when they exist. An accelerator the box does not have gets no
drop-in (the handler then falls back to the CPU or exits 78, as configured).
It also writes the memory limit of each role, sized from the config
(``60-vidpipe-limits.conf``: ``MemoryMax=``, see :func:`limits`); the units
carry a fixed ``MemoryMax=`` for when the config cannot be read. A role that
outgrows it is killed by the kernel and restarted by systemd: a leak or a
hostile peer costs one restart, never the box.

A generator must never fail the boot: any problem is logged to the kernel
log and nothing is written.
"""

import os
import sys
from typing import Dict, List, Optional

from vidpipe.host import accel
from vidpipe.link.payload.limits import frame_bytes
from vidpipe.config import Config, ConfigError, HandlerConfig, load_config

DROPIN = "50-vidpipe-accelerator.conf"
LIMITS = "60-vidpipe-limits.conf"
MIB = 1024 * 1024
#: what a role needs besides frames: Python, numpy, OpenCV, ZeroMQ, threads
BASE_MIB = {"decoder": 384, "handler": 640, "collector": 512}
#: frames a collector may hold: reorder windows, the recorder's queue, preview
RECORD_QUEUE_MIB = 128


def _groups(root: str) -> List[str]:
    try:
        with open(os.path.join(root, "etc/group"), encoding="utf-8") as handle:
            names = {line.split(":", 1)[0] for line in handle}
    except OSError:
        return []
    return [g for g in accel.GROUPS if g in names]


def dropin(handler: str, accelerator: str, devices: accel.Devices,
           source: str) -> Optional[str]:
    """The drop-in text for ``handler`` on ``accelerator``; ``None`` when the box
    does not have it (or it is the CPU, which needs nothing)."""
    if accelerator == "cpu" or not devices.has(accelerator):
        return None
    lines = ["# Written by vidpipe-generator from {}: handler {} runs on {}.".format(
        source, handler, accelerator),
        "# Do not edit: change the config and run systemctl daemon-reload.",
        "[Service]", "PrivateDevices=no", "DevicePolicy=closed"]
    lines += ["DeviceAllow={} rw".format(node) for node in devices.nodes.get(accelerator, [])]
    groups = _groups(devices.root)
    if groups:
        lines.append("SupplementaryGroups={}".format(" ".join(groups)))
    return "\n".join(lines) + "\n"


def plan(config: Config, devices: accel.Devices) -> Dict[str, str]:
    """Unit name (``vid-handler@2.service`` or the template) -> drop-in text."""
    out: Dict[str, str] = {}
    default = config.handler_defaults.get("accelerator", "cpu")
    text = dropin("(every)", default, devices, config.path)
    if text:
        out["vid-handler@.service"] = text
    for name in sorted(config.handler_overrides):
        hc = config.handler(name)
        if hc.accelerator == default:
            continue
        text = dropin(name, hc.accelerator, devices, config.path)
        if text is None and default != "cpu":
            # the template gave every handler the default's devices: take them back
            text = ("# Written by vidpipe-generator: handler {} runs on {}.\n[Service]\n"
                    "PrivateDevices=yes\nDeviceAllow=\nSupplementaryGroups=\n").format(
                        name, hc.accelerator)
        if text:
            out["vid-handler@{}.service".format(name)] = text
    return out


def _frame_bytes(config: Config) -> int:
    """The largest frame a camera of ``config`` may hand out: the test pattern
    its configured size, any other source the bound the decoder enforces
    (:mod:`vidpipe.link.payload.limits`: a network stream may come at its own size)."""
    sizes = [c.width * c.height * 3 if c.source == "testsrc" else
             frame_bytes(c.width, c.height, c.sized) for c in config.cameras.values()]
    return max(sizes or [640 * 480 * 3])


def limits(config: Config) -> Dict[str, str]:
    """``MemoryMax=`` per role unit, from what its config makes it hold at most:

    * decoder: its shared-memory ring (``shm_slots`` frames, on tmpfs and
      charged to it), frames queued to taps (``tap_hwm``) and to handlers;
    * handler: the frames it holds (``prefetch`` + 1), its result ring
      (``result_ring_mb``), and room for stage temporaries (8 frames);
    * collector: its reorder windows (``reorder_window`` results per camera),
      the recorder's queue and the result rings it maps.

    Each is doubled for headroom over the role's base size, and never below
    1 GiB: the limit is there to stop a runaway, not to pinch a busy role."""
    frame = _frame_bytes(config)
    pipe = config.pipeline
    cams = max(1, len(config.cameras))
    slots = max(c.shm_slots for c in config.cameras.values()) if config.cameras else 8
    decoder_bytes = (slots + pipe.tap_hwm + 64) * frame
    handlers = [HandlerConfig(name="", **config.handler_defaults)] + \
        [config.handler(n) for n in sorted(config.handler_overrides)]
    handler_bytes = max((h.prefetch + 1 + 8) * frame + h.result_ring_mb * MIB
                        for h in handlers)
    collector_bytes = (config.collector.reorder_window * cams + 16) * frame \
        + RECORD_QUEUE_MIB * MIB
    out = {}
    for unit, role, extra in (("vid-decoder@.service", "decoder", decoder_bytes),
                              ("vid-handler@.service", "handler", handler_bytes),
                              ("vid-collector.service", "collector", collector_bytes)):
        mib = max(1024, 2 * (BASE_MIB[role] + extra // MIB))
        out[unit] = ("# Written by vidpipe-generator from {}: the most a {} holds, doubled.\n"
                     "# Do not edit: change the config and run systemctl daemon-reload.\n"
                     "[Service]\nMemoryMax={}M\n").format(config.path, role, mib)
    return out


def write(out_dir: str, units: Dict[str, str], name: str = DROPIN) -> List[str]:
    written = []
    for unit, text in sorted(units.items()):
        directory = os.path.join(out_dir, unit + ".d")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        written.append(path)
    return written


def _log(message: str) -> None:
    """To the kernel log when there is one (generators have no journal yet)."""
    line = "vidpipe-generator: {}\n".format(message)
    try:
        with open("/dev/kmsg", "w") as kmsg:
            kmsg.write("<4>" + line)
    except OSError:
        sys.stderr.write(line)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.stderr.write("usage: vidpipe-generator NORMAL_DIR [EARLY_DIR LATE_DIR]\n")
        return 0
    try:
        config = load_config(None)
    except ConfigError as exc:
        _log("not writing handler device access: {}".format(exc))
        return 0
    except Exception as exc:  # never fail the boot over our config
        _log("not writing handler device access: {}: {}".format(type(exc).__name__, exc))
        return 0
    try:
        write(argv[0], plan(config, accel.detect()))
    except Exception as exc:
        _log("cannot write drop-ins: {}: {}".format(type(exc).__name__, exc))
    try:
        write(argv[0], limits(config), LIMITS)
    except Exception as exc:
        _log("cannot write memory limits: {}: {}".format(type(exc).__name__, exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
