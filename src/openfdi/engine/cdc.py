"""The composite (CDC) run kind: snapshot each new table under the slot's exported snapshot, then
follow the source's log, applying each source transaction (or a group of them) in one target
transaction that also records the log position; confirm the position to the source only after.

Exactly once: the position saved with the rows says which source transactions are applied, so a
run that starts after any stop or kill -9 skips those and applies the rest. A table added while
the task runs is copied under a temporary slot's snapshot and its changes up to that snapshot
are skipped (they are in the copy).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from openfdi.connectors.cdc import my_binlog, my_source, pg_source
from openfdi.connectors.cdc.my_apply import MyApplier
from openfdi.connectors.cdc.my_reader import BinlogReader
from openfdi.connectors.cdc.pg_apply import STREAM_KEY, PgApplier
from openfdi.connectors.cdc.pg_reader import BackgroundReader
from openfdi.connectors.cdc.pgoutput import (
    Begin,
    Change,
    Commit,
    Relation,
    Truncate,
    lsn_text,
    parse_lsn,
)
from openfdi.connectors.errors import ConnectorError, TransientConnectorError
from openfdi.domain.cdc import TableMapping, TableName, check_primary_key, slot_name
from openfdi.domain.states import RunState
from openfdi.engine.cdc_metrics import CHANGES, LAG
from openfdi.engine.metrics import RUNS
from openfdi.engine.outcomes import outcome_of, reason_of
from openfdi.engine.runner import EngineSettings
from openfdi.engine.spec import Endpoint
from openfdi.store import runs
from openfdi.store.db import Database

log = logging.getLogger(__name__)

GROUP_SECONDS = 0.05
"""Source transactions are grouped into one target transaction for at most this long: the lag
it adds under a steady stream, against a commit (and a metadata write) per group."""
READ_WAIT_S = 0.1
"""How long one read waits for a message: the period of the stop check when the source is idle."""
GROUP_CHANGES = 5_000
FIRST_USER_OID = 16_384
"""Types with smaller oids are built in: the same oid names the same type on every server."""
IDLE_CATCH_UP_S = 1.0
"""A catch-up run (not following the source) ends after this long with nothing new."""
SNAPSHOT_PROGRESS_S = 1.0
"""How often a snapshot being copied shows its progress in the run's remarks."""


class _SnapshotStopped(Exception):
    """A stop came while a snapshot was being copied: its transaction is rolled back."""


@dataclass(frozen=True, slots=True)
class CdcRunSpec:
    run_id: str
    task_id: str
    source: Endpoint
    target: Endpoint
    mappings: tuple[TableMapping, ...]
    operations: frozenset[str]
    follows_source: bool = False


@dataclass
class _Totals:
    read: int = 0
    applied: int = 0
    skipped: int = 0
    nbytes: int = 0
    read_ms: float = 0.0
    write_ms: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_table: dict[tuple[str, str], int] = field(default_factory=dict)
    """(source table, kind) -> changes applied."""
    lag_ms: int = 0
    copying: str = ""
    """While a snapshot is copied: which table, and how far (the run's remarks show it)."""


