"""The survey store: definitions (versioned), tablets, desk administrators, shifts, answers and
the daily roll-ups the reports read — one SQLite file in the instance folder.

Writes are serialised by one lock and each batch of answers is one transaction (WAL, full sync),
so a tablet is told "stored" only after the answer is on disk. Re-sending an answer changes
nothing (the tablet-made UUID is the primary key).

Forwarding seam for the monitoring agent: ``pending_for_forwarding(limit)`` returns answers not
yet forwarded, ``mark_forwarded(uuids)`` records that the hub has them.

Bursts (see ``antigaming``) get an identity in ``bursts``; a manager's review records its decision
there and on each answer (``review``), so the original ``flag`` is never rewritten. The schema
version is SQLite's ``user_version``; ``_migrate`` brings an older file up to date on opening.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from terminal.surveys.scoring import (SQL_DETRACTOR, SQL_PROMOTER, SQL_SCORE5, SQL_TOP, is_detractor,
                                      is_promoter, is_top, score5)
from terminal import attempts
from terminal.staff import MAX_FAILURES, hash_pin, valid_pin
from terminal.surveys import antigaming
from terminal.surveys.antigaming import (BURST, EXCLUDED, GENUINE, LATE, REPEAT, REVIEW_DECISIONS, Recent,
                                         RequestRate, Rules, clean_text)
from terminal.surveys.clock import SteadyClock
from terminal.surveys.definitions import (DEFAULT_DEFINITION, MAX_DEPTH, Definition, DefinitionError,
                                          parse)

log = logging.getLogger("cnap.surveys")

MAX_BATCH = 500
MAX_FUTURE_S = 120          # an answer this far ahead of the server (tablet clock corrected) is refused
# How far an answer's time may lie outside its shift and still belong to it: the error of the
# tablet clock correction (network delay of the request that measured it).
SHIFT_GRACE_S = 30
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

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
# 1: the first release (user_version 0); 2: burst identities and reviews; 3: the tablet's own
# times beside the server's (sent_at, tablet_answered_at), shift claims refused, late answers.
SCHEMA_VERSION = 3
PIN_FAILURES = attempts.Attempts("pin_failures")   # keys: tablet:<id>


class SurveyInputError(ValueError):
    """Bad input from service mode (a clear message for the form)."""


class BurstReviewError(SurveyInputError):
    """A review that cannot be recorded; ``code`` says why (nothing was changed)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Tablet:
    id: int
    label: str
    branch_id: str
    desk: str
    survey_id: str
    created_at: float
    revoked_at: float | None
    last_seen_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Administrator:
    id: int
    name: str
    branch_id: str
    active: bool


@dataclass(frozen=True)
class Shift:
    id: int
    tablet_id: int
    admin_id: int
    admin_name: str
    started_at: float
    ended_at: float | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Rejected(Exception):
    def __init__(self, code: str, message: str):
        # Messages may quote what the tablet sent: short and printable, whatever it sent.
        message = clean_text(message, multiline=False)
        message = message if len(message) <= 160 else message[:159] + "…"
        self.code, self.message = code, message
        super().__init__(message)


