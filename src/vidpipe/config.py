"""Load, fill in and validate ``pipeline.toml``.

Every error names the file, the dotted key and what is allowed, and maps to
exit status 78 (EX_CONFIG) so systemd units with
``RestartPreventExitStatus=78`` do not restart-loop on a typo.
"""

import difflib
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from vidpipe import tomlread
from vidpipe.names import NAME_RE, NAME_RULE

EX_CONFIG = 78
DEFAULT_PATH = "/etc/vidpipe/pipeline.toml"
DEFAULT_RUNTIME_DIR = "/run/vidpipe"
DISPATCH_MODES = ("balanced", "round-robin", "by-camera")
OUTPUTS = ("log", "jsonl", "display", "preview", "record")
RECORD_FORMATS = ("mp4", "hdf5")
ACCELERATOR_RE = re.compile(r"^(cpu|cuda[0-9]+|dla[0-9]+)$")


class ConfigError(Exception):
    """A configuration problem; ``str()`` is the one-line message for users."""

    exit_code = EX_CONFIG

    def __init__(self, path: str, key: str, message: str) -> None:
        self.path = path
        self.key = key
        self.message = message
        where = "{}: {}".format(path, key) if key else path
        super().__init__("{}: {}".format(where, message))


# --------------------------------------------------------------------------
# Field checks


@dataclass(frozen=True)
class Rule:
    """How one key is checked: its type, range or choices, and its help text."""

    kind: type
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Optional[Sequence[str]] = None
    pattern: Optional["re.Pattern[str]"] = None
    item: Optional[type] = None  # element type for lists
    allowed: str = ""  # human text for pattern-checked strings


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list"}.get(kind, kind.__name__)


def check_value(path: str, key: str, value: Any, rule: Rule) -> Any:
    """Check ``value`` against ``rule``; return it (ints widened to float where asked)."""
    kind = rule.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(path, key, "must be {}, got {!r}".format(_type_name(kind), value))
    if kind is list:
        item = rule.item or str
        for i, element in enumerate(value):
            sub = Rule(item, rule.minimum, rule.maximum, rule.choices, rule.pattern,
                       allowed=rule.allowed)
            value[i] = check_value(path, "{}[{}]".format(key, i), element, sub)
        return value
    if rule.minimum is not None and value < rule.minimum:
        raise ConfigError(path, key, "must be >= {:g}, got {!r}".format(rule.minimum, value))
    if rule.maximum is not None and value > rule.maximum:
        raise ConfigError(path, key, "must be <= {:g}, got {!r}".format(rule.maximum, value))
    if rule.choices is not None and value not in rule.choices:
        raise ConfigError(path, key, "must be one of {}, got {!r}".format(
            ", ".join(repr(c) for c in rule.choices), value))
    if rule.pattern is not None and not rule.pattern.match(value):
        raise ConfigError(path, key, "must be {}, got {!r}".format(rule.allowed, value))
    return value


def unknown_key(path: str, section: str, key: str, allowed: Sequence[str]) -> ConfigError:
    """The error for a key that is not in ``allowed``, with a spelling hint."""
    hint = difflib.get_close_matches(key, list(allowed), n=1)
    text = "unknown key"
    if hint:
        text += " (did you mean {!r}?)".format(hint[0])
    text += "; allowed keys: {}".format(", ".join(sorted(allowed)))
    return ConfigError(path, _join(section, key), text)


def _join(section: str, key: str) -> str:
    return "{}.{}".format(section, key) if section else key


