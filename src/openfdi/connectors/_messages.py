"""Messages to rows and back, shared by every message connector (layer: connectors).

A task's message end carries a `message` object (docs/task-detail.md, "Message ends"):

    {"format": "json" | "csv" | "raw",
     "fields": [{"name": "order_id", "path": "$.order.id", "type": "bigint"},
                {"name": "rk", "meta": "routing_key", "type": "varchar"}],
     "delimiter": ","}

Each field is one typed column: `path` is a JSON path into the payload (`$.a.b`, `$.items[0]`),
for CSV the 0-based position (`"path": 2`), and `meta` names one of the message's metadata
(routing key, topic, subject, stream id, timestamp, a header as `headers.x`). Without `fields`, a
JSON payload is one `payload` column (json) and a raw one one `value` column (text).

As a target the same fields map a row's columns back to a JSON object (nested by their paths);
`meta` fields are not sent. Decimals travel as strings, binary as hex, times as ISO-8601.
"""

from __future__ import annotations

import abc
import base64
import csv
import datetime as dt
import decimal
import functools
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from openfdi.connectors._json_text import exact_json
from openfdi.connectors._values import (
    as_naive_utc,
    as_utc,
    date_of,
    format_interval,
    parse_interval,
)
from openfdi.connectors.errors import InvalidContentError, QueryCancelledError
from openfdi.connectors.spi import (
    Batch,
    Column,
    Connector,
    LogicalType,
    ReadPlan,
    RejectedRow,
    Row,
    TableSchema,
    WritePlan,
    WriteResult,
)

__all__ = [
    "QUIET_END_S",
    "RAW_LIMIT",
    "DecodeError",
    "Delivery",
    "Field",
    "MessageConnector",
    "MessageFormat",
    "Meta",
    "OptionsError",
    "parse_options",
    "refused",
]

RAW_LIMIT = 4096
"""Bytes of a refused message's payload kept in its dirty row."""

QUIET_END_S = 1.0
"""A TIMING read of a system that cannot say it is drained (or was not, e.g. another consumer
took some messages) ends after this long with no message. It used to end at the first receive
that came back empty, and a receive given only the last milliseconds of a 0.2 s batch window
often does while the broker is still delivering: a TIMING run ended SUCCESS after 1,447 of
50,000 queued messages."""

FORMATS = ("json", "csv", "raw")
_PATH = re.compile(r"^\$((\.[A-Za-z_][A-Za-z0-9_\-]*)|(\[\d+\])|(\['[^']*'\]))*$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|\['([^']*)'\]")

Meta = Mapping[str, Any]
"""A message's metadata by name (what `meta` fields select)."""


class OptionsError(InvalidContentError):
    """A `message` key is invalid; `field` names it (e.g. `message.fields[0].type`)."""


