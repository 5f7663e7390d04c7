"""What a handler can run on: CPU cores, CUDA GPUs and, on a Jetson, the DLA cores.

Everything is read below a system root (``VIDPIPE_SYSROOT``, default ``/``)
so that tests can point detection at a fake Jetson tree; nothing here loads
CUDA or talks to a driver. What is looked at:

* CPU cores: ``sys/devices/system/cpu/online`` (else ``os.cpu_count()``).
* Jetson: ``proc/device-tree/model`` (``compatible`` naming ``nvidia,tegra``);
  its integrated GPU is ``cuda0`` when ``dev/nvhost-ctrl-gpu`` (JetPack 4/5)
  or ``dev/nvgpu/igpu0`` (JetPack 6) exists; DLA core N when
  ``dev/nvhost-nvdla{N}`` or ``dev/nvhost-ctrl-nvdla{N}`` exists.
* A PC's discrete NVIDIA GPUs: ``proc/driver/nvidia/gpus/*`` or ``dev/nvidiaN``.

The device nodes each accelerator needs are what the systemd generator
allows a handler's sandbox (see :mod:`vidpipe.host.generator`).
"""

import glob
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from vidpipe.config import Config, ConfigError

log = logging.getLogger("vidpipe.accel")

JETSON_GPU_NODES = ("dev/nvhost-ctrl-gpu", "dev/nvhost-gpu", "dev/nvgpu/igpu0")
JETSON_COMMON_NODES = ("dev/nvmap", "dev/nvhost-ctrl", "dev/nvhost-prof-gpu",
                       "dev/nvhost-as-gpu", "dev/nvhost-dbg-gpu", "dev/nvhost-ctxsw-gpu",
                       "dev/nvhost-sched-gpu", "dev/nvhost-tsg-gpu", "dev/nvgpu/igpu0/*")
PC_GPU_COMMON_NODES = ("dev/nvidiactl", "dev/nvidia-uvm", "dev/nvidia-uvm-tools",
                       "dev/nvidia-modeset")
GROUPS = ("video", "render")


def sysroot() -> str:
    return os.environ.get("VIDPIPE_SYSROOT") or "/"


