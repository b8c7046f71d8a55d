"""The REDIS connector's spec (layer: connectors): a stream read through a consumer group, or
the keys matching a pattern, as a source; a stream or one hash per row as a target. `content`:
host, port (6379), password, user_name (an ACL user; none for the default user),
redis_database (0) and ssl_enable."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from openfdi.connectors._messages import OptionsError, parse_options
from openfdi.connectors.spi import Capabilities, Connector, ConnectorSpec

EXTRA_KEYS = (
    "key", "mode", "group", "consumer", "start", "field", "prefix", "maxlen", "claim_idle_ms",
)  # fmt: skip
"""`message` keys of a Redis end (docs/task-detail.md, "Redis"):

- `key`: the Redis key the end works on (a stream, or for a keys source a glob pattern), in place
  of the task's table: a table name is a plain identifier, and Redis keys hold ':', '-', '*'.
- `mode`: "stream" or "keys". A source reads the stream (default), or with "keys" the keys
  matching the glob pattern, once (TIMING). A target appends to the stream, or with "keys"
  writes each row as the hash `<prefix>:<key column values>`; the default is "keys"
  when the task names keyColumns, "stream" otherwise.
- `group`, `consumer`: the consumer group and consumer a stream source reads as ("openfdi");
  `start`: where a new group begins ("0": the whole stream, "$": only new entries, or an id);
  `claim_idle_ms`: pending entries of other consumers idle this long are claimed (60000).
- `field`: the entry field holding the payload ("payload"); "*" means the entry's fields are
  the row's columns (a source reads an entry without the field that way too).
- `prefix`: a hash target's key prefix (`key`, or the table); `maxlen`: a stream target is
  trimmed to about this many entries.
"""

MODES = ("stream", "keys")
_STREAM_ID = re.compile(r"^(\$|0|\d+(-\d+)?)$")


def _load() -> type[Connector]:
    from openfdi.connectors.redis.connector import RedisConnector

    return RedisConnector


def _name(options: Mapping[str, Any], key: str) -> None:
    value = options.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise OptionsError(f"message.{key} must be a non-empty string", field=f"message.{key}")


def _count(options: Mapping[str, Any], key: str, least: int) -> None:
    value = options.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise OptionsError(
            f"message.{key} must be an integer of at least {least}", field=f"message.{key}"
        )


def check_options(options: Mapping[str, Any]) -> None:
    """Vet a Redis end's `message` object: the shared keys, then Redis's own."""
    parse_options(options, EXTRA_KEYS)
    options = options or {}
    mode = options.get("mode", "stream")
    if mode not in MODES:
        raise OptionsError(f"message.mode must be one of {', '.join(MODES)}", field="message.mode")
    for key in ("key", "group", "consumer", "field", "prefix"):
        _name(options, key)
    start = options.get("start")
    if start is not None and not (isinstance(start, str) and _STREAM_ID.match(start)):
        raise OptionsError(
            'message.start must be "0", "$" or a stream id like 1700000000000-0',
            field="message.start",
        )
    _count(options, "maxlen", 1)
    _count(options, "claim_idle_ms", 0)


SPEC = ConnectorSpec(
    type="REDIS",
    required_content=("host", "port"),
    capabilities=Capabilities(read=True, write=True, realtime=True),
    load=_load,
    check_options=check_options,
)
