"""The payment journal: an append-only SQLite file (WAL, synchronous=FULL) with one writer.

One thread owns the write connection and is fed by a queue (``common.storage.SingleWriter``, the
pattern of datasette's ``_execute_writes``). Callers hand it events and wait until the transaction that holds them has
committed, i.e. until the event is on disk. While one transaction commits, new events queue up;
the writer then takes all of them into the next transaction (group commit), so the journal keeps
up with many callers without giving up durability of any single event.

Schema (``docs/payments.md`` documents it)::

    events(id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, boot INTEGER, payment_id TEXT,
           kind TEXT, data TEXT /* JSON */)

UPDATE and DELETE are refused by triggers: the journal is the truth about money and only grows.
The one exception is the retention of personal data (``payments/retention.py``): an event's
``data`` may be rewritten, once, to exactly the masked text recorded for it in the append-only
``redactions`` table by a ``redaction`` event of the same transaction.

The schema version is SQLite's ``user_version`` (``MIGRATIONS``); files written before it was
used carry their version in ``meta.schema_version``, which is still kept in step for them.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from common import storage
from common.storage import SchemaTooNew, SingleWriter

log = logging.getLogger("cnap.payments.journal")

APPEND_ONLY = "SELECT RAISE(ABORT, 'the payment journal is append-only')"
# The only UPDATE the journal allows: an event's data set to the redacted text recorded for it in
# ``redactions`` by a ``redaction`` event; every other column stays as it was.
EVENTS_UPDATE_TRIGGER = f"""
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
  WHEN NOT (NEW.id IS OLD.id AND NEW.at IS OLD.at AND NEW.boot IS OLD.boot
            AND NEW.payment_id IS OLD.payment_id AND NEW.kind IS OLD.kind
            AND NEW.data IS (SELECT r.data FROM redactions r JOIN events e ON e.id = r.redaction_id
                             WHERE r.event_id = OLD.id AND e.kind = 'redaction'))
  BEGIN {APPEND_ONLY}; END;
"""
# 1: the first release: events that only grow (every UPDATE and DELETE refused).
SCHEMA_V1 = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at REAL NOT NULL,
  boot INTEGER NOT NULL,
  payment_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_payment ON events(payment_id, id);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events BEGIN {APPEND_ONLY}; END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events BEGIN {APPEND_ONLY}; END;
INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', '1');
"""
# 2: retention of personal data: an UPDATE of ``data`` to a recorded redaction, nothing else.
SCHEMA_V2 = f"""
DROP TRIGGER IF EXISTS events_no_update;
CREATE TABLE IF NOT EXISTS redactions (
  event_id INTEGER PRIMARY KEY,   -- the event whose personal data was masked
  redaction_id INTEGER NOT NULL,  -- the 'redaction' event (stream 'retention') that did it
  data TEXT NOT NULL              -- the event's data from then on
);
CREATE TRIGGER IF NOT EXISTS redactions_no_update BEFORE UPDATE ON redactions BEGIN {APPEND_ONLY}; END;
CREATE TRIGGER IF NOT EXISTS redactions_no_delete BEFORE DELETE ON redactions BEGIN {APPEND_ONLY}; END;
{EVENTS_UPDATE_TRIGGER}
INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', '2');
"""
MIGRATIONS = (SCHEMA_V1, SCHEMA_V2)
SCHEMA_VERSION = len(MIGRATIONS)
BATCH_MAX = 512


class JournalError(RuntimeError):
    pass


@dataclass(frozen=True)
class Record:
    id: int
    at: float
    boot: int
    payment_id: str
    kind: str
    data: dict


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the journal's settings: full sync and, for writing, secure_delete —
    whatever this SQLite build defaults to, a rewritten or moved row leaves no old bytes in a
    page's free space, so a redacted payer is really gone (payments/retention.py)."""
    return storage.connect(path, readonly=readonly, synchronous="FULL", secure_delete=not readonly)


