"""A TOML writer for the configurations the commands make (``vidpipe demo``,
``vidpipe bench``): plain tables, strings, numbers, booleans and lists."""

import re
from typing import Any, List, Mapping

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