@dataclass
class CdcRunner:
    """Executes one claimed composite run; same surface as `Runner` for the executor."""

    spec: CdcRunSpec
    claim: runs.Claim
    db: Database
    settings: EngineSettings
    clock_ms: Callable[[], int]
    stop_requested: threading.Event = field(default_factory=threading.Event)
    forced: threading.Event = field(default_factory=threading.Event)
    interrupting: bool = False
    _stream: pg_source.ReplicationStream | None = None
    _applier: PgApplier | MyApplier | None = None
    _totals: _Totals = field(default_factory=_Totals)
    _position: int = 0
    _converters: dict[tuple[TableName, tuple[str, ...]], tuple[Any, ...]] = field(
        default_factory=dict
    )
    """A MySQL source's value converters per (table, columns of its row events)."""

    def stop(self, *, interrupt: bool = False) -> None:
        self.interrupting = self.interrupting or interrupt
        self.stop_requested.set()

    def force(self) -> None:
        self.forced.set()
        self.stop_requested.set()
        if self._applier is not None:
            self._applier.cancel()

    def run(self) -> RunState:
        started = time.monotonic()
        state = self._run()
        RUNS.ended("REALTIME", state.value, time.monotonic() - started)
        return state

    def _run(self) -> RunState:
        state, status, remarks = RunState.SUCCEEDED, "TASK_END", None
        attempts = 0
        while True:
            try:
                self._follow()
                if self.stop_requested.is_set():
                    state, status = RunState.CANCELLED, "RUNTIME_CANCEL"
                    remarks = f"stopped; {self._summary()}"
                break
            except TransientConnectorError as exc:
                attempts += 1
                self._close()
                if attempts >= max(1, self.settings.retry_attempts) or self._pause(attempts):
                    state, status, remarks = _failed(exc)
                    break
                log.warning("cdc run %s: %s; trying again", self.claim.run_id, exc.message)
            except runs.FencedError:
                self._close()
                return RunState.INTERRUPTED
            except _SnapshotStopped as exc:
                state, status = RunState.CANCELLED, "RUNTIME_CANCEL"
                remarks = f"stopped while copying {exc}: the copy was rolled back and is made "
                remarks += f"again at the next start; {self._summary()}"
                break
            except Exception as exc:
                state, status, remarks = _failed(exc)
                if not isinstance(exc, ConnectorError):
                    log.exception("cdc run %s failed", self.claim.run_id)
                break
            finally:
                self._close()
        if self.interrupting and state is RunState.CANCELLED:
            state = RunState.INTERRUPTED
            remarks = "interrupted: the server shut down; the task resumes from its position"
        if remarks and state is not RunState.SUCCEEDED and state is not RunState.CANCELLED:
            log.warning("cdc run %s failed: %s", self.claim.run_id, remarks)
        try:
            runs.finish(
                self.db,
                self.claim,
                state,
                self.clock_ms(),
                remarks or self._summary(),
                status,
                last_batch=self._checkpoint(),
            )
        except runs.FencedError:
            return RunState.INTERRUPTED
        return state

    def _pause(self, attempt: int) -> bool:
        """Back off before another try; True when a stop came meanwhile."""
        return self.stop_requested.wait(
            min(30.0, self.settings.retry_initial_s * 2 ** (attempt - 1))
        )

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._applier is not None:
            self._applier.rollback()
            self._applier.close()
            self._applier = None

    # --- the work ----------------------------------------------------------------------------

    def _follow(self) -> None:
        if self.spec.source.type == "MYSQL":
            self._follow_binlog()
            return
        spec = self.spec
        applier = self._applier = _applier(spec)
        tables = {m.source: m for m in spec.mappings}
        with pg_source.connect(spec.source.content) as source:
            pg_source.check_server(source)
            columns: dict[TableName, tuple[str, ...]] = {}
            for mapping in spec.mappings:
                cols, key = pg_source.table_columns(source, mapping.source)
                check_primary_key(mapping.source, key)
                self._add_missing(source, applier, mapping, cols)
                applier.check_columns(mapping.target, cols)
                columns[mapping.source] = cols
            pg_source.ensure_publication(source, spec.task_id, list(tables))
            # The slot's confirmed position may be past the target's: psycopg2 confirms, on a
            # keepalive, the WAL after the last change received once that change is confirmed
            # (WAL with nothing for this task), so it tells nothing about a gap.
            has_slot = pg_source.slot_position(source, spec.task_id) is not None
            end_of_wal = _current_lsn(source)
        position, snapshots = applier.offsets()
        applier.forget_offsets(keep=[str(t) for t in tables])
        snapshots = {k: v for k, v in snapshots.items() if k in {str(t) for t in tables}}
        stream = self._stream = pg_source.ReplicationStream(spec.source.content)
        if not has_slot:
            if position is not None:
                raise ConnectorError(
                    f"the replication slot {slot_name(spec.task_id)} is gone, so the changes "
                    "since the saved position cannot be read; set repulling_snapshot with "
                    "update_multi_tasks to copy the tables again"
                )
            position = self._snapshot(stream, slot_name(spec.task_id), list(tables), columns)
            snapshots = {str(t): position for t in tables}
        elif position is None:
            # The slot exists but its first snapshot never committed (a crash right after the
            # slot was made): its exported snapshot is gone, so start it over.
            log.warning("cdc run %s: the target holds no position for the existing slot; "
                        "copying the tables again", self.claim.run_id)  # fmt: skip
            stream.close()
            pg_source.drop_objects(spec.source.content, spec.task_id)
            with pg_source.connect(spec.source.content) as source:
                pg_source.ensure_publication(source, spec.task_id, list(tables))
            stream = self._stream = pg_source.ReplicationStream(spec.source.content)
            position = self._snapshot(stream, slot_name(spec.task_id), list(tables), columns)
            snapshots = {str(t): position for t in tables}
        new_tables = [t for t in tables if str(t) not in snapshots]
        if new_tables:
            side = pg_source.ReplicationStream(spec.source.content)
            try:
                at = self._snapshot(side, f"{slot_name(spec.task_id)}_add", new_tables, columns,
                                    temporary=True, stream_position=position)  # fmt: skip
            finally:
                side.close()
            snapshots.update({str(t): at for t in new_tables})
        self._position = position
        stream.start(slot_name(spec.task_id), spec.task_id, position)
        self._stream_changes(stream, applier, tables, columns, snapshots, end_of_wal)

    def _snapshot(
        self,
        stream: pg_source.ReplicationStream,
        name: str,
        tables: list[TableName],
        columns: dict[TableName, tuple[str, ...]],
        *,
        temporary: bool = False,
        stream_position: int | None = None,
    ) -> int:
        """Create a slot, copy `tables` under its snapshot and commit the copies with their
        positions; returns the slot's consistent point."""
        assert self._applier is not None
        lsn, snapshot = stream.create_slot(name, temporary=temporary)
        started = time.monotonic()
        mapping = {m.source: m for m in self.spec.mappings}
        with pg_source.snapshot_reader(self.spec.source.content, snapshot) as reader:
            for number, table in enumerate(tables, 1):
                copied = self._applier.copy_table(
                    reader,
                    table,
                    mapping[table].target,
                    columns[table],
                    progress=self._copy_progress(table, number, len(tables)),
                )
                self._totals.read += copied
                self._totals.applied += copied
                self._totals.by_table[str(table), "SNAPSHOT"] = copied
                RUNS.batch("REALTIME", copied, 0, 0)
                self._applier.save_offset(str(table), lsn)
        if stream_position is None:
            self._applier.save_offset(STREAM_KEY, lsn)
        self._applier.commit()
        self._totals.write_ms += (time.monotonic() - started) * 1000
        log.info("cdc run %s: copied %d tables at %s", self.claim.run_id, len(tables),
                 lsn_text(lsn))  # fmt: skip
        self._totals.copying = ""
        self._record()
        return lsn

    def _stream_changes(
        self,
        stream: pg_source.ReplicationStream,
        applier: PgApplier | MyApplier,
        tables: dict[TableName, TableMapping],
        columns: dict[TableName, tuple[str, ...]],
        snapshots: dict[str, int],
        end_of_wal: int,
    ) -> None:
        reader = BackgroundReader(stream, READ_WAIT_S)
        reader.start()
        try:
            self._apply_stream(reader, applier, tables, columns, snapshots, end_of_wal)
        finally:
            reader.stop()
        if not reader.is_alive():  # the reader let go of the connection: tell the last position
            stream.settle(self._position)

    def _apply_stream(
        self,
        reader: BackgroundReader,
        applier: PgApplier | MyApplier,
        tables: dict[TableName, TableMapping],
        columns: dict[TableName, tuple[str, ...]],
        snapshots: dict[str, int],
        end_of_wal: int,
    ) -> None:
        ops = self.spec.operations
        group: list[tuple[Change, Relation, TableName]] = []
        txn: list[tuple[Change, Relation, TableName]] = []
        begin: Begin | None = None
        group_end = 0
        group_commit_us = 0
        group_started = time.monotonic()
        last_message = time.monotonic()
        idle = 0
        targets: dict[int, tuple[TableName, TableName | None]] = {}
        """relid -> (source table, its target or None when not mapped)."""
        while not self.stop_requested.is_set():
            read_started = time.monotonic()
            got = reader.next(READ_WAIT_S)
            self._totals.read_ms += (time.monotonic() - read_started) * 1000
            if got is not None:
                last_message = time.monotonic()
                message, relation, size = got
                self._totals.nbytes += size
                if isinstance(message, Begin):
                    begin, txn = message, []
                elif isinstance(message, Relation):
                    first = message.relid not in targets
                    self._check_relation(message, tables, columns, applier, first=first)
                    source = TableName(message.schema, message.name)
                    mapping = tables.get(source)
                    targets[message.relid] = (source, mapping.target if mapping else None)
                elif isinstance(message, Change) and relation is not None:
                    source, target = targets[message.relid]
                    self._totals.read += 1
                    if (
                        target is not None
                        and message.kind in ops
                        and begin is not None
                        and begin.final_lsn >= snapshots.get(str(source), 0)
                    ):
                        txn.append((message, relation, target))
                    else:
                        self._totals.skipped += 1
                elif isinstance(message, Truncate) and "DELETE" in ops:
                    for relid in message.relids:
                        found = targets.get(relid)
                        if found is not None and found[1] is not None:
                            truncate = Change("TRUNCATE", relid, None)
                            txn.append((truncate, reader.decoder.relations[relid], found[1]))
                elif isinstance(message, Commit):
                    if message.end_lsn > self._position:  # else applied before a restart
                        group.extend(txn)
                        group_end = message.end_lsn
                        group_commit_us = message.commit_time_us
                    txn, begin = [], None
            due = time.monotonic() - group_started >= GROUP_SECONDS
            if group_end and (
                begin is None and (got is None or due or len(group) >= GROUP_CHANGES)
            ):
                self._apply_group(reader, applier, group, group_end, group_commit_us)
                group, group_end = [], 0
                group_started = time.monotonic()
                idle = 0
            elif got is None and begin is None:
                group_started = time.monotonic()
                if not self.spec.follows_source and (
                    reader.wal_end >= end_of_wal
                    or time.monotonic() - last_message > IDLE_CATCH_UP_S
                ):
                    return
                idle += 1
                if idle % 10 == 0:  # ask for a keepalive: it reports where WAL ends now
                    reader.confirm(self._position, reply=True)
        if group_end:
            self._apply_group(reader, applier, group, group_end, group_commit_us)

    def _apply_group(
        self,
        reader: BackgroundReader | None,
        applier: PgApplier | MyApplier,
        group: list[tuple[Change, Relation, TableName]],
        end_lsn: int,
        commit_us: int,
        more_offsets: Sequence[tuple[str, int]] = (),
    ) -> None:
        started = time.monotonic()
        applier.apply(group)
        applier.save_offset(STREAM_KEY, end_lsn)
        for name, value in more_offsets:  # a MySQL source's GTIDs, with the same commit
            applier.save_offset(name, value)
        applier.commit()  # the rows and their position, atomically
        self._position = end_lsn
        if reader is not None:
            reader.confirm(end_lsn)  # only now may the source let go of that WAL
        totals = self._totals
        totals.write_ms += (time.monotonic() - started) * 1000
        totals.applied += len(group)
        counted: dict[tuple[str, str], int] = {}
        for change, relation, _ in group:
            key = (f"{relation.schema}.{relation.name}", change.kind)
            counted[key] = counted.get(key, 0) + 1
        for (table, kind), n in counted.items():
            totals.by_kind[kind] = totals.by_kind.get(kind, 0) + n
            totals.by_table[table, kind] = totals.by_table.get((table, kind), 0) + n
            CHANGES.labels(self.spec.task_id, table, kind).inc(n)
        totals.lag_ms = max(0, self.clock_ms() - commit_us // 1000)
        LAG.labels(self.spec.task_id).set(totals.lag_ms / 1000)
        RUNS.batch("REALTIME", len(group), 0, 0)
        self._record()

    def _add_missing(
        self,
        source: Any,
        applier: PgApplier | MyApplier,
        mapping: TableMapping,
        cols: tuple[str, ...],
    ) -> None:
        """Columns the source table gained (while the task was stopped, or in a run that ended
        before it committed them) are added to the target."""
        have = applier.table(mapping.target).types
        missing = [c for c in cols if c not in have]
        if missing:
            types = pg_source.column_types(source, mapping.source)
            applier.add_columns(mapping.target, [(c, types[c]) for c in missing])
            applier.commit()
            log.info("cdc run %s: added %s to %s", self.claim.run_id, missing, mapping.target)

    def _check_relation(
        self,
        relation: Relation,
        tables: dict[TableName, TableMapping],
        columns: dict[TableName, tuple[str, ...]],
        applier: PgApplier | MyApplier,
        *,
        first: bool,
    ) -> None:
        """pgoutput sends no DDL; a table's new shape arrives as a Relation message before its
        next change. Added columns of built-in types are added to the target (in the open
        transaction, committed with the changes that follow); any other change of shape stops
        the run, naming it.

        A stream's first Relation of a table may show an older shape than the table has now
        (the changes replayed after a restart were made before a DDL): it is measured against
        the target's columns, which may have more."""
        source = TableName(relation.schema, relation.name)
        known = columns.get(source)
        if known is None or relation.columns == known:
            return
        if first:
            have = applier.table(tables[source].target).types
            known = tuple(c for c in relation.columns if c in have)
            if known == relation.columns:
                columns[source] = relation.columns
                return
        added = [c for c in relation.columns if c not in known]
        dropped = [c for c in known if c not in relation.columns]
        user_types = [
            c for c, oid in zip(relation.columns, relation.type_oids, strict=True)
            if c in added and oid >= FIRST_USER_OID
        ]  # fmt: skip
        if (
            added
            and not dropped
            and not user_types
            and (first or relation.columns[: len(known)] == known)
        ):
            target = tables[source].target
            applier.add_columns(
                target,
                [
                    (c, applier.type_name(oid, mod))
                    for c, oid, mod in zip(
                        relation.columns, relation.type_oids, relation.type_mods, strict=True
                    )
                    if c in added
                ],
            )
            columns[source] = relation.columns
            log.info("cdc run %s: added %s to %s", self.claim.run_id, added, target)
            return
        change = "; ".join(
            part
            for part in (
                f"columns added: {', '.join(added)}" if added else "",
                f"of types not built in: {', '.join(user_types)}" if user_types else "",
                f"columns dropped or renamed: {', '.join(dropped)}" if dropped else "",
                "columns reordered" if not added and not dropped else "",
            )
            if part
        )
        raise ConnectorError(
            f"source table {source} changed shape during the run ({change}): change target "
            f"table {tables[source].target} the same way, then start the task again"
        )

    # --- MySQL/MariaDB sources (the binlog) ---------------------------------------------------

    def _follow_binlog(self) -> None:
        # The reader's process comes up (its interpreter, the decoder's imports) while the
        # tables are checked and copied: started after, it held the first changes back.
        reader = BinlogReader(self.spec.source.content, self.spec.task_id, READ_WAIT_S)
        reader.start()
        try:
            self._follow_binlog_with(reader)
        finally:
            reader.stop()

    def _follow_binlog_with(self, reader: BinlogReader) -> None:
        spec = self.spec
        applier = self._applier = _applier(spec)
        tables = {m.source: m for m in spec.mappings}
        shapes: dict[TableName, my_source.SourceTable] = {}
        conn = my_source.connect(spec.source.content)
        try:
            my_source.check_server(conn)
            for mapping in spec.mappings:
                with my_source.mapped_errors(f"cannot read source table {mapping.source}"):
                    shape = my_source.table_columns(conn, mapping.source)
                check_primary_key(mapping.source, shape.key)
                applier.check_columns(mapping.target, shape.columns)
                shapes[mapping.source] = shape
            end = my_source.current_position(conn)
        finally:
            conn.close()
        keep = {str(t) for t in tables}
        position, saved = applier.offsets()
        gtids = my_source.gtids_of(saved)  # the older rows of each domain go
        applier.forget_offsets(keep=[*keep, *gtids])
        snapshots = {k: v for k, v in saved.items() if k in keep}
        if position is None:
            position = self._binlog_snapshot(list(tables), shapes, stream_position=False)
            snapshots = {str(t): position for t in tables}
        new_tables = [t for t in tables if str(t) not in snapshots]
        if new_tables:
            at = self._binlog_snapshot(new_tables, shapes, stream_position=True)
            snapshots.update({str(t): at for t in new_tables})
        conn = my_source.connect(spec.source.content)
        try:
            log_file = my_source.log_file_of(position, my_source.binary_logs(conn))
        finally:
            conn.close()
        if log_file is None and gtids:
            log.info("cdc run %s: the file of position %s is gone; resuming after GTIDs %s",
                     self.claim.run_id, my_source.position_text(position),
                     ",".join(map(str, gtids.values())))  # fmt: skip
        elif log_file is None:
            raise ConnectorError(
                f"the source's binary log no longer holds the saved position "
                f"{my_source.position_text(position)} (purged), so the changes since cannot be "
                "read; set repulling_snapshot with update_multi_tasks to copy the tables again"
            )
        self._position = position
        schemas = sorted({t.schema for t in tables})
        reader.follow(position, log_file, schemas, list(gtids.values()))
        self._apply_binlog(reader, applier, tables, shapes, snapshots, end)

    def _binlog_snapshot(
        self,
        tables: list[TableName],
        shapes: dict[TableName, my_source.SourceTable],
        *,
        stream_position: bool,
    ) -> int:
        """Copy `tables` under one consistent snapshot and commit the copies with the binlog
        position the snapshot corresponds to; returns that position."""
        assert self._applier is not None
        started = time.monotonic()
        mapping = {m.source: m for m in self.spec.mappings}
        with my_source.snapshot(self.spec.source.content) as (conn, position):
            for number, table in enumerate(tables, 1):
                copied = self._applier.copy_rows(
                    mapping[table].target,
                    shapes[table].columns,
                    my_source.read_table(conn, shapes[table]),
                    progress=self._copy_progress(table, number, len(tables)),
                )
                self._totals.read += copied
                self._totals.applied += copied
                self._totals.by_table[str(table), "SNAPSHOT"] = copied
                RUNS.batch("REALTIME", copied, 0, 0)
                self._applier.save_offset(str(table), position)
        if not stream_position:
            self._applier.save_offset(STREAM_KEY, position)
        self._applier.commit()
        self._totals.write_ms += (time.monotonic() - started) * 1000
        log.info("cdc run %s: copied %d tables at %s", self.claim.run_id, len(tables),
                 my_source.position_text(position))  # fmt: skip
        self._totals.copying = ""
        if not self._position:
            self._position = position
        self._record()
        return position

    def _apply_binlog(
        self,
        reader: BinlogReader,
        applier: PgApplier | MyApplier,
        tables: dict[TableName, TableMapping],
        shapes: dict[TableName, my_source.SourceTable],
        snapshots: dict[str, int],
        end: int,
    ) -> None:
        ops = self.spec.operations
        group: list[tuple[Change, Relation, TableName]] = []
        txn: list[my_binlog.RowChange] = []
        group_end = 0
        group_commit_us = 0
        group_started = time.monotonic()
        last_message = time.monotonic()
        relations: dict[tuple[TableName, tuple[str, ...]], Relation] = {}
        gtids: dict[int, my_binlog.Gtid] = {}
        """The group's last GTID of each domain, saved with its commit."""

        def more() -> list[tuple[str, int]]:
            return [my_source.gtid_row(g) for g in gtids.values()]

        while not self.stop_requested.is_set():
            read_started = time.monotonic()
            got = reader.next(READ_WAIT_S)
            self._totals.read_ms += (time.monotonic() - read_started) * 1000
            for item in got or ():
                if isinstance(item, my_binlog.RowChange):
                    if item.kind != "TRUNCATE":
                        self._totals.read += 1
                    wanted = "DELETE" if item.kind == "TRUNCATE" else item.kind
                    if item.table in tables and wanted in ops:
                        txn.append(item)
                    else:
                        self._totals.skipped += 1
                    continue
                if item.position > self._position:  # else applied before a restart
                    converted: list[tuple[Change, Relation, TableName]] = []
                    try:
                        for change in txn:
                            if item.position > snapshots.get(str(change.table), 0):
                                converted.append(
                                    self._binlog_change(change, tables, shapes, relations, applier)
                                )
                            else:  # in the table's snapshot already
                                self._totals.skipped += 1
                    except ConnectorError:  # a change of shape: what came before it is applied
                        if group_end:
                            self._apply_group(
                                None, applier, group, group_end, group_commit_us, more()
                            )
                        raise
                    group.extend(converted)
                    group_end = item.position
                    group_commit_us = item.commit_time_us
                    if item.gtid is not None:
                        gtids[item.gtid.domain] = item.gtid
                txn = []
            if got is not None:
                last_message = time.monotonic()
            due = time.monotonic() - group_started >= GROUP_SECONDS
            if group_end and not txn and (got is None or due or len(group) >= GROUP_CHANGES):
                self._apply_group(None, applier, group, group_end, group_commit_us, more())
                group, group_end = [], 0
                gtids.clear()
                group_started = time.monotonic()
            elif got is None and not txn:
                group_started = time.monotonic()
                if not self.spec.follows_source and (
                    reader.position >= end or time.monotonic() - last_message > IDLE_CATCH_UP_S
                ):
                    return
        if group_end:
            self._apply_group(None, applier, group, group_end, group_commit_us, more())

    def _binlog_change(
        self,
        change: my_binlog.RowChange,
        tables: dict[TableName, TableMapping],
        shapes: dict[TableName, my_source.SourceTable],
        relations: dict[tuple[TableName, tuple[str, ...]], Relation],
        applier: PgApplier | MyApplier,
    ) -> tuple[Change, Relation, TableName]:
        """A binlog row change as the apply step takes it. The event names its columns (the
        table's shape when it was logged): a column the target lacks stops the run, naming it."""
        shape, target = shapes[change.table], tables[change.table].target
        cols = change.columns or shape.columns
        relation = relations.get((change.table, cols))
        if relation is None:
            have = applier.table(target).types
            added = [c for c in cols if c not in have]
            if added:
                raise ConnectorError(
                    f"source table {change.table} changed shape during the run (columns added: "
                    f"{', '.join(added)}): add them to target table {target}, then start the "
                    "task again"
                )
            missing = [c for c in shape.key if c not in cols]
            if missing:
                raise ConnectorError(
                    f"source table {change.table} changed shape during the run (key columns "
                    f"dropped or renamed: {', '.join(missing)}): the changes cannot be applied "
                    "by key; set repulling_snapshot"
                )
            relation = Relation(0, change.table.schema, change.table.name, cols, shape.key, ())
            relations[change.table, cols] = relation
        if change.kind == "TRUNCATE":
            return Change("TRUNCATE", 0, None), relation, target
        converters = self._converters.get((change.table, cols))
        if converters is None:
            converters = self._converters[change.table, cols] = shape.converters_of(cols)
        new = old = None
        if change.new is not None:
            new = tuple(f(v) for f, v in zip(converters, change.new, strict=True))
        if change.old is not None:
            old = tuple(f(v) for f, v in zip(converters, change.old, strict=True))
        if change.kind == "UPDATE" and new is not None and old is not None:
            index = [cols.index(c) for c in shape.key]
            if all(new[i] == old[i] for i in index):
                old = None  # the key stays: an upsert of the whole (FULL) row image
        elif change.kind == "DELETE":
            new = None
        return Change(change.kind, 0, new, old), relation, target

    def _position_text(self) -> str:
        if self.spec.source.type == "MYSQL":
            return my_source.position_text(self._position)
        return lsn_text(self._position)

    # --- monitoring --------------------------------------------------------------------------

    def _progress(self) -> runs.Progress:
        t = self._totals
        return runs.Progress(
            data_count=t.applied,
            dirty_data_count=0,
            data_size_bytes=t.nbytes,
            read_ms=int(t.read_ms),
            write_ms=int(t.write_ms),
            remarks=f"running; {self._summary()}",  # the lag and counts in monitor-logs, live
        )

    def _copy_progress(self, table: TableName, number: int, count: int) -> Callable[[int], None]:
        """What a table's copy calls as rows go by (at chunk boundaries): a stop ends the copy
        there, and the run's remarks show how far it is, every SNAPSHOT_PROGRESS_S. A snapshot
        commits once, at its end, so without this a copy of hours would show nothing."""
        shown = time.monotonic()

        def seen(rows: int) -> None:
            nonlocal shown
            if self.stop_requested.is_set():
                raise _SnapshotStopped(str(table))
            if time.monotonic() - shown < SNAPSHOT_PROGRESS_S:
                return
            shown = time.monotonic()
            self._totals.copying = f"table {number} of {count}, {table}: {rows:,} rows so far"
            with self.db.write_conn() as conn:  # the totals committed so far, and these remarks
                position = "WRITER" if self._totals.applied else "READER"
                runs.record_progress(conn, self.claim, self._progress(), position)

        return seen

    def _checkpoint(self) -> runs.Checkpoint | None:
        if not self._position:
            return None
        return runs.Checkpoint(self.spec.task_id, self._progress(), self._position_text(), [])

    def _record(self) -> None:
        checkpoint = self._checkpoint()
        if checkpoint is not None:
            runs.commit_progress(self.db, self.claim, checkpoint, self.clock_ms())

    def _summary(self) -> str:
        t = self._totals
        kinds = ", ".join(f"{k.lower()} {n}" for k, n in sorted(t.by_kind.items())) or "none"
        tables: dict[str, list[str]] = {}
        for (table, kind), n in sorted(t.by_table.items()):
            tables.setdefault(table, []).append(f"{kind.lower()} {n}")
        per_table = "; ".join(f"{table}: {', '.join(parts)}" for table, parts in tables.items())
        return (
            (f"copying the snapshot ({t.copying}); " if t.copying else "")
            + f"changes read {t.read}, applied {t.applied} (by kind: {kinds}), "
            f"skipped {t.skipped}; "
            f"position {self._position_text()}; lag {t.lag_ms} ms"
            + (f"; by table: {per_table}" if per_table else "")
        )


def _applier(spec: CdcRunSpec) -> PgApplier | MyApplier:
    return _target_applier(spec.target, spec.task_id)


def _target_applier(target: Endpoint, task_id: str) -> PgApplier | MyApplier:
    if target.type == "MYSQL":
        return MyApplier(target.content, task_id)
    return PgApplier(target.content, task_id)


def _current_lsn(conn: Any) -> int:
    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return parse_lsn(row[0])


def _failed(exc: BaseException) -> tuple[RunState, str, str]:
    outcome = outcome_of(exc)
    state = outcome.state if outcome.state is not RunState.SUCCEEDED else RunState.FAILED
    return state, outcome.status, reason_of(exc)


def reset_binlog_position(source: Endpoint, target: Endpoint, task_id: str, when_ms: int) -> str:
    """Move a stopped composite task with a MySQL source back (or on) to the first transaction
    committed at or after `when_ms`: the saved positions on the target (the stream's and each
    table's) become that position, so the next run reads the binlog from there and applies
    every change after it, the ones already applied again (upserts and deletes by key: the
    target converges to the source). Returns the position's text; my_source.LogTooShort when the
    server's binlog no longer reaches back that far."""
    active = _target_applier(target, task_id)
    try:
        saved, offsets = active.offsets()
        tables = [t for t in offsets if not t.startswith(my_source.GTID_ROW)]
        if saved is None:
            raise ConnectorError(
                "the task has not copied its tables yet, so it has no position to move: start "
                "the task (a reset applies to a task that has run)"
            )
        position, text = my_source.position_at(source.content, task_id, when_ms)
        # GTIDs saved with the old position would lead a resume past the new one: gone.
        active.forget_offsets(keep=tables)
        active.save_offset(STREAM_KEY, position)
        for table in tables:
            active.save_offset(table, position)
        active.commit()
        return text
    finally:
        active.rollback()
        active.close()
