"""The NATS connector's spec (layer: connectors): a JetStream stream as a source (read through a
durable pull consumer) and as a target (published with the JetStream ack). The task end's
`table` is the stream. `content`: host, port (4222), and optionally user_name and password."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from openfdi.connectors._messages import OptionsError, parse_options
from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec

EXTRA_KEYS = ("subject", "durable", "create", "ack_wait")
"""`message` keys of a NATS end: the subject a source filters on (default: the whole stream) or
a target publishes to (default: the stream's name), the durable consumer's name (default
`openfdi-<stream>`), whether to create the stream when missing, and the seconds after which a
message read but not acknowledged is delivered again (default 30)."""

DEFAULT_ACK_WAIT_S = 30.0

NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
"""A stream or consumer name: NATS forbids whitespace, `.`, `*`, `>` and path separators; this
keeps to the characters every server version and file system accepts."""

_TOKEN = re.compile(r"^[^\s.*>]+$")


def valid_subject(subject: str, *, wildcards: bool) -> bool:
    """Whether `subject` is a NATS subject (dot-separated non-empty tokens); `*` tokens and a
    final `>` only when `wildcards` (a filter, not a publish)."""
    parts = subject.split(".")
    for i, part in enumerate(parts):
        if _TOKEN.match(part):
            continue
        if wildcards and (part == "*" or (part == ">" and i == len(parts) - 1)):
            continue
        return False
    return True


def _load() -> type[Connector]:
    from openfdi.connectors.nats.connector import NatsConnector

    return NatsConnector


def check_options(options: Mapping[str, Any]) -> None:
    """Vet a NATS end's `message` object; OptionsError naming the first bad key."""
    parse_options(options, EXTRA_KEYS)
    subject = options.get("subject")
    if subject is not None and (
        not isinstance(subject, str) or not valid_subject(subject, wildcards=True)
    ):
        raise OptionsError(
            "message.subject must be a NATS subject like orders.created or orders.>",
            field="message.subject",
        )
    durable = options.get("durable")
    if durable is not None and (not isinstance(durable, str) or not NAME.match(durable)):
        raise OptionsError(
            "message.durable must be a consumer name (letters, digits, _ and -)",
            field="message.durable",
        )
    create = options.get("create")
    if create is not None and not isinstance(create, bool):
        raise OptionsError("message.create must be true or false", field="message.create")
    ack_wait = options.get("ack_wait")
    if ack_wait is not None and (
        isinstance(ack_wait, bool)
        or not isinstance(ack_wait, int | float)
        or not 0 < ack_wait <= 86_400
    ):
        raise OptionsError(
            "message.ack_wait must be seconds between 0 and 86400", field="message.ack_wait"
        )


SPEC = ConnectorSpec(
    type="NATS",
    required_content=("host",),
    capabilities=Capabilities(read=True, write=True, realtime=True),
    load=_load,
    check_options=check_options,
)
