"""The RABBITMQ connector's spec (layer: connectors): a queue as a source, an exchange and
routing key as a target. `content`: host, port (5672), user_name, password and
rabbitmq_virtual_host ("/")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openfdi.connectors._messages import parse_options
from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec

EXTRA_KEYS = ("exchange", "routing_key", "declare")
"""`message` keys of a RabbitMQ end: the exchange and routing key a source queue is bound to
(and a target publishes to), and whether to declare the queue (durable) when missing."""


def _load() -> type[Connector]:
    from openfdi.connectors.rabbitmq.connector import RabbitConnector

    return RabbitConnector


def _check(options: Mapping[str, Any]) -> None:
    parse_options(options, EXTRA_KEYS)


SPEC = ConnectorSpec(
    type="RABBITMQ",
    required_content=("host", "port", "user_name"),
    capabilities=Capabilities(read=True, write=True, realtime=True),
    load=_load,
    check_options=_check,
)
