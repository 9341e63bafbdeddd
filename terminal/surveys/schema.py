"""The survey file's schema and its versions (SQLite's ``user_version``, ``common.storage.migrate``).

``SCHEMA`` is the current schema, every statement ``IF NOT EXISTS``: it creates a new file and is
run again at every opening (``ensure``), because earlier releases added tables (the PIN lockout's
``pin_failures``) without counting a version. The numbered migrations bring the columns of an older
file up to date.
"""
from __future__ import annotations

import sqlite3
from functools import partial

from terminal import attempts
from terminal.surveys.antigaming import BURST

SCHEMA = """
CREATE TABLE IF NOT EXISTS surveys (
  id TEXT PRIMARY KEY, current_version INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS survey_versions (
  survey_id TEXT NOT NULL, version INTEGER NOT NULL, definition TEXT NOT NULL, source TEXT NOT NULL,
  created_at REAL NOT NULL, created_by TEXT, PRIMARY KEY (survey_id, version));
CREATE TABLE IF NOT EXISTS tablets (
  id INTEGER PRIMARY KEY, label TEXT NOT NULL, branch_id TEXT NOT NULL, desk TEXT NOT NULL,
  survey_id TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
  revoked_at REAL, last_seen_at REAL);
CREATE TABLE IF NOT EXISTS administrators (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, branch_id TEXT NOT NULL DEFAULT '',
  pin_salt BLOB NOT NULL, pin_hash BLOB NOT NULL, active INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS shifts (
  id INTEGER PRIMARY KEY, tablet_id INTEGER NOT NULL, admin_id INTEGER NOT NULL,
  started_at REAL NOT NULL, ended_at REAL);
CREATE INDEX IF NOT EXISTS shifts_open ON shifts(tablet_id, ended_at);
CREATE TABLE IF NOT EXISTS answers (
  uuid TEXT PRIMARY KEY, tablet_id INTEGER NOT NULL, branch_id TEXT NOT NULL, desk TEXT NOT NULL,
  survey_id TEXT NOT NULL, version INTEGER NOT NULL, shift_id INTEGER, admin_id INTEGER NOT NULL DEFAULT 0,
  answered_at REAL NOT NULL, day TEXT NOT NULL, received_at REAL NOT NULL,
  main TEXT NOT NULL, score INTEGER NOT NULL, scale INTEGER NOT NULL, path TEXT NOT NULL DEFAULT '[]',
  nps INTEGER, comment TEXT, lang TEXT, counted INTEGER NOT NULL, flag TEXT, repeat_of TEXT,
  forwarded_at REAL, burst_id INTEGER, review TEXT, sent_at REAL, tablet_answered_at REAL,
  claimed_shift_id INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS answers_tablet_time ON answers(tablet_id, counted, answered_at);
CREATE INDEX IF NOT EXISTS answers_tablet_received ON answers(tablet_id, received_at);
CREATE INDEX IF NOT EXISTS answers_day ON answers(day, branch_id);
CREATE INDEX IF NOT EXISTS answers_comments ON answers(answered_at) WHERE comment IS NOT NULL;
CREATE INDEX IF NOT EXISTS answers_unforwarded ON answers(received_at) WHERE forwarded_at IS NULL;
CREATE TABLE IF NOT EXISTS stats (
  day TEXT NOT NULL, branch_id TEXT NOT NULL, desk TEXT NOT NULL, tablet_id INTEGER NOT NULL,
  admin_id INTEGER NOT NULL, burst INTEGER NOT NULL,
  n INTEGER NOT NULL DEFAULT 0, top2 INTEGER NOT NULL DEFAULT 0, sum_score5 REAL NOT NULL DEFAULT 0,
  c1 INTEGER NOT NULL DEFAULT 0, c2 INTEGER NOT NULL DEFAULT 0, c3 INTEGER NOT NULL DEFAULT 0,
  c4 INTEGER NOT NULL DEFAULT 0, c5 INTEGER NOT NULL DEFAULT 0,
  nps_n INTEGER NOT NULL DEFAULT 0, nps_pro INTEGER NOT NULL DEFAULT 0, nps_det INTEGER NOT NULL DEFAULT 0,
  comments INTEGER NOT NULL DEFAULT 0, repeats INTEGER NOT NULL DEFAULT 0,
  reviewed_genuine INTEGER NOT NULL DEFAULT 0, reviewed_excluded INTEGER NOT NULL DEFAULT 0,
  late INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (day, branch_id, desk, tablet_id, admin_id, burst)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reason_stats (
  day TEXT NOT NULL, branch_id TEXT NOT NULL, desk TEXT NOT NULL, tablet_id INTEGER NOT NULL,
  admin_id INTEGER NOT NULL, burst INTEGER NOT NULL, survey_id TEXT NOT NULL, version INTEGER NOT NULL,
  question_id TEXT NOT NULL, option_id TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (day, branch_id, desk, tablet_id, admin_id, burst, survey_id, version, question_id, option_id)
) WITHOUT ROWID;
-- Reasons are ranked by option over long periods: this index lets SQLite group without sorting.
CREATE INDEX IF NOT EXISTS reason_by_option ON reason_stats(survey_id, version, question_id, option_id, day,
  branch_id, desk, admin_id, burst, n);
-- One row per burst of identical answers; decision NULL while it waits for review.
CREATE TABLE IF NOT EXISTS bursts (
  id INTEGER PRIMARY KEY, tablet_id INTEGER NOT NULL, main TEXT NOT NULL, created_at REAL NOT NULL,
  decision TEXT, reviewed_at REAL, reviewed_by TEXT, reviewer_id INTEGER, answers_reviewed INTEGER);
CREATE INDEX IF NOT EXISTS bursts_pending ON bursts(decision);
""" + attempts.schema("pin_failures") + """
CREATE TABLE IF NOT EXISTS rejections (
  id INTEGER PRIMARY KEY, at REAL NOT NULL, tablet_id INTEGER, uuid TEXT, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS media (
  id INTEGER PRIMARY KEY, filename TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, alt_uk TEXT NOT NULL,
  alt_en TEXT NOT NULL, duration_s INTEGER NOT NULL, position INTEGER NOT NULL, size INTEGER NOT NULL,
  created_at REAL NOT NULL);
"""