def _read(root: str, rel: str) -> Optional[str]:
    try:
        with open(os.path.join(root, rel), "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return None


def _exists(root: str, rel: str) -> bool:
    return bool(glob.glob(os.path.join(root, rel)))


def parse_cpu_list(text: str) -> List[int]:
    """``0-3,6`` -> [0, 1, 2, 3, 6] (the kernel's cpu list format)."""
    cpus: List[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            cpus.extend(range(int(low), int(high) + 1))
        else:
            cpus.append(int(part))
    return cpus


@dataclass
class Devices:
    """What this box has, as found below ``root``."""

    root: str = "/"
    cpus: List[int] = field(default_factory=list)
    jetson_model: str = ""
    gpus: List[str] = field(default_factory=list)  # accelerator names: cuda0, ...
    dlas: List[int] = field(default_factory=list)
    #: accelerator name -> device node paths (absolute, as seen on the box)
    nodes: Dict[str, List[str]] = field(default_factory=dict)

    @property
    def accelerators(self) -> List[str]:
        return ["cpu"] + self.gpus + ["dla{}".format(n) for n in self.dlas]

    def has(self, accelerator: str) -> bool:
        return accelerator in self.accelerators

    def describe(self) -> List[str]:
        lines = ["cpu: {} core(s) ({})".format(len(self.cpus), _ranges(self.cpus))]
        if self.jetson_model:
            lines.append("jetson: {}".format(self.jetson_model))
        for gpu in self.gpus:
            lines.append("{}: {} GPU".format(gpu, "integrated" if self.jetson_model
                                             else "NVIDIA"))
        for dla in self.dlas:
            lines.append("dla{}: deep learning accelerator core {}".format(dla, dla))
        return lines

    def as_dict(self) -> Dict[str, object]:
        return {"cpus": self.cpus, "jetson_model": self.jetson_model or None,
                "gpus": self.gpus, "dlas": ["dla{}".format(n) for n in self.dlas],
                "accelerators": self.accelerators, "nodes": self.nodes}


def _ranges(cpus: List[int]) -> str:
    if not cpus:
        return "none"
    out = []
    start = prev = cpus[0]
    for cpu in cpus[1:] + [None]:  # type: ignore[list-item]
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        out.append(str(start) if start == prev else "{}-{}".format(start, prev))
        if cpu is not None:
            start = prev = cpu
    return ",".join(out)


def _nodes(root: str, patterns: List[str]) -> List[str]:
    found: List[str] = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            found.append("/" + os.path.relpath(path, root))
    return found


def detect(root: Optional[str] = None) -> Devices:
    root = root or sysroot()
    devices = Devices(root=root)
    online = _read(root, "sys/devices/system/cpu/online")
    try:
        devices.cpus = parse_cpu_list(online) if online else []
    except ValueError:
        devices.cpus = []
    if not devices.cpus:
        devices.cpus = list(range(os.cpu_count() or 1))

    model = _read(root, "proc/device-tree/model") or ""
    compatible = _read(root, "proc/device-tree/compatible") or ""
    if "tegra" in compatible.lower() or "jetson" in model.lower():
        devices.jetson_model = model or "NVIDIA Jetson"
        if any(_exists(root, node) for node in JETSON_GPU_NODES):
            devices.gpus.append("cuda0")
            devices.nodes["cuda0"] = _nodes(root, list(JETSON_GPU_NODES)
                                            + list(JETSON_COMMON_NODES))
        for n in range(8):
            own = ["dev/nvhost-nvdla{}".format(n), "dev/nvhost-ctrl-nvdla{}".format(n)]
            if any(_exists(root, node) for node in own):
                devices.dlas.append(n)
                # the DLA path goes through TensorRT, which needs the GPU's nodes too
                devices.nodes["dla{}".format(n)] = _nodes(
                    root, own + list(JETSON_GPU_NODES) + list(JETSON_COMMON_NODES))
    else:
        indices = set()
        for path in glob.glob(os.path.join(root, "proc/driver/nvidia/gpus/*")):
            indices.add(len(indices))
        for path in glob.glob(os.path.join(root, "dev/nvidia[0-9]*")):
            match = re.match(r"^nvidia([0-9]+)$", os.path.basename(path))
            if match:
                indices.add(int(match.group(1)))
        for index in sorted(indices)[:10]:
            name = "cuda{}".format(index)
            devices.gpus.append(name)
            devices.nodes[name] = _nodes(root, ["dev/nvidia{}".format(index)]
                                         + list(PC_GPU_COMMON_NODES))
    return devices


class AcceleratorMissing(Exception):
    pass


def choose(wanted: str, fallback: str, devices: Devices) -> str:
    """The accelerator a handler runs on: ``wanted`` if this box has it, else
    ``cpu`` when ``fallback = "cpu"``; :class:`AcceleratorMissing` otherwise."""
    if devices.has(wanted):
        return wanted
    have = ", ".join(devices.accelerators)
    if fallback == "cpu":
        log.warning("accelerator %s is not on this box (it has: %s); running on the CPU "
                    "(fallback = \"cpu\")", wanted, have)
        return "cpu"
    raise AcceleratorMissing("accelerator {!r} is not on this box (it has: {}); set "
                             "fallback = \"cpu\" to run on the CPU instead".format(wanted, have))


def for_handler(config: Config, name: str) -> str:
    """The accelerator handler ``name``'s stages get: the configured one when the
    box has it, else the CPU (``fallback = "cpu"``) or a config error."""
    hc = config.handler(name)
    if hc.accelerator == "cpu":
        return "cpu"
    own = "accelerator" in config.handler_overrides.get(name, {})
    key = "handlers.{}.accelerator".format(name) if own else "handlers.accelerator"
    try:
        return choose(hc.accelerator, hc.fallback, detect())
    except AcceleratorMissing as exc:
        raise ConfigError(config.path, key, str(exc)) from None