class DecodeError(ValueError):
    """A payload that cannot become a row; the message says why."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: LogicalType
    path: tuple[str | int, ...] | None = None
    """JSON path steps (keys and indexes), or (index,) for CSV; None for a `meta` field."""
    meta: str | None = None


def _steps(path: str) -> tuple[str | int, ...]:
    # finditer, not findall: findall gives "" for a group that did not match, so `[0]` would
    # read as the key "" and `['']` could not be told from it.
    steps: list[str | int] = []
    for match in _STEP.finditer(path):
        key, index, quoted = match.groups()
        steps.append(key if key is not None else int(index) if index is not None else quoted)
    return tuple(steps)


def _fields(raw: Any, fmt: str) -> tuple[Field, ...]:
    if raw is None:
        kind = LogicalType.JSON if fmt == "json" else LogicalType.TEXT
        if fmt == "csv":
            raise OptionsError("a CSV payload needs message.fields", field="message.fields")
        return (Field("payload" if fmt == "json" else "value", kind, ()),)
    if not isinstance(raw, list) or not raw:
        raise OptionsError("message.fields must be a non-empty list", field="message.fields")
    fields: list[Field] = []
    for i, item in enumerate(raw):
        where = f"message.fields[{i}]"
        if not isinstance(item, dict):
            raise OptionsError(f"{where} must be an object", field=where)
        unknown = set(item) - {"name", "path", "type", "meta"}
        if unknown:
            key = sorted(unknown)[0]
            raise OptionsError(f"{where}.{key} is not a field key", field=f"{where}.{key}")
        name = item.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise OptionsError(f"{where}.name must be a column name", field=f"{where}.name")
        try:
            kind = LogicalType(str(item.get("type", "text")).lower())
        except ValueError:
            raise OptionsError(
                f"{where}.type must be one of {', '.join(t.value for t in LogicalType)}",
                field=f"{where}.type",
            ) from None
        meta, path = item.get("meta"), item.get("path")
        if (meta is None) == (path is None):
            raise OptionsError(f"{where} needs one of path or meta", field=f"{where}.path")
        if meta is not None:
            if not isinstance(meta, str) or not meta:
                raise OptionsError(f"{where}.meta must be a name", field=f"{where}.meta")
            fields.append(Field(name, kind, None, meta))
        elif fmt == "csv":
            if not isinstance(path, int) or isinstance(path, bool) or path < 0:
                raise OptionsError(f"{where}.path must be a column index", field=f"{where}.path")
            fields.append(Field(name, kind, (path,)))
        else:
            if not isinstance(path, str) or not _PATH.match(path):
                raise OptionsError(
                    f"{where}.path must be a JSON path like $.order.id", field=f"{where}.path"
                )
            fields.append(Field(name, kind, _steps(path)))
    if len({f.name for f in fields}) != len(fields):
        raise OptionsError("message.fields names a column twice", field="message.fields")
    return tuple(fields)


def parse_options(options: Mapping[str, Any] | None, extra: Sequence[str] = ()) -> MessageFormat:
    """The message format a task end's `message` object describes; OptionsError naming the
    first bad key. `extra` are the keys the connector itself reads (an exchange, a group)."""
    options = options or {}
    if not isinstance(options, Mapping):
        raise OptionsError("message must be an object", field="message")
    unknown = set(options) - {"format", "fields", "delimiter", "template", *extra}
    if unknown:
        key = sorted(unknown)[0]
        raise OptionsError(f"message.{key} is not a message key", field=f"message.{key}")
    fmt = str(options.get("format", "json")).lower()
    if fmt not in FORMATS:
        raise OptionsError(
            f"message.format must be one of {', '.join(FORMATS)}", field="message.format"
        )
    delimiter = options.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise OptionsError("message.delimiter must be one character", field="message.delimiter")
    template = options.get("template")
    if template is not None and not isinstance(template, str):
        raise OptionsError("message.template must be a string", field="message.template")
    return MessageFormat(fmt, _fields(options.get("fields"), fmt), delimiter, template)


_AS_JSON: dict[type, Callable[[Any], Any]] = {
    str: lambda v: v, int: lambda v: v, float: lambda v: v, bool: lambda v: v,
    type(None): lambda v: v, dict: lambda v: v, list: lambda v: v,
    decimal.Decimal: str,
    dt.datetime: dt.datetime.isoformat, dt.date: dt.date.isoformat, dt.time: dt.time.isoformat,
    dt.timedelta: format_interval,
    bytes: bytes.hex, bytearray: bytearray.hex, memoryview: lambda v: bytes(v).hex(),
}  # fmt: skip
"""`_to_json` by exact type: one dict lookup per value instead of a chain of isinstance
checks (the encoder's hottest line); a subclass falls through to the chain."""
_PASS_THROUGH = frozenset({str, int, float, bool, type(None), dict, list})


def _to_json(value: Any) -> Any:
    """A row value as JSON: exact numbers, decimals as strings, times as ISO-8601."""
    kind = type(value)
    if kind in _PASS_THROUGH:
        return value
    convert = _AS_JSON.get(kind)
    if convert is not None:
        return convert(value)
    return _to_json_subclass(value)


def _to_json_subclass(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return format_interval(value)  # MySQL TIME's text, which parse_interval reads back
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return exact_json(value)  # a sub-document's numbers as their own digits, never floats
    return str(_to_json(value))


def _convert(value: Any, kind: LogicalType) -> Any:
    """A decoded JSON value (or CSV text) as `kind`'s Python type; ValueError if it is not one."""
    if value is None:
        return None
    if kind in (LogicalType.BIGINT, LogicalType.INT, LogicalType.SMALLINT):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        if isinstance(value, decimal.Decimal):
            if value != value.to_integral_value():
                raise ValueError(f"{value} is not an integer")
            return int(value)
        return int(value) if isinstance(value, int) else int(str(value).strip())
    if kind is LogicalType.DECIMAL:
        return decimal.Decimal(str(value).strip())
    if kind in (LogicalType.DOUBLE, LogicalType.FLOAT):
        return float(value)
    if kind is LogicalType.BOOLEAN:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "t", "yes"):
            return True
        if text in ("false", "0", "f", "no"):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    if kind is LogicalType.JSON:
        # A sub-document: its numbers were read as Decimal; written back as the same digits.
        return exact_json(value)
    if kind in (LogicalType.VARCHAR, LogicalType.TEXT):
        return _text(value)
    if kind is LogicalType.DATE:
        day = date_of(value)  # ValueError for a timestamp with a time of day: never cut off
        return day if isinstance(day, dt.date) else dt.date.fromisoformat(str(value).strip())
    if kind is LogicalType.TIME:
        return dt.time.fromisoformat(str(value))
    if kind is LogicalType.INTERVAL:
        return value if isinstance(value, dt.timedelta) else parse_interval(str(value))
    if kind is LogicalType.TIMESTAMP:
        stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
        return as_naive_utc(stamp) if stamp.tzinfo else stamp
    if kind is LogicalType.TIMESTAMPTZ:
        stamp = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
        return as_utc(stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC))
    if kind is LogicalType.BINARY:
        if isinstance(value, bytes):
            return value
        return base64.b64decode(value) if str(value).endswith("=") else bytes.fromhex(str(value))
    return value


