"""Home Assistant MQTT discovery payloads (vidpipe.outputs.hass), checked
against the configuration variables Home Assistant documents for MQTT binary
sensors and sensors (home-assistant.io/integrations/binary_sensor.mqtt/ and
sensor.mqtt/, the shared device block, the device and state classes)."""

import json
import re

from vidpipe.outputs.hass import discovery

COMMON = {"availability", "availability_mode", "availability_template", "availability_topic",
          "device", "device_class", "enabled_by_default", "encoding", "entity_category",
          "expire_after", "force_update", "icon", "json_attributes_template",
          "json_attributes_topic", "name", "object_id", "payload_available",
          "payload_not_available", "qos", "state_topic", "unique_id", "value_template"}
DOCUMENTED = {
    "binary_sensor": COMMON | {"off_delay", "payload_off", "payload_on"},
    "sensor": COMMON | {"last_reset_value_template", "state_class",
                        "suggested_display_precision", "unit_of_measurement"},
}
DEVICE = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer",
          "model", "name", "suggested_area", "sw_version", "via_device"}
DEVICE_CLASSES = {"binary_sensor": {"motion", "occupancy", "moving", "presence"},
                  "sensor": {"duration"}}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
DURATION_UNITS = {"d", "h", "min", "s", "ms"}
TOPIC = re.compile(r"^homeassistant/(binary_sensor|sensor)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)"
                   r"/config$")


def test_payloads_use_only_documented_keys_and_values() -> None:
    seen_ids = set()
    for camera in ("cam0", "door.front"):
        areas = (["hall"], ["front-door"]) if camera == "cam0" else ((), ())
        for topic, payload in discovery("homeassistant", "vidpipe", camera, "box1", *areas):
            match = TOPIC.match(topic)
            assert match, topic
            component = match.group(1)
            doc = json.loads(payload)
            assert set(doc) <= DOCUMENTED[component], set(doc) - DOCUMENTED[component]
            assert set(doc["device"]) <= DEVICE and doc["device"]["identifiers"]
            assert doc["state_topic"] == "vidpipe/{}/state".format(camera)
            assert doc["availability_topic"] == "vidpipe/availability"
            assert doc["unique_id"] not in seen_ids
            seen_ids.add(doc["unique_id"])
            if "device_class" in doc:
                assert doc["device_class"] in DEVICE_CLASSES[component]
            if doc.get("device_class") == "duration":
                assert doc["unit_of_measurement"] in DURATION_UNITS
            if "state_class" in doc:
                assert doc["state_class"] in STATE_CLASSES
            if component == "binary_sensor":
                assert {doc["payload_on"], doc["payload_off"]} == {"ON", "OFF"}
            # value_template reads a key the state payload has
            key = re.search(r"value_json\.(\w+)", doc["value_template"]).group(1)
            assert key in {"active", "fps", "latency_p50_ms", "dropped", "zones", "lines"}
    assert len(seen_ids) == 10 + 3  # cam0's zone sensor and its line's in and out
