"""Home Assistant MQTT discovery for the ``mqtt`` output (opt-in:
``mqtt_discovery = true``).

Per camera, retained config messages on
``<mqtt_discovery_prefix>/<component>/vidpipe_<camera>/<object>/config`` make
these appear in Home Assistant without YAML, all read from the camera's
retained state topic and tied to the output's availability topic:

* ``binary_sensor`` *motion* (device class ``motion``): on while a motion
  event is going on;
* ``binary_sensor`` *face* (device class ``occupancy``): on while a face
  event is going on;
* ``sensor`` *fps* and *latency p50* (state class ``measurement``);
* ``sensor`` *dropped* (state class ``total_increasing``);
* for a camera that tracks (``vidpipe.analytics``): a ``sensor`` per zone
  (*Zone NAME*: tracked objects in it now, ``measurement``) and two per line
  (*Line NAME in* / *out*: crossings, ``total_increasing``).

The keys used are those of Home Assistant's MQTT binary sensor and sensor
integrations (https://www.home-assistant.io/integrations/binary_sensor.mqtt/,
https://www.home-assistant.io/integrations/sensor.mqtt/) and of the shared
``device`` block.
"""

import json
from typing import Any, Dict, List, Sequence, Tuple

from vidpipe import __version__

#: (component, object id, name, extra keys) per camera
ENTITIES: List[Tuple[str, str, str, Dict[str, Any]]] = [
    ("binary_sensor", "motion", "Motion", {
        "device_class": "motion", "payload_on": "ON", "payload_off": "OFF",
        "value_template": "{{ 'ON' if 'motion' in value_json.active else 'OFF' }}"}),
    ("binary_sensor", "face", "Face", {
        "device_class": "occupancy", "payload_on": "ON", "payload_off": "OFF",
        "value_template": "{{ 'ON' if 'face' in value_json.active else 'OFF' }}"}),
    ("sensor", "fps", "Frame rate", {
        "state_class": "measurement", "unit_of_measurement": "fps",
        "value_template": "{{ value_json.fps }}"}),
    ("sensor", "latency", "Latency p50", {
        "state_class": "measurement", "device_class": "duration",
        "unit_of_measurement": "ms", "value_template": "{{ value_json.latency_p50_ms }}"}),
    ("sensor", "dropped", "Frames dropped", {
        "state_class": "total_increasing", "value_template": "{{ value_json.dropped }}"}),
]


def node_id(camera: str) -> str:
    """Discovery ids allow [a-zA-Z0-9_-]: camera names are that and dots."""
    return "vidpipe_" + camera.replace(".", "_")


def area_entities(zones: Sequence[str], lines: Sequence[str]
                  ) -> List[Tuple[str, str, str, Dict[str, Any]]]:
    """The sensors of a camera's zones and lines (names follow the label
    rule: safe in object ids and in the templates' brackets)."""
    out: List[Tuple[str, str, str, Dict[str, Any]]] = []
    for zone in zones:
        out.append(("sensor", "zone_" + zone, "Zone {}".format(zone), {
            "state_class": "measurement", "unit_of_measurement": "objects",
            "value_template": "{{{{ value_json.zones['{}'] }}}}".format(zone)}))
    for line in lines:
        for way in ("in", "out"):
            out.append(("sensor", "line_{}_{}".format(line, way),
                        "Line {} {}".format(line, way), {
                            "state_class": "total_increasing",
                            "value_template": "{{{{ value_json.lines['{}']['{}'] }}}}".format(
                                line, way)}))
    return out


def discovery(prefix: str, topic: str, camera: str, host: str, zones: Sequence[str] = (),
              lines: Sequence[str] = ()) -> List[Tuple[str, bytes]]:
    """(config topic, payload) of every entity of ``camera``."""
    node = node_id(camera)
    device = {"identifiers": [node], "name": "vidpipe {}".format(camera),
              "manufacturer": "vidpipe", "model": "camera pipeline on {}".format(host),
              "sw_version": __version__}
    out = []
    for component, object_id, name, extra in ENTITIES + area_entities(zones, lines):
        doc = {"name": name, "unique_id": "{}_{}".format(node, object_id),
               "object_id": "{}_{}".format(node, object_id),
               "state_topic": "{}/{}/state".format(topic, camera),
               "availability_topic": "{}/availability".format(topic),
               "payload_available": "online", "payload_not_available": "offline",
               "device": device}
        doc.update(extra)
        out.append(("{}/{}/{}/{}/config".format(prefix, component, node, object_id),
                    json.dumps(doc, sort_keys=True).encode()))
    return out
