from pathlib import Path

import pytest

from vidpipe.config import ConfigError, HandlerConfig, config_from_dict, connect_from_bind
from vidpipe.tools.tomlwrite import dump_toml

try:
    import tomllib  # novermin
except ImportError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]


def test_defaults_fill_every_section() -> None:
    config = config_from_dict({"cameras": {"cam0": {}}})
    assert config.pipeline.dispatch == "balanced" and config.pipeline.max_latency_ms == 250
    cam = config.camera("cam0")
    assert (cam.source, cam.width, cam.height, cam.fps) == ("auto", 640, 480, 30.0)
    assert cam.bind == "ipc:///run/vidpipe/decoder-cam0.sock" == cam.connect
    assert config.collector.bind == "ipc:///run/vidpipe/collector.sock"
    assert config.handler("3").stages == ["gray"]


def test_a_camera_knows_whether_its_size_was_given() -> None:
    """A network stream is scaled only to a size the section gives; ``sized``
    is not a key a file can set."""
    config = config_from_dict({"cameras": {"a": {"source": "rtsp://h/s"},
                                           "b": {"source": "rtsp://h/s", "width": 1280},
                                           "c": {"source": "rtsp://h/s", "height": 720}}})
    assert [config.camera(n).sized for n in "abc"] == [False, True, True]
    with pytest.raises(ConfigError) as err:
        config_from_dict({"cameras": {"a": {"sized": True}}})
    assert "cameras.a.sized" in str(err.value)


def test_handler_sections_override_the_defaults() -> None:
    config = config_from_dict({"handlers": {"stages": ["gray", "resize"], "prefetch": 2,
                                            "1": {"cpus": [0]}, "2": {"stages": ["motion"]}}})
    assert config.handler("1").cpus == [0] and config.handler("1").stages == ["gray", "resize"]
    assert config.handler("2").stages == ["motion"] and config.handler("2").prefetch == 2
    assert config.handler("7").cpus == []


def test_tcp_bind_gives_a_local_connect_address() -> None:
    assert connect_from_bind("tcp://*:5557") == "tcp://127.0.0.1:5557"
    assert connect_from_bind("tcp://10.1.2.3:5557") == "tcp://10.1.2.3:5557"
    config = config_from_dict({"cameras": {"c": {"bind": "tcp://0.0.0.0:6000"}}})
    assert config.camera("c").connect == "tcp://127.0.0.1:6000"


@pytest.mark.parametrize("data,key", [
    ({"cameras": {"c": {"width": 8}}}, "cameras.c.width"),
    ({"cameras": {"c": {"fps": True}}}, "cameras.c.fps"),
    ({"cameras": {"c": {"pixel_format": "MJPEG"}}}, "cameras.c.pixel_format"),
    ({"cameras": {"c": {"bind": "udp://x"}}}, "cameras.c.bind"),
    ({"cameras": {"bad name": {}}}, "cameras.bad name"),
    ({"cameras": {"c": {"bind": "ipc:///" + "x" * 120}}}, "cameras.c.bind"),
    ({"handlers": {"prefetch": 0}}, "handlers.prefetch"),
    ({"handlers": {"accelerator": "tpu0"}}, "handlers.accelerator"),
    ({"handlers": {"stages": "gray"}}, "handlers.stages"),
    ({"handlers": {"stages": [1]}}, "handlers.stages[0]"),
    ({"collector": {"outputs": ["preview!"]}}, "collector.outputs[0]"),
    ({"pipeline": {"runtime_dir": "relative"}}, "pipeline.runtime_dir"),
    ({"stage": {"resize": 3}}, "stage"),
    ({"cameras": []}, "cameras"),
    ({"cameras": {"c": {"deliver": "gray"}}}, "cameras.c.deliver"),  # testsrc: not a stream
    ({"cameras": {"c": {"source": "rtsp://x/", "deliver": "yuv"}}}, "cameras.c.deliver"),
    ({"cameras": {"c": {"source": "rtsp://x/", "deliver": "i420", "width": 641, "height": 360}}},
     "cameras.c.deliver"),  # its colour planes are half size
    ({"cameras": {"c": {"source": "rtsp://x/", "codec": "mjpeg"}}}, "cameras.c.codec"),
])
def test_bad_values_name_their_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, "/etc/vidpipe/pipeline.toml")
    assert err.value.key == key
    assert str(err.value).startswith("/etc/vidpipe/pipeline.toml: " + key + ": ")


def test_dump_toml_round_trips() -> None:
    data = {"pipeline": {"dispatch": "by-camera", "max_latency_ms": 100},
            "cameras": {"cam0": {"source": "rtsp://u:p@h/\"s\"", "fps": 12.5, "loop": True}},
            "handlers": {"stages": ["gray"], "2": {"cpus": [1, 2]}},
            "stage": {"pkg.mod:Cls": {"x": 1}}}
    assert tomllib.loads(dump_toml(data)) == data


