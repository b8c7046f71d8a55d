"""A steady stream of single-row and multi-row transactions on a source table, with an audit
trail on each side: a trigger appends every row change to `audit_src` (source) and `audit_dst`
(target). Exactly once means the two trails are equal, change for change, in order: a change
applied twice shows as an extra UPDATE on the target's trail, a lost one as a missing entry."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from typing import Any

import psycopg

from tests.cdc.conftest import Ends

_TRAIL = """
CREATE TABLE {audit} (seq bigserial PRIMARY KEY, op text, id int, v int);
CREATE FUNCTION trail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN INSERT INTO {audit} (op, id, v) VALUES (TG_OP, OLD.id, OLD.v);
  ELSE INSERT INTO {audit} (op, id, v) VALUES (TG_OP, NEW.id, NEW.v); END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER trail AFTER INSERT OR UPDATE OR DELETE ON ev FOR EACH ROW EXECUTE FUNCTION trail();
"""


def audited_table(ends: Ends) -> None:
    ends.both("CREATE TABLE ev (id int PRIMARY KEY, v int NOT NULL)")
    with ends.src_conn() as src:
        src.execute(_TRAIL.format(audit="audit_src"))
    with ends.dst_conn() as dst:
        dst.execute(_TRAIL.format(audit="audit_dst"))


def trails(ends: Ends) -> tuple[list[Any], list[Any]]:
    with ends.src_conn() as src, ends.dst_conn() as dst:
        return (
            src.execute("SELECT op, id, v FROM audit_src ORDER BY seq").fetchall(),
            dst.execute("SELECT op, id, v FROM audit_dst ORDER BY seq").fetchall(),
        )


class Load(threading.Thread):
    """Changes `ev` until stopped, reconnecting when the server goes away."""

    def __init__(self, ends: Ends, pause_s: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.ends = ends
        self.pause_s = pause_s
        self.halt = threading.Event()
        self.committed = 0
        self.next_id = 1
        self.rng = random.Random(7)

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self.halt.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.ends.pg.url(self.ends.src), connect_timeout=2)
                self._one(conn)
                self.committed += 1
            except psycopg.Error:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                time.sleep(0.2)
            time.sleep(self.pause_s)
        if conn is not None:
            conn.close()

    def _one(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            kind = self.rng.random()
            if kind < 0.4 or self.next_id < 10:
                conn.execute("INSERT INTO ev VALUES (%s, 0)", (self.next_id,))
                self.next_id += 1
            elif kind < 0.8:
                conn.execute(
                    "UPDATE ev SET v = v + 1 WHERE id = %s", (self.rng.randrange(1, self.next_id),)
                )
            elif kind < 0.9:
                conn.execute("DELETE FROM ev WHERE id = %s", (self.rng.randrange(1, self.next_id),))
            else:  # several rows in one transaction
                for _ in range(3):
                    conn.execute("INSERT INTO ev VALUES (%s, 1)", (self.next_id,))
                    self.next_id += 1
                conn.execute("UPDATE ev SET v = v + 10 WHERE id < %s", (10,))

    def finish(self) -> None:
        self.halt.set()
        self.join(timeout=30)


def snapshotted(ends: Ends) -> bool:
    """The task copied its tables: the target holds its position."""
    with ends.dst_conn() as dst:
        if dst.execute("SELECT to_regclass('openfdi_cdc_offsets')").fetchone() == (None,):
            return False
        found = dst.execute("SELECT count(*) FROM openfdi_cdc_offsets").fetchone()
        return found is not None and found[0] > 0
