"""An installed box's /etc/vidpipe/pipeline.toml survives the upgrade: the
files 0.1.0 and 0.2.0 shipped (flat collector keys: mqtt_host, record_max_bytes ...),
edited as an operator would, is read by this release with a warning per old
key naming the key that replaces it, and configures exactly what the same
edits in today's shipped file (sub-tables: [collector.mqtt] host ...) do."""

from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from vidpipe.config import ConfigError, config_from_dict, load_config
from vidpipe.config.tomlread import loads

ROOT = Path(__file__).resolve().parents[2]
OLDS = [ROOT / "tests" / "data" / name for name in ("pipeline-0.1.0.toml", "pipeline-0.2.0.toml")]
NEW = ROOT / "etc" / "vidpipe" / "pipeline.toml"

#: (line in the old release's file, what the operator made of it) and the
#: same edit in today's file
OLD_EDITS: List[Tuple[str, str]] = [
    ('outputs = ["log", "preview"]', 'outputs = ["log", "preview", "mqtt", "record"]'),
    ('#http_listen = "127.0.0.1:8090"', 'http_listen = "0.0.0.0:8090"'),
    ('#http_password_file = ""', 'http_password_file = "/etc/vidpipe/http.password"'),
    ('#mqtt_host = "127.0.0.1"', 'mqtt_host = "broker.lan"'),
    ('#mqtt_credentials_file = ""', 'mqtt_credentials_file = "/etc/vidpipe/mqtt.secret"'),
    ('#mqtt_discovery = false', 'mqtt_discovery = true'),
    ('#record_max_bytes = 1073741824', 'record_max_bytes = 5368709120'),
    ('#record_max_age_s = 0.0', 'record_max_age_s = 604800.0'),
    ('#spool_max_mb = 64', 'spool_max_mb = 16'),
]
NEW_EDITS: List[Tuple[str, str]] = [
    ('outputs = ["log", "preview"]', 'outputs = ["log", "preview", "mqtt", "record"]'),
    ('#[collector.http]', '[collector.http]'),
    ('#listen = "127.0.0.1:8090"', 'listen = "0.0.0.0:8090"'),
    ('#password_file = ""', 'password_file = "/etc/vidpipe/http.password"'),
    ('#[collector.mqtt]', '[collector.mqtt]'),
    ('#host = "127.0.0.1"\n#port = 1883', 'host = "broker.lan"\n#port = 1883'),
    ('#credentials_file = ""\n#tls = false\n#ca_file = ""                   # default',
     'credentials_file = "/etc/vidpipe/mqtt.secret"\n#tls = false\n'
     '#ca_file = ""                   # default'),
    ('#discovery = false', 'discovery = true'),
    ('#[collector.record]', '[collector.record]'),
    ('#max_bytes = 1073741824', 'max_bytes = 5368709120'),
    ('#max_age_s = 0.0', 'max_age_s = 604800.0'),
    ('#[collector.spool]', '[collector.spool]'),
    ('#max_mb = 64', 'max_mb = 16'),
]


def edited(path: Path, edits: List[Tuple[str, str]], tmp_path: Path) -> Path:
    text = path.read_text()
    for before, after in edits:
        assert text.count(before) == 1, before  # the edit lands on exactly one line
        text = text.replace(before, after)
    out = tmp_path / ("new.toml" if path == NEW else "old-" + path.name)
    out.write_text(text)
    return out


def fields(path: Path) -> Dict[str, object]:
    config = load_config(str(path))
    return {"collector": vars(config.collector), "pipeline": vars(config.pipeline),
            "cameras": {n: vars(c) for n, c in config.cameras.items()},
            "handlers": config.handler_defaults, "security": vars(config.security)}


@pytest.mark.parametrize("release", OLDS, ids=lambda p: p.stem[9:])
def test_an_edited_old_file_configures_what_the_same_edits_in_todays_file_do(
        release: Path, tmp_path: Path) -> None:
    pytest.importorskip("paho.mqtt.client")  # the mqtt output is checked for it at load
    old = edited(release, OLD_EDITS, tmp_path)
    new = edited(NEW, NEW_EDITS, tmp_path)
    assert fields(old) == fields(new)
    collector = load_config(str(old)).collector
    assert (collector.mqtt_host, collector.record_max_bytes, collector.spool_max_mb,
            collector.mqtt_discovery) == ("broker.lan", 5368709120, 16, True)


@pytest.mark.parametrize("release", OLDS, ids=lambda p: p.stem[9:])
def test_each_old_key_is_named_with_the_key_that_replaces_it(release: Path,
                                                             tmp_path: Path) -> None:
    pytest.importorskip("paho.mqtt.client")
    warnings = load_config(str(edited(release, OLD_EDITS, tmp_path))).warnings
    expected = {"http_listen": "collector.http.listen",
                "http_password_file": "collector.http.password_file",
                "mqtt_host": "collector.mqtt.host",
                "mqtt_credentials_file": "collector.mqtt.credentials_file",
                "mqtt_discovery": "collector.mqtt.discovery",
                "record_max_bytes": "collector.record.max_bytes",
                "record_max_age_s": "collector.record.max_age_s",
                "spool_max_mb": "collector.spool.max_mb"}
    assert len(warnings) == len(expected), warnings
    for old, new in expected.items():
        assert any("collector.{} ".format(old) in w and new in w for w in warnings), \
            (old, warnings)
    # today's file, edited, says nothing
    assert load_config(str(edited(NEW, NEW_EDITS, tmp_path))).warnings == []


def test_check_config_lists_the_old_names(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from vidpipe.cli import main

    old = tmp_path / "p.toml"
    old.write_text('[collector]\nrecord_max_bytes = 5368709120\n[collector.mqtt]\nport = 1884\n')
    assert main(["check-config", str(old)]) == 0
    err = capsys.readouterr().err
    assert "collector.record_max_bytes is the old name of collector.record.max_bytes" in err


@pytest.mark.parametrize("collector, key", [
    ({"mqtt": {"host": "a"}, "mqtt_host": "b"}, "collector.mqtt.host"),  # old and new at once
    ({"mqtt": {"hots": "a"}}, "collector.mqtt.hots"),
    ({"record": {"max_bytes": 5}}, "collector.record.max_bytes"),
    ({"record": "big"}, "collector.record"),
    ({"mqtt_hots": "a"}, "collector.mqtt_hots"),
])
def test_a_wrong_key_is_named_as_the_file_spells_it(collector: Dict[str, object],
                                                     key: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"collector": collector})
    assert err.value.key == key, str(err.value)


def test_the_shipped_file_and_the_old_ones_parse_as_toml() -> None:
    for path in OLDS + [NEW]:
        assert "collector" in loads(path.read_text())