def _walk(doc: Any, steps: tuple[str | int, ...]) -> Any:
    for step in steps:
        if isinstance(step, int):
            if not isinstance(doc, list) or step >= len(doc):
                return None
            doc = doc[step]
        else:
            if not isinstance(doc, dict):
                return None
            doc = doc.get(step)
        if doc is None:
            return None
    return doc


def _meta_value(meta: Meta, name: str) -> Any:
    if name.startswith("headers."):
        headers = meta.get("headers") or {}
        value = headers.get(name[len("headers.") :])
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return meta.get(name)


_JSON = json.JSONDecoder(parse_float=decimal.Decimal)
_BOM = b"\xef\xbb\xbf"


def _json_doc(payload: bytes) -> Any:
    """`json.loads(payload)` with exact decimals, without building a decoder per message."""
    if payload[:3] == _BOM or b"\x00" in payload[:4]:
        return json.loads(payload, parse_float=decimal.Decimal)  # a BOM, UTF-16 or UTF-32
    return _JSON.decode(payload.decode("utf-8"))


def _getter(field: Field, fmt: str) -> Callable[[Any, Meta], Any]:
    """Takes `field`'s value out of a decoded payload (or the metadata)."""
    if field.meta is not None:
        name = field.meta
        return lambda _doc, meta: _meta_value(meta, name)
    if fmt == "raw":
        return lambda doc, _meta: doc
    if fmt == "csv":
        index = field.path[0] if field.path else 0

        def cell(doc: Any, _meta: Meta) -> Any:
            value = doc[index] if isinstance(index, int) and index < len(doc) else None
            return None if value == "" else value

        return cell
    steps = field.path or ()
    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]
        return lambda doc, _meta: doc.get(key) if isinstance(doc, dict) else None
    if len(steps) == 2 and isinstance(steps[0], str) and isinstance(steps[1], str):
        outer, inner = steps

        def nested(doc: Any, _meta: Meta) -> Any:
            node = doc.get(outer) if isinstance(doc, dict) else None
            return node.get(inner) if isinstance(node, dict) else None

        return nested
    return lambda doc, _meta: _walk(doc, steps)


