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
A generator must never fail the boot: any problem is logged to the kernel
log and nothing is written.
"""

import os
import sys
from typing import Dict, List, Optional

from vidpipe import accel
from vidpipe.config import Config, ConfigError, load_config

DROPIN = "50-vidpipe-accelerator.conf"


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


def write(out_dir: str, units: Dict[str, str]) -> List[str]:
    written = []
    for unit, text in sorted(units.items()):
        directory = os.path.join(out_dir, unit + ".d")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, DROPIN)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
