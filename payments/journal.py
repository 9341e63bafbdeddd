"""The payment journal: an append-only SQLite file (WAL, synchronous=FULL) with one writer.

One thread owns the write connection and is fed by a queue (the pattern of datasette's
``_execute_writes``). Callers hand it events and wait until the transaction that holds them has
committed, i.e. until the event is on disk. While one transaction commits, new events queue up;
the writer then takes all of them into the next transaction (group commit), so the journal keeps
up with many callers without giving up durability of any single event.

Schema (``docs/payments.md`` documents it)::

    events(id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, boot INTEGER, payment_id TEXT,
           kind TEXT, data TEXT /* JSON */)

UPDATE and DELETE are refused by triggers: the journal is the truth about money and only grows.
"""
from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

log = logging.getLogger("cnap.payments.journal")

SCHEMA_VERSION = 1
SCHEMA = """
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
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
  BEGIN SELECT RAISE(ABORT, 'the payment journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
  BEGIN SELECT RAISE(ABORT, 'the payment journal is append-only'); END;
"""
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
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    else:
        db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class Journal:
    def __init__(self, path: str, *, clock=time.time) -> None:
        self.path = path
        self.clock = clock
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._local = threading.local()
        self.commits = 0
        self.events_written = 0
        db = connect(path)
        try:
            db.executescript(SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise JournalError(f"journal schema {row[0]} is newer than this software ({SCHEMA_VERSION})")
            # A boot number tells the events of one process life from the next (recovery, audits).
            row = db.execute("SELECT value FROM meta WHERE key='boots'").fetchone()
            self.boot = int(row[0]) + 1 if row else 1
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('boots', ?)", (str(self.boot),))
        finally:
            db.close()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Journal":
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None
        self._closed = True

    # ------------------------------------------------------------------ writing
    def submit(self, payment_id: str, kind: str, data: Mapping[str, Any] | None = None) -> Future:
        """Queue one event; the future resolves to its id once it is committed to disk."""
        if self._closed or self._thread is None:
            raise JournalError("journal is not running")
        future: Future = Future()
        payload = json.dumps(dict(data or {}), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        self._queue.put((self.clock(), str(payment_id), str(kind), payload, future))
        return future

    def append(self, payment_id: str, kind: str, data: Mapping[str, Any] | None = None,
               timeout: float = 30.0) -> int:
        """Write one event and return only once it is durable (fsynced in the WAL)."""
        return self.submit(payment_id, kind, data).result(timeout=timeout)

    def append_many(self, items: Iterable[tuple[str, str, Mapping[str, Any]]]) -> list[int]:
        futures = [self.submit(p, k, d) for p, k, d in items]
        return [f.result(timeout=30) for f in futures]

    def _writer(self) -> None:
        db = connect(self.path)
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < BATCH_MAX:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                self._write_batch(db, batch)
        finally:
            db.close()

    def _write_batch(self, db: sqlite3.Connection, batch: list) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
            ids = []
            for at, payment_id, kind, payload, _ in batch:
                cur = db.execute("INSERT INTO events(at, boot, payment_id, kind, data) VALUES (?,?,?,?,?)",
                                 (at, self.boot, payment_id, kind, payload))
                ids.append(cur.lastrowid)
            db.execute("COMMIT")
        except Exception as exc:  # the disk said no: every caller in the batch must know
            log.exception("journal write failed")
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for *_, future in batch:
                future.set_exception(JournalError(f"journal write failed: {exc}"))
            return
        self.commits += 1
        self.events_written += len(batch)
        for event_id, (*_, future) in zip(ids, batch):
            future.set_result(event_id)

    # ------------------------------------------------------------------ reading
    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._local.db = db
        return db

    def _rows(self, sql: str, params=()) -> list[Record]:
        rows = self._reader().execute(sql, params).fetchall()
        return [Record(i, at, boot, pid, kind, json.loads(data)) for i, at, boot, pid, kind, data in rows]

    def records(self, since_id: int = 0) -> list[Record]:
        return self._rows("SELECT id, at, boot, payment_id, kind, data FROM events WHERE id > ? ORDER BY id",
                          (since_id,))

    def records_for(self, payment_id: str) -> list[Record]:
        return self._rows("SELECT id, at, boot, payment_id, kind, data FROM events WHERE payment_id = ? "
                          "ORDER BY id", (payment_id,))

    def records_between(self, start: float, end: float) -> list[Record]:
        return self._rows("SELECT id, at, boot, payment_id, kind, data FROM events WHERE at >= ? AND at < ? "
                          "ORDER BY id", (start, end))


def read_records(path: str) -> list[Record]:
    """All events of a journal file, for tools that run beside the kiosk (export, bench checks)."""
    db = connect(path, readonly=True)
    try:
        rows = db.execute("SELECT id, at, boot, payment_id, kind, data FROM events ORDER BY id").fetchall()
    finally:
        db.close()
    return [Record(i, at, boot, pid, kind, json.loads(data)) for i, at, boot, pid, kind, data in rows]
