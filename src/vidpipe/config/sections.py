"""The sections of ``pipeline.toml``: each key declared once, as a dataclass
field carrying its rule (:func:`vidpipe.config.schema.key`)."""

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List

from vidpipe.config.schema import Rule, key, rules_of, tables_of

DEFAULT_PATH = "/etc/vidpipe/pipeline.toml"

DEFAULT_RUNTIME_DIR = "/run/vidpipe"

DISPATCH_MODES = ("balanced", "round-robin", "by-camera")

OUTPUTS = ("log", "jsonl", "display", "preview", "record", "mqtt", "amqp")

RECORD_FORMATS = ("mp4", "hdf5")

ACCELERATOR_RE = re.compile(r"^(cpu|cuda[0-9]+|dla[0-9]+)$")

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
    detect_when: str = key("always", Rule(str, choices=("always", "motion", "motion-region")))
    record: str = key("off", Rule(str, choices=("off", "passthrough")))
    record_url: str = key("", Rule(str, pattern=re.compile(r"^((rtsps?)://.+)?$", re.I),
                                   allowed="an rtsp:// or rtsps:// URL, or \"\""))
    clips: List[str] = key([], Rule(list, item=str, pattern=re.compile(
        r"^(\*|[A-Za-z0-9_-]{1,40})$"), allowed="an event label (letters, digits, _ -) or \"*\" "
        "for every label"))
    preroll_s: float = key(5.0, Rule(float, 0, 60))
    postroll_s: float = key(5.0, Rule(float, 0, 300))
    track: bool = key(False, Rule(bool))
    track_lost_s: float = key(2.0, Rule(float, 0.1, 600))
    track_update_s: float = key(1.0, Rule(float, 0, 3600))
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
    """``[collector]``: its own keys, and each output's in a sub-table of its
    own (``[collector.mqtt]`` ``host`` ...; ``table`` below). The fields keep
    the flat names (``mqtt_host``) the code uses and files written before 0.3
    still may (read with a warning naming the new key)."""

    outputs: List[str] = key(["log"], Rule(list, item=str, choices=OUTPUTS))
    bind: str = key("", _ENDPOINT)
    connect: str = key("", _ENDPOINT)
    reorder_window: int = key(32, Rule(int, 1, 4096))
    jsonl_path: str = key("", Rule(str), table="jsonl")
    jsonl_checksum: bool = key(False, Rule(bool), table="jsonl")
    exit_on_eos: bool = key(False, Rule(bool))
    http_listen: str = key("127.0.0.1:8090", Rule(str), table="http")
    http_hosts: List[str] = key([], Rule(list, item=str), table="http")
    http_user: str = key("vidpipe", Rule(str, pattern=re.compile(r"^[^:\s]{1,64}$"),
                                         allowed="1-64 characters, no colon or space"),
                         table="http")
    http_password_file: str = key("", Rule(str, pattern=re.compile(r"^(/.*)?$"),
                                           allowed="an absolute path, or \"\""), table="http")
    #: without a password, who on this box may see the cameras: "group" (root,
    #: the collector's account and group vidpipe) or "anyone" (before 0.2)
    http_local_access: str = key("group", Rule(str, choices=("group", "anyone")), table="http")
    metrics: bool = key(False, Rule(bool), table="http")
    preview_fps: float = key(5.0, Rule(float, 0.1, 60), table="preview")
    preview_width: int = key(960, Rule(int, 16, 16384), table="preview")
    preview_quality: int = key(80, Rule(int, 1, 100), table="preview")
    preview_boxes: bool = key(True, Rule(bool), table="preview")
    record_dir: str = key("/var/lib/vidpipe/recordings",
                          Rule(str, pattern=re.compile(r"^/"), allowed="an absolute path"),
                          table="record")
    record_formats: List[str] = key(["mp4"], Rule(list, item=str, choices=RECORD_FORMATS),
                                    table="record")
    record_segment_s: float = key(300.0, Rule(float, 1, 86400), table="record")
    record_codec: str = key("auto", Rule(str, choices=("auto", "h264", "mp4v")), table="record")
    record_max_bytes: int = key(1024 ** 3, Rule(int, 1024 * 1024), table="record")
    record_max_age_s: float = key(0.0, Rule(float, 0), table="record")
    record_min_free_mb: int = key(256, Rule(int, 0), table="record")
    tap: str = key("", _ENDPOINT)
    clips: str = key("", _ENDPOINT)
    mqtt_host: str = key("127.0.0.1", Rule(str, pattern=re.compile(r"^[A-Za-z0-9_.:-]{1,255}$"),
                                           allowed="a host name or address"), table="mqtt")
    mqtt_port: int = key(1883, Rule(int, 1, 65535), table="mqtt")
    mqtt_topic: str = key("vidpipe", Rule(str, pattern=re.compile(r"^[^#+\s\0]{1,128}$"),
                                          allowed="an MQTT topic prefix without # or +"),
                          table="mqtt")
    mqtt_client_id: str = key("", Rule(str, pattern=re.compile(r"^[A-Za-z0-9_.-]{0,64}$"),
                                       allowed="letters, digits, _ . - (up to 64)"), table="mqtt")
    mqtt_credentials_file: str = key("", Rule(str, pattern=re.compile(r"^(/.*)?$"),
                                              allowed="an absolute path, or \"\""), table="mqtt")
    mqtt_tls: bool = key(False, Rule(bool), table="mqtt")
    mqtt_ca_file: str = key("", Rule(str, pattern=re.compile(r"^(/.*)?$"),
                                     allowed="an absolute path, or \"\""), table="mqtt")
    spool_dir: str = key("/var/lib/vidpipe/spool",
                         Rule(str, pattern=re.compile(r"^/"), allowed="an absolute path"),
                         table="spool")
    spool_max_mb: int = key(64, Rule(int, 1, 1024 * 1024), table="spool")
    events_min_frames: int = key(2, Rule(int, 1, 1000), table="events")
    events_end_after_s: float = key(2.0, Rule(float, 0, 3600), table="events")
    events_update_s: float = key(5.0, Rule(float, 0.1, 86400), table="events")
    state_hz: float = key(1.0, Rule(float, 0, 100), table="events")
    mqtt_discovery: bool = key(False, Rule(bool), table="mqtt")
    mqtt_discovery_prefix: str = key("homeassistant",
                                     Rule(str, pattern=re.compile(r"^[^#+\s\0]{1,128}$"),
                                          allowed="an MQTT topic prefix without # or +"),
                                     table="mqtt")
    events_snapshot_kb: int = key(0, Rule(int, 0, 4096), table="events")
    amqp_host: str = key("127.0.0.1", Rule(str, pattern=re.compile(r"^[A-Za-z0-9_.:-]{1,255}$"),
                                           allowed="a host name or address"), table="amqp")
    amqp_port: int = key(5672, Rule(int, 1, 65535), table="amqp")
    amqp_vhost: str = key("/", Rule(str, pattern=re.compile(r"^[^\s\0]{1,255}$"),
                                    allowed="a virtual host name"), table="amqp")
    amqp_exchange: str = key("vidpipe", _AMQP_NAME, table="amqp")
    amqp_queue: str = key("vidpipe.events",
                          Rule(str, pattern=re.compile(r"^[A-Za-z0-9_.:-]{0,200}$"),
                               allowed="letters, digits, _ . : - (up to 200), or \"\" for none"),
                          table="amqp")
    amqp_results: bool = key(False, Rule(bool), table="amqp")
    amqp_credentials_file: str = key("", Rule(str, pattern=re.compile(r"^(/.*)?$"),
                                              allowed="an absolute path, or \"\""), table="amqp")
    amqp_tls: bool = key(False, Rule(bool), table="amqp")
    amqp_ca_file: str = key("", Rule(str, pattern=re.compile(r"^(/.*)?$"),
                                     allowed="an absolute path, or \"\""), table="amqp")


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
COLLECTOR_TABLES = tables_of(CollectorConfig)

SECURITY_RULES = rules_of(SecurityConfig)

TOP_LEVEL = ("pipeline", "cameras", "handlers", "collector", "stage", "security")


def connect_from_bind(bind: str) -> str:
    """The address a peer on the same host uses to reach ``bind``."""
    match = re.match(r"^tcp://(\*|0\.0\.0\.0|\[::\]):([0-9]+)$", bind)
    if match:
        return "tcp://127.0.0.1:{}".format(match.group(2))
    return bind
