"""Desk administrators, their PINs (guessed against the appliance's one lockout) and shifts: the
administrator whose PIN is typed on a tablet takes that desk until the shift ends."""
from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from terminal import attempts
from terminal.staff import MAX_FAILURES, hash_pin, valid_pin
from terminal.surveys.antigaming import clean_text
from terminal.surveys.database import SurveyDatabase
from terminal.surveys.errors import SurveyInputError
from terminal.surveys.tablets import Tablet

log = logging.getLogger("cnap.surveys")

PIN_FAILURES = attempts.Attempts("pin_failures")   # keys: tablet:<id>


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


_SHIFT_SELECT = ("SELECT s.id, s.tablet_id, s.admin_id, a.name, s.started_at, s.ended_at FROM shifts s "
                 "JOIN administrators a ON a.id = s.admin_id ")


class DeskShifts:
    def __init__(self, db: SurveyDatabase):
        self.db = db

    # --- administrators
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
        digest = hash_pin(pin, salt)
        admin_id = self.db.write(lambda db: db.execute(
            "INSERT INTO administrators(name, branch_id, pin_salt, pin_hash, created_at) VALUES (?,?,?,?,?)",
            (name, branch_id, salt, digest, time.time())).lastrowid)
        return Administrator(admin_id, name, branch_id, True)

    def set_administrator_active(self, admin_id: int, active: bool) -> None:
        now = self.db.now()

        def update(db) -> None:
            db.execute("UPDATE administrators SET active=? WHERE id=?", (int(active), admin_id))
            if not active:
                db.execute("UPDATE shifts SET ended_at=? WHERE admin_id=? AND ended_at IS NULL", (now, admin_id))
        self.db.write(update)
        self.db.clock.touch()

    def administrators(self) -> list[Administrator]:
        rows = self.db.query("SELECT id, name, branch_id, active FROM administrators ORDER BY name, id")
        return [Administrator(r[0], r[1], r[2], bool(r[3])) for r in rows]

    def _match_pin(self, branch_id: str, pin: str) -> Administrator | None:
        rows = self.db.query(
            "SELECT id, name, branch_id, pin_salt, pin_hash FROM administrators "
            "WHERE active=1 AND (branch_id=? OR branch_id='' OR ?='')", (branch_id, branch_id)).fetchall()
        for admin_id, name, branch, salt, digest in rows:
            if hmac.compare_digest(hash_pin(pin, salt), digest):
                return Administrator(admin_id, name, branch, True)
        return None

    # --- PIN guessing
    # Desk-administrator PINs are guessed against the appliance's one lockout
    # (terminal/attempts.py): MAX_FAILURES wrong PINs per tablet per window, on disk, each try
    # reserved before the slow PBKDF2.
    @staticmethod
    def _pin_limits(tablet_id: int) -> dict[str, int]:
        return {f"tablet:{tablet_id}": MAX_FAILURES}

    def pin_locked_for(self, tablet_id: int) -> int:
        """Seconds until this tablet may try a PIN again (0: it may)."""
        return PIN_FAILURES.wait_s(self.db.reader(), time.time(), self._pin_limits(tablet_id))

    # --- shifts
    def start_shift(self, tablet: Tablet, pin: str, now: float | None = None) -> Shift | None:
        """The administrator whose PIN this is takes the desk; the previous shift ends. None for
        a wrong PIN or while the tablet is locked out."""
        wall = time.time()
        limits = self._pin_limits(tablet.id)

        def reserve_a_try(db) -> bool:
            PIN_FAILURES.tidy(db, wall)
            if PIN_FAILURES.wait_s(db, wall, limits):
                return False
            PIN_FAILURES.reserve(db, wall, limits)
            return True
        if not self.db.write(reserve_a_try):
            return None
        admin = self._match_pin(tablet.branch_id, pin) if valid_pin(pin) else None
        if admin is None:
            log.warning("wrong desk-administrator PIN on tablet %s", tablet.id)
            return None
        now = self.db.now() if now is None else now

        def take_the_desk(db) -> int:
            PIN_FAILURES.forget(db, key=f"tablet:{tablet.id}")
            db.execute("UPDATE shifts SET ended_at=? WHERE tablet_id=? AND ended_at IS NULL", (now, tablet.id))
            return db.execute("INSERT INTO shifts(tablet_id, admin_id, started_at) VALUES (?,?,?)",
                              (tablet.id, admin.id, now)).lastrowid
        shift_id = self.db.write(take_the_desk)
        self.db.clock.touch()
        return Shift(shift_id, tablet.id, admin.id, admin.name, now, None)

    def end_shift(self, tablet: Tablet, now: float | None = None) -> None:
        now = self.db.now() if now is None else now
        self.db.write(lambda db: db.execute(
            "UPDATE shifts SET ended_at=? WHERE tablet_id=? AND ended_at IS NULL", (now, tablet.id)))
        self.db.clock.touch()

    def current_shift(self, tablet_id: int) -> Shift | None:
        row = self.db.query(_SHIFT_SELECT + "WHERE s.tablet_id=? AND s.ended_at IS NULL ORDER BY s.id DESC LIMIT 1",
                            (tablet_id,)).fetchone()
        return Shift(*row) if row else None

    def shift(self, shift_id: int) -> Shift | None:
        row = self.db.query(_SHIFT_SELECT + "WHERE s.id=?", (shift_id,)).fetchone()
        return Shift(*row) if row else None
