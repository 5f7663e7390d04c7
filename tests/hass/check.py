"""Validate MQTT discovery messages with Home Assistant's own code: the topic
as HA's discovery matches it, the component among those it supports, the
payload through that platform's DISCOVERY_SCHEMA (after HA's own expansion
of abbreviations). Run by the Python of .venv-hass (``./dev test`` makes it);
reads ``[[topic, payload-text], ...]`` as JSON on stdin, prints one JSON
object per message: ``{"topic": ..., "ok": bool, "error": str}``."""

import importlib
import json
import sys

# persistent_notification first: importing the mqtt package alone runs into
# an import cycle of Home Assistant's own (websocket_api)
from homeassistant.components import persistent_notification  # noqa: F401
from homeassistant.components.mqtt import discovery

PREFIX = "homeassistant/"


def check(topic: str, text: str) -> str:
    """"" when Home Assistant takes the message, else why not."""
    if not topic.startswith(PREFIX):
        return "not under the discovery prefix {!r}".format(PREFIX)
    match = discovery.TOPIC_MATCHER.match(topic[len(PREFIX):])
    if not match:
        return "illegal discovery topic"
    component = match.group("component")
    if component not in discovery.SUPPORTED_COMPONENTS:
        return "component {} not supported".format(component)
    payload = json.loads(text)
    for key in list(payload):
        payload[discovery.ABBREVIATIONS.get(key, key)] = payload.pop(key)
    platform = importlib.import_module("homeassistant.components.mqtt." + component)
    try:
        platform.DISCOVERY_SCHEMA(payload)
    except Exception as exc:  # voluptuous.Invalid and friends: the reason is the point
        return "{}: {}".format(type(exc).__name__, exc)
    return ""


def main() -> None:
    for topic, text in json.load(sys.stdin):
        error = check(topic, text)
        print(json.dumps({"topic": topic, "ok": not error, "error": error}), flush=True)


if __name__ == "__main__":
    main()
