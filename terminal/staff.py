"""Staff PINs, roles and the audit log of service mode (SQLite in the instance folder)."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass

ROLES = ("admin", "cashier", "technician", "manager")
PIN_ITERATIONS = 60_000
MAX_FAILURES = 5
LOCKOUT_S = 60

SCHEMA = """
CREATE TABLE IF NOT EXISTS staff (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
  pin_salt BLOB NOT NULL, pin_hash BLOB NOT NULL, active INTEGER NOT NULL DEFAULT 1,
  created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY, at REAL NOT NULL, staff_id INTEGER, role TEXT,
  action TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}');
"""


@dataclass(frozen=True)
class StaffMember:
    id: int
    name: str
    role: str


def hash_pin(pin: str, salt: bytes) -> bytes:
    """PBKDF2 of a staff or desk-administrator PIN (shared by service mode and surveys)."""
    return hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, PIN_ITERATIONS)


def valid_pin(pin: str) -> bool:
    return isinstance(pin, str) and pin.isdigit() and 4 <= len(pin) <= 12


class StaffStore:
    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._failures: list[float] = []
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def seed(self, pairs: str) -> None:
        """Create the first staff from ``role:PIN,role:PIN`` while the table is empty."""
        with self._lock, self._connect() as db:
            if db.execute("SELECT COUNT(*) FROM staff").fetchone()[0]:
                return
            for pair in filter(None, (p.strip() for p in pairs.split(","))):
                role, _, pin = pair.partition(":")
                if role not in ROLES or not valid_pin(pin):
                    raise ValueError(f"SERVICE_PINS: {role!r} needs a known role and a 4–12 digit PIN")
                salt = secrets.token_bytes(16)
                db.execute("INSERT INTO staff(name, role, pin_salt, pin_hash, created_at) VALUES (?,?,?,?,?)",
                           (role, role, salt, hash_pin(pin, salt), time.time()))

    def add(self, name: str, role: str, pin: str) -> StaffMember:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if not valid_pin(pin):
            raise ValueError("PIN must be 4–12 digits")
        salt = secrets.token_bytes(16)
        with self._lock, self._connect() as db:
            cur = db.execute("INSERT INTO staff(name, role, pin_salt, pin_hash, created_at) VALUES (?,?,?,?,?)",
                             (name, role, salt, hash_pin(pin, salt), time.time()))
            return StaffMember(cur.lastrowid, name, role)

    def members(self) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT id, name, role, active FROM staff ORDER BY active DESC, role, name").fetchall()
        return [{"id": i, "name": n, "role": r, "active": bool(a)} for i, n, r, a in rows]

    def set_pin(self, staff_id: int, pin: str) -> None:
        if not valid_pin(pin):
            raise ValueError("PIN must be 4–12 digits")
        salt = secrets.token_bytes(16)
        with self._lock, self._connect() as db:
            if not db.execute("UPDATE staff SET pin_salt=?, pin_hash=? WHERE id=?",
                              (salt, hash_pin(pin, salt), staff_id)).rowcount:
                raise ValueError("no such staff member")

    def set_active(self, staff_id: int, active: bool) -> None:
        with self._lock, self._connect() as db:
            if not active:
                admins = db.execute("SELECT COUNT(*) FROM staff WHERE role='admin' AND active=1 AND id<>?",
                                    (staff_id,)).fetchone()[0]
                role = db.execute("SELECT role FROM staff WHERE id=?", (staff_id,)).fetchone()
                if role and role[0] == "admin" and admins == 0:
                    raise ValueError("the last active administrator cannot be deactivated")
            if not db.execute("UPDATE staff SET active=? WHERE id=?", (int(active), staff_id)).rowcount:
                raise ValueError("no such staff member")

    def pin_in_use(self, pin: str, except_id: int | None = None) -> bool:
        """Log-in is by PIN alone, so two people may not share one."""
        with self._connect() as db:
            rows = db.execute("SELECT id, pin_salt, pin_hash FROM staff WHERE active=1").fetchall()
        return any(i != except_id and hmac.compare_digest(hash_pin(pin, salt), digest) for i, salt, digest in rows)

    def locked_for(self, now: float | None = None) -> int:
        """Seconds left of the lockout after too many wrong PINs (0: not locked)."""
        now = time.monotonic() if now is None else now
        recent = [t for t in self._failures if now - t < LOCKOUT_S]
        self._failures = recent
        if len(recent) >= MAX_FAILURES:
            return int(LOCKOUT_S - (now - recent[-MAX_FAILURES])) + 1
        return 0

    def authenticate(self, pin: str) -> StaffMember | None:
        if self.locked_for() or not valid_pin(pin):
            if not self.locked_for():
                self._failures.append(time.monotonic())
            return None
        with self._connect() as db:
            rows = db.execute("SELECT id, name, role, pin_salt, pin_hash FROM staff WHERE active=1").fetchall()
        for staff_id, name, role, salt, digest in rows:
            if hmac.compare_digest(hash_pin(pin, salt), digest):
                self._failures.clear()
                return StaffMember(staff_id, name, role)
        self._failures.append(time.monotonic())
        return None

    def audit(self, staff: StaffMember | None, action: str, **detail) -> None:
        with self._lock, self._connect() as db:
            db.execute("INSERT INTO audit(at, staff_id, role, action, detail) VALUES (?,?,?,?,?)",
                       (time.time(), staff.id if staff else None, staff.role if staff else None, action,
                        json.dumps(detail, ensure_ascii=False, sort_keys=True)))

    def audit_log(self, limit: int = 200) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT a.at, s.name, a.role, a.action, a.detail FROM audit a "
                              "LEFT JOIN staff s ON s.id = a.staff_id ORDER BY a.id DESC LIMIT ?",
                              (limit,)).fetchall()
        return [{"at": at, "name": name, "role": role, "action": action, "detail": json.loads(detail)}
                for at, name, role, action, detail in rows]
