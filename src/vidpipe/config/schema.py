"""How ``pipeline.toml`` is checked: each key's :class:`Rule` (type, range or
choices, help text), declared once as a dataclass field (:func:`key`), and
the errors that name the file, the dotted key and what is allowed. Every
:class:`ConfigError` maps to exit status 78 (EX_CONFIG), so systemd units
with ``RestartPreventExitStatus=78`` do not restart-loop on a typo."""

import difflib
import re
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

EX_CONFIG = 78


class ConfigError(Exception):
    """A configuration problem; ``str()`` is the one-line message for users."""

    exit_code = EX_CONFIG

    def __init__(self, path: str, key: str, message: str) -> None:
        self.path = path
        self.key = key
        self.message = message
        where = "{}: {}".format(path, key) if key else path
        super().__init__("{}: {}".format(where, message))


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


def key(default: Any, rule: Rule, table: str = "") -> Any:
    """A config key: its default and the :class:`Rule` its value must meet.
    With ``table``, the key is written in the section's sub-table
    ``[SECTION.TABLE]``, named as the field less its ``TABLE_`` prefix; the
    field's own name, flat in the section, is still read, with a warning
    naming the new key (for one release: files written before sub-tables)."""
    meta = {"rule": rule, "table": table}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def rules_of(section: type) -> Dict[str, Rule]:
    """The keys of a section's dataclass and their rules."""
    return {f.name: f.metadata["rule"] for f in fields(section) if "rule" in f.metadata}


def tables_of(section: type) -> Dict[str, Dict[str, str]]:
    """A section's sub-tables: table -> the key as written there -> the field."""
    out: Dict[str, Dict[str, str]] = {}
    for f in fields(section):
        table = f.metadata.get("table", "")
        if table:
            prefix = table + "_"
            name = f.name[len(prefix):] if f.name.startswith(prefix) else f.name
            out.setdefault(table, {})[name] = f.name
    return out


def new_names(section: str, tables: Mapping[str, Mapping[str, str]]) -> Dict[str, str]:
    """field -> its dotted name in the file (``collector.mqtt.host``)."""
    return {fld: "{}.{}.{}".format(section, table, name)
            for table, keys in tables.items() for name, fld in keys.items()}


def fill_tabled_section(path: str, section: str, raw: Mapping[str, Any],
                        rules: Mapping[str, Rule], defaults: Mapping[str, Any],
                        tables: Mapping[str, Mapping[str, str]],
                        warnings: List[str]) -> Dict[str, Any]:
    """:func:`fill_section` for a section whose keys live in sub-tables
    (:func:`key`'s ``table``): their keys are checked under their dotted
    names; a field's old flat name is taken too, and a warning naming its new
    key is added to ``warnings``; both at once is an error."""
    if not isinstance(raw, Mapping):
        raise ConfigError(path, section, "must be a table, got {!r}".format(raw))
    tabled = {fld for keys in tables.values() for fld in keys.values()}
    dotted = new_names(section, tables)
    flat = {k: v for k, v in raw.items() if k not in tables}
    allowed = [k for k in rules if k not in tabled] + list(tables)
    for old in flat:
        if old not in rules:
            hint = difflib.get_close_matches(old, allowed + sorted(tabled), n=1)
            text = "unknown key"
            if hint:
                text += " (did you mean {!r}?)".format(dotted.get(hint[0], hint[0]))
            raise ConfigError(path, _join(section, old), text + "; allowed keys: {}, and the "
                              "keys of [{}]".format(", ".join(sorted(allowed)), "], [".join(
                                  _join(section, t) for t in tables)))
    out = fill_section(path, section, flat, rules, defaults)
    for old in flat:
        if old in tabled:
            where, _, name = dotted[old].rpartition(".")
            warnings.append("{}: {}.{} is the old name of {} (still read in this release; "
                            "write it in [{}] as {})".format(path, section, old, dotted[old],
                                                             where, name))
    for table, keys in tables.items():
        if table not in raw:
            continue
        given = fill_section(path, _join(section, table), raw[table],
                             {name: rules[fld] for name, fld in keys.items()}, {})
        for name, value in given.items():
            fld = keys[name]
            if fld in flat:
                raise ConfigError(path, dotted[fld], "given twice: here and as {}.{} (its old "
                                  "name); keep this one".format(section, fld))
            out[fld] = value
    return out


OptionRules = Mapping[str, Tuple[Rule, Any]]


def _defaults(cls: Any) -> Dict[str, Any]:
    instance = cls()
    return {f.name: getattr(instance, f.name) for f in fields(cls) if "rule" in f.metadata}
