"""Reading ``pipeline.toml``: the sections filled in from their defaults and
checked key by key, then the checks that span keys (endpoints, outputs,
zones, stage options)."""

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from vidpipe.config.layout import (clips_endpoint, collector_endpoint, decoder_endpoint,
                                   tap_endpoint)
from vidpipe.config.layout import root as runtime_root
from vidpipe.config.tomlread import TomlError, loads as toml_loads
from vidpipe.config.schema import (ConfigError, OptionRules, _defaults, fill_section,
                                   fill_tabled_section, unknown_key)
from vidpipe.config.sections import (CAMERA_RULES, COLLECTOR_RULES, COLLECTOR_TABLES,
                                     DEFAULT_PATH, HANDLER_RULES, PIPELINE_RULES, RECORD_FORMATS,
                                     SECURITY_RULES, TOP_LEVEL, CameraConfig, CollectorConfig,
                                     HandlerConfig, PipelineConfig, SecurityConfig,
                                     connect_from_bind)
from vidpipe.names import NAME_RE, NAME_RULE

IPC_PATH_MAX = 107  # sun_path is 108 bytes including the NUL


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
    #: what the file should say differently (old key names); every role logs
    #: them at start and ``vidpipe check-config`` prints them
    warnings: List[str] = field(default_factory=list)

    def camera(self, name: str) -> CameraConfig:
        if name not in self.cameras:
            known = ", ".join(sorted(self.cameras)) or "none"
            raise ConfigError(self.path, "cameras.{}".format(name),
                              "no such camera section (configured cameras: {})".format(known))
        return self.cameras[name]

    def unconfigured_camera(self, name: str, source: str) -> CameraConfig:
        """Default settings for a camera udev found that has no section."""
        runtime = runtime_root(self.pipeline.runtime_dir)
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
    """Whether a ``[collector.http]`` ``listen`` host is reachable from this host only."""
    return host in LOCAL_HOSTS or host.startswith("127.")


def _check_collector_outputs(path: str, cc: "CollectorConfig") -> None:
    if "preview" in cc.outputs or cc.metrics:
        try:
            host, _port = split_listen(cc.http_listen)
        except ValueError as exc:
            raise ConfigError(path, "collector.http.listen", str(exc)) from None
        if not local_listen(host) and not cc.http_password_file:
            raise ConfigError(path, "collector.http.password_file", "listen = {!r} "
                              "serves beyond this host: set password_file (a file "
                              "holding the password, root:vidpipe 0640) so browsers must "
                              "log in".format(cc.http_listen))
    if "record" in cc.outputs and not cc.record_formats:
        raise ConfigError(path, "collector.record.formats",
                          "must name at least one of {}".format(", ".join(RECORD_FORMATS)))
    # the modules outputs need are theirs to say (vidpipe.outputs.assemble)


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
        camera.bind = decoder_endpoint(runtime, name)
    if not camera.connect:
        camera.connect = connect_from_bind(camera.bind)
    if not camera.tap:
        camera.tap = tap_endpoint(runtime, name)
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
    if camera.record == "passthrough" and not camera.record_url and \
            not camera.source.lower().startswith(("rtsp://", "rtsps://")):
        raise ConfigError(path, section + ".record", "\"passthrough\" records a network "
                          "camera's own stream: set record_url (rtsp://...) or use an rtsp:// "
                          "source")
    if camera.record_url and camera.record != "passthrough":
        raise ConfigError(path, section + ".record_url", "is recorded only with record = "
                          "\"passthrough\"")
    if camera.clips and camera.record != "passthrough":
        raise ConfigError(path, section + ".clips", "event clips are cut from the camera's "
                          "own stream: set record = \"passthrough\" (and record_url for its "
                          "main stream)")
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
    runtime = runtime_root(pipeline.runtime_dir)
    cameras = _cameras(path, runtime, pipeline, data.get("cameras", {}))
    handler_defaults, overrides = _handlers(path, data.get("handlers", {}))
    warnings: List[str] = []
    collector = _collector(path, runtime, data.get("collector", {}), warnings)
    _check_result_transport(path, collector, handler_defaults, overrides)
    return Config(path=path, pipeline=pipeline, cameras=cameras, collector=collector,
                  handler_defaults=handler_defaults, handler_overrides=overrides,
                  stage_options=_stages(path, data.get("stage", {})),
                  security=_security(path, data.get("security", {})), warnings=warnings)


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


def _collector(path: str, runtime: str, raw: Any, warnings: List[str]) -> CollectorConfig:
    """``[collector]`` and its outputs' sub-tables, endpoints filled in."""
    collector = CollectorConfig(**fill_tabled_section(
        path, "collector", raw, COLLECTOR_RULES, _defaults(CollectorConfig), COLLECTOR_TABLES,
        warnings))
    if not collector.bind:
        collector.bind = collector_endpoint(runtime)
    if not collector.connect:
        collector.connect = connect_from_bind(collector.bind)
    _check_endpoint(path, "collector.bind", collector.bind)
    if not collector.tap:
        collector.tap = tap_endpoint(runtime, "collector")
    _check_endpoint(path, "collector.tap", collector.tap)
    if not collector.clips:
        collector.clips = clips_endpoint(runtime)
    _check_endpoint(path, "collector.clips", collector.clips)
    _check_collector_outputs(path, collector)
    if "jsonl" in collector.outputs and not collector.jsonl_path:
        raise ConfigError(path, "collector.jsonl.path",
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
        data = toml_loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", "not UTF-8 text: {}".format(exc)) from None
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except PermissionError:
        raise ConfigError(path, "", "permission denied (is it readable by the vidpipe user?)") \
            from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a directory, expected a TOML file") from None
    except TomlError as exc:
        raise ConfigError(path, "", "not valid TOML: {}".format(exc)) from None
    return config_from_dict(data, path)


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