def _converter(kind: LogicalType) -> Callable[[Any], Any]:
    """`_convert(value, kind)` for a value that is not None, with the common cases first."""
    if kind in (LogicalType.BIGINT, LogicalType.INT, LogicalType.SMALLINT):
        return lambda v: v if type(v) is int else _convert(v, kind)
    if kind in (LogicalType.VARCHAR, LogicalType.TEXT):
        return lambda v: v if type(v) is str else _text(v)
    if kind is LogicalType.DECIMAL:
        return lambda v: decimal.Decimal(v.strip()) if type(v) is str else _convert(v, kind)
    return lambda v: _convert(v, kind)


@dataclass(frozen=True, slots=True)
class MessageFormat:
    format: str
    fields: tuple[Field, ...]
    delimiter: str = ","
    template: str | None = None

    def schema(self, name: str) -> TableSchema:
        """The rows' schema: one column per field, in order (no primary key)."""
        return TableSchema(name, tuple(Column(f.name, f.type) for f in self.fields))

    def decoder(self, columns: Sequence[str] | None = None) -> Callable[[bytes, Meta], Row]:
        """A function from (payload, metadata) to the row of `columns` (default: every field);
        it raises DecodeError on a payload it cannot read."""
        by_name = {f.name: f for f in self.fields}
        chosen = [by_name[c] for c in columns] if columns else list(self.fields)
        fmt = self.format
        whole_json = fmt == "json" and len(chosen) == 1 and chosen[0].path == ()
        delimiter = self.delimiter
        # How to take and convert each field, chosen once: this runs for every message.
        plan = [(f.name, _getter(f, fmt), _converter(f.type)) for f in chosen]
        steps = [(get, convert) for _name, get, convert in plan]

        def decode(payload: bytes, meta: Meta) -> Row:
            try:
                if fmt == "raw":
                    doc: Any = payload.decode("utf-8")
                elif fmt == "csv":
                    text = payload.decode("utf-8")
                    doc = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
                else:
                    doc = _json_doc(payload)
            except (ValueError, UnicodeDecodeError) as exc:
                raise DecodeError(f"payload is not {fmt}: {exc}") from None
            if whole_json:
                return (payload.decode("utf-8"),)
            try:  # every field at once, no frame of Python per field but the get and convert
                return tuple(
                    [
                        None if (v := get(doc, meta)) is None else convert(v)
                        for get, convert in steps
                    ]
                )
            except (ValueError, ArithmeticError, TypeError):
                pass  # a field that does not convert: found again below, to name it
            row: list[Any] = []
            for name, get, convert in plan:
                value = get(doc, meta)
                if value is not None:
                    try:
                        value = convert(value)
                    except (ValueError, ArithmeticError, TypeError) as exc:
                        raise DecodeError(f"field {name}: {exc}") from None
                row.append(value)
            return tuple(row)

        return decode

    def encoder(self, columns: Sequence[str]) -> Callable[[Row], bytes]:
        """A function from a row of `columns` to one message's payload."""
        fmt = self.format
        if self.template is not None:
            template = self.template

            def fill(row: Row) -> bytes:
                values = {
                    c: "" if v is None else _text(v) for c, v in zip(columns, row, strict=True)
                }
                return template.format_map(values).encode("utf-8")

            return fill
        if fmt == "raw":
            return lambda row: _text(row[0]).encode("utf-8") if row[0] is not None else b""
        if fmt == "csv":
            delimiter = self.delimiter

            def to_csv(row: Row) -> bytes:
                out = io.StringIO()
                csv.writer(out, delimiter=delimiter, lineterminator="").writerow(
                    ["" if v is None else _text(v) for v in row]
                )
                return out.getvalue().encode("utf-8")

            return to_csv
        meta = {f.name for f in self.fields if f.meta is not None}
        if any(c in meta for c in columns):  # metadata is the system's to set, never sent
            kept = [i for i, c in enumerate(columns) if c not in meta]
            inner = self.encoder([columns[i] for i in kept])
            return lambda row: inner(tuple(row[i] for i in kept))
        by_name = {f.name: f for f in self.fields if f.meta is None and f.path}
        paths = [by_name[c].path if c in by_name else (c,) for c in columns]
        json_columns = {
            i for i, c in enumerate(columns) if c in by_name and by_name[c].type is LogicalType.JSON
        }
        flat = all(len(p or ()) == 1 and isinstance(p[0], str) for p in paths if p)
        keys = [p[0] if p else c for p, c in zip(paths, columns, strict=True)]
        dumps = json.JSONEncoder(ensure_ascii=False, default=_to_json, separators=(",", ":")).encode

        if flat and not json_columns:
            return lambda row: dumps(
                {k: _to_json(v) for k, v in zip(keys, row, strict=True)}
            ).encode("utf-8")

        # Each column's place in the document, worked out once: (parent keys, key, json text).
        places = []
        for i, path in enumerate(paths):
            steps = tuple(str(step) for step in (path or (columns[i],)))
            places.append((steps[:-1], steps[-1], i in json_columns))

        def nested(row: Row) -> bytes:
            doc: dict[str, Any] = {}
            for (parents, key, is_json), v in zip(places, row, strict=True):
                node: Any = doc
                for step in parents:
                    node = node.setdefault(step, {})
                node[key] = json.loads(v) if is_json and type(v) is str else _to_json(v)
            return dumps(doc).encode("utf-8")

        return nested


