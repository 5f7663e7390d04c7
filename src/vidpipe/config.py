"""Load, fill in and validate ``pipeline.toml``.

Every error names the file, the dotted key and what is allowed, and maps to
exit status 78 (EX_CONFIG) so systemd units with
``RestartPreventExitStatus=78`` do not restart-loop on a typo.
"""

import difflib
import importlib
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
OUTPUTS = ("log", "jsonl", "display", "preview", "record", "mqtt", "amqp")
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
# Sections: each key declared once, as a dataclass field carrying its rule


def key(default: Any, rule: Rule) -> Any:
    """A config key: its default and the :class:`Rule` its value must meet."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"rule": rule})
    return field(default=default, metadata={"rule": rule})


def rules_of(section: type) -> Dict[str, Rule]:
    """The keys of a section's dataclass and their rules."""
    return {f.name: f.metadata["rule"] for f in fields(section) if "rule" in f.metadata}


_ENDPOINT = Rule(str, pattern=re.compile(r"^(ipc://.+|tcp://.+:[0-9]+)?$"),
                 allowed="an ipc://PATH or tcp://HOST:PORT endpoint")
_KEY_NAME = Rule(str, pattern=re.compile(r"^[A-Za-z0-9_.-]{1,64}$"),
                 allowed="a key name such as 'server' (letters, digits, _ . -)")
_AMQP_NAME = Rule(str, pattern=re.compile(r"^[A-Za-z0-9_.:-]{1,200}$"),
                  allowed="letters, digits, _ . : - (up to 200)")


@dataclass
class PipelineConfig:
    dispatch: str = key("balanced", Rule(str, choices=DISPATCH_MODES))
    max_latency_ms: int = key(250, Rule(int, 1, 600000))
    runtime_dir: str = key(DEFAULT_RUNTIME_DIR,
                           Rule(str, pattern=re.compile(r"^/"), allowed="an absolute path"))
    heartbeat_ms: int = key(250, Rule(int, 10, 60000))
    handler_timeout_ms: int = key(1500, Rule(int, 50, 600000))
    max_frame_bytes: int = key(256 * 1024 * 1024, Rule(int, 1024, 4 * 1024 ** 3))
    stats_interval_s: float = key(10.0, Rule(float, 0, 86400))
    log_level: str = key("info", Rule(str, choices=("debug", "info", "warning", "error")))
    taps: bool = key(True, Rule(bool))
    tap_hwm: int = key(8, Rule(int, 1, 10000))


@dataclass
class CameraConfig:
    name: str = ""
    source: str = key("auto", Rule(str))
    width: int = key(640, Rule(int, 16, 16384))
    height: int = key(480, Rule(int, 16, 16384))
    fps: float = key(30.0, Rule(float, 0, 1000))
    pixel_format: str = key("", Rule(str, pattern=re.compile(r"^([A-Za-z0-9 ]{4})?$"),
                                     allowed="a four-character code such as 'MJPG' or "
                                             "'YUYV', or ''"))
    frames: int = key(0, Rule(int, 0))
    loop: bool = key(False, Rule(bool))
    wait_for_handlers: int = key(0, Rule(int, 0, 1024))
    bind: str = key("", _ENDPOINT)
    connect: str = key("", _ENDPOINT)
    reconnect_max_s: float = key(30.0, Rule(float, 0.1, 3600))
    transport: str = key("auto", Rule(str, choices=("auto", "shm", "inline")))
    shm_slots: int = key(8, Rule(int, 2, 1024))
    encoding: str = key("raw", Rule(str, choices=("raw", "lz4", "jpeg")))
    jpeg_quality: int = key(90, Rule(int, 1, 100))
    prerender: int = key(0, Rule(int, 0, 1024))
    match_serial: str = key("", Rule(str))
    match_by_id: str = key("", Rule(str))
    match_by_path: str = key("", Rule(str))
    tap: str = key("", _ENDPOINT)
    decode: str = key("auto", Rule(str, choices=("auto", "ffmpeg", "nvdec", "v4l2m2m",
                                                 "vaapi", "software")))
    codec: str = key("auto", Rule(str, choices=("auto", "h264", "h265")))
    deliver: str = key("bgr", Rule(str, choices=("bgr", "gray", "i420")))
    rtsp_transport: str = key("tcp", Rule(str, choices=("tcp", "udp", "auto")))
    rtsp_latency_ms: int = key(200, Rule(int, 0, 10000))
    credentials_file: str = key("", Rule(str, pattern=re.compile(r"^(/.*)?$"),
                                         allowed="an absolute path, or \"\""))
    detect_fps: float = key(0.0, Rule(float, 0, 1000))
    detect_when: str = key("always", Rule(str, choices=("always", "motion")))
    track: bool = key(False, Rule(bool))
    track_lost_s: float = key(2.0, Rule(float, 0.1, 600))
    #: not a key but derived: whether the section gave width or height. A network
    #: stream on the GStreamer path is scaled to width x height only then; else it
    #: comes at its own size (640x480 by default would squash a 16:9 camera)
    sized: bool = field(default=True, metadata={"derived": True})
    #: ``[cameras.NAME.zones.Z]`` and ``[cameras.NAME.lines.L]`` tables, checked
    #: (vidpipe.analytics.areas): name -> Zone / Line
    zones: Dict[str, Any] = field(default_factory=dict, metadata={"derived": True})
    lines: Dict[str, Any] = field(default_factory=dict, metadata={"derived": True})