def fill_section(path: str, section: str, raw: Mapping[str, Any], rules: Mapping[str, Rule],
                 defaults: Mapping[str, Any]) -> Dict[str, Any]:
    """Validate ``raw`` against ``rules`` and return it merged over ``defaults``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(path, section, "must be a table, got {!r}".format(raw))
    out = dict(defaults)
    for key, value in raw.items():
        if key not in rules:
            raise unknown_key(path, section, key, list(rules))
        if isinstance(value, list):
            value = list(value)
        out[key] = check_value(path, _join(section, key), value, rules[key])
    return out


# --------------------------------------------------------------------------
# Sections


@dataclass
class PipelineConfig:
    dispatch: str = "balanced"
    max_latency_ms: int = 250
    runtime_dir: str = DEFAULT_RUNTIME_DIR
    heartbeat_ms: int = 250
    handler_timeout_ms: int = 1500
    max_frame_bytes: int = 256 * 1024 * 1024
    stats_interval_s: float = 10.0
    log_level: str = "info"
    taps: bool = True
    tap_hwm: int = 8


PIPELINE_RULES = {
    "dispatch": Rule(str, choices=DISPATCH_MODES),
    "max_latency_ms": Rule(int, 1, 600000),
    "runtime_dir": Rule(str, pattern=re.compile(r"^/"), allowed="an absolute path"),
    "heartbeat_ms": Rule(int, 10, 60000),
    "handler_timeout_ms": Rule(int, 50, 600000),
    "max_frame_bytes": Rule(int, 1024, 4 * 1024 ** 3),
    "stats_interval_s": Rule(float, 0, 86400),
    "log_level": Rule(str, choices=("debug", "info", "warning", "error")),
    "taps": Rule(bool),
    "tap_hwm": Rule(int, 1, 10000),
}


@dataclass
class CameraConfig:
    name: str = ""
    source: str = "auto"
    width: int = 640
    height: int = 480
    fps: float = 30.0
    pixel_format: str = ""
    frames: int = 0
    loop: bool = False
    wait_for_handlers: int = 0
    bind: str = ""
    connect: str = ""
    reconnect_max_s: float = 30.0
    transport: str = "auto"
    shm_slots: int = 8
    encoding: str = "raw"
    jpeg_quality: int = 90
    prerender: int = 0
    match_serial: str = ""
    match_by_id: str = ""
    match_by_path: str = ""
    tap: str = ""


_ENDPOINT = Rule(str, pattern=re.compile(r"^(ipc://.+|tcp://.+:[0-9]+)?$"),
                 allowed="an ipc://PATH or tcp://HOST:PORT endpoint")
CAMERA_RULES = {
    "source": Rule(str),
    "width": Rule(int, 16, 16384),
    "height": Rule(int, 16, 16384),
    "fps": Rule(float, 0, 1000),
    "pixel_format": Rule(str, pattern=re.compile(r"^([A-Za-z0-9 ]{4})?$"),
                         allowed="a four-character code such as 'MJPG' or 'YUYV', or ''"),
    "frames": Rule(int, 0),
    "loop": Rule(bool),
    "wait_for_handlers": Rule(int, 0, 1024),
    "bind": _ENDPOINT,
    "connect": _ENDPOINT,
    "reconnect_max_s": Rule(float, 0.1, 3600),
    "transport": Rule(str, choices=("auto", "shm", "inline")),
    "shm_slots": Rule(int, 2, 1024),
    "encoding": Rule(str, choices=("raw", "lz4", "jpeg")),
    "jpeg_quality": Rule(int, 1, 100),
    "prerender": Rule(int, 0, 1024),
    "match_serial": Rule(str),
    "match_by_id": Rule(str),
    "match_by_path": Rule(str),
    "tap": _ENDPOINT,
}


@dataclass
class HandlerConfig:
    name: str = ""
    stages: List[str] = field(default_factory=lambda: ["gray"])
    prefetch: int = 1
    send_image: bool = True
    cpus: List[int] = field(default_factory=list)
    accelerator: str = "cpu"
    fallback: str = "cpu"
    result_transport: str = "auto"
    result_ring_mb: int = 64


HANDLER_RULES = {
    "stages": Rule(list, item=str),
    "prefetch": Rule(int, 1, 64),
    "send_image": Rule(bool),
    "cpus": Rule(list, 0, 4095, item=int),
    "accelerator": Rule(str, pattern=ACCELERATOR_RE, allowed="'cpu', 'cudaN' or 'dlaN'"),
    "fallback": Rule(str, choices=("cpu", "fail")),
    "result_transport": Rule(str, choices=("auto", "shm", "inline")),
    "result_ring_mb": Rule(int, 8, 4096),
}


@dataclass
class CollectorConfig:
    outputs: List[str] = field(default_factory=lambda: ["log"])
    bind: str = ""
    connect: str = ""
    reorder_window: int = 32
    jsonl_path: str = ""
    jsonl_checksum: bool = False
    exit_on_eos: bool = False
    http_listen: str = "127.0.0.1:8090"
    http_hosts: List[str] = field(default_factory=list)
    http_user: str = "vidpipe"
    http_password_file: str = ""
    metrics: bool = False
    preview_fps: float = 5.0
    preview_width: int = 960
    preview_quality: int = 80
    preview_boxes: bool = True
    record_dir: str = "/var/lib/vidpipe/recordings"
    record_formats: List[str] = field(default_factory=lambda: ["mp4"])
    record_segment_s: float = 300.0
    record_max_bytes: int = 1024 ** 3
    record_max_age_s: float = 0.0
    record_min_free_mb: int = 256
    tap: str = ""


COLLECTOR_RULES = {
    "outputs": Rule(list, item=str, choices=OUTPUTS),
    "bind": _ENDPOINT,
    "connect": _ENDPOINT,
    "reorder_window": Rule(int, 1, 4096),
    "jsonl_path": Rule(str),
    "jsonl_checksum": Rule(bool),
    "exit_on_eos": Rule(bool),
    "http_listen": Rule(str),
    "http_hosts": Rule(list, item=str),
    "http_user": Rule(str, pattern=re.compile(r"^[^:\s]{1,64}$"),
                      allowed="1-64 characters, no colon or space"),
    "http_password_file": Rule(str, pattern=re.compile(r"^(/.*)?$"),
                               allowed="an absolute path, or \"\""),
    "metrics": Rule(bool),
    "preview_fps": Rule(float, 0.1, 60),
    "preview_width": Rule(int, 16, 16384),
    "preview_quality": Rule(int, 1, 100),
    "preview_boxes": Rule(bool),
    "record_dir": Rule(str, pattern=re.compile(r"^/"), allowed="an absolute path"),
    "record_formats": Rule(list, item=str, choices=RECORD_FORMATS),
    "record_segment_s": Rule(float, 1, 86400),
    "record_max_bytes": Rule(int, 1024 * 1024),
    "record_max_age_s": Rule(float, 0),
    "record_min_free_mb": Rule(int, 0),
    "tap": _ENDPOINT,
}

@dataclass
class SecurityConfig:
    curve: bool = False
    keys_dir: str = "/etc/vidpipe/keys"
    server_key: str = "server"
    client_key: str = "client"
    allowed_dir: str = ""  # default: keys_dir/allowed


_KEY_NAME = Rule(str, pattern=re.compile(r"^[A-Za-z0-9_.-]{1,64}$"),
                 allowed="a key name such as 'server' (letters, digits, _ . -)")
SECURITY_RULES = {
    "curve": Rule(bool),
    "keys_dir": Rule(str),
    "server_key": _KEY_NAME,
    "client_key": _KEY_NAME,
    "allowed_dir": Rule(str),
}

TOP_LEVEL = ("pipeline", "cameras", "handlers", "collector", "stage", "security")


def _defaults(cls: Any) -> Dict[str, Any]:
    instance = cls()
    return {f.name: getattr(instance, f.name) for f in fields(cls) if f.name != "name"}


def connect_from_bind(bind: str) -> str:
    """The address a peer on the same host uses to reach ``bind``."""
    match = re.match(r"^tcp://(\*|0\.0\.0\.0|\[::\]):([0-9]+)$", bind)
    if match:
        return "tcp://127.0.0.1:{}".format(match.group(2))
    return bind


@dataclass
class Config:
    """A validated configuration. Handler sections are merged on demand."""

    path: str
    pipeline: PipelineConfig
    cameras: Dict[str, CameraConfig]
    collector: CollectorConfig
    handler_defaults: Dict[str, Any]
    handler_overrides: Dict[str, Dict[str, Any]]
    stage_options: Dict[str, Dict[str, Any]]
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def camera(self, name: str) -> CameraConfig:
        if name not in self.cameras:
            known = ", ".join(sorted(self.cameras)) or "none"
            raise ConfigError(self.path, "cameras.{}".format(name),
                              "no such camera section (configured cameras: {})".format(known))
        return self.cameras[name]

    def unconfigured_camera(self, name: str, source: str) -> CameraConfig:
        """Default settings for a camera udev found that has no section."""
        runtime = self.pipeline.runtime_dir.rstrip("/") or "/"
        return make_camera(self.path, runtime, name, {"source": source})

    def handler(self, name: str) -> HandlerConfig:
        if not NAME_RE.match(name):
            raise ConfigError(self.path, "handlers.{}".format(name),
                              "handler name must match " + NAME_RULE)
        merged = dict(self.handler_defaults)
        merged.update(self.handler_overrides.get(name, {}))
        return HandlerConfig(name=name, **merged)

    def endpoint_dir(self) -> str:
        return self.pipeline.runtime_dir


IPC_PATH_MAX = 107  # sun_path is 108 bytes including the NUL


def _check_endpoint(path: str, key: str, endpoint: str) -> None:
    if endpoint.startswith("ipc://") and len(endpoint[6:].encode()) > IPC_PATH_MAX:
        raise ConfigError(path, key, "ipc socket path {!r} is longer than {} bytes; use a "
                          "shorter pipeline.runtime_dir".format(endpoint[6:], IPC_PATH_MAX))


def _check_cpus(path: str, key: str, cpus: List[int]) -> None:
    count = os.cpu_count() or 1
    for cpu in cpus:
        if cpu >= count:
            raise ConfigError(path, key, "CPU {} does not exist on this machine (CPUs 0-{})"
                              .format(cpu, count - 1))


LISTEN_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):([0-9]{1,5})$")


def split_listen(text: str) -> Tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) into a bind address; raises ValueError."""
    match = LISTEN_RE.match(text)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError("must be HOST:PORT such as 127.0.0.1:8090, got {!r}".format(text))
    return match.group(1).strip("[]"), int(match.group(2))


LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")


def local_listen(host: str) -> bool:
    """Whether an ``http_listen`` host is reachable from this host only."""
    return host in LOCAL_HOSTS or host.startswith("127.")


def _check_collector_outputs(path: str, cc: "CollectorConfig") -> None:
    if "preview" in cc.outputs or cc.metrics:
        try:
            host, _port = split_listen(cc.http_listen)
        except ValueError as exc:
            raise ConfigError(path, "collector.http_listen", str(exc)) from None
        if not local_listen(host) and not cc.http_password_file:
            raise ConfigError(path, "collector.http_password_file", "http_listen = {!r} "
                              "serves beyond this host: set http_password_file (a file "
                              "holding the password, root:vidpipe 0640) so browsers must "
                              "log in".format(cc.http_listen))
    if "record" in cc.outputs:
        if not cc.record_formats:
            raise ConfigError(path, "collector.record_formats",
                              "must name at least one of {}".format(", ".join(RECORD_FORMATS)))
        if "hdf5" in cc.record_formats:
            try:
                import h5py  # noqa: F401
            except ImportError:
                raise ConfigError(path, "collector.record_formats", "'hdf5' needs the h5py "
                                  "module (Debian: apt install python3-h5py)") from None


def make_camera(path: str, runtime: str, name: str, raw: Mapping[str, Any]) -> CameraConfig:
    """A validated camera section, endpoints filled in."""
    section = "cameras.{}".format(name)
    if not NAME_RE.match(name):
        raise ConfigError(path, section, "camera name must match " + NAME_RULE)
    values = fill_section(path, section, raw, CAMERA_RULES, _defaults(CameraConfig))
    camera = CameraConfig(name=name, **values)
    if not camera.bind:
        camera.bind = "ipc://{}/decoder-{}.sock".format(runtime, name)
    if not camera.connect:
        camera.connect = connect_from_bind(camera.bind)
    if not camera.tap:
        camera.tap = "ipc://{}/tap-{}.sock".format(runtime, name)
    _check_endpoint(path, section + ".bind", camera.bind)
    _check_endpoint(path, section + ".tap", camera.tap)
    if camera.encoding == "lz4":
        try:
            import lz4.block  # noqa: F401
        except ImportError:
            raise ConfigError(path, section + ".encoding", "'lz4' needs the lz4 module "
                              "(Debian: python3-lz4)") from None
    return camera