def _legacy_version(db: sqlite3.Connection) -> int:
    """The version of a file written before ``user_version`` was used (0: a new file)."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
        return 0
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else 0


class Journal:
    def __init__(self, path: str, *, clock=time.time) -> None:
        self.path = path
        self.clock = clock
        self.commits = 0
        self.events_written = 0
        self.failing: str | None = None  # the last write error while writes fail, else None
        self._boot_pending = False  # the boot number could not be written at start
        self._writer = SingleWriter(lambda: connect(self.path), name="journal-writer",
                                    write_batch=self._write_batch,
                                    fail_batch=lambda batch, exc: self._failed(None, batch, exc),
                                    batch_max=BATCH_MAX, error=JournalError, label="journal")
        # Readers never write; each thread has its own connection, all closed by ``close``.
        self._readers = storage.ThreadConnections(lambda: storage.connect(self.path, query_only=True, wal=False))
        db = connect(path)   # the file is created 0600: -wal and -shm inherit the mode
        try:
            try:
                before = storage.migrate(db, MIGRATIONS, name=f"payment journal {path}",
                                         legacy_version=_legacy_version)
            except SchemaTooNew as exc:
                raise JournalError(str(exc)) from exc
            if 0 < before < 2:
                # Version 1 may have been written without secure_delete: copies of rows moved
                # between pages can linger in free space. Rebuild the file once, then truncate
                # the WAL that carried the rebuild.
                log.warning("journal: upgrading %s to schema %d (one-time rebuild)", path, SCHEMA_VERSION)
                db.execute("VACUUM")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            # A boot number tells the events of one process life from the next (recovery, audits).
            row = db.execute("SELECT value FROM meta WHERE key='boots'").fetchone()
            self.boot = int(row[0]) + 1 if row else 1
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('boots', ?)", (str(self.boot),))
        except sqlite3.OperationalError as exc:
            # Disk full, I/O error, read-only file at start: a journal that is already complete
            # can still be read, so the kiosk starts in its journal-fault state (no money taken,
            # /healthz says why) instead of dying; the boot number is written with the first
            # transaction that succeeds.
            if not self._readable_at_current_schema(db):
                raise
            storage.rollback_quietly(db)
            row = db.execute("SELECT value FROM meta WHERE key='boots'").fetchone()
            self.boot = int(row[0]) + 1 if row else 1
            self._boot_pending = True
            self.failing = str(exc)
            log.error("journal %s cannot be written at start (%s): no money is taken until it can", path, exc)
        finally:
            db.close()

    @staticmethod
    def _readable_at_current_schema(db: sqlite3.Connection) -> bool:
        try:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            return row is not None and int(row[0]) == SCHEMA_VERSION
        except sqlite3.Error:
            return False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Journal":
        self._writer.start()
        return self

    def close(self) -> None:
        self._writer.close()
        self._readers.close()

    # ------------------------------------------------------------------ writing
    def submit(self, payment_id: str, kind: str, data: Mapping[str, Any] | None = None) -> Future:
        """Queue one event; the future resolves to its id once it is committed to disk."""
        if not self._writer.running:
            raise JournalError("journal is not running")
        future: Future = Future()
        payload = json.dumps(dict(data or {}), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        self._writer.put((self.clock(), str(payment_id), str(kind), payload, future))
        return future

    def append(self, payment_id: str, kind: str, data: Mapping[str, Any] | None = None,
               timeout: float = 30.0) -> int:
        """Write one event and return only once it is durable (fsynced in the WAL)."""
        return self.submit(payment_id, kind, data).result(timeout=timeout)

    def call(self, fn: Callable[[sqlite3.Connection], Any], timeout: float = 300.0) -> Any:
        """Run ``fn(db)`` on the writer's own connection, between two batches, and return its
        result: work that writes outside ``append`` (the retention's redaction) goes through the
        single writer too, so it never competes with payments for the write lock. ``fn`` manages
        its own transaction; one it leaves open after an error is rolled back."""
        return self._writer.call(fn, timeout=timeout)

    def _failed(self, db, batch: list, exc: Exception) -> None:
        """The disk said no: every caller in the batch must know."""
        if self.failing is None:  # the first of a series with its traceback, then one line each
            log.exception("journal write failed", exc_info=exc)
        else:
            log.error("journal write failed again: %s", exc)
        self.failing = str(exc)
        if db is not None:
            storage.rollback_quietly(db)
        for *_, future in batch:
            future.set_exception(JournalError(f"journal write failed: {exc}"))

    def _write_batch(self, db: sqlite3.Connection, batch: list) -> bool:
        try:
            db.execute("BEGIN IMMEDIATE")
            if self._boot_pending:
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('boots', ?)", (str(self.boot),))
            ids = []
            for at, payment_id, kind, payload, _ in batch:
                cur = db.execute("INSERT INTO events(at, boot, payment_id, kind, data) VALUES (?,?,?,?,?)",
                                 (at, self.boot, payment_id, kind, payload))
                ids.append(cur.lastrowid)
            db.execute("COMMIT")
        except Exception as exc:
            self._failed(db, batch, exc)
            return False
        self._boot_pending = False
        if self.failing is not None:
            log.warning("journal writes again (after: %s)", self.failing)
            self.failing = None
        self.commits += 1
        self.events_written += len(batch)
        for event_id, (*_, future) in zip(ids, batch):
            future.set_result(event_id)
        return True

    # ------------------------------------------------------------------ reading
    def _rows(self, sql: str, params=()) -> list[Record]:
        rows = self._readers.get().execute(sql, params).fetchall()
        return [Record(i, at, boot, pid, kind, json.loads(data)) for i, at, boot, pid, kind, data in rows]

    def records(self, since_id: int = 0) -> list[Record]:
        return self._rows("SELECT id, at, boot, payment_id, kind, data FROM events WHERE id > ? ORDER BY id",
                          (since_id,))


def read_records(path: str) -> list[Record]:
    """All events of a journal file, for tools that run beside the kiosk (export, bench checks)."""
    db = connect(path, readonly=True)
    try:
        rows = db.execute("SELECT id, at, boot, payment_id, kind, data FROM events ORDER BY id").fetchall()
    finally:
        db.close()
    return [Record(i, at, boot, pid, kind, json.loads(data)) for i, at, boot, pid, kind, data in rows]