@dataclass
class HandlerConfig:
    name: str = ""
    stages: List[str] = key(["gray"], Rule(list, item=str))
    prefetch: int = key(1, Rule(int, 1, 64))
    send_image: bool = key(True, Rule(bool))
    cpus: List[int] = key([], Rule(list, 0, 4095, item=int))
    accelerator: str = key("cpu",
                           Rule(str, pattern=ACCELERATOR_RE, allowed="'cpu', 'cudaN' or 'dlaN'"))
    fallback: str = key("cpu", Rule(str, choices=("cpu", "fail")))
    result_transport: str = key("auto", Rule(str, choices=("auto", "shm", "inline")))
    result_ring_mb: int = key(64, Rule(int, 8, 4096))


@dataclass
class CollectorConfig:
    outputs: List[str] = key(["log"], Rule(list, item=str, choices=OUTPUTS))
    bind: str = key("", _ENDPOINT)
    connect: str = key("", _ENDPOINT)
    reorder_window: int = key(32, Rule(int, 1, 4096))
    jsonl_path: str = key("", Rule(str))
    jsonl_checksum: bool = key(False, Rule(bool))
    exit_on_eos: bool = key(False, Rule(bool))
    http_listen: str = key("127.0.0.1:8090", Rule(str))
    http_hosts: List[str] = key([], Rule(list, item=str))
    http_user: str = key("vidpipe", Rule(str, pattern=re.compile(r"^[^:\s]{1,64}$"),
                                         allowed="1-64 characters, no colon or space"))
    http_password_file: str = key("", Rule(str, pattern=re.compile(r"^(/.*)?$"),
                                           allowed="an absolute path, or \"\""))
    #: without a password, who on this box may see the cameras: "group" (root,
    #: the collector's account and group vidpipe) or "anyone" (before 0.2)
    http_local_access: str = key("group", Rule(str, choices=("group", "anyone")))
    metrics: bool = key(False, Rule(bool))
    preview_fps: float = key(5.0, Rule(float, 0.1, 60))
    preview_width: int = key(960, Rule(int, 16, 16384))
    preview_quality: int = key(80, Rule(int, 1, 100))
    preview_boxes: bool = key(True, Rule(bool))
    record_dir: str = key("/var/lib/vidpipe/recordings",
                          Rule(str, pattern=re.compile(r"^/"), allowed="an absolute path"))
    record_formats: List[str] = key(["mp4"], Rule(list, item=str, choices=RECORD_FORMATS))
    record_segment_s: float = key(300.0, Rule(float, 1, 86400))
    record_max_bytes: int = key(1024 ** 3, Rule(int, 1024 * 1024))
    record_max_age_s: float = key(0.0, Rule(float, 0))
    record_min_free_mb: int = key(256, Rule(int, 0))
    tap: str = key("", _ENDPOINT)
    mqtt_host: str = key("127.0.0.1", Rule(str, pattern=re.compile(r"^[A-Za-z0-9_.:-]{1,255}$"),
                                           allowed="a host name or address"))
    mqtt_port: int = key(1883, Rule(int, 1, 65535))
    mqtt_topic: str = key("vidpipe", Rule(str, pattern=re.compile(r"^[^#+\s\0]{1,128}$"),
                                          allowed="an MQTT topic prefix without # or +"))
    mqtt_client_id: str = key("", Rule(str, pattern=re.compile(r"^[A-Za-z0-9_.-]{0,64}$"),
                                       allowed="letters, digits, _ . - (up to 64)"))
    mqtt_credentials_file: str = key("", Rule(str, pattern=re.compile(r"^(/.*)?$"),
                                              allowed="an absolute path, or \"\""))
    mqtt_tls: bool = key(False, Rule(bool))
    mqtt_ca_file: str = key("", Rule(str, pattern=re.compile(r"^(/.*)?$"),
                                     allowed="an absolute path, or \"\""))
    spool_dir: str = key("/var/lib/vidpipe/spool",
                         Rule(str, pattern=re.compile(r"^/"), allowed="an absolute path"))
    spool_max_mb: int = key(64, Rule(int, 1, 1024 * 1024))
    events_min_frames: int = key(2, Rule(int, 1, 1000))
    events_end_after_s: float = key(2.0, Rule(float, 0, 3600))
    events_update_s: float = key(5.0, Rule(float, 0.1, 86400))
    state_hz: float = key(1.0, Rule(float, 0, 100))
    mqtt_discovery: bool = key(False, Rule(bool))
    mqtt_discovery_prefix: str = key("homeassistant",
                                     Rule(str, pattern=re.compile(r"^[^#+\s\0]{1,128}$"),
                                          allowed="an MQTT topic prefix without # or +"))
    events_snapshot_kb: int = key(0, Rule(int, 0, 4096))
    amqp_host: str = key("127.0.0.1", Rule(str, pattern=re.compile(r"^[A-Za-z0-9_.:-]{1,255}$"),
                                           allowed="a host name or address"))
    amqp_port: int = key(5672, Rule(int, 1, 65535))
    amqp_vhost: str = key("/", Rule(str, pattern=re.compile(r"^[^\s\0]{1,255}$"),
                                    allowed="a virtual host name"))
    amqp_exchange: str = key("vidpipe", _AMQP_NAME)
    amqp_queue: str = key("vidpipe.events",
                          Rule(str, pattern=re.compile(r"^[A-Za-z0-9_.:-]{0,200}$"),
                               allowed="letters, digits, _ . : - (up to 200), or \"\" for none"))
    amqp_results: bool = key(False, Rule(bool))
    amqp_credentials_file: str = key("", Rule(str, pattern=re.compile(r"^(/.*)?$"),
                                              allowed="an absolute path, or \"\""))
    amqp_tls: bool = key(False, Rule(bool))
    amqp_ca_file: str = key("", Rule(str, pattern=re.compile(r"^(/.*)?$"),
                                     allowed="an absolute path, or \"\""))