def refused(payload: bytes, reason: str) -> RejectedRow:
    """The dirty row of a message that could not be read: its payload (cut to 4 KiB, as text
    where it is UTF-8) and the reason."""
    cut = payload[:RAW_LIMIT]
    return RejectedRow((cut.decode("utf-8", "replace"),), reason)


Delivery = tuple[bytes, Meta, Any]
"""One received message: payload, metadata, and the token that acknowledges it (and, for the
systems whose acknowledgement is cumulative, every one before it)."""


class MessageConnector(Connector):
    """What every message connector shares: the task's `message` keys, the schema they give,
    batching received messages into rows (poison ones into refused rows), and acknowledging a
    batch only when the engine says it is safe. A subclass receives, acknowledges and sends."""

    EXTRA_KEYS: ClassVar[tuple[str, ...]] = ()
    """`message` keys the subclass reads itself (exchange, routing key, group, ...)."""

    def __init__(self, content: Mapping[str, Any]) -> None:
        self.content = dict(content)
        self.options: dict[str, Any] = {}
        self.format = parse_options(None)
        self.cancelled = threading.Event()
        self.needs_meta = True
        """Whether a field of the read takes a message's metadata (else receivers need not
        gather it); set by `read`."""
        self._encode: Callable[[Row], bytes] | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        parse_options(options, cls.EXTRA_KEYS)

    def configure(self, options: Mapping[str, Any] | None) -> None:
        self.format = parse_options(options, self.EXTRA_KEYS)
        self.options = dict(options or {})

    def live(self) -> None:
        if self.cancelled.is_set():
            raise QueryCancelledError("the read or write was cancelled")

    def describe(self, table: str) -> TableSchema:
        return self.format.schema(table)

    def cancel(self) -> None:
        self.cancelled.set()

    # --- source ---------------------------------------------------------------------------

    @abc.abstractmethod
    def open_source(self, plan: ReadPlan) -> None:
        """Subscribe to `plan.table`, asking for at most about `plan.batch_rows` messages
        unacknowledged at once."""

    @abc.abstractmethod
    def receive(self, most: int, timeout_s: float) -> list[Delivery]:
        """Up to `most` messages, waiting at most `timeout_s` (in slices of at most 0.1 s, so a
        cancel is seen); an empty list when none came."""

    @abc.abstractmethod
    def acknowledge(self, tokens: list[Any]) -> None:
        """Tell the system these messages are safe (the engine committed them)."""

    def drained(self) -> bool:
        """For a read that ends (TIMING): whether everything there at the start was received."""
        return False

    def read(self, plan: ReadPlan) -> Iterator[Batch]:
        self.live()
        names = plan.columns or self.format.schema(plan.table).names
        decode = self.format.decoder(names)
        by_name = {f.name: f for f in self.format.fields}
        self.needs_meta = any(by_name[n].meta is not None for n in names if n in by_name)
        self.open_source(plan)
        heard = time.monotonic()  # when a message last arrived (or the read began)
        while True:
            rows: list[Row] = []
            bad: list[RejectedRow] = []
            tokens: list[Any] = []
            last = False
            end = time.monotonic() + plan.batch_seconds
            while len(tokens) < plan.batch_rows:
                now = time.monotonic()
                left = end - now
                if left <= 0:
                    break
                if not plan.follow:
                    quiet_left = heard + QUIET_END_S - now
                    if quiet_left <= 0:
                        last = True
                        break
                    left = min(left, quiet_left)
                got = self.receive(plan.batch_rows - len(tokens), left)
                self.live()
                if not got:
                    if plan.follow:
                        break  # an idle REALTIME read yields its (maybe empty) batch now
                    continue  # a TIMING read ends only after QUIET_END_S of silence
                heard = time.monotonic()
                for payload, meta, token in got:
                    try:
                        rows.append(decode(payload, meta))
                    except DecodeError as exc:
                        bad.append(refused(payload, str(exc)))
                    tokens.append(token)
                if not plan.follow and self.drained():
                    last = True
                    break
            ack = functools.partial(self.acknowledge, tokens) if tokens else None
            batch = Batch.of(names, rows)
            handed = time.monotonic()
            yield Batch(batch.columns, rows, batch.nbytes, None, last, tuple(bad), ack)
            if last:
                return
            # Silence is counted only while this read waits: the time the engine spent writing
            # the batch is not a quiet system (pika, for one, reads no frame meanwhile), and a
            # write slower than QUIET_END_S ended a TIMING read of a deep queue early. Shifting
            # (not resetting) keeps the silence already heard, so idle empty batches still end.
            heard += time.monotonic() - handed

    # --- target ---------------------------------------------------------------------------

    def prepare_target(self, plan: WritePlan) -> TableSchema:
        self.live()
        schema = plan.source_schema or self.format.schema(plan.table)
        columns = plan.columns or schema.names
        self._encode = self.format.encoder(columns)
        self.open_target(plan)
        return schema

    @abc.abstractmethod
    def open_target(self, plan: WritePlan) -> None:
        """Connect for publishing to `plan.table` (no message sent yet)."""

    @abc.abstractmethod
    def publish(self, payloads: list[bytes], rows: list[Row], plan: WritePlan) -> None:
        """Send every payload and return only once the system has confirmed them all; raise
        when any is refused (nacked, unroutable) so the batch fails."""

    def write(self, batch: Batch, plan: WritePlan) -> WriteResult:
        self.live()
        if self._encode is None:
            self.prepare_target(plan)
        encode = self._encode
        assert encode is not None
        self.publish([encode(row) for row in batch.rows], batch.rows, plan)
        return WriteResult(len(batch.rows))

    def commit(self) -> None:
        """Nothing to do: `write` returns only once every message was confirmed."""
        self.live()

    def rollback(self) -> None:
        """Sent messages cannot be taken back; an upsert target downstream absorbs a resend."""

    def list_tables(self) -> list[str]:
        return []
