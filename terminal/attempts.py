"""Counting wrong secrets (PINs), the one lockout of the appliance.

Service-mode log-in (terminal/staff.py) and a desk tablet's shift PIN (terminal/surveys/shifts.py)
count their failures here, each in a table of its own database, per *key* (a person and scope, a
client address, a tablet). The rule:

* at most ``limit`` failures per key within ``WINDOW_S``; the next try waits until the oldest of
  them leaves the window;
* a try is *reserved* (its failure row inserted) inside the caller's write transaction before the
  slow PIN hash runs, so N concurrent wrong guesses consume exactly N tries; a right PIN deletes
  its reservation afterwards;
* counts live on disk, so a restart gives no fresh tries;
* wall time, because it must survive a restart; failure times in the future (the clock was
  stepped back) are pulled to now, so a backwards step cannot lengthen a lockout by more than one
  window, and a forward step only ends it early.
"""
from __future__ import annotations

import sqlite3
from typing import Iterable

WINDOW_S = 900              # failures older than this are forgotten
CLOCK_SLACK_S = 5           # wall-clock steps backwards smaller than this are tolerated


def schema(table: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, at REAL NOT NULL, key TEXT NOT NULL);\n"
            f"CREATE INDEX IF NOT EXISTS {table}_key ON {table}(key, at);\n")


class Attempts:
    def __init__(self, table: str, window_s: float = WINDOW_S):
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        self.table = table
        self.window_s = window_s

    def tidy(self, db: sqlite3.Connection, now: float) -> None:
        """Forget old failures and pull future ones to now (call first in each transaction)."""
        db.execute(f"DELETE FROM {self.table} WHERE at<=?", (now - self.window_s,))
        db.execute(f"UPDATE {self.table} SET at=? WHERE at>?", (now, now + CLOCK_SLACK_S))

    def count(self, db: sqlite3.Connection, now: float, key: str) -> int:
        return db.execute(f"SELECT COUNT(*) FROM {self.table} WHERE key=? AND at>?",
                          (key, now - self.window_s)).fetchone()[0]

    def wait_s(self, db: sqlite3.Connection, now: float, limits: dict[str, int]) -> int:
        """Seconds until every key may try again (0: they may), for ``{key: limit}``."""
        waits = []
        for key, limit in limits.items():
            row = db.execute(f"SELECT at FROM {self.table} WHERE key=? AND at>? ORDER BY at DESC "
                             "LIMIT 1 OFFSET ?", (key, now - self.window_s, limit - 1)).fetchone()
            if row:
                waits.append(row[0] + self.window_s - now)
        return int(max(waits)) + 1 if waits else 0

    def reserve(self, db: sqlite3.Connection, now: float, keys: Iterable[str]) -> list[int]:
        """Count one try against each key now; the row ids, to forget them if the PIN was right."""
        return [db.execute(f"INSERT INTO {self.table}(at, key) VALUES (?,?)", (now, key)).lastrowid
                for key in keys]

    def forget(self, db: sqlite3.Connection, ids: Iterable[int] = (), key: str | None = None) -> None:
        """Drop reserved tries (``ids``) and, with ``key``, every failure of that key."""
        ids = list(ids)
        if ids:
            db.execute(f"DELETE FROM {self.table} WHERE id IN ({','.join('?' * len(ids))})", ids)
        if key is not None:
            db.execute(f"DELETE FROM {self.table} WHERE key=?", (key,))