@dataclass
class SecurityConfig:
    curve: bool = key(False, Rule(bool))
    keys_dir: str = key("/etc/vidpipe/keys", Rule(str))
    server_key: str = key("server", _KEY_NAME)
    client_key: str = key("client", _KEY_NAME)
    allowed_dir: str = key("", Rule(str))  # default: keys_dir/allowed


#: each section's keys and rules, derived from its fields
PIPELINE_RULES = rules_of(PipelineConfig)
CAMERA_RULES = rules_of(CameraConfig)
HANDLER_RULES = rules_of(HandlerConfig)
COLLECTOR_RULES = rules_of(CollectorConfig)
SECURITY_RULES = rules_of(SecurityConfig)
TOP_LEVEL = ("pipeline", "cameras", "handlers", "collector", "stage", "security")


def _defaults(cls: Any) -> Dict[str, Any]:
    instance = cls()
    return {f.name: getattr(instance, f.name) for f in fields(cls) if "rule" in f.metadata}


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
    for output, module, package in (("mqtt", "paho.mqtt.client", "paho-mqtt"),
                                    ("amqp", "pika", "pika")):
        if output in cc.outputs:
            try:
                importlib.import_module(module)
            except ImportError:
                raise ConfigError(path, "collector.outputs", "{!r} needs the {} module (Debian: "
                                  "apt install python3-{})".format(output, package, package)
                                  ) from None
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
    if not isinstance(raw, Mapping):
        raise ConfigError(path, section, "must be a table, got {!r}".format(raw))
    areas = {k: raw[k] for k in ("zones", "lines") if k in raw}
    raw = {k: v for k, v in raw.items() if k not in areas}
    values = fill_section(path, section, raw, CAMERA_RULES, _defaults(CameraConfig))
    camera = CameraConfig(name=name, **values)
    camera.sized = "width" in raw or "height" in raw
    camera.zones, camera.lines = _areas(path, section, camera, areas)
    if not camera.bind:
        camera.bind = "ipc://{}/decoder-{}.sock".format(runtime, name)
    if not camera.connect:
        camera.connect = connect_from_bind(camera.bind)
    if not camera.tap:
        camera.tap = "ipc://{}/tap-{}.sock".format(runtime, name)
    _check_endpoint(path, section + ".bind", camera.bind)
    _check_endpoint(path, section + ".tap", camera.tap)
    if camera.deliver != "bgr" and "://" not in camera.source:
        raise ConfigError(path, section + ".deliver", "{!r} is for network streams (a URL "
                          "source); convert other sources with the gray stage".format(
                              camera.deliver))
    if camera.deliver == "i420" and (camera.width % 2 or camera.height % 2):
        raise ConfigError(path, section + ".deliver", "\"i420\" needs an even width and "
                          "height (its colour planes are half size); got {}x{}".format(
                              camera.width, camera.height))
    if camera.encoding == "lz4":
        try:
            import lz4.block  # noqa: F401
        except ImportError:
            raise ConfigError(path, section + ".encoding", "'lz4' needs the lz4 module "
                              "(Debian: python3-lz4)") from None
    return camera