def test_every_key_is_declared_once_with_its_rule() -> None:
    """Each section's keys are its dataclass fields (but the section's own
    name and what is derived from the keys), each carrying its rule; the *_RULES
    tables are derived from them."""
    from dataclasses import fields

    from vidpipe import config as cfg

    for section, rules in ((cfg.PipelineConfig, cfg.PIPELINE_RULES),
                           (cfg.CameraConfig, cfg.CAMERA_RULES),
                           (cfg.HandlerConfig, cfg.HANDLER_RULES),
                           (cfg.CollectorConfig, cfg.COLLECTOR_RULES),
                           (cfg.SecurityConfig, cfg.SECURITY_RULES)):
        names = [f.name for f in fields(section)
                 if f.name != "name" and not f.metadata.get("derived")]
        assert list(rules) == names, section.__name__
        assert all(isinstance(rule, cfg.Rule) for rule in rules.values())
        # a default must pass its own rule
        cfg.fill_section("x", "s", cfg._defaults(section), rules, {})


def test_list_defaults_are_not_shared_between_sections() -> None:
    a, b = HandlerConfig(), HandlerConfig()
    a.stages.append("motion")
    assert b.stages == ["gray"]


@pytest.mark.parametrize("collector,module,key,message", [
    ({"outputs": ["mqtt"]}, "paho", "collector.outputs",
     "'mqtt' needs the paho module (Debian: apt install python3-paho-mqtt)"),
    ({"outputs": ["amqp"]}, "pika", "collector.outputs",
     "'amqp' needs the pika module (Debian: apt install python3-pika)"),
    ({"outputs": ["record"], "record": {"dir": "/tmp/r", "formats": ["hdf5"]}}, "h5py",
     "collector.record.formats", "'record' needs the h5py module (Debian: apt install "
     "python3-h5py)")])
def test_an_output_without_its_library_stops_the_collector_naming_the_package(
        tmp_path: Path, collector: dict, module: str, key: str, message: str) -> None:
    """check-config and the collector refuse (EX_CONFIG) before anything
    starts; a handler or decoder sharing the file does not need the module."""
    import subprocess
    import sys

    from conftest import SRC

    path = tmp_path / "pipeline.toml"
    path.write_text(dump_toml({"pipeline": {"runtime_dir": str(tmp_path / "run")},
                               "collector": collector}))
    code = ("import sys; sys.modules[{!r}] = None  # as if its Debian package were absent\n"
            "from vidpipe.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n").format(module)
    expected = "{}: {}: {}".format(path, key, message)
    for argv in (["check-config", str(path)], ["--config", str(path), "run", "collector"]):
        done = subprocess.run([sys.executable, "-c", code] + argv, stderr=subprocess.PIPE,
                              universal_newlines=True, env={"PYTHONPATH": str(SRC)}, timeout=60)
        assert done.returncode == 78, (argv, done.stderr)
        assert expected in done.stderr, (argv, done.stderr)
    script = ("import sys; sys.modules[{!r}] = None\n"
              "from vidpipe.config import load_config\n"
              "print(load_config(sys.argv[1]).collector.outputs)\n").format(module)
    done = subprocess.run([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                          universal_newlines=True, env={"PYTHONPATH": str(SRC)}, timeout=60)
    assert done.returncode == 0 and collector["outputs"][0] in done.stdout


def test_every_output_the_config_accepts_is_built_one_way() -> None:
    from vidpipe.config import OUTPUTS
    from vidpipe.outputs import Output
    from vidpipe.outputs.assemble import KINDS, output_class

    assert sorted(KINDS) == sorted(OUTPUTS)
    for name in OUTPUTS:
        cls = output_class(name)
        assert issubclass(cls, Output) and cls.name == name, name
        # each is made from its keys by its own build(); "log" has nothing to build
        assert name == "log" or cls.build.__func__ is not Output.build.__func__, name  # type: ignore


def test_mqtt_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"collector.mqtt_topic: must be an MQTT topic "
                                          r"prefix without # or \+"):
        config_from_dict({"collector": {"mqtt_topic": "a/#"}})
    with pytest.raises(ConfigError, match="collector.mqtt_port: must be <= 65535"):
        config_from_dict({"collector": {"mqtt_port": 70000}})


def test_amqp_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"collector.amqp_exchange: must be letters, digits"):
        config_from_dict({"collector": {"amqp_exchange": "a b"}})
    with pytest.raises(ConfigError, match=r"collector.amqp_queue: must be letters"):
        config_from_dict({"collector": {"amqp_queue": "q#"}})
    with pytest.raises(ConfigError, match="collector.events_snapshot_kb: must be <= 4096"):
        config_from_dict({"collector": {"events_snapshot_kb": 5000}})
    cc = config_from_dict({"collector": {"amqp_queue": ""}}).collector
    assert cc.amqp_queue == "" and cc.amqp_exchange == "vidpipe" and cc.amqp_port == 5672


@pytest.mark.parametrize("camera,key,text", [
    ({"source": "/dev/video0", "record": "passthrough"}, "cameras.c.record",
     "network camera's own stream"),
    ({"source": "rtsp://h/sub", "record_url": "rtsp://h/main"}, "cameras.c.record_url",
     "only with record = \"passthrough\""),
    ({"source": "rtsp://h/sub", "record": "passthrough", "record_url": "http://h/x.mjpg"},
     "cameras.c.record_url", "rtsp://"),
    ({"source": "rtsp://h/sub", "record": "keep"}, "cameras.c.record", "passthrough")])
def test_passthrough_keys_are_checked(camera: dict, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"cameras": {"c": camera}})
    assert err.value.key == key and text in err.value.message, err.value
    ok = config_from_dict({"cameras": {"c": {"source": "rtsp://h/sub", "record": "passthrough",
                                             "record_url": "rtsps://h/main"}}})
    assert ok.cameras["c"].record_url == "rtsps://h/main"
