"""TOML, from whichever parser the box has.

``tomllib`` (Python 3.11+: Debian 12, Raspberry Pi OS), else ``tomli``
(Ubuntu 22.04 / JetPack 6: ``python3-tomli``), else ``toml`` (Debian 11,
Ubuntu 20.04 / JetPack 5: ``python3-toml`` 0.10, the only TOML parser those
releases package). The package depends on one of the three; ``BACKEND``
names the one in use (``vidpipe doctor`` shows it).
"""

from typing import Any, Dict

try:  # Python 3.11+
    import tomllib as _parser  # novermin (the fallbacks below for older Pythons)

    BACKEND = "tomllib"
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        import tomli as _parser  # type: ignore[no-redef]

        BACKEND = "tomli"
    except ImportError:
        _parser = None  # type: ignore[assignment]
        BACKEND = "toml"


class TomlError(ValueError):
    """The text is not valid TOML; ``str()`` says where and why."""


def loads(text: str) -> Dict[str, Any]:
    """Parse ``text``; raises :class:`TomlError` (whatever the backend)."""
    if _parser is not None:
        try:
            return _parser.loads(text)
        except _parser.TOMLDecodeError as exc:
            raise TomlError(str(exc)) from None
    return _toml_loads(text)


def _toml_loads(text: str) -> Dict[str, Any]:
    try:
        import toml
    except ImportError:
        raise ImportError("no TOML parser: install python3-tomli or python3-toml "
                          "(Python < 3.11)") from None
    try:
        data = toml.loads(text)
    except (toml.TomlDecodeError, IndexError, TypeError, ValueError) as exc:
        raise TomlError(str(exc)) from None
    return _plain(data)


def _plain(value: Any) -> Any:
    """toml 0.10 returns its own dict and list subclasses; plain ones here."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