#: the frame an unsized network camera's zones are checked against (its
#: stream's own size is known only when it plays): the largest one accepted
UNSIZED_FRAME = (7680, 4320)


def _areas(path: str, section: str, camera: CameraConfig,
           raw: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The camera's zones and lines, their points checked against its frame."""
    from vidpipe.analytics import areas

    width, height = (camera.width, camera.height) if camera.sized or \
        "://" not in camera.source else UNSIZED_FRAME
    try:
        return areas.parse(raw.get("zones"), raw.get("lines"), width, height)
    except areas.AreaError as exc:
        raise ConfigError(path, "{}.{}".format(section, exc.key), exc.message) from None


def config_from_dict(data: Mapping[str, Any], path: str = "<built-in>") -> Config:
    """Validate a parsed TOML document."""
    for key in data:
        if key not in TOP_LEVEL:
            raise unknown_key(path, "", key, TOP_LEVEL)
    pipeline = PipelineConfig(**fill_section(path, "pipeline", data.get("pipeline", {}),
                                             PIPELINE_RULES, _defaults(PipelineConfig)))
    runtime = pipeline.runtime_dir.rstrip("/") or "/"
    cameras = _cameras(path, runtime, pipeline, data.get("cameras", {}))
    handler_defaults, overrides = _handlers(path, data.get("handlers", {}))
    _check_detect_when(path, cameras, handler_defaults, overrides)
    collector = _collector(path, runtime, data.get("collector", {}))
    _check_result_transport(path, collector, handler_defaults, overrides)
    return Config(path=path, pipeline=pipeline, cameras=cameras, collector=collector,
                  handler_defaults=handler_defaults, handler_overrides=overrides,
                  stage_options=_stages(path, data.get("stage", {})),
                  security=_security(path, data.get("security", {})))


def _cameras(path: str, runtime: str, pipeline: PipelineConfig,
             raw_cameras: Any) -> Dict[str, CameraConfig]:
    """The ``[cameras.NAME]`` sections."""
    if not isinstance(raw_cameras, Mapping):
        raise ConfigError(path, "cameras", "must be a table of [cameras.NAME] sections")
    cameras: Dict[str, CameraConfig] = {}
    for name, raw in raw_cameras.items():
        cameras[name] = make_camera(path, runtime, name, raw)
        if cameras[name].transport == "shm" and pipeline.dispatch == "round-robin":
            raise ConfigError(path, "cameras.{}.transport".format(name),
                              "'shm' needs dispatch \"balanced\" or \"by-camera\" (handlers "
                              "must hand slots back)")
    return cameras


def _handlers(path: str, raw_handlers: Any) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]]]:
    """``[handlers]`` (the defaults) and its ``[handlers.NAME]`` overrides."""
    if not isinstance(raw_handlers, Mapping):
        raise ConfigError(path, "handlers", "must be a table")
    plain = {k: v for k, v in raw_handlers.items() if not isinstance(v, Mapping)}
    defaults = fill_section(path, "handlers", plain, HANDLER_RULES, _defaults(HandlerConfig))
    _check_cpus(path, "handlers.cpus", defaults["cpus"])
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
    return defaults, overrides


