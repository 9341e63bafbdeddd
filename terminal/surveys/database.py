"""The survey file: one writer thread, a read connection per thread, and the steady timeline.

Writes come from the web server's threads (tablets sending answers, service mode); they all go
through one writer thread (``common.storage.SingleWriter``), each as one transaction (WAL, full
sync), so a tablet is told "stored" only after its answers are on disk. Readers have their own
connections and never write.

Every write transaction first moves the open shifts by a wall-clock step the steady clock has
adopted (``clock.SteadyClock``), so the answers of a shift still fall inside it; ended shifts keep
their times (history).
"""
from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from common import storage
from terminal.surveys import schema
from terminal.surveys.antigaming import Rules
from terminal.surveys.clock import SteadyClock


class SurveyDatabase:
    def __init__(self, path: str, rules: Rules, clock: SteadyClock, timezone: str = "Europe/Kyiv"):
        self.path = path
        self.rules = rules
        self.clock = clock
        self.zone = ZoneInfo(timezone)
        self._pending_step = 0.0
        self._step_lock = threading.Lock()
        with storage.opened(path) as db:
            # A second process opening the file at the same time waits, then finds it done.
            storage.migrate(db, schema.migrations(rules.burst_window_s), name=f"survey database {path}",
                            ensure=schema.SCHEMA)
        self._readers = storage.ThreadConnections(lambda: storage.connect(path, query_only=True, wal=False))
        self._writer = storage.SingleWriter(lambda: storage.connect(path), name="surveys-writer",
                                            label="survey database").start()

    def close(self) -> None:
        self._writer.close()
        self._readers.close()

    # --- reading and writing ---------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection."""
        return self._readers.get()

    def query(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """Run one read-only statement on this thread's connection."""
        return self.reader().execute(sql, params)

    def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn(db)`` in one write transaction on the writer thread; its result, or its exception
        after a rollback. From inside a write it runs in that write's transaction."""
        if self._writer.in_writer_thread():
            return self._writer.call(fn)
        return self._writer.call(lambda db: self._transaction(db, fn))

    def _transaction(self, db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        step = 0.0
        try:
            with storage.transaction(db):
                step = self._move_open_shifts(db)
                return fn(db)
        except BaseException:
            if step:   # rolled back with the rest: the next transaction moves them
                with self._step_lock:
                    self._pending_step += step
            raise

    # --- the steady timeline -------------------------------------------------------------------
    def now(self) -> float:
        """Now on the store's steady timeline (see ``clock``)."""
        now, step = self.clock.read()
        if step:
            # Open shifts started on the old timeline: a transaction moves them with it (this one
            # or, when called inside one, that one), so their answers still fall inside them.
            with self._step_lock:
                self._pending_step += step
            if not self._writer.in_writer_thread():
                self.write(lambda db: None)
        return now

    def _move_open_shifts(self, db: sqlite3.Connection) -> float:
        with self._step_lock:
            step, self._pending_step = self._pending_step, 0.0
        if step:
            db.execute("UPDATE shifts SET started_at = started_at + ? WHERE ended_at IS NULL", (step,))
        return step

    def day_of(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self.zone).date().isoformat()
