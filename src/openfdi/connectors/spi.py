"""The connector SPI (layer: connectors): what every source/target plugin implements and exchanges.

A connector is synchronous (its driver is); the engine runs it off the event loop, one instance
per role (source or target) of one run. Construction only validates `content`; the connection is
opened on first use. Values cross the SPI as the plain Python types of `LogicalType` (see there),
so any source can feed any target without knowing its dialect.
"""

from __future__ import annotations

import abc
import builtins
import enum
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from openfdi.connectors._values import estimate_rows_bytes
from openfdi.settings import DEFAULT_API_DENIED_NETWORKS

__all__ = [
    "Batch",
    "Capabilities",
    "Column",
    "Connector",
    "ConnectorSpec",
    "HostPaths",
    "LogicalType",
    "OwnDatabase",
    "PassThrough",
    "Positions",
    "RawSlice",
    "ReadPlan",
    "RejectedRow",
    "Row",
    "TableSchema",
    "WriteMode",
    "WritePlan",
    "WriteResult",
]

Row = tuple[Any, ...]


class LogicalType(enum.StrEnum):
    """The portable column types, with the Python type each value travels as.

    Every dialect maps its native types onto these when reading a schema, and these back onto
    native DDL when creating a target table, so a copy keeps precision and meaning.
    """

    BIGINT = "bigint"  # int, 64-bit
    INT = "int"  # int, 32-bit
    SMALLINT = "smallint"  # int, 16-bit
    DECIMAL = "decimal"  # decimal.Decimal; Column.precision / Column.scale when bounded
    DOUBLE = "double"  # float (IEEE binary64, carried exactly)
    FLOAT = "float"  # float holding an IEEE binary32 value
    VARCHAR = "varchar"  # str; Column.length when bounded
    TEXT = "text"  # str, unbounded
    BOOLEAN = "boolean"  # bool
    DATE = "date"  # datetime.date
    TIME = "time"  # datetime.time, naive, microseconds
    INTERVAL = "interval"  # datetime.timedelta, signed, microseconds (MySQL TIME is a duration)
    TIMESTAMP = "timestamp"  # datetime.datetime, naive (no time zone), microseconds
    TIMESTAMPTZ = "timestamptz"  # datetime.datetime, aware, normalised to UTC
    BINARY = "binary"  # bytes; Column.length when bounded
    JSON = "json"  # str holding the JSON document's text as the source stored it


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table, in logical terms."""

    name: str
    type: LogicalType
    nullable: bool = True
    length: int | None = None
    """Maximum characters (VARCHAR) or bytes (BINARY); None when unbounded."""
    precision: int | None = None
    """Total significant digits of a DECIMAL; None when unconstrained."""
    scale: int | None = None
    """Digits after the decimal point of a DECIMAL; None when unconstrained."""
    is_primary_key: bool = False
    native_type: str = field(default="", compare=False)
    """The type as the source dialect declares it, for display (the columns API). Never used to
    create a table, and left out of comparisons: two columns are equal when logically equal."""


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A table's columns in order and its primary key (possibly empty)."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        """Return the column called `name`; raise KeyError if there is none."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def select(self, names: Sequence[str], *, renames: Mapping[str, str] | None = None) -> Self:
        """Return the schema of `names` only, in that order, optionally renamed (old -> new).

        The primary key survives only if all of its columns are kept. This is how the engine turns
        a source schema into the schema of the target table to create.
        """
        renames = renames or {}
        kept = {n: self.column(n) for n in names}
        has_pk = bool(self.primary_key) and all(k in kept for k in self.primary_key)
        columns = tuple(
            replace(
                col,
                name=renames.get(name, name),
                is_primary_key=has_pk and name in self.primary_key,
            )
            for name, col in kept.items()
        )
        pk = tuple(renames.get(k, k) for k in self.primary_key) if has_pk else ()
        return replace(self, columns=columns, primary_key=pk)