def config_from_dict(data: Mapping[str, Any], path: str = "<built-in>") -> Config:
    """Validate a parsed TOML document."""
    for key in data:
        if key not in TOP_LEVEL:
            raise unknown_key(path, "", key, TOP_LEVEL)
    pipeline = PipelineConfig(**fill_section(path, "pipeline", data.get("pipeline", {}),
                                             PIPELINE_RULES, _defaults(PipelineConfig)))
    runtime = pipeline.runtime_dir.rstrip("/") or "/"

    cameras: Dict[str, CameraConfig] = {}
    raw_cameras = data.get("cameras", {})
    if not isinstance(raw_cameras, Mapping):
        raise ConfigError(path, "cameras", "must be a table of [cameras.NAME] sections")
    for name, raw in raw_cameras.items():
        cameras[name] = make_camera(path, runtime, name, raw)
        if cameras[name].transport == "shm" and pipeline.dispatch == "round-robin":
            raise ConfigError(path, "cameras.{}.transport".format(name),
                              "'shm' needs dispatch \"balanced\" or \"by-camera\" (handlers "
                              "must hand slots back)")

    raw_handlers = data.get("handlers", {})
    if not isinstance(raw_handlers, Mapping):
        raise ConfigError(path, "handlers", "must be a table")
    plain = {k: v for k, v in raw_handlers.items() if not isinstance(v, Mapping)}
    handler_defaults = fill_section(path, "handlers", plain, HANDLER_RULES,
                                    _defaults(HandlerConfig))
    _check_cpus(path, "handlers.cpus", handler_defaults["cpus"])
    overrides: Dict[str, Dict[str, Any]] = {}
    for name, raw in raw_handlers.items():
        if not isinstance(raw, Mapping):
            continue
        section = "handlers.{}".format(name)
        if not NAME_RE.match(name):
            raise ConfigError(path, section, "handler name must match " + NAME_RULE)
        overrides[name] = fill_section(path, section, raw, HANDLER_RULES, {})
        if "cpus" in overrides[name]:
            _check_cpus(path, section + ".cpus", overrides[name]["cpus"])

    collector = CollectorConfig(**fill_section(path, "collector", data.get("collector", {}),
                                               COLLECTOR_RULES, _defaults(CollectorConfig)))
    if not collector.bind:
        collector.bind = "ipc://{}/collector.sock".format(runtime)
    if not collector.connect:
        collector.connect = connect_from_bind(collector.bind)
    _check_endpoint(path, "collector.bind", collector.bind)
    if not collector.connect.startswith("ipc://"):
        for section, values in [("handlers", handler_defaults)] + [
                ("handlers.{}".format(n), o) for n, o in overrides.items()]:
            if values.get("result_transport") == "shm":
                raise ConfigError(path, section + ".result_transport",
                                  "'shm' needs the collector on this host (collector.connect "
                                  "is {}); use \"auto\" or \"inline\"".format(
                                      collector.connect))
    if not collector.tap:
        collector.tap = "ipc://{}/tap-collector.sock".format(runtime)
    _check_endpoint(path, "collector.tap", collector.tap)
    _check_collector_outputs(path, collector)
    if "jsonl" in collector.outputs and not collector.jsonl_path:
        raise ConfigError(path, "collector.jsonl_path",
                          "must be set when outputs contains 'jsonl'")

    stage_options = data.get("stage", {})
    if not isinstance(stage_options, Mapping) or not all(
            isinstance(v, Mapping) for v in stage_options.values()):
        raise ConfigError(path, "stage", "must hold [stage.NAME] tables of stage options")
    security = SecurityConfig(**fill_section(path, "security", data.get("security", {}),
                                             SECURITY_RULES, _defaults(SecurityConfig)))
    if not security.allowed_dir:
        security.allowed_dir = os.path.join(security.keys_dir, "allowed")
    if security.curve:
        for key in ("server_key", "client_key"):
            public = os.path.join(security.keys_dir, getattr(security, key) + ".key")
            problem = unreadable(public)
            if problem:
                raise ConfigError(path, "security." + key, problem + "; " + (
                    "make the key pair with: vidpipe keygen {}".format(getattr(security, key))
                    if "does not exist" in problem else
                    "the keys must be readable by the user the service runs as (vidpipe): "
                    "vidpipe keygen as root sets root:vidpipe 0750/0640"))
    return Config(path=path, pipeline=pipeline, cameras=cameras, collector=collector,
                  handler_defaults=handler_defaults, handler_overrides=overrides,
                  stage_options={k: dict(v) for k, v in stage_options.items()},
                  security=security)


