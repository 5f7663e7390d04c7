"""The config reads with each TOML parser a target box has: tomllib (3.11+),
tomli (Ubuntu 22.04), toml 0.10 (Debian 11, Ubuntu 20.04 / JetPack 5)."""

import importlib
import os
import sys
from typing import Any

import pytest

from conftest import ROOT

BLOCK = {"tomllib": [], "tomli": ["tomllib"], "toml": ["tomllib", "tomli"]}


def backend(name: str, monkeypatch: Any) -> Any:
    """vidpipe.config.tomlread as it loads when only ``name`` (and what follows it
    in the chain) can be imported."""
    available = {"tomllib": sys.version_info >= (3, 11)}
    for module in ("tomli", "toml"):
        try:
            importlib.import_module(module)
            available[module] = True
        except ImportError:
            available[module] = False
    if not available[name]:
        if name == "tomllib":  # Python < 3.11: the chain starts further down
            return None
        if os.environ.get("CI"):
            pytest.fail("{} is not installed: ./dev test installs it".format(name))
        pytest.skip("{} is not available on Python {}".format(name, sys.version.split()[0]))
    for blocked in BLOCK[name]:
        monkeypatch.setitem(sys.modules, blocked, None)  # import raises ImportError
    monkeypatch.delitem(sys.modules, "vidpipe.config.tomlread", raising=False)
    module = importlib.import_module("vidpipe.config.tomlread")
    monkeypatch.delitem(sys.modules, "vidpipe.config.tomlread")
    return module


@pytest.mark.parametrize("name", ["tomllib", "tomli", "toml"])
def test_each_parser_reads_the_shipped_config_alike(name: str, monkeypatch: Any) -> None:
    reader = backend(name, monkeypatch)
    if reader is None:
        from vidpipe.config import tomlread

        assert sys.version_info < (3, 11) and tomlread.BACKEND in ("tomli", "toml")
        return
    assert reader.BACKEND == name
    text = (ROOT / "etc" / "vidpipe" / "pipeline.toml").read_text()
    data = reader.loads(text)
    assert type(data) is dict and data["collector"]["outputs"] == ["log", "preview"]
    sample = ('[cameras.cam0]\nsource = "testsrc"\nfps = 12.5\n[handlers]\n'
              'stages = ["gray", "resize"]\n[handlers.2]\ncpus = [2, 3]\n')
    assert reader.loads(sample) == {"cameras": {"cam0": {"source": "testsrc", "fps": 12.5}},
                                    "handlers": {"stages": ["gray", "resize"],
                                                 "2": {"cpus": [2, 3]}}}
    with pytest.raises(reader.TomlError):
        reader.loads("[handlers\nstages = 1\n")
    with pytest.raises(reader.TomlError):
        reader.loads("a = 1\na = 2\n")


def test_a_config_error_names_the_file_with_any_parser(tmp_path: Any,
                                                      monkeypatch: Any) -> None:
    from vidpipe import config

    bad = tmp_path / "pipeline.toml"
    bad.write_text("[pipeline\n")
    with pytest.raises(config.ConfigError) as err:
        config.load_config(str(bad))
    assert str(bad) in str(err.value) and "not valid TOML" in str(err.value)
