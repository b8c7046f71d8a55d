"""Redis through redis-py (one connection, used by the run's thread only).

The Redis key an end works on is `message.key`, else the task's table.

Stream source: the stream is read through a consumer group (created when missing, with
the stream, at `start`). A read first takes back what this consumer was handed and never
acknowledged (a crashed run's batch), claiming on the way the entries other consumers left
pending for longer than `claim_idle_ms`, then reads new entries. A batch's entries are
acknowledged (XACK) only when the engine has committed them and their checkpoint, so a crash
redelivers them. A REALTIME read blocks in slices of 0.1 s, so a stop is seen within the
deadline; a TIMING read ends once it has what the stream held at its start.

Keys source (TIMING): the keys matching a glob pattern, one row each: a hash as the
JSON object of its fields, a string as the payload itself. SCAN walks the keyspace without
blocking the server; a key written or resized during the walk may be missed or seen twice (the
SCAN guarantee), so such copies belong in an upsert target.

Targets: a batch is one MULTI/EXEC pipeline, so it is written whole or not at all, and it
counts as written once Redis has answered every XADD or HSET in it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from openfdi.connectors._messages import DecodeError, Delivery, MessageConnector, refused
from openfdi.connectors._sqlbase import port_of, require
from openfdi.connectors.errors import InvalidContentError, TerminalConnectorError
from openfdi.connectors.redis import EXTRA_KEYS, SPEC, check_options
from openfdi.connectors.redis.errors import map_driver_errors
from openfdi.connectors.spi import (
    Batch,
    ReadPlan,
    RejectedRow,
    Row,
    TableSchema,
    WriteMode,
    WritePlan,
    WriteResult,
)

_TICK_MS = 100
"""Longest XREADGROUP block between two looks at `cancel()`."""
_ACK_CHUNK = 5_000
"""Ids per XACK command."""
_LIST_LIMIT = 1_000
"""Streams `list_tables` names at most (a keyspace can hold millions of keys)."""

StreamId = tuple[int, int]
_NO_META: Mapping[str, Any] = {}


def _parse_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _as_json(fields: Mapping[bytes, bytes]) -> bytes:
    """Fields (of a stream entry or a hash) as one JSON object, values as strings. A value that
    is not UTF-8 cannot be one: the fields are then given as they are, so the payload is refused
    with its raw bytes rather than read with characters replaced."""
    try:
        doc = {k.decode("utf-8"): v.decode("utf-8") for k, v in fields.items()}
    except UnicodeDecodeError:
        return b" ".join(k + b"=" + v for k, v in fields.items())
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def _field_value(value: Any) -> str:
    """A row value as a hash or entry field: the text the decoder reads back to the same value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | decimal.Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back to the same double
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class RedisConnector(MessageConnector):
    EXTRA_KEYS = EXTRA_KEYS

    def __init__(self, content: Mapping[str, Any]) -> None:
        super().__init__(content)
        require(content, *SPEC.required_content)
        self._secret = str(content.get("password") or "")
        raw_db = content.get("redis_database") or 0
        try:
            database = int(str(raw_db).strip())
        except ValueError:
            database = -1
        if database < 0:
            raise InvalidContentError(
                f"redis_database {raw_db!r} is not a database number", field="redis_database"
            )
        self._params: dict[str, Any] = {
            "host": str(content["host"]).strip(),
            "port": port_of(content, 6379),
            "db": database,
            "username": str(content.get("user_name") or "") or None,
            "password": self._secret or None,
            "ssl": str(content.get("ssl_enable") or "").lower() in ("true", "1"),
            "socket_connect_timeout": 5,
            # Above the longest block (0.1 s) and a large pipeline's answer.
            "socket_timeout": 30,
            # The engine retries a failed batch itself, knowing whether that can write twice;
            # a retry inside redis-py could repeat an EXEC that had already run.
            "retry": Retry(NoBackoff(), 0),
            "client_name": "openfdi",
            "protocol": 2,  # the reply shapes read below (lists of pairs), on any redis-py
        }
        # Any: redis-py's annotations describe RESP2 and RESP3 replies at once; this connection
        # speaks RESP2, whose replies (lists of pairs) the code reads.
        self._client: Any = None
        # stream source
        self._stream = ""
        self._group = ""
        self._consumer = ""
        self._follow = False
        self._pending_from: bytes | None = b"0"  # None once this consumer's backlog is read
        self._end: StreamId | None = None
        self._seen: StreamId = (0, 0)
        # target
        self._mode = "stream"
        self._columns: tuple[str, ...] = ()
        self._keys: tuple[int, ...] = ()

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return map_driver_errors([self._secret])

    def _redis(self) -> Any:
        self.live()
        if self._client is None:
            with self._errors():
                client = redis.Redis(**self._params)
                client.ping()  # connect now: a wrong host or password says so here
            self._client = client
        return self._client

    def configure(self, options: Mapping[str, Any] | None) -> None:
        check_options(options or {})
        super().configure(options)

    def check(self) -> None:
        self._redis()

    def list_tables(self) -> list[str]:
        """The database's streams (at most 1,000, found by SCAN TYPE stream)."""
        client = self._redis()
        names: set[str] = set()
        with self._errors():
            for key in client.scan_iter(count=1_000, _type="stream"):
                names.add(_text(key))
                if len(names) >= _LIST_LIMIT:
                    break
        return sorted(names)

    def _key(self, table: str) -> str:
        """The Redis key an end works on: `message.key` when given (Redis keys hold ':', '-'
        or '*', which a task's table name cannot), else the table."""
        return self._option("key", table)

    def _option(self, key: str, default: str) -> str:
        value = self.options.get(key)
        return str(value) if value is not None else default

    # --- stream source --------------------------------------------------------------------

    def read(self, plan: ReadPlan) -> Iterator[Batch]:
        if self.options.get("mode") == "keys":
            return self._read_keys(plan)
        return super().read(plan)

    def open_source(self, plan: ReadPlan) -> None:
        client = self._redis()
        self._stream = self._key(plan.table)
        self._group = self._option("group", "openfdi")
        self._consumer = self._option("consumer", "openfdi")
        self._follow = plan.follow
        self._pending_from = b"0"
        with self._errors():
            try:
                client.xgroup_create(
                    self._stream, self._group, id=self._option("start", "0"), mkstream=True
                )
            except redis.ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise
            self._claim(client, int(self.options.get("claim_idle_ms", 60_000)))
            # A TIMING read takes what the stream holds now: it ends at its last entry.
            last = client.xrevrange(self._stream, count=1)
            self._end = _parse_id(last[0][0]) if last else None

    def _claim(self, client: Any, idle_ms: int) -> None:
        """Make this consumer the owner of entries others were handed and left unacknowledged
        for `idle_ms` (a consumer renamed, or gone): they are then read with its own backlog."""
        cursor: Any = "0-0"
        while True:
            self.live()
            cursor, _claimed, _deleted = client.xautoclaim(
                self._stream, self._group, self._consumer, idle_ms, start_id=cursor, count=1_000
            )
            if _parse_id(cursor) == (0, 0):
                return

    def receive(self, most: int, timeout_s: float) -> list[Delivery]:
        client = self._redis()
        end = time.monotonic() + timeout_s
        with self._errors():
            while self._pending_from is not None:
                # This consumer's backlog: what it was handed before and never acknowledged.
                answer = client.xreadgroup(
                    self._group, self._consumer, {self._stream: self._pending_from}, count=most
                )
                entries = answer[0][1] if answer else []
                if not entries:
                    self._pending_from = None
                    break
                self._pending_from = entries[-1][0]
                got = self._deliveries(client, entries)
                if got:
                    return got
            while True:
                left = end - time.monotonic()
                block = min(_TICK_MS, int(left * 1000)) if self._follow else None
                if block is not None and block < 1:
                    return []
                answer = client.xreadgroup(
                    self._group, self._consumer, {self._stream: ">"}, count=most, block=block
                )
                entries = answer[0][1] if answer else []
                if entries or not self._follow or self.cancelled.is_set():
                    return self._deliveries(client, entries)

    def _deliveries(self, client: Any, entries: list[Any]) -> list[Delivery]:
        field = self._option("field", "payload").encode("utf-8")
        # Metadata only when a field asks for it: building it costs more than the rest.
        with_meta = any(f.meta is not None for f in self.format.fields)
        out: list[Delivery] = []
        gone: list[bytes] = []
        for entry_id, fields in entries:
            if not fields:
                # Deleted (XDEL, trimming) after it was handed out: nothing to read; it leaves
                # the backlog at once.
                gone.append(entry_id)
                continue
            payload = fields.get(field) if field != b"*" else None
            if payload is None:
                payload = _as_json(fields)
            meta: Mapping[str, Any] = _NO_META
            if with_meta:
                ms = _parse_id(entry_id)[0]
                meta = {
                    "stream": self._stream,
                    "id": entry_id.decode(),
                    "timestamp": dt.datetime.fromtimestamp(ms / 1000, dt.UTC),
                    "headers": {_text(k): _text(v) for k, v in fields.items() if k != field},
                }
            out.append((payload, meta, entry_id))
        if entries:  # ids come in order: the last is the furthest read
            self._seen = max(self._seen, _parse_id(entries[-1][0]))
        if gone:
            client.xack(self._stream, self._group, *gone)
        return out

    def drained(self) -> bool:
        return self._pending_from is None and (self._end is None or self._seen >= self._end)

    def backlog(self) -> int | None:
        """The group's lag (XINFO GROUPS, Redis 7): entries not yet delivered to the group.
        When Redis cannot tell (older than 7, or an entry deleted inside the unread range),
        the stream's length if the group read nothing yet, else None."""
        if not self._group or self.options.get("mode") == "keys":
            return None
        client = self._redis()
        with self._errors():
            for group in client.xinfo_groups(self._stream):
                name = group.get("name")
                if (name.decode() if isinstance(name, bytes) else name) != self._group:
                    continue
                if group.get("lag") is not None:
                    return int(group["lag"])
                if _parse_id(group.get("last-delivered-id") or b"0-0") == (0, 0):
                    return int(client.xlen(self._stream))
        return None

    def acknowledge(self, tokens: list[Any]) -> None:
        client = self._redis()
        with self._errors():
            pipe = client.pipeline(transaction=False)
            for i in range(0, len(tokens), _ACK_CHUNK):
                pipe.xack(self._stream, self._group, *tokens[i : i + _ACK_CHUNK])
            pipe.execute()

    # --- keys source ----------------------------------------------------------------------

    def _read_keys(self, plan: ReadPlan) -> Iterator[Batch]:
        """The keys matching the glob pattern (`key`, or the table), walked once with SCAN:
        hashes and strings are rows, a key of another type is refused with the reason.
        Nothing to acknowledge."""
        if plan.follow:
            raise TerminalConnectorError(
                "Redis: message.mode keys reads the keys once; use a TIMING task (a REALTIME "
                "task follows a stream)"
            )
        client = self._redis()
        names = plan.columns or self.format.schema(plan.table).names
        decode = self.format.decoder(names)
        pattern = self._key(plan.table)
        cursor: int | None = None
        keys: list[bytes] = []
        while True:
            rows: list[Row] = []
            bad: list[RejectedRow] = []
            end = time.monotonic() + plan.batch_seconds
            while len(rows) + len(bad) < plan.batch_rows and time.monotonic() < end:
                if not keys and cursor != 0:
                    with self._errors():
                        cursor, keys = client.scan(
                            cursor or 0, match=pattern, count=min(1_000, plan.batch_rows)
                        )
                    self.live()
                    continue
                if not keys:
                    break
                take = plan.batch_rows - len(rows) - len(bad)
                chunk, keys = keys[:take], keys[take:]
                for key, payload, kind in self._values(client, chunk):
                    if payload is None:
                        bad.append(
                            refused(key, f"key is a {kind}: only hashes and strings are rows")
                        )
                        continue
                    meta = {"key": _text(key), "type": kind}
                    try:
                        rows.append(decode(payload, meta))
                    except DecodeError as exc:
                        bad.append(refused(payload, str(exc)))
            last = cursor == 0 and not keys
            batch = Batch.of(names, rows)
            yield Batch(batch.columns, rows, batch.nbytes, None, last, tuple(bad))
            if last:
                return

    def _values(self, client: Any, keys: list[bytes]) -> list[tuple[bytes, bytes | None, str]]:
        """Each key's payload (None for a type that is no row) and type; keys deleted since
        the scan are left out."""
        with self._errors():
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.type(key)
            kinds = [_text(k) for k in pipe.execute()]
            readable = [(k, t) for k, t in zip(keys, kinds, strict=True) if t in ("hash", "string")]
            pipe = client.pipeline(transaction=False)
            for key, kind in readable:
                if kind == "hash":
                    pipe.hgetall(key)
                else:
                    pipe.get(key)
            values = dict(zip((k for k, _ in readable), pipe.execute(), strict=True))
        out: list[tuple[bytes, bytes | None, str]] = []
        for key, kind in zip(keys, kinds, strict=True):
            if kind == "none":
                continue  # deleted since the scan
            if kind not in ("hash", "string"):
                out.append((key, None, kind))
                continue
            value = values[key]
            if value is None or value == {}:
                continue  # deleted between TYPE and the read
            out.append((key, _as_json(value) if kind == "hash" else value, kind))
        return out

    # --- targets --------------------------------------------------------------------------

    def prepare_target(self, plan: WritePlan) -> TableSchema:
        self.live()
        schema = plan.source_schema or self.format.schema(plan.table)
        self._columns = tuple(plan.columns or schema.names)
        self._encode = self.format.encoder(self._columns)
        self.open_target(plan)
        return schema

    def open_target(self, plan: WritePlan) -> None:
        self._redis()
        if plan.write_mode is WriteMode.TRUNCATE_INSERT:
            raise TerminalConnectorError(
                "Redis: a target appends to a stream or upserts hashes; writeMode "
                "truncate_insert is not supported"
            )
        self._mode = str(self.options.get("mode") or ("keys" if plan.key_columns else "stream"))
        if self._mode != "keys":
            return
        if not plan.key_columns:
            raise TerminalConnectorError(
                "Redis: message.mode keys writes one hash per row under prefix:key; name the "
                "key in targetSelectedDatasource.keyColumns"
            )
        missing = [k for k in plan.key_columns if k not in self._columns]
        if missing:
            raise TerminalConnectorError(f"Redis: key column {missing[0]!r} is not written")
        self._keys = tuple(self._columns.index(k) for k in plan.key_columns)

    def write(self, batch: Batch, plan: WritePlan) -> WriteResult:
        self.live()
        if self._encode is None:
            self.prepare_target(plan)
        if self._mode == "keys":
            return self._write_hashes(batch, plan)
        if self._option("field", "payload") == "*":
            self._append([self._entry(row) for row in batch.rows], plan)
        else:
            encode = self._encode
            assert encode is not None
            self.publish([encode(row) for row in batch.rows], batch.rows, plan)
        return WriteResult(len(batch.rows))

    def publish(self, payloads: list[bytes], rows: list[Row], plan: WritePlan) -> None:
        field = self._option("field", "payload")
        self._append([{field: payload} for payload in payloads], plan)

    def _entry(self, row: Row) -> dict[str, str]:
        """A row as an entry's fields, one per non-null column."""
        return {
            c: _field_value(v) for c, v in zip(self._columns, row, strict=True) if v is not None
        }

    def _append(self, entries: list[Mapping[str, Any]], plan: WritePlan) -> None:
        """XADD every entry in one MULTI/EXEC; done once Redis has answered each of them."""
        maxlen = self.options.get("maxlen")
        stream = self._key(plan.table)
        client = self._redis()
        with self._errors():
            pipe = client.pipeline(transaction=True)
            for entry in entries:
                pipe.xadd(stream, dict(entry), maxlen=maxlen, approximate=True)
            ids = pipe.execute() if entries else []
        if len(ids) != len(entries) or not all(ids):
            raise TerminalConnectorError("Redis: an XADD of the batch was not answered")

    def _write_hashes(self, batch: Batch, plan: WritePlan) -> WriteResult:
        """Each row as the hash prefix:k1:k2..., its non-null columns set and its null ones
        removed: writing a row again leaves the same hash (an upsert)."""
        prefix = self._option("prefix", self._key(plan.table))
        columns = self._columns
        rejected: list[RejectedRow] = []
        written = 0
        client = self._redis()
        with self._errors():
            pipe = client.pipeline(transaction=True)
            for row in batch.rows:
                key_values = [row[i] for i in self._keys]
                if any(v is None for v in key_values):
                    rejected.append(RejectedRow(row, "a key column is null"))
                    continue
                key = ":".join([prefix, *(_field_value(v) for v in key_values)])
                pipe.hset(key, mapping=self._entry(row))
                nulls = [c for c, v in zip(columns, row, strict=True) if v is None]
                if nulls:
                    pipe.hdel(key, *nulls)
                written += 1
            if written:
                pipe.execute()
        return WriteResult(written, rejected)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