def _check_detect_when(path: str, cameras: Mapping[str, CameraConfig], defaults: Dict[str, Any],
                       overrides: Mapping[str, Dict[str, Any]]) -> None:
    """``detect_when = "motion"`` reads what the motion stage found before the
    detector: every handler's chain must run ``motion`` before its detectors."""
    for name, cam in sorted(cameras.items()):
        if cam.detect_when != "motion":
            continue
        for section, values in [("handlers", defaults)] + [
                ("handlers." + h, dict(defaults, **o)) for h, o in sorted(overrides.items())]:
            stages = list(values.get("stages") or [])
            detectors = [i for i, s in enumerate(stages) if s in ("dnn", "faces")]
            if detectors and ("motion" not in stages or stages.index("motion") > detectors[0]):
                raise ConfigError(path, "cameras.{}.detect_when".format(name), "\"motion\" "
                                  "needs the motion stage before the detectors in {}.stages "
                                  "(got {})".format(section, stages))


def _collector(path: str, runtime: str, raw: Any) -> CollectorConfig:
    """``[collector]``, endpoints filled in."""
    collector = CollectorConfig(**fill_section(path, "collector", raw, COLLECTOR_RULES,
                                               _defaults(CollectorConfig)))
    if not collector.bind:
        collector.bind = "ipc://{}/collector.sock".format(runtime)
    if not collector.connect:
        collector.connect = connect_from_bind(collector.bind)
    _check_endpoint(path, "collector.bind", collector.bind)
    if not collector.tap:
        collector.tap = "ipc://{}/tap-collector.sock".format(runtime)
    _check_endpoint(path, "collector.tap", collector.tap)
    _check_collector_outputs(path, collector)
    if "jsonl" in collector.outputs and not collector.jsonl_path:
        raise ConfigError(path, "collector.jsonl_path",
                          "must be set when outputs contains 'jsonl'")
    return collector


def _check_result_transport(path: str, collector: CollectorConfig, defaults: Dict[str, Any],
                            overrides: Dict[str, Dict[str, Any]]) -> None:
    if collector.connect.startswith("ipc://"):
        return
    for section, values in [("handlers", defaults)] + [
            ("handlers.{}".format(n), o) for n, o in overrides.items()]:
        if values.get("result_transport") == "shm":
            raise ConfigError(path, section + ".result_transport",
                              "'shm' needs the collector on this host (collector.connect "
                              "is {}); use \"auto\" or \"inline\"".format(collector.connect))


def _stages(path: str, raw: Any) -> Dict[str, Dict[str, Any]]:
    """The ``[stage.NAME]`` tables (each stage checks its own options when built)."""
    if not isinstance(raw, Mapping) or not all(isinstance(v, Mapping) for v in raw.values()):
        raise ConfigError(path, "stage", "must hold [stage.NAME] tables of stage options")
    return {k: dict(v) for k, v in raw.items()}


def _security(path: str, raw: Any) -> SecurityConfig:
    """``[security]``; with ``curve`` on, the public keys must be readable."""
    security = SecurityConfig(**fill_section(path, "security", raw, SECURITY_RULES,
                                             _defaults(SecurityConfig)))
    if not security.allowed_dir:
        security.allowed_dir = os.path.join(security.keys_dir, "allowed")
    if not security.curve:
        return security
    for key in ("server_key", "client_key"):
        public = os.path.join(security.keys_dir, getattr(security, key) + ".key")
        problem = unreadable(public)
        if problem:
            raise ConfigError(path, "security." + key, problem + "; " + (
                "make the key pair with: vidpipe keygen {}".format(getattr(security, key))
                if "does not exist" in problem else
                "the keys must be readable by the user the service runs as (vidpipe): "
                "vidpipe keygen as root sets root:vidpipe 0750/0640"))
    return security


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