@dataclass(frozen=True, slots=True)
class Batch:
    """A bounded run of rows, all with the same `columns`.

    `position` is the incremental column's value in the last row when the read is incremental:
    a read never splits rows that share that value across two batches, so saving `position`
    as the watermark after committing this batch loses nothing.
    """

    columns: tuple[str, ...]
    rows: list[Row]
    nbytes: int
    """Estimated size of the values in bytes (what the monitor reports as data size)."""
    position: Any = None
    last: bool = False
    """No row follows this batch in its read: the reader saw the end. False when it does not
    know yet (a run may then commit its last batch with its end, in one transaction)."""
    refused: tuple[RejectedRow, ...] = ()
    """Source records that could not become rows (a message that does not parse), each with its
    raw payload and the reason: recorded as dirty data with the batch's checkpoint."""
    acknowledge: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    """For a source that must be told when its data is safe (a message queue): called by the
    engine, on the reading thread, after the target committed the batch and its checkpoint.
    Until then the source keeps the batch's messages unacknowledged, so a crash redelivers them."""

    @classmethod
    def of(cls, columns: Sequence[str], rows: list[Row], position: Any = None) -> Batch:
        """Build a batch, estimating its size."""
        return cls(tuple(columns), rows, estimate_rows_bytes(rows), position)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What to read. Batches end at whichever bound comes first: rows, seconds or bytes."""

    table: str
    columns: tuple[str, ...] | None = None
    """Columns to read, in this order; None reads all columns in table order."""
    where: str | None = None
    """A boolean SQL expression in the source's dialect, already vetted by the caller."""
    incremental_column: str | None = None
    """When set, rows come ordered by this column and only those past `watermark`."""
    watermark: Any = None
    """Read rows whose incremental column is strictly greater; None reads from the start.
    ISO-8601 strings are accepted for date and time columns, digits for numeric ones."""
    batch_rows: int = 10_000
    batch_seconds: float = 0.2
    batch_bytes: int = 16 * 1024 * 1024
    follow: bool = False
    """A REALTIME read of a `realtime` source: do not end at the source's end, wait for more.
    While idle such a read yields an empty batch every `batch_seconds`, so its caller can stop
    it within the deadline even though no message comes."""
    consumer: str | None = None
    """A name that stays the same across the runs of one task (the engine gives the task's id):
    a message source that keeps a durable session, consumer or group on its server names it
    after this, so what came while no run was reading is delivered to the next one."""

    def __post_init__(self) -> None:
        if self.columns is not None:
            object.__setattr__(self, "columns", tuple(self.columns))
        if self.batch_rows < 1 or self.batch_seconds <= 0 or self.batch_bytes < 1:
            raise ValueError("batch bounds must be positive")
        if self.watermark is not None and self.incremental_column is None:
            raise ValueError("a watermark needs an incremental column")


class WriteMode(enum.StrEnum):
    INSERT = "insert"
    UPSERT = "upsert"
    TRUNCATE_INSERT = "truncate_insert"


@dataclass(frozen=True, slots=True)
class WritePlan:
    """Where and how to write.

    `source_schema` is the schema of the incoming columns already named as in the target (see
    `TableSchema.select`); it is what a missing target table is created from, primary key included.
    """

    table: str
    columns: tuple[str, ...] | None = None
    """Target columns, matching the batch's columns one for one; None means the batch's names."""
    write_mode: WriteMode = WriteMode.INSERT
    key_columns: tuple[str, ...] = ()
    create_table: bool = True
    source_schema: TableSchema | None = None
    keeps_committed: bool = False
    """The run resumes past what it committed (an incremental or following read, a message
    source that acknowledged it): committed rows must survive a crash on their own, so a target
    that cannot recover an unfinished file after one publishes a file at each commit."""

    def __post_init__(self) -> None:
        # Accept the plain strings and lists a task detail carries.
        object.__setattr__(self, "write_mode", WriteMode(self.write_mode))
        object.__setattr__(self, "key_columns", tuple(self.key_columns))
        if self.columns is not None:
            object.__setattr__(self, "columns", tuple(self.columns))
        if self.write_mode is WriteMode.UPSERT and not self.key_columns:
            raise ValueError("upsert needs key columns")


class RejectedRow(NamedTuple):
    """A row the target refused ("dirty data"), with the target's reason."""

    row: Row
    reason: str