class SurveyStore:
    def __init__(self, path: str, rules: Rules | None = None, timezone: str = "Europe/Kyiv",
                 clock: SteadyClock | None = None):
        self.path = path
        self.rules = rules or Rules()
        self.clock = clock or SteadyClock()
        self._request_rate = RequestRate(self.rules.requests_per_minute)
        self._pending_step = 0.0
        self._step_lock = threading.Lock()
        self._tx_thread: int | None = None
        self.zone = ZoneInfo(timezone)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._definitions: dict[tuple[str, int], Definition] = {}
        db = self._db()
        db.executescript(SCHEMA)
        self._migrate()

    # --- plumbing ------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    def close(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                try:
                    db.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()

    def _write(self):
        store = self

        class _Tx:
            def __enter__(self):
                store._write_lock.acquire()
                store._tx_thread = threading.get_ident()
                try:
                    self.db = store._db()
                    self.db.execute("BEGIN IMMEDIATE")
                    self.step = store._move_open_shifts(self.db)
                except BaseException:
                    store._tx_thread = None
                    store._write_lock.release()
                    raise
                return self.db

            def __exit__(self, exc_type, exc, tb):
                try:
                    self.db.execute("ROLLBACK" if exc_type else "COMMIT")
                    if exc_type and self.step:
                        with store._step_lock:
                            store._pending_step += self.step
                finally:
                    store._tx_thread = None
                    store._write_lock.release()
                return False

        return _Tx()

    def _migrate(self) -> None:
        """Bring a file written by an older release up to ``SCHEMA_VERSION``, in one transaction
        (a second process opening the file at the same time waits and then finds it done)."""
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version >= SCHEMA_VERSION:
                return
            for table, column, kind in (("answers", "burst_id", "INTEGER"), ("answers", "review", "TEXT"),
                                        ("stats", "reviewed_genuine", "INTEGER NOT NULL DEFAULT 0"),
                                        ("stats", "reviewed_excluded", "INTEGER NOT NULL DEFAULT 0"),
                                        ("answers", "sent_at", "REAL"), ("answers", "tablet_answered_at", "REAL"),
                                        ("answers", "claimed_shift_id", "INTEGER"),
                                        ("stats", "late", "INTEGER NOT NULL DEFAULT 0")):
                if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            db.execute("CREATE INDEX IF NOT EXISTS answers_burst ON answers(burst_id) WHERE burst_id IS NOT NULL")
            db.execute("CREATE INDEX IF NOT EXISTS answers_tablet_received ON answers(tablet_id, received_at)")
            if version < 2:
                self._identify_legacy_bursts(db)
            # The roll-ups need no rebuild: every old burst is still pending (burst=1) and the new
            # columns start at 0 (nothing was reviewed or flagged late), which is what a
            # recomputation gives.
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _identify_legacy_bursts(self, db: sqlite3.Connection) -> None:
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
                    or answered_at - previous[2] > self.rules.burst_window_s):
                runs.append([])
            runs[-1].append(row)
            previous = row
        for run in runs:
            cur = db.execute("INSERT INTO bursts(tablet_id, main, created_at) VALUES (?,?,?)",
                             (run[0][1], run[0][3], max(r[5] for r in run)))
            db.executemany("UPDATE answers SET burst_id=? WHERE uuid=?", [(cur.lastrowid, r[0]) for r in run])

    def now(self) -> float:
        """Now on the store's steady timeline (see ``clock``)."""
        now, step = self.clock.read()
        if step:
            # Open shifts started on the old timeline: a transaction moves them with it (this one
            # or, when called inside one, that one), so their answers still fall inside them.
            # Ended shifts keep their times (history).
            with self._step_lock:
                self._pending_step += step
            if self._tx_thread != threading.get_ident():
                with self._write():
                    pass
        return now

    def _move_open_shifts(self, db: sqlite3.Connection) -> float:
        with self._step_lock:
            step, self._pending_step = self._pending_step, 0.0
        if step:
            db.execute("UPDATE shifts SET started_at = started_at + ? WHERE ended_at IS NULL", (step,))
        return step

    def request_wait(self, tablet_id: int) -> float:
        """0 when the tablet may send another batch now; otherwise seconds to wait (see RequestRate)."""
        return self._request_rate.wait(tablet_id, self.clock.monotonic())

    def day_of(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self.zone).date().isoformat()

    # --- definitions ---------------------------------------------------------------------
    def ensure_default_survey(self) -> None:
        if not self._db().execute("SELECT 1 FROM surveys LIMIT 1").fetchone():
            self.save_definition(DEFAULT_DEFINITION, created_by="installation")

    def save_definition(self, source: str, created_by: str | None = None) -> tuple[str, int]:
        """Validate and store as the next version of its survey; returns (survey id, version).
        Saving text identical to the current version creates no new version."""
        definition = parse(source)
        now = time.time()
        with self._write() as db:
            row = db.execute("SELECT current_version FROM surveys WHERE id=?", (definition.id,)).fetchone()
            if row:
                latest = db.execute("SELECT MAX(version) FROM survey_versions WHERE survey_id=?",
                                    (definition.id,)).fetchone()[0]
                current = db.execute("SELECT definition FROM survey_versions WHERE survey_id=? AND version=?",
                                     (definition.id, row[0])).fetchone()[0]
                if current == definition.to_json():
                    return definition.id, row[0]
                version = latest + 1
                db.execute("UPDATE surveys SET current_version=? WHERE id=?", (version, definition.id))
            else:
                version = 1
                db.execute("INSERT INTO surveys(id, current_version, created_at) VALUES (?,?,?)",
                           (definition.id, version, now))
            db.execute("INSERT INTO survey_versions(survey_id, version, definition, source, created_at, created_by)"
                       " VALUES (?,?,?,?,?,?)", (definition.id, version, definition.to_json(),
                                                 source if isinstance(source, str) else definition.to_json(),
                                                 now, created_by))
        self._definitions[(definition.id, version)] = definition
        return definition.id, version

    def activate_version(self, survey_id: str, version: int) -> None:
        """Make an older version current again (a roll-back keeps the version numbers)."""
        with self._write() as db:
            if not db.execute("SELECT 1 FROM survey_versions WHERE survey_id=? AND version=?",
                              (survey_id, version)).fetchone():
                raise SurveyInputError(f"survey {survey_id!r} has no version {version}")
            db.execute("UPDATE surveys SET current_version=? WHERE id=?", (version, survey_id))

    def definition(self, survey_id: str, version: int) -> Definition | None:
        key = (survey_id, version)
        cached = self._definitions.get(key)
        if cached is not None:
            return cached
        row = self._db().execute("SELECT definition FROM survey_versions WHERE survey_id=? AND version=?",
                                 key).fetchone()
        if row is None:
            return None
        definition = parse(json.loads(row[0]))
        self._definitions[key] = definition
        return definition

    def current(self, survey_id: str) -> tuple[int, Definition] | None:
        row = self._db().execute("SELECT current_version FROM surveys WHERE id=?", (survey_id,)).fetchone()
        if row is None:
            return None
        return row[0], self.definition(survey_id, row[0])

    def surveys(self) -> list[dict]:
        rows = self._db().execute(
            "SELECT s.id, s.current_version, COUNT(v.version), MAX(v.created_at) FROM surveys s "
            "JOIN survey_versions v ON v.survey_id = s.id GROUP BY s.id ORDER BY s.id").fetchall()
        return [{"id": r[0], "current_version": r[1], "versions": r[2], "updated_at": r[3],
                 "title": self.definition(r[0], r[1]).title} for r in rows]

    def versions(self, survey_id: str) -> list[dict]:
        rows = self._db().execute(
            "SELECT v.version, v.created_at, v.created_by, "
            "(SELECT COUNT(*) FROM answers a WHERE a.survey_id=v.survey_id AND a.version=v.version) "
            "FROM survey_versions v WHERE v.survey_id=? ORDER BY v.version DESC", (survey_id,)).fetchall()
        return [{"version": r[0], "created_at": r[1], "created_by": r[2], "answers": r[3]} for r in rows]

    def source(self, survey_id: str, version: int) -> str | None:
        row = self._db().execute("SELECT source FROM survey_versions WHERE survey_id=? AND version=?",
                                 (survey_id, version)).fetchone()
        return row[0] if row else None

    # --- tablets -------------------------------------------------------------------------
    def register_tablet(self, label: str, branch_id: str, desk: str, survey_id: str) -> tuple[Tablet, str]:
        label, desk = clean_text(label, multiline=False), clean_text(desk, multiline=False)
        if not label or len(label) > 60:
            raise SurveyInputError("label: 1–60 characters")
        if not desk or len(desk) > 40:
            raise SurveyInputError("desk: 1–40 characters")
        if self.current(survey_id) is None:
            raise SurveyInputError(f"unknown survey {survey_id!r}")
        token = secrets.token_urlsafe(24)
        now = self.now()
        with self._write() as db:
            cur = db.execute("INSERT INTO tablets(label, branch_id, desk, survey_id, token_hash, created_at) "
                             "VALUES (?,?,?,?,?,?)", (label, branch_id, desk, survey_id, token_hash(token), now))
            tablet_id = cur.lastrowid
        return self.tablet(tablet_id), token

    def reissue_token(self, tablet_id: int) -> str:
        """A new token for a lost or leaked link; the old token stops working at once."""
        token = secrets.token_urlsafe(24)
        with self._write() as db:
            cur = db.execute("UPDATE tablets SET token_hash=?, revoked_at=NULL WHERE id=?",
                             (token_hash(token), tablet_id))
            if cur.rowcount != 1:
                raise SurveyInputError("no such tablet")
        return token

    def revoke_tablet(self, tablet_id: int) -> None:
        now = self.now()
        with self._write() as db:
            db.execute("UPDATE tablets SET revoked_at=? WHERE id=? AND revoked_at IS NULL", (now, tablet_id))
            db.execute("UPDATE shifts SET ended_at=? WHERE tablet_id=? AND ended_at IS NULL", (now, tablet_id))
        self.clock.touch()

    _TABLET_COLUMNS = "id, label, branch_id, desk, survey_id, created_at, revoked_at, last_seen_at"

    def tablet(self, tablet_id: int) -> Tablet | None:
        row = self._db().execute(f"SELECT {self._TABLET_COLUMNS} FROM tablets WHERE id=?", (tablet_id,)).fetchone()
        return Tablet(*row) if row else None

    def tablet_by_token(self, token: str) -> Tablet | None:
        """The tablet a token belongs to, revoked ones included (the caller refuses those)."""
        if not token or len(token) > 200:
            return None
        row = self._db().execute(f"SELECT {self._TABLET_COLUMNS} FROM tablets WHERE token_hash=?",
                                 (token_hash(token),)).fetchone()
        return Tablet(*row) if row else None

    def tablets(self) -> list[Tablet]:
        rows = self._db().execute(f"SELECT {self._TABLET_COLUMNS} FROM tablets ORDER BY branch_id, desk, id")
        return [Tablet(*r) for r in rows]

    def desks(self) -> list[tuple[str, str]]:
        return self._db().execute("SELECT DISTINCT branch_id, desk FROM tablets ORDER BY 1, 2").fetchall()

    # --- desk administrators and shifts ----------------------------------------------------
    def add_administrator(self, name: str, branch_id: str, pin: str) -> Administrator:
        name = clean_text(name, multiline=False)
        if not name or len(name) > 60:
            raise SurveyInputError("name: 1–60 characters")
        if not valid_pin(pin):
            raise SurveyInputError("PIN: 6–12 digits 0-9 (terminal.staff.valid_pin)")
        if self._match_pin(branch_id, pin) is not None:
            # A PIN alone identifies the administrator at the tablet, so it must be unique.
            raise SurveyInputError("PIN is already used by another administrator of this branch")
        salt = secrets.token_bytes(16)
        with self._write() as db:
            cur = db.execute("INSERT INTO administrators(name, branch_id, pin_salt, pin_hash, created_at) "
                             "VALUES (?,?,?,?,?)", (name, branch_id, salt, hash_pin(pin, salt), time.time()))
        return Administrator(cur.lastrowid, name, branch_id, True)

    def set_administrator_active(self, admin_id: int, active: bool) -> None:
        now = self.now()
        with self._write() as db:
            db.execute("UPDATE administrators SET active=? WHERE id=?", (int(active), admin_id))
            if not active:
                db.execute("UPDATE shifts SET ended_at=? WHERE admin_id=? AND ended_at IS NULL", (now, admin_id))
        self.clock.touch()

    def administrators(self) -> list[Administrator]:
        rows = self._db().execute("SELECT id, name, branch_id, active FROM administrators ORDER BY name, id")
        return [Administrator(r[0], r[1], r[2], bool(r[3])) for r in rows]

    def _match_pin(self, branch_id: str, pin: str) -> Administrator | None:
        rows = self._db().execute(
            "SELECT id, name, branch_id, pin_salt, pin_hash FROM administrators "
            "WHERE active=1 AND (branch_id=? OR branch_id='' OR ?='')", (branch_id, branch_id)).fetchall()
        for admin_id, name, branch, salt, digest in rows:
            if hmac.compare_digest(hash_pin(pin, salt), digest):
                return Administrator(admin_id, name, branch, True)
        return None

    # Desk-administrator PINs are guessed against the appliance's one lockout
    # (terminal/attempts.py): MAX_FAILURES wrong PINs per tablet per window, on disk, each try
    # reserved before the slow PBKDF2.
    @staticmethod
    def _pin_limits(tablet_id: int) -> dict[str, int]:
        return {f"tablet:{tablet_id}": MAX_FAILURES}

    def pin_locked_for(self, tablet_id: int) -> int:
        """Seconds until this tablet may try a PIN again (0: it may)."""
        return PIN_FAILURES.wait_s(self._db(), time.time(), self._pin_limits(tablet_id))

    def start_shift(self, tablet: Tablet, pin: str, now: float | None = None) -> Shift | None:
        """The administrator whose PIN this is takes the desk; the previous shift ends. None for
        a wrong PIN or while the tablet is locked out."""
        wall = time.time()
        with self._write() as db:
            PIN_FAILURES.tidy(db, wall)
            limits = self._pin_limits(tablet.id)
            if PIN_FAILURES.wait_s(db, wall, limits):
                return None
            PIN_FAILURES.reserve(db, wall, limits)
        admin = self._match_pin(tablet.branch_id, pin) if valid_pin(pin) else None
        if admin is None:
            log.warning("wrong desk-administrator PIN on tablet %s", tablet.id)
            return None
        now = self.now() if now is None else now
        with self._write() as db:
            PIN_FAILURES.forget(db, key=f"tablet:{tablet.id}")
            db.execute("UPDATE shifts SET ended_at=? WHERE tablet_id=? AND ended_at IS NULL", (now, tablet.id))
            cur = db.execute("INSERT INTO shifts(tablet_id, admin_id, started_at) VALUES (?,?,?)",
                             (tablet.id, admin.id, now))
        self.clock.touch()
        return Shift(cur.lastrowid, tablet.id, admin.id, admin.name, now, None)

    def end_shift(self, tablet: Tablet, now: float | None = None) -> None:
        now = self.now() if now is None else now
        with self._write() as db:
            db.execute("UPDATE shifts SET ended_at=? WHERE tablet_id=? AND ended_at IS NULL", (now, tablet.id))
        self.clock.touch()

    def current_shift(self, tablet_id: int) -> Shift | None:
        row = self._db().execute(
            "SELECT s.id, s.tablet_id, s.admin_id, a.name, s.started_at, s.ended_at FROM shifts s "
            "JOIN administrators a ON a.id = s.admin_id WHERE s.tablet_id=? AND s.ended_at IS NULL "
            "ORDER BY s.id DESC LIMIT 1", (tablet_id,)).fetchone()
        return Shift(*row) if row else None

    def shift(self, shift_id: int) -> Shift | None:
        row = self._db().execute(
            "SELECT s.id, s.tablet_id, s.admin_id, a.name, s.started_at, s.ended_at FROM shifts s "
            "JOIN administrators a ON a.id = s.admin_id WHERE s.id=?", (shift_id,)).fetchone()
        return Shift(*row) if row else None

    # --- answers -------------------------------------------------------------------------
    def ingest(self, tablet: Tablet, answers: Any, sent_at: Any = None, now: float | None = None) -> list[dict]:
        """Store a batch from one tablet in one transaction. Returns one result per answer:
        ``stored`` (new), ``duplicate`` (already stored from this tablet: nothing changes) or
        ``rejected`` with an error code and message (logged; nothing stored changes).

        Times: ``now`` (the store's steady clock unless given) is when the server received the
        batch and is stored as ``received_at``; the tablet's ``sent_at`` and each answer's own
        ``answered_at`` are stored as the tablet said them, and ``answered_at`` corrected by the
        tablet's clock error (now − sent_at) is what reports, shifts and anti-gaming use. An answer
        corrected into the future or older than ``rules.max_offline_s`` is refused."""
        now = self.now() if now is None else now
        self.clock.touch()
        if not isinstance(answers, list):
            raise Rejected("bad_batch", "answers must be a list")
        if len(answers) > MAX_BATCH:
            raise Rejected("batch_too_large", f"at most {MAX_BATCH} answers per request")
        # The tablet's clock may be wrong: shift its times by how far off it is right now.
        skew = 0.0
        if sent_at is not None:
            if not _is_number(sent_at):
                raise Rejected("bad_batch", "sent_at must be a number of seconds")
            skew = now - float(sent_at)
        results: list[dict | None] = [None] * len(answers)
        prepared = []
        for i, raw in enumerate(answers):
            try:
                answer = self._validate(tablet, raw, skew, now)
                answer["sent_at"] = None if sent_at is None else float(sent_at)
                prepared.append((i, answer))
            except Rejected as exc:
                uuid = raw.get("uuid") if isinstance(raw, dict) and isinstance(raw.get("uuid"), str) else None
                if uuid is not None and not UUID_RE.fullmatch(uuid):
                    # Not an id: keep only what is safe to store, log and show (no controls, short).
                    uuid = clean_text(uuid, multiline=False)[:64].encode("ascii", "replace").decode()
                results[i] = {"uuid": uuid, "status": "rejected", "error": exc.code, "message": exc.message}
        prepared.sort(key=lambda item: item[1]["answered_at"])
        rejections = []
        late = 0
        with self._write() as db:
            db.execute("UPDATE tablets SET last_seen_at=? WHERE id=?", (now, tablet.id))
            for i, answer in prepared:
                owner = db.execute("SELECT tablet_id FROM answers WHERE uuid=?", (answer["uuid"],)).fetchone()
                if owner is not None:
                    if owner[0] == tablet.id:
                        results[i] = {"uuid": answer["uuid"], "status": "duplicate"}
                    else:
                        results[i] = {"uuid": answer["uuid"], "status": "rejected", "error": "uuid_taken",
                                      "message": "this answer id belongs to another tablet"}
                    continue
                if self._insert(db, tablet, answer, now) == LATE:
                    late += 1
                results[i] = {"uuid": answer["uuid"], "status": "stored"}
            for result in results:
                if result and result["status"] == "rejected":
                    rejections.append((now, tablet.id, (result["uuid"] or "")[:64], result["error"]))
            if rejections:
                db.executemany("INSERT INTO rejections(at, tablet_id, uuid, reason) VALUES (?,?,?,?)", rejections)
        for _, tablet_id, uuid, reason in rejections:
            log.warning("survey answer rejected: tablet=%s uuid=%s reason=%s", tablet_id, uuid, reason)
        if late:
            log.warning("survey answers sent late although the tablet was online, not counted: tablet=%s "
                        "answers=%d", tablet.id, late)
        detached = [a for _, a in prepared if a["claimed_shift_id"] is not None]
        if detached:
            log.warning("survey answers outside their shift kept without its administrator: tablet=%s shifts=%s "
                        "answers=%d", tablet.id, sorted({a["claimed_shift_id"] for a in detached}), len(detached))
        return results  # type: ignore[return-value]

    def _validate(self, tablet: Tablet, raw: Any, skew: float, now: float) -> dict:
        if not isinstance(raw, dict):
            raise Rejected("bad_answer", "an answer must be an object")
        uuid = raw.get("uuid")
        if not isinstance(uuid, str) or not UUID_RE.fullmatch(uuid):
            raise Rejected("bad_uuid", "uuid must be a lower-case UUID")
        survey_id, version = raw.get("survey"), raw.get("version")
        if not isinstance(survey_id, str) or not _is_id(version):
            raise Rejected("unknown_survey", "survey and version are required")
        definition = self.definition(survey_id, version) if len(survey_id) <= 64 else None
        if definition is None:
            raise Rejected("unknown_survey", f"survey {_short(survey_id)} has no version {version}")
        answered_at = raw.get("answered_at")
        if not _is_number(answered_at):
            raise Rejected("bad_time", "answered_at must be a number of seconds")
        tablet_answered_at = float(answered_at)
        answered_at = tablet_answered_at + skew
        if not math.isfinite(answered_at) or answered_at > now + MAX_FUTURE_S:
            raise Rejected("bad_time", "answered_at is after the time the batch was sent")
        if answered_at < now - self.rules.max_offline_s:
            raise Rejected("bad_time", f"answered_at is more than {self.rules.max_offline_s / 86400:g} days "
                                       "before the batch was sent")
        main = raw.get("main")
        score = definition.score_of(main) if isinstance(main, str) else None
        if score is None:
            raise Rejected("unknown_option", f"the main question has no option {_short(main)}")
        path_raw = raw.get("path") or []
        if not isinstance(path_raw, list) or len(path_raw) > MAX_DEPTH:
            raise Rejected("bad_path", "path must be a short list of [question, option]")
        path = []
        for step in path_raw:
            if isinstance(step, dict):
                step = (step.get("q"), step.get("o"))
            if not (isinstance(step, (list, tuple)) and len(step) == 2 and all(isinstance(s, str) for s in step)):
                raise Rejected("bad_path", "each path step is [question id, option id]")
            path.append((step[0], step[1]))
        problem = definition.check_path(main, path)
        if problem:
            raise Rejected("unknown_option", problem)
        nps = raw.get("nps")
        if nps is not None:
            if definition.nps is None:
                raise Rejected("unknown_question", "this survey version has no recommendation question")
            if not isinstance(nps, int) or isinstance(nps, bool) or not 0 <= nps <= 10:
                raise Rejected("out_of_range", "nps must be a whole number from 0 to 10")
        comment = raw.get("comment")
        if comment is not None:
            if definition.comment is None:
                raise Rejected("unknown_question", "this survey version takes no comment")
            if not isinstance(comment, str):
                raise Rejected("bad_comment", "comment must be text")
            # The limit is checked on what was sent and again on what is kept (NFC may lengthen).
            if len(comment) > definition.comment_max:
                raise Rejected("comment_too_long", f"comment is longer than {definition.comment_max} characters")
            comment = antigaming.mask_personal(clean_text(comment)) or None
            if comment is not None and len(comment) > definition.comment_max:
                raise Rejected("comment_too_long", f"comment is longer than {definition.comment_max} characters")
        shift_id = raw.get("shift_id")
        admin_id, claimed_shift_id = 0, None
        if shift_id is not None:
            shift = self.shift(shift_id) if _is_id(shift_id) else None
            if shift is None or shift.tablet_id != tablet.id:
                raise Rejected("unknown_shift", "the shift does not belong to this tablet")
            if (answered_at < shift.started_at - SHIFT_GRACE_S
                    or shift.ended_at is not None and answered_at > shift.ended_at + SHIFT_GRACE_S):
                # Given before the shift began or after it ended: a real visitor's opinion of the
                # desk, kept, but no administrator's (a tablet that missed the end of its shift,
                # or answers made up for a past shift). The claim is kept for the record.
                shift_id, claimed_shift_id = None, shift.id
            else:
                admin_id = shift.admin_id
        lang = raw.get("lang") if raw.get("lang") in ("uk", "en") else None
        return {"uuid": uuid, "survey_id": survey_id, "version": version, "answered_at": answered_at,
                "tablet_answered_at": tablet_answered_at, "main": main, "score": score, "scale": definition.scale,
                "path": path, "nps": nps, "comment": comment, "shift_id": shift_id, "admin_id": admin_id,
                "claimed_shift_id": claimed_shift_id, "lang": lang}

    def _insert(self, db: sqlite3.Connection, tablet: Tablet, a: dict, now: float) -> str | None:
        """Store one validated answer with its anti-gaming decision; returns its flag."""
        rules = self.rules
        recent_rows = db.execute(
            "SELECT uuid, answered_at, main, flag, received_at FROM answers WHERE tablet_id=? AND counted=1 "
            "AND answered_at<=? ORDER BY answered_at DESC LIMIT ?",
            (tablet.id, a["answered_at"], max(rules.burst_size - 1, 1))).fetchall()
        recent = [Recent(*r) for r in recent_rows]
        counted, flag, repeat_of, burst_id = 1, None, None, None
        burst_uuids: list[str] = []
        late = antigaming.late_window(a["answered_at"], now, rules)
        if late and db.execute("SELECT 1 FROM answers WHERE tablet_id=? AND received_at>? AND received_at<=? LIMIT 1",
                               (tablet.id, *late)).fetchone():
            counted, flag = 0, LATE
        elif antigaming.is_repeat(a["answered_at"], recent[0].answered_at if recent else None, rules):
            counted, flag, repeat_of = 0, REPEAT, recent[0].uuid
        else:
            # The answers that reached the server just before this one, whatever times they claim.
            arrived = [Recent(*r) for r in db.execute(
                "SELECT uuid, answered_at, main, flag, received_at FROM answers WHERE tablet_id=? AND received_at>=? "
                "AND (counted=1 OR flag=?) ORDER BY received_at DESC, answered_at DESC LIMIT ?",
                (tablet.id, now - rules.burst_window_s, LATE, max(rules.burst_size - 1, 1)))]
            members = antigaming.burst_members(a["answered_at"], a["main"], recent, rules, arrived)
            if members is not None:
                flag, burst_uuids = BURST, members
                run = {r.uuid for r in recent[:rules.burst_size - 1]} | {r.uuid for r in arrived}
                burst_id = self._burst_for(db, tablet.id, a["main"], sorted(run), now)
        row = {**a, "tablet_id": tablet.id, "branch_id": tablet.branch_id, "desk": tablet.desk,
               "day": self.day_of(a["answered_at"]), "received_at": now, "counted": counted, "flag": flag,
               "repeat_of": repeat_of, "path": json.dumps(a["path"], ensure_ascii=False), "burst_id": burst_id,
               "review": None}
        db.execute(
            "INSERT INTO answers(uuid, tablet_id, branch_id, desk, survey_id, version, shift_id, admin_id, "
            "answered_at, day, received_at, main, score, scale, path, nps, comment, lang, counted, flag, repeat_of, "
            "burst_id, sent_at, tablet_answered_at, claimed_shift_id) VALUES (:uuid,:tablet_id,:branch_id,:desk,"
            ":survey_id,:version,:shift_id,:admin_id,:answered_at,:day,:received_at,:main,:score,:scale,:path,:nps,"
            ":comment,:lang,:counted,:flag,:repeat_of,:burst_id,:sent_at,:tablet_answered_at,:claimed_shift_id)", row)
        self._rollup(db, row, +1)
        for uuid in burst_uuids:
            member = self._row(db, uuid)
            self._rollup(db, member, -1)
            # Forwarded unflagged: the hub must get it again with its flag.
            db.execute("UPDATE answers SET flag=?, burst_id=?, forwarded_at=NULL WHERE uuid=?", (BURST, burst_id, uuid))
            member.update(flag=BURST, burst_id=burst_id)
            self._rollup(db, member, +1)
        return flag

    @staticmethod
    def _burst_for(db: sqlite3.Connection, tablet_id: int, main: str, run: list[str], now: float) -> int:
        """The pending burst a new burst answer joins: the one its run already belongs to, or a new
        one. A run reviewed already is not reopened (the decision covers the answers the manager
        saw); its continuation waits for a review of its own. Two pending bursts that a late
        answer joins up become one (the emptied row was never reviewed, so no history is lost)."""
        marks = ",".join("?" * len(run))
        pending = [r[0] for r in db.execute(
            f"SELECT DISTINCT a.burst_id FROM answers a JOIN bursts b ON b.id = a.burst_id "
            f"WHERE a.uuid IN ({marks}) AND b.decision IS NULL ORDER BY a.burst_id", run)]
        if not pending:
            return db.execute("INSERT INTO bursts(tablet_id, main, created_at) VALUES (?,?,?)",
                              (tablet_id, main, now)).lastrowid
        target = pending[0]
        for other in pending[1:]:
            # Both pending: the roll-up key (burst=1) does not change.
            db.execute("UPDATE answers SET burst_id=? WHERE burst_id=?", (target, other))
            db.execute("DELETE FROM bursts WHERE id=? AND decision IS NULL", (other,))
        return target

    _ROW_COLUMNS = ("uuid", "tablet_id", "branch_id", "desk", "survey_id", "version", "shift_id", "admin_id",
                    "answered_at", "day", "received_at", "main", "score", "scale", "path", "nps", "comment",
                    "lang", "counted", "flag", "repeat_of", "forwarded_at", "burst_id", "review", "sent_at",
                    "tablet_answered_at", "claimed_shift_id")

    def _row(self, db: sqlite3.Connection, uuid: str) -> dict:
        values = db.execute(f"SELECT {', '.join(self._ROW_COLUMNS)} FROM answers WHERE uuid=?", (uuid,)).fetchone()
        return dict(zip(self._ROW_COLUMNS, values))

    @staticmethod
    def _rollup(db: sqlite3.Connection, row: dict, sign: int) -> None:
        """Add (+1) or remove (-1) one answer's share of the daily roll-ups. The key's ``burst`` is
        1 for an answer of a burst still waiting for review."""
        review = row.get("review")
        key = (row["day"], row["branch_id"], row["desk"], row["tablet_id"], row["admin_id"],
               1 if row["flag"] == BURST and review is None else 0)
        if not row["counted"]:
            # Not counted: a repeated press, a late answer, or a burst answer kept excluded after review.
            column = "reviewed_excluded" if review == EXCLUDED else "late" if row["flag"] == LATE else "repeats"
            db.execute(f"INSERT INTO stats(day, branch_id, desk, tablet_id, admin_id, burst, {column}) "
                       f"VALUES (?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET {column} = {column} + excluded.{column}",
                       (*key, sign))
            return
        score, scale = row["score"], row["scale"]
        counts = [sign if score == k else 0 for k in range(1, 6)]
        nps = row["nps"]
        db.execute(
            "INSERT INTO stats(day, branch_id, desk, tablet_id, admin_id, burst, n, top2, sum_score5, "
            "c1, c2, c3, c4, c5, nps_n, nps_pro, nps_det, comments, reviewed_genuine) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT DO UPDATE SET n=n+excluded.n, top2=top2+excluded.top2, "
            "sum_score5=sum_score5+excluded.sum_score5, c1=c1+excluded.c1, c2=c2+excluded.c2, c3=c3+excluded.c3, "
            "c4=c4+excluded.c4, c5=c5+excluded.c5, nps_n=nps_n+excluded.nps_n, nps_pro=nps_pro+excluded.nps_pro, "
            "nps_det=nps_det+excluded.nps_det, comments=comments+excluded.comments, "
            "reviewed_genuine=reviewed_genuine+excluded.reviewed_genuine",
            (*key, sign, sign if is_top(score, scale) else 0, sign * score5(score, scale), *counts,
             sign if nps is not None else 0, sign if is_promoter(nps) else 0,
             sign if is_detractor(nps) else 0, sign if row["comment"] else 0,
             sign if review == GENUINE else 0))
        path = json.loads(row["path"]) if isinstance(row["path"], str) else row["path"]
        for question_id, option_id in path:
            db.execute("INSERT INTO reason_stats VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                       "ON CONFLICT DO UPDATE SET n = n + excluded.n",
                       (*key, row["survey_id"], row["version"], question_id, option_id, sign))

    def rebuild_rollups(self) -> None:
        """Recompute the roll-ups from the answers (after a bulk import or to verify them)."""
        with self._write() as db:
            db.execute("DELETE FROM stats")
            db.execute("DELETE FROM reason_stats")
            db.execute(
                "INSERT INTO stats(day, branch_id, desk, tablet_id, admin_id, burst, n, top2, sum_score5, "
                "c1, c2, c3, c4, c5, nps_n, nps_pro, nps_det, comments, repeats, reviewed_genuine, reviewed_excluded, "
                "late) "
                "SELECT day, branch_id, desk, tablet_id, admin_id, flag IS 'burst' AND review IS NULL, "
                f"SUM(counted), SUM(counted AND {SQL_TOP}), "
                f"TOTAL(CASE WHEN counted THEN {SQL_SCORE5} END), "
                "SUM(counted AND score=1), SUM(counted AND score=2), SUM(counted AND score=3), "
                "SUM(counted AND score=4), SUM(counted AND score=5), SUM(counted AND nps IS NOT NULL), "
                f"SUM(counted AND {SQL_PROMOTER}), SUM(counted AND {SQL_DETRACTOR}), "
                "SUM(counted AND comment IS NOT NULL), "
                "SUM(NOT counted AND review IS NOT 'excluded' AND flag IS NOT 'late'), "
                "SUM(counted AND review IS 'genuine'), SUM(NOT counted AND review IS 'excluded'), "
                "SUM(NOT counted AND flag IS 'late' AND review IS NOT 'excluded') "
                "FROM answers GROUP BY 1, 2, 3, 4, 5, 6")
            db.execute(
                "INSERT INTO reason_stats SELECT a.day, a.branch_id, a.desk, a.tablet_id, a.admin_id, "
                "a.flag IS 'burst' AND a.review IS NULL, a.survey_id, a.version, json_extract(p.value, '$[0]'), "
                "json_extract(p.value, '$[1]'), COUNT(*) FROM answers a, json_each(a.path) p "
                "WHERE a.counted = 1 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10")

    # --- review of bursts --------------------------------------------------------------------
    _BURST_SELECT = (
        "SELECT b.id, b.tablet_id, t.label, MIN(a.branch_id), MIN(a.desk), b.main, MAX(a.survey_id), "
        "MAX(a.version), MIN(a.answered_at), MAX(a.answered_at), COUNT(a.uuid), GROUP_CONCAT(DISTINCT a.admin_id), "
        "b.created_at, b.decision, b.reviewed_at, b.reviewed_by, b.reviewer_id, b.answers_reviewed "
        "FROM bursts b JOIN answers a ON a.burst_id = b.id LEFT JOIN tablets t ON t.id = b.tablet_id ")

    @staticmethod
    def _burst_dict(r) -> dict:
        return {"id": r[0], "tablet_id": r[1], "tablet_label": r[2], "branch_id": r[3], "desk": r[4], "main": r[5],
                "survey_id": r[6], "version": r[7], "first_at": r[8], "last_at": r[9], "answers": r[10],
                "admin_ids": sorted(int(x) for x in str(r[11]).split(",")) if r[11] is not None else [],
                "created_at": r[12], "decision": r[13], "reviewed_at": r[14], "reviewed_by": r[15],
                "reviewer_id": r[16], "answers_reviewed": r[17]}

    def burst(self, burst_id: int) -> dict | None:
        row = self._db().execute(self._BURST_SELECT + "WHERE b.id=? GROUP BY b.id", (burst_id,)).fetchone()
        return self._burst_dict(row) if row else None

    def pending_bursts(self, limit: int = 20, offset: int = 0) -> tuple[int, list[dict]]:
        """(how many bursts wait for review, one page of them, newest last answer first)."""
        db = self._db()
        total = db.execute("SELECT COUNT(*) FROM bursts b WHERE decision IS NULL AND "
                           "EXISTS (SELECT 1 FROM answers a WHERE a.burst_id = b.id)").fetchone()[0]
        rows = db.execute(self._BURST_SELECT + "WHERE b.decision IS NULL GROUP BY b.id "
                          "ORDER BY MAX(a.answered_at) DESC, b.id DESC LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        return total, [self._burst_dict(r) for r in rows]

    def reviewed_bursts(self, limit: int = 10) -> list[dict]:
        rows = self._db().execute(self._BURST_SELECT + "WHERE b.decision IS NOT NULL GROUP BY b.id "
                                  "ORDER BY b.reviewed_at DESC, b.id DESC LIMIT ?", (limit,)).fetchall()
        return [self._burst_dict(r) for r in rows]

    def review_burst(self, burst_id: int, decision: str, reviewer: str, reviewer_id: int | None = None,
                     expected_answers: int | None = None, now: float | None = None) -> dict:
        """Record a manager's decision on a pending burst, in one transaction: ``genuine`` makes its
        answers ordinary counted answers, ``excluded`` takes them out of every count. The answers
        keep their ``burst`` flag; the roll-ups move exactly. ``expected_answers`` is the number
        the manager saw: if more arrived since, nothing is decided. Returns the burst as recorded."""
        if decision not in REVIEW_DECISIONS:
            raise BurstReviewError("bad_decision", f"decision must be one of {', '.join(REVIEW_DECISIONS)}")
        now = time.time() if now is None else now
        with self._write() as db:
            burst = db.execute("SELECT decision FROM bursts WHERE id=?", (burst_id,)).fetchone()
            uuids = [r[0] for r in db.execute("SELECT uuid FROM answers WHERE burst_id=? ORDER BY answered_at",
                                              (burst_id,))]
            if burst is None or not uuids:
                raise BurstReviewError("unknown_burst", f"there is no burst {burst_id}")
            if burst[0] is not None:
                raise BurstReviewError("already_reviewed", f"burst {burst_id} was already reviewed: {burst[0]}")
            if expected_answers is not None and expected_answers != len(uuids):
                raise BurstReviewError("burst_changed", f"burst {burst_id} now has {len(uuids)} answers, "
                                                        f"not {expected_answers}")
            for uuid in uuids:
                member = self._row(db, uuid)
                self._rollup(db, member, -1)
                member["review"] = decision
                if decision == EXCLUDED:
                    member["counted"] = 0
                # forwarded_at cleared: the hub counted these answers as flagged; it must learn the decision.
                db.execute("UPDATE answers SET review=?, counted=?, forwarded_at=NULL WHERE uuid=?",
                           (decision, member["counted"], uuid))
                self._rollup(db, member, +1)
            db.execute("UPDATE bursts SET decision=?, reviewed_at=?, reviewed_by=?, reviewer_id=?, answers_reviewed=? "
                       "WHERE id=?", (decision, now, reviewer, reviewer_id, len(uuids), burst_id))
        return self.burst(burst_id)

    def answer(self, uuid: str) -> dict | None:
        db = self._db()
        if not db.execute("SELECT 1 FROM answers WHERE uuid=?", (uuid,)).fetchone():
            return None
        return self._row(db, uuid)

    def answers(self, where: str = "1", params: Iterable = ()) -> list[dict]:
        rows = self._db().execute(f"SELECT {', '.join(self._ROW_COLUMNS)} FROM answers WHERE {where} "
                                  "ORDER BY answered_at", tuple(params)).fetchall()
        return [dict(zip(self._ROW_COLUMNS, r)) for r in rows]

    def count_answers(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def rejections(self, limit: int = 50) -> list[dict]:
        rows = self._db().execute("SELECT at, tablet_id, uuid, reason FROM rejections ORDER BY id DESC LIMIT ?",
                                  (limit,)).fetchall()
        return [{"at": r[0], "tablet_id": r[1], "uuid": r[2], "reason": r[3]} for r in rows]

    # --- forwarding seam (the MQTT agent plugs in here) --------------------------------------
    def pending_for_forwarding(self, limit: int = 500) -> list[dict]:
        """Answers the monitoring hub does not have yet, oldest received first. Comments are
        already masked. Call ``mark_forwarded`` with their UUIDs once the hub acknowledged."""
        rows = self._db().execute(
            f"SELECT {', '.join(self._ROW_COLUMNS)} FROM answers WHERE forwarded_at IS NULL "
            "ORDER BY received_at LIMIT ?", (limit,)).fetchall()
        result = []
        for r in rows:
            row = dict(zip(self._ROW_COLUMNS, r))
            row["path"] = json.loads(row["path"])
            result.append(row)
        return result

    def count_pending_forwarding(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM answers WHERE forwarded_at IS NULL").fetchone()[0]

    def mark_forwarded(self, uuids: Iterable[str], at: float | None = None) -> int:
        at = time.time() if at is None else at
        with self._write() as db:
            cur = db.executemany("UPDATE answers SET forwarded_at=? WHERE uuid=? AND forwarded_at IS NULL",
                                 [(at, u) for u in uuids])
            return cur.rowcount

    # --- attract-loop media ------------------------------------------------------------------
    def add_media(self, filename: str, kind: str, alt_uk: str, alt_en: str, duration_s: int, size: int) -> int:
        with self._write() as db:
            position = db.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM media").fetchone()[0]
            cur = db.execute("INSERT INTO media(filename, kind, alt_uk, alt_en, duration_s, position, size, "
                             "created_at) VALUES (?,?,?,?,?,?,?,?)",
                             (filename, kind, alt_uk, alt_en, duration_s, position, size, time.time()))
            return cur.lastrowid

    def media(self) -> list[dict]:
        rows = self._db().execute("SELECT id, filename, kind, alt_uk, alt_en, duration_s, size FROM media "
                                  "ORDER BY position, id").fetchall()
        return [{"id": r[0], "filename": r[1], "kind": r[2], "alt": {"uk": r[3], "en": r[4]},
                 "duration_s": r[5], "size": r[6]} for r in rows]

    def remove_media(self, media_id: int) -> str | None:
        with self._write() as db:
            row = db.execute("SELECT filename FROM media WHERE id=?", (media_id,)).fetchone()
            db.execute("DELETE FROM media WHERE id=?", (media_id,))
        return row[0] if row else None


def _is_number(value: Any) -> bool:
    """A finite number of seconds (JSON may carry integers of any size: those are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 1e15 if isinstance(value, int) else math.isfinite(value) and abs(value) < 1e15


def _is_id(value: Any) -> bool:
    """A row id SQLite can hold (a larger integer from JSON would make the query fail)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2 ** 62


def _short(value: Any) -> str:
    """A value from a tablet quoted in an error message: short and printable."""
    text = clean_text(value if isinstance(value, str) else repr(value), multiline=False)
    return repr(text[:40] + ("…" if len(text) > 40 else ""))


__all__ = ["SurveyStore", "Tablet", "Administrator", "Shift", "Rejected", "SurveyInputError", "BurstReviewError",
           "DefinitionError", "token_hash", "MAX_BATCH", "SCHEMA_VERSION"]
