"""Staff PINs, roles, server-side service-mode sessions, PIN-guessing limits and the audit log
(SQLite in the instance folder).

PINs
    ``valid_pin`` is the one PIN rule of the appliance (service mode and the desk administrators
    of the survey tablets): 6–12 ASCII digits. ``str.isdigit`` is not used because it accepts
    Arabic-Indic digits, superscripts and other Unicode digits that no keypad types.
    Staff seeded from ``SERVICE_PINS`` are flagged ``must_change``: the sample PINs are printed in
    the README, so service mode lets such a person do nothing but choose a new PIN.

Sessions
    The browser's cookie holds only a random session id; the ``staff_sessions`` table holds its
    SHA-256 (a copy of the database does not reveal live ids), the person, the client address and
    when it was created and last used. Every service-mode request looks the id up, so ending a row
    ends the session for every copy of the cookie at once. Logout, deactivation and a PIN change
    end *all* open sessions of that person.
    Idle time is measured with the wall clock (it must survive a restart, which
    ``time.monotonic`` does not). A clock that jumps forward only ends sessions early. A clock
    that jumps backwards would make ``last_seen`` lie in the future and stretch the idle window by
    the size of the jump, so a session whose ``last_seen`` is more than ``CLOCK_SLACK_S`` ahead of
    now is ended (reason ``clock``): after a backwards jump staff log in again, nothing more.

PIN guessing
    A login names the person (chosen on the screen) and gives a PIN. Wrong PINs are counted in
    the ``pin_failures`` table by the appliance's one lockout (``terminal/attempts.py``), so the
    counts survive a restart:
      * per staff member *and* scope — ``local`` (loopback: the kiosk's own screen) or ``remote``
        (desk browsers on the LAN) — at most ``MAX_FAILURES`` per ``LOCKOUT_WINDOW_S``. A flood
        from the LAN therefore locks that person out of remote logins only; the administrator
        standing at the kiosk screen still logs in.
      * per remote client address, at most ``MAX_CLIENT_FAILURES`` per window, whoever they guess.
        Loopback has no per-address limit: every visitor of the screen shares that address, and
        the per-person limit already bounds guessing there.
    The check and the counting happen in one ``BEGIN IMMEDIATE`` transaction that *reserves* the
    try (inserts the failure row) before the PIN is hashed; a right PIN removes its reservation
    afterwards. So N concurrent wrong guesses consume exactly N tries, and the slow PBKDF2 runs
    outside the write lock. A right PIN clears that person's failures in that scope only (knowing
    one's own PIN must not reset the count against someone else's). Failure times that lie in the
    future (the clock went back) are pulled to now, so a backwards jump cannot lengthen a lockout
    by more than one window.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

from common import storage
from terminal import attempts

ROLES = ("admin", "cashier", "technician", "manager")
PIN_ITERATIONS = 60_000
PIN_MIN, PIN_MAX = 6, 12
MAX_FAILURES = 5            # wrong PINs per person and scope (local/remote) per window
MAX_CLIENT_FAILURES = 10    # wrong PINs per remote client address per window
LOCKOUT_WINDOW_S = attempts.WINDOW_S
SESSION_HISTORY_S = 90 * 86400   # ended sessions older than this are deleted
CLOCK_SLACK_S = attempts.CLOCK_SLACK_S
FAILURES = attempts.Attempts("pin_failures")   # keys: staff:<id>:<scope>, client:<address>

SCHEMA = """
CREATE TABLE IF NOT EXISTS staff (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
  pin_salt BLOB NOT NULL, pin_hash BLOB NOT NULL, active INTEGER NOT NULL DEFAULT 1,
  created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY, at REAL NOT NULL, staff_id INTEGER, role TEXT,
  action TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS staff_sessions (
  id_hash BLOB PRIMARY KEY, staff_id INTEGER NOT NULL, client TEXT NOT NULL,
  created_at REAL NOT NULL, last_seen REAL NOT NULL, ended_at REAL, end_reason TEXT);
CREATE INDEX IF NOT EXISTS staff_sessions_open ON staff_sessions(staff_id) WHERE ended_at IS NULL;
-- failures were counted here before the one lockout (terminal/attempts.py) took over
DROP TABLE IF EXISTS login_failures;
""" + attempts.schema("pin_failures")


def _add_must_change(db: sqlite3.Connection) -> None:
    """Staff seeded with a printed sample PIN must change it (databases made before that rule)."""
    if "must_change" not in {row[1] for row in db.execute("PRAGMA table_info(staff)")}:
        db.execute("ALTER TABLE staff ADD COLUMN must_change INTEGER NOT NULL DEFAULT 0")


# user_version 0 is also every file made before versions were counted: both steps are harmless
# on a file that already has them.
MIGRATIONS = (SCHEMA, _add_must_change)


@dataclass(frozen=True)
class StaffMember:
    id: int
    name: str
    role: str
    must_change: bool = False


@dataclass(frozen=True)
class LoginResult:
    """What one login attempt came to. ``staff`` is set on success; ``locked_s`` > 0 when the
    attempt was refused unchecked; ``lockout`` names the counters this failure filled up."""
    staff: StaffMember | None = None
    locked_s: int = 0
    lockout: tuple[str, ...] = ()
    checked: bool = False


def hash_pin(pin: str, salt: bytes) -> bytes:
    """PBKDF2 of a staff or desk-administrator PIN (shared by service mode and surveys)."""
    return hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, PIN_ITERATIONS)


def valid_pin(pin: object) -> bool:
    """The PIN rule of the whole appliance: 6–12 ASCII digits, nothing else."""
    return isinstance(pin, str) and re.fullmatch(rf"[0-9]{{{PIN_MIN},{PIN_MAX}}}", pin) is not None


def is_published_sample(pin: str, service_pins: str) -> bool:
    """Whether ``pin`` is one of the seeded sample PINs (SERVICE_PINS, "role:pin,…"): they are
    printed in the README, so never a real PIN."""
    return any(pin == sample.strip() for _, _, sample in (p.partition(":") for p in service_pins.split(",")))


def client_scope(client: str | None) -> str:
    """``local`` for the kiosk's own screen (loopback), ``remote`` for anything else."""
    try:
        address = ipaddress.ip_address(client or "")
    except ValueError:
        return "remote"
    mapped = getattr(address, "ipv4_mapped", None)   # ::ffff:127.0.0.1 from a dual-stack socket
    return "local" if (mapped or address).is_loopback else "remote"


def _session_key(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class StaffStore:
    """Writes come from the web server's threads: one writer thread runs them, each as one
    ``BEGIN IMMEDIATE`` transaction (which also keeps a second process, a ``cnap`` command, from
    interleaving a read-then-write decision). Reads open a short-lived connection."""

    def __init__(self, path: str, clock=time.time):
        self.path = path
        self.clock = clock   # wall time; tests step it to check idle expiry and clock jumps
        with self._read() as db:
            storage.migrate(db, MIGRATIONS, name=f"staff database {path}")
        self._writer = storage.SingleWriter(lambda: storage.connect(path, busy_timeout_s=10),
                                            name="staff-writer", label="staff database").start()

    def close(self) -> None:
        self._writer.close()

    def _write(self, fn):
        """``fn(db)`` in one write transaction on the writer thread; its result or its exception."""
        return self._writer.write(fn)

    @contextlib.contextmanager
    def _read(self):
        with storage.opened(self.path, busy_timeout_s=10) as db:
            yield db

    # --- staff ---------------------------------------------------------------------------
    def seed(self, pairs: str, must_change: bool = True) -> None:
        """Create the first staff from ``role:PIN,role:PIN`` while the table is empty; they must
        choose their own PIN at first login. On a database seeded before that rule existed, a
        seeded member still holding the seeded PIN gets the flag too."""
        parsed = []
        for pair in filter(None, (p.strip() for p in pairs.split(","))):
            role, _, pin = pair.partition(":")
            if role not in ROLES or not valid_pin(pin):
                raise ValueError(f"SERVICE_PINS: {role!r} needs a known role and a "
                                 f"{PIN_MIN}–{PIN_MAX} digit PIN")
            parsed.append((role, pin))
        def seed(db) -> None:
            if not db.execute("SELECT COUNT(*) FROM staff").fetchone()[0]:
                for role, pin in parsed:
                    salt = secrets.token_bytes(16)
                    db.execute("INSERT INTO staff(name, role, pin_salt, pin_hash, created_at, must_change) "
                               "VALUES (?,?,?,?,?,?)",
                               (role, role, salt, hash_pin(pin, salt), self.clock(), int(must_change)))
                return
            if must_change:
                for role, pin in parsed:
                    for staff_id, salt, digest in db.execute(
                            "SELECT id, pin_salt, pin_hash FROM staff WHERE name=? AND role=? AND must_change=0",
                            (role, role)).fetchall():
                        if hmac.compare_digest(hash_pin(pin, salt), digest):
                            db.execute("UPDATE staff SET must_change=1 WHERE id=?", (staff_id,))
        self._write(seed)

    def add(self, name: str, role: str, pin: str) -> StaffMember:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if not valid_pin(pin):
            raise ValueError(f"PIN must be {PIN_MIN}–{PIN_MAX} digits")
        salt = secrets.token_bytes(16)
        digest = hash_pin(pin, salt)
        staff_id = self._write(lambda db: db.execute(
            "INSERT INTO staff(name, role, pin_salt, pin_hash, created_at) VALUES (?,?,?,?,?)",
            (name, role, salt, digest, self.clock())).lastrowid)
        return StaffMember(staff_id, name, role)

    def members(self, active_only: bool = False) -> list[dict]:
        with self._read() as db:
            rows = db.execute("SELECT id, name, role, active FROM staff "
                              + ("WHERE active=1 " if active_only else "")
                              + "ORDER BY active DESC, role, name").fetchall()
        return [{"id": i, "name": n, "role": r, "active": bool(a)} for i, n, r, a in rows]

    def member(self, staff_id: int) -> StaffMember | None:
        with self._read() as db:
            row = db.execute("SELECT id, name, role, must_change FROM staff WHERE id=? AND active=1",
                             (staff_id,)).fetchone()
        return StaffMember(row[0], row[1], row[2], bool(row[3])) if row else None

    def set_pin(self, staff_id: int, pin: str, reason: str = "pin_changed") -> None:
        """New PIN (no longer to be changed); every open session of that person ends."""
        if not valid_pin(pin):
            raise ValueError(f"PIN must be {PIN_MIN}–{PIN_MAX} digits")
        salt = secrets.token_bytes(16)
        digest = hash_pin(pin, salt)
        def set_pin(db) -> None:
            if not db.execute("UPDATE staff SET pin_salt=?, pin_hash=?, must_change=0 WHERE id=?",
                              (salt, digest, staff_id)).rowcount:
                raise ValueError("no such staff member")
            self._end_all(db, staff_id, reason)
        self._write(set_pin)

    def set_active(self, staff_id: int, active: bool) -> None:
        def set_active(db) -> None:
            if not active:
                admins = db.execute("SELECT COUNT(*) FROM staff WHERE role='admin' AND active=1 AND id<>?",
                                    (staff_id,)).fetchone()[0]
                role = db.execute("SELECT role FROM staff WHERE id=?", (staff_id,)).fetchone()
                if role and role[0] == "admin" and admins == 0:
                    raise ValueError("the last active administrator cannot be deactivated")
            if not db.execute("UPDATE staff SET active=? WHERE id=?", (int(active), staff_id)).rowcount:
                raise ValueError("no such staff member")
            if not active:
                self._end_all(db, staff_id, "deactivated")
        self._write(set_active)

    def pin_matches(self, staff_id: int, pin: str) -> bool:
        with self._read() as db:
            row = db.execute("SELECT pin_salt, pin_hash FROM staff WHERE id=?", (staff_id,)).fetchone()
        return bool(row) and valid_pin(pin) and hmac.compare_digest(hash_pin(pin, row[0]), row[1])

    # --- login and PIN guessing ------------------------------------------------------------
    @staticmethod
    def _limits(staff_id: int | None, scope: str, client: str) -> dict[str, int]:
        """The failure counters one try of ``client`` at ``staff_id`` counts against."""
        limits = {f"staff:{staff_id}:{scope}": MAX_FAILURES} if staff_id is not None else {}
        if scope == "remote":
            limits[f"client:{client}"] = MAX_CLIENT_FAILURES
        return limits

    def login(self, staff_id: int | None, pin: str, client: str) -> LoginResult:
        """One login attempt of ``client`` (an IP address) as staff member ``staff_id``."""
        client = client or "unknown"
        scope = client_scope(client)
        now = self.clock()
        limits = self._limits(staff_id, scope, client)
        def reserve_a_try(db):
            FAILURES.tidy(db, now)
            locked = FAILURES.wait_s(db, now, limits)
            if locked:
                return locked, [], [], None
            reserved = FAILURES.reserve(db, now, limits)
            # Which counters this try fills up, should it turn out wrong (decided under the lock,
            # so concurrent tries cannot both claim it).
            fills = [("client" if key.startswith("client:") else f"staff:{scope}")
                     for key, limit in limits.items() if FAILURES.count(db, now, key) == limit]
            row = db.execute("SELECT id, name, role, must_change, pin_salt, pin_hash FROM staff "
                             "WHERE id=? AND active=1", (staff_id,)).fetchone() if staff_id is not None else None
            return 0, reserved, fills, row
        locked, reserved, fills, row = self._write(reserve_a_try)
        if locked:
            return LoginResult(locked_s=locked)
        # The slow hash runs outside the write lock; the try is already counted.
        if row and valid_pin(pin) and hmac.compare_digest(hash_pin(pin, row[4]), row[5]):
            # knowing one's own PIN clears one's own count, never a client's
            self._write(lambda db: FAILURES.forget(db, reserved, key=f"staff:{staff_id}:{scope}"))
            return LoginResult(staff=StaffMember(row[0], row[1], row[2], bool(row[3])), checked=True)
        return LoginResult(lockout=tuple(fills), checked=True)

    # --- sessions ----------------------------------------------------------------------------
    def open_session(self, staff_id: int, client: str) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        def open_session(db) -> None:
            # Ended (or long abandoned) sessions are kept a while for inquiries, not for ever.
            db.execute("DELETE FROM staff_sessions WHERE COALESCE(ended_at, last_seen)<?",
                       (now - SESSION_HISTORY_S,))
            db.execute("INSERT INTO staff_sessions(id_hash, staff_id, client, created_at, last_seen) "
                       "VALUES (?,?,?,?,?)", (_session_key(token), staff_id, client or "unknown", now, now))
        self._write(open_session)
        return token

    def check_session(self, token: str, idle_s: float) -> StaffMember | None:
        """The staff member of a live session, marking it used now; None (and the session ended)
        when it is unknown, ended, idle too long, its owner deactivated or the clock went back."""
        if not token or not isinstance(token, str):
            return None
        now = self.clock()
        key = _session_key(token)
        def check(db) -> StaffMember | None:
            row = db.execute("SELECT s.last_seen, s.ended_at, st.id, st.name, st.role, st.must_change, st.active "
                             "FROM staff_sessions s JOIN staff st ON st.id = s.staff_id WHERE s.id_hash=?",
                             (key,)).fetchone()
            if row is None or row[1] is not None:
                return None
            last_seen, _, staff_id, name, role, must_change, active = row
            reason = ("inactive" if not active else "clock" if last_seen - now > CLOCK_SLACK_S
                      else "idle" if now - last_seen > idle_s else None)
            if reason:
                db.execute("UPDATE staff_sessions SET ended_at=?, end_reason=? WHERE id_hash=?", (now, reason, key))
                return None
            if now - last_seen >= 1:   # a page's burst of requests need not write (and sync) each time
                db.execute("UPDATE staff_sessions SET last_seen=? WHERE id_hash=?", (now, key))
            return StaffMember(staff_id, name, role, bool(must_change))
        return self._write(check)

    def end_session(self, token: str, reason: str) -> None:
        now = self.clock()
        self._write(lambda db: db.execute(
            "UPDATE staff_sessions SET ended_at=?, end_reason=? WHERE id_hash=? AND ended_at IS NULL",
            (now, reason, _session_key(token))))

    def end_sessions(self, staff_id: int, reason: str) -> int:
        return self._write(lambda db: self._end_all(db, staff_id, reason))

    def _end_all(self, db, staff_id: int, reason: str) -> int:
        return db.execute("UPDATE staff_sessions SET ended_at=?, end_reason=? WHERE staff_id=? AND ended_at IS NULL",
                          (self.clock(), reason, staff_id)).rowcount

    def open_sessions(self, staff_id: int) -> int:
        with self._read() as db:
            return db.execute("SELECT COUNT(*) FROM staff_sessions WHERE staff_id=? AND ended_at IS NULL",
                              (staff_id,)).fetchone()[0]

    # --- audit -------------------------------------------------------------------------------
    def audit(self, staff: StaffMember | None, action: str, **detail) -> None:
        row = (self.clock(), staff.id if staff else None, staff.role if staff else None, action,
               json.dumps(detail, ensure_ascii=False, sort_keys=True))
        self._write(lambda db: db.execute(
            "INSERT INTO audit(at, staff_id, role, action, detail) VALUES (?,?,?,?,?)", row))

    def audit_log(self, limit: int = 200) -> list[dict]:
        with self._read() as db:
            rows = db.execute("SELECT a.at, s.name, a.role, a.action, a.detail FROM audit a "
                              "LEFT JOIN staff s ON s.id = a.staff_id ORDER BY a.id DESC LIMIT ?",
                              (limit,)).fetchall()
        return [{"at": at, "name": name, "role": role, "action": action, "detail": json.loads(detail)}
                for at, name, role, action, detail in rows]