def unreadable(file: str) -> str:
    """Why ``file`` cannot be read by this process ("" when it can): missing,
    or a permission problem on it or on a directory above it, named as such."""
    if os.access(file, os.R_OK):
        return ""
    folder = os.path.dirname(file) or "."
    while folder and not os.path.exists(folder) and folder != os.path.dirname(folder):
        folder = os.path.dirname(folder)
    if os.path.isdir(folder) and not os.access(folder, os.X_OK):
        return "permission denied: {} cannot be searched by uid {}".format(folder,
                                                                          os.geteuid())
    if os.path.lexists(file):
        return "permission denied: {} cannot be read by uid {}".format(file, os.geteuid())
    return "{} does not exist".format(file)


def default_path() -> str:
    return os.environ.get("VIDPIPE_CONFIG") or DEFAULT_PATH


def load_config(path: Optional[str] = None) -> Config:
    """Read and validate ``path`` (default: ``$VIDPIPE_CONFIG`` or the system file)."""
    path = path or default_path()
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        data = tomlread.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", "not UTF-8 text: {}".format(exc)) from None
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except PermissionError:
        raise ConfigError(path, "", "permission denied (is it readable by the vidpipe user?)") \
            from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a directory, expected a TOML file") from None
    except tomlread.TomlError as exc:
        raise ConfigError(path, "", "not valid TOML: {}".format(exc)) from None
    return config_from_dict(data, path)


OptionRules = Mapping[str, Tuple[Rule, Any]]


def stage_options(config: Config, stage: str, rules: OptionRules,
                  check: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Validate the ``[stage.NAME]`` table for one stage against ``rules``."""
    section = "stage.{}".format(stage)
    defaults = {key: default for key, (_rule, default) in rules.items()}
    only_rules = {key: rule for key, (rule, _default) in rules.items()}
    values = fill_section(config.path, section, config.stage_options.get(stage, {}),
                          only_rules, defaults)
    if check is not None:
        check(values)
    return values


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError("cannot write {!r} as TOML".format(value))


def _toml_key(key: str) -> str:
    return key if re.match(r"^[A-Za-z0-9_-]+$", key) else _toml_value(key)


def dump_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Write a nested dict of plain values as TOML (enough for vidpipe configs)."""
    lines: List[str] = []
    tables = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append("{} = {}".format(_toml_key(key), _toml_value(value)))
    text = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        name = prefix + _toml_key(key)
        body = dump_toml(value, name + ".")
        if any(not isinstance(v, Mapping) for v in value.values()) or not value:
            text += "\n[{}]\n".format(name)
        text += body
    return text