@dataclass(slots=True)
class WriteResult:
    rows_written: int
    rejected: list[RejectedRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a connector can do; the engine and the conformance suite select by these.

    `realtime` means a native change feed (a message source). A table source without one can still
    serve a REALTIME task when it is `incremental`: the engine polls past the watermark.
    """

    read: bool = False
    write: bool = False
    incremental: bool = False
    realtime: bool = False
    bulk: bool = False
    passthrough: bool = False
    """Implements `PassThrough`: rows move between it and a connector that speaks one of its forms
    without being decoded in Python."""


class RawSlice(abc.ABC):
    """Some rows of a source, in a wire format both ends of a pass-through speak (never decoded).

    A slice is bounded (by key or incremental ranges, or by its source's size), and is valid only
    until its reader moves on to the next slice.
    """

    form: tuple[str, ...] = ()
    """The pass-through form the slice is in (one of its source's `passthrough_forms`)."""
    position: Any = None
    """The incremental column's value at the slice's upper bound: the watermark once it is written
    (None when the read is not incremental). Rows sharing that value are all inside the slice."""
    nbytes: int = 0
    """Bytes `chunks()` has handed out so far."""

    @abc.abstractmethod
    def chunks(self) -> Generator[bytes, None, None]:
        """The slice's rows as a stream of byte chunks, each of bounded size and each ending at
        a row's end. Closing the iterator early abandons the slice (its rows can still be read
        with `batches()`)."""

    @abc.abstractmethod
    def batches(self) -> Generator[Batch, None, None]:
        """The same rows decoded, as `Connector.read` would yield them: the fallback when the
        target refuses the slice, so refused rows can be told apart one by one."""


class PassThrough(abc.ABC):
    """Optional capability of a `Connector` (declared as `Capabilities.passthrough`).

    A *form* is a wire format and what it carries for each column, e.g.
    `("postgresql-copy-binary", "bigint", "text")`. When a source offers a form its target
    accepts, the engine moves rows with `read_raw` and `write_raw`, as bytes, instead of `read`
    and `write`: the source's most preferred such form is used.
    """

    @abc.abstractmethod
    def passthrough_forms(
        self, table: str, columns: Sequence[str], *, as_target: bool
    ) -> tuple[tuple[str, ...], ...]:
        """Every form in which these columns of `table` can pass through, best first (empty
        when none): as they are read (`read_raw`), or as they can be written (`write_raw`)
        when `as_target`. Two equal forms must mean that the target, parsing the source's
        bytes, gets exactly the values the row path would write. Call on the target after
        `prepare_target`."""

    @abc.abstractmethod
    def read_raw(self, plan: ReadPlan, form: tuple[str, ...]) -> Generator[RawSlice, None, None]:
        """The rows `plan` selects, in `form`, as consecutive slices (in incremental order when
        incremental).

        One read transaction (a snapshot, where the source has them) spans all slices. A slice
        should take well under a second to move; `plan.batch_rows` sizes the first one.
        """

    @abc.abstractmethod
    def write_raw(self, raw: RawSlice, plan: WritePlan, stop: Callable[[], bool]) -> int | None:
        """Write the slice (in `raw.form`) through the bulk path, uncommitted, atomically; return
        the rows written.

        `stop()` is checked between chunks: once it is true the slice is abandoned, nothing of it
        stays written, and the result is None. When the target refuses some row of the slice, the
        slice is undone and `SliceRefusedError` is raised: write its `batches()` instead.
        """


class Positions(abc.ABC):
    """Optional capability of a target: it keeps a task's read position in its own database,
    written in the transaction that writes the rows read up to it.

    The engine's checkpoint is committed after the target's, so a crash between the two leaves
    the target one batch ahead of it; the position committed with that batch is where the next
    run resumes, so the batch is not read (nor refused as duplicates) again.
    """

    @abc.abstractmethod
    def load_position(self, key: str) -> str | None:
        """The position last saved under `key` (a task id) and committed, or None. Call before
        `prepare_target`: it may commit (creating where positions are kept)."""

    @abc.abstractmethod
    def save_position(self, key: str, position: str) -> None:
        """Save `position` under `key` inside the write transaction: the next `commit()` commits
        it with the rows, a rollback drops it with them."""


@dataclass(frozen=True, slots=True)
class HostPaths:
    """Where on the host connectors that open local files may open them.

    A path must resolve (every link followed) under one of the roots of its kind (`roots` for
    SQLite files, `file_roots` for FILE directories) and never under one of `forbidden`
    (openfdi's own data dir and metadata database), unless it lies under a root that is itself
    strictly inside that forbidden path (the data dir's `sqlite`, `files` and `demo` folders).
    `connectors._paths.confine` applies these rules, for every kind. The host builds this from its
    settings and hands it to every connector it opens; the default (no roots: anywhere) is for
    library use and connector tests only.
    """

    roots: tuple[Path, ...] | None = None
    """SQLite database files (OPENFDI_SQLITE_ROOTS)."""
    forbidden: tuple[Path, ...] = ()
    own_databases: tuple[OwnDatabase, ...] = ()
    """openfdi's own metadata database when it is on a server (PostgreSQL): no data source may
    reach it, however its address is spelled."""
    file_roots: tuple[Path, ...] | None = None
    """Directories of FILE data sources and what they hold (OPENFDI_FILE_ROOTS)."""
    denied_networks: tuple[str, ...] = DEFAULT_API_DENIED_NETWORKS
    """Networks (CIDR) an API data source may never connect to (OPENFDI_API_DENIED_NETWORKS)."""
    allowed_networks: tuple[str, ...] | None = None
    """When set, the only networks it may connect to (OPENFDI_API_ALLOWED_NETWORKS)."""


@dataclass(frozen=True, slots=True)
class OwnDatabase:
    """openfdi's metadata database on a database server, which no data source may reach.

    `hosts`, `port` and `database` are how openfdi's settings address it (every loopback spelling
    when it is local): a data source naming the same is refused when it is saved, without
    connecting. `identity` is what the server itself says the database is (for PostgreSQL
    `<system identifier>/<database oid>`, see the connector): a connector compares it with the
    database it actually reached, each time it connects, so no spelling (`127.1`, a host name, a
    proxy) gets through.
    """

    type: str
    """The datasource type that speaks its protocol (e.g. "POSTGRESQL")."""
    hosts: frozenset[str]
    port: int
    database: str
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """The cheap-to-import description of a connector, registered as an entry point.

    `load` imports the implementation (and so its driver) only when called; an ImportError from it
    means the connector is unavailable, never that openfdi cannot start.
    """

    type: str
    """The datasource type it serves, as the FDI API spells it (e.g. "MYSQL")."""
    required_content: tuple[str, ...]
    capabilities: Capabilities
    load: Callable[[], builtins.type[Connector]]
    check_options: Callable[[Mapping[str, Any]], None] | None = None
    """Vets a task end's `message` object (docs/task-detail.md) without importing the driver;
    raises InvalidContentError whose `field` names the bad key. None: the type takes none."""

    def open(self, content: Mapping[str, Any], host: HostPaths | None = None) -> Connector:
        """Import the implementation and build a connector for this datasource content, opening
        local files only where `host` allows."""
        return self.load().create(content, host or HostPaths())


class Connector(abc.ABC):
    """One connection to one datasource, used as a source or as a target by one thread at a time.

    Only `cancel()` may be called from another thread. After `cancel()` the connector is finished:
    every later call raises `QueryCancelledError`; close it.
    """

    @abc.abstractmethod
    def __init__(self, content: Mapping[str, Any]) -> None:
        """Validate `content` (decrypted datasource fields); raise InvalidContentError. No I/O."""

    @classmethod
    def create(cls, content: Mapping[str, Any], host: HostPaths) -> Self:
        """Build one for `content` on a host with these file-system limits. A connector that
        opens local files overrides this to keep `host`; the others ignore it."""
        return cls(content)

    def configure(self, options: Mapping[str, Any] | None) -> None:
        """Take a task end's `message` object (how messages map to rows; message connectors
        only, the others ignore it). Called once, before `describe`. No I/O."""
        return None

    def backlog(self) -> int | None:
        """How many messages the source system holds for this read and has not delivered yet
        (a queue's ready messages, a consumer group's lag), or None when it cannot tell (or
        this is no message source). Called on the reading thread between batches, at most
        about once a second: it may cost a round trip."""
        return None

    @abc.abstractmethod
    def check(self) -> None:
        """Connect and run a trivial statement; raise a ConnectorError saying why it failed."""

    @abc.abstractmethod
    def list_tables(self) -> list[str]:
        """Names of the tables and views the user can read, sorted."""

    @abc.abstractmethod
    def describe(self, table: str) -> TableSchema:
        """The table's schema in logical types; raise TableNotFoundError if it does not exist."""

    @abc.abstractmethod
    def read(self, plan: ReadPlan) -> Iterator[Batch]:
        """Stream the rows `plan` selects, in bounded batches, never holding the whole table.

        Each call is its own read-only transaction, so repeated polls see new rows.
        """

    @abc.abstractmethod
    def prepare_target(self, plan: WritePlan) -> TableSchema:
        """Get the target ready and return its schema.

        Creates the table from `plan.source_schema` when it is missing and `plan.create_table` is
        set (committed at once); for `truncate_insert`, empties it inside the write transaction,
        so the old rows stay until `commit()`. Raise TableNotFoundError when it is missing and may
        not be created.
        """

    @abc.abstractmethod
    def write(self, batch: Batch, plan: WritePlan) -> WriteResult:
        """Write `batch` through the bulk path, uncommitted.

        Rows the target refuses (type, length or constraint errors) do not fail the batch: they come
        back in `WriteResult.rejected` with the reason, and every other row is written.
        """

    @abc.abstractmethod
    def commit(self) -> None:
        """Commit what `write()` and `prepare_target()` did since the last commit."""

    @abc.abstractmethod
    def rollback(self) -> None:
        """Discard uncommitted writes."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Interrupt the running statement, from any thread; the interrupted call raises
        QueryCancelledError. Never raises."""

    @abc.abstractmethod
    def close(self) -> None:
        """Roll back anything uncommitted and release the connection. Safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
