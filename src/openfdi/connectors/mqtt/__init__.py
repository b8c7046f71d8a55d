"""The MQTT connector's spec (layer: connectors): a topic filter as a source, a topic as a target.
`content`: host, port (1883), and user_name and password when the broker wants them.

Kept free of paho imports: `_check` vets a task end's `message` keys at create/update time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openfdi.connectors._messages import OptionsError, parse_options
from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec

EXTRA_KEYS = ("topic", "client_id", "session_expiry", "idle_seconds", "retain")
"""`message` keys of an MQTT end: the topic (a filter with + and # on a source; default the
end's `table`), the client id of the source's persistent session (default: derived from the
task), how long the broker keeps that session while no run is connected (seconds), how long a
TIMING read waits with nothing arriving before it ends (seconds), and whether a target's
messages are retained."""

SESSION_EXPIRY_S = 7 * 24 * 3600
"""Default lifetime of a source's session on the broker once its run disconnected: messages
published to its topics while the task is stopped are kept for it for this long."""

IDLE_S = 0.5
"""Default quiet time that ends a TIMING read (MQTT has no queue depth to drain to)."""

_MAX_TOPIC = 65535


def check_topic(topic: Any, *, wildcards: bool, field: str = "message.topic") -> str:
    """`topic` as a valid MQTT topic (a filter when `wildcards`); OptionsError naming `field`."""
    if not isinstance(topic, str) or not topic or len(topic.encode("utf-8")) > _MAX_TOPIC:
        raise OptionsError(f"{field} must be a non-empty topic", field=field)
    if "\x00" in topic:
        raise OptionsError(f"{field} must not contain NUL", field=field)
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("+" in level or "#" in level) and not wildcards:
            raise OptionsError(f"{field}: a target topic takes no wildcard (+ or #)", field=field)
        if "+" in level and level != "+":
            raise OptionsError(f"{field}: + must be a whole topic level", field=field)
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise OptionsError(f"{field}: # must be the whole last topic level", field=field)
    return topic


def _number(options: Mapping[str, Any], key: str, low: float, high: float) -> None:
    value = options.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise OptionsError(
            f"message.{key} must be a number from {low:g} to {high:g}", field=f"message.{key}"
        )


def check_options(options: Mapping[str, Any]) -> None:
    """Vet an MQTT end's `message` object (either role: a wildcard is refused when published)."""
    parse_options(options, EXTRA_KEYS)
    if options.get("topic") is not None:
        check_topic(options["topic"], wildcards=True)
    client_id = options.get("client_id")
    if client_id is not None and (
        not isinstance(client_id, str) or not 0 < len(client_id.encode("utf-8")) <= 256
    ):
        raise OptionsError("message.client_id must be a short string", field="message.client_id")
    _number(options, "session_expiry", 0, 2**32 - 1)
    _number(options, "idle_seconds", 0.05, 60)
    if options.get("retain") is not None and not isinstance(options["retain"], bool):
        raise OptionsError("message.retain must be true or false", field="message.retain")


def _load() -> type[Connector]:
    from openfdi.connectors.mqtt.connector import MqttConnector

    return MqttConnector


SPEC = ConnectorSpec(
    type="MQTT",
    required_content=("host",),
    capabilities=Capabilities(read=True, write=True, realtime=True),
    load=_load,
    check_options=check_options,
)