def _add_columns(db: sqlite3.Connection, columns) -> None:
    for table, column, kind in columns:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _to_v2(db: sqlite3.Connection, burst_window_s: float) -> None:
    """Burst identities and reviews."""
    _add_columns(db, (("answers", "burst_id", "INTEGER"), ("answers", "review", "TEXT"),
                      ("stats", "reviewed_genuine", "INTEGER NOT NULL DEFAULT 0"),
                      ("stats", "reviewed_excluded", "INTEGER NOT NULL DEFAULT 0")))
    db.execute("CREATE INDEX IF NOT EXISTS answers_burst ON answers(burst_id) WHERE burst_id IS NOT NULL")
    _identify_legacy_bursts(db, burst_window_s)
    # The roll-ups need no rebuild: every old burst is still pending (burst=1) and the new
    # columns start at 0 (nothing was reviewed), which is what a recomputation gives.


def _to_v3(db: sqlite3.Connection) -> None:
    """The tablet's own times beside the server's (sent_at, tablet_answered_at), shift claims
    refused, late answers (``late`` starts at 0: nothing was flagged late before)."""
    _add_columns(db, (("answers", "sent_at", "REAL"), ("answers", "tablet_answered_at", "REAL"),
                      ("answers", "claimed_shift_id", "INTEGER"), ("stats", "late", "INTEGER NOT NULL DEFAULT 0")))
    db.execute("CREATE INDEX IF NOT EXISTS answers_tablet_received ON answers(tablet_id, received_at)")


def _identify_legacy_bursts(db: sqlite3.Connection, burst_window_s: float) -> None:
    """Answers flagged ``burst`` before bursts had an identity: each unbroken run of them on a
    tablet (same main answer, consecutive among its counted answers, within the burst window)
    becomes one pending burst."""
    rows = db.execute(
        "SELECT uuid, tablet_id, answered_at, main, flag, received_at FROM answers WHERE counted=1 AND "
        "burst_id IS NULL AND tablet_id IN (SELECT DISTINCT tablet_id FROM answers WHERE flag='burst') "
        "ORDER BY tablet_id, answered_at").fetchall()
    runs: list[list[tuple]] = []
    previous = None
    for row in rows:
        uuid, tablet_id, answered_at, main, flag, received_at = row
        if flag != BURST:
            previous = None
            continue
        if (previous is None or previous[1] != tablet_id or previous[3] != main
                or answered_at - previous[2] > burst_window_s):
            runs.append([])
        runs[-1].append(row)
        previous = row
    for run in runs:
        cur = db.execute("INSERT INTO bursts(tablet_id, main, created_at) VALUES (?,?,?)",
                         (run[0][1], run[0][3], max(r[5] for r in run)))
        db.executemany("UPDATE answers SET burst_id=? WHERE uuid=?", [(cur.lastrowid, r[0]) for r in run])


def migrations(burst_window_s: float) -> tuple:
    """1: the first release; 2: burst identities and reviews; 3: the tablet's own times."""
    return (SCHEMA, partial(_to_v2, burst_window_s=burst_window_s), _to_v3)


SCHEMA_VERSION = len(migrations(0))
