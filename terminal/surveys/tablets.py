"""Desk tablets: registration, their secret tokens (stored hashed), revocation."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from terminal.surveys.antigaming import clean_text
from terminal.surveys.database import SurveyDatabase
from terminal.surveys.errors import SurveyInputError
from terminal.surveys.versions import SurveyVersions


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


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_COLUMNS = "id, label, branch_id, desk, survey_id, created_at, revoked_at, last_seen_at"


class TabletRegistry:
    def __init__(self, db: SurveyDatabase, versions: SurveyVersions):
        self.db = db
        self.versions = versions

    def register(self, label: str, branch_id: str, desk: str, survey_id: str) -> tuple[Tablet, str]:
        label, desk = clean_text(label, multiline=False), clean_text(desk, multiline=False)
        if not label or len(label) > 60:
            raise SurveyInputError("label: 1–60 characters")
        if not desk or len(desk) > 40:
            raise SurveyInputError("desk: 1–40 characters")
        if self.versions.current(survey_id) is None:
            raise SurveyInputError(f"unknown survey {survey_id!r}")
        token = secrets.token_urlsafe(24)
        now = self.db.now()
        tablet_id = self.db.write(lambda db: db.execute(
            "INSERT INTO tablets(label, branch_id, desk, survey_id, token_hash, created_at) VALUES (?,?,?,?,?,?)",
            (label, branch_id, desk, survey_id, token_hash(token), now)).lastrowid)
        return self.tablet(tablet_id), token

    def reissue_token(self, tablet_id: int) -> str:
        """A new token for a lost or leaked link; the old token stops working at once."""
        token = secrets.token_urlsafe(24)

        def reissue(db) -> None:
            cur = db.execute("UPDATE tablets SET token_hash=?, revoked_at=NULL WHERE id=?",
                             (token_hash(token), tablet_id))
            if cur.rowcount != 1:
                raise SurveyInputError("no such tablet")
        self.db.write(reissue)
        return token

    def revoke(self, tablet_id: int) -> None:
        now = self.db.now()

        def revoke(db) -> None:
            db.execute("UPDATE tablets SET revoked_at=? WHERE id=? AND revoked_at IS NULL", (now, tablet_id))
            db.execute("UPDATE shifts SET ended_at=? WHERE tablet_id=? AND ended_at IS NULL", (now, tablet_id))
        self.db.write(revoke)
        self.db.clock.touch()

    def seen(self, db, tablet_id: int, now: float) -> None:
        """Inside a write: the tablet talked to the server at ``now``."""
        db.execute("UPDATE tablets SET last_seen_at=? WHERE id=?", (now, tablet_id))

    def tablet(self, tablet_id: int) -> Tablet | None:
        row = self.db.query(f"SELECT {_COLUMNS} FROM tablets WHERE id=?", (tablet_id,)).fetchone()
        return Tablet(*row) if row else None

    def by_token(self, token: str) -> Tablet | None:
        """The tablet a token belongs to, revoked ones included (the caller refuses those)."""
        if not token or len(token) > 200:
            return None
        row = self.db.query(f"SELECT {_COLUMNS} FROM tablets WHERE token_hash=?", (token_hash(token),)).fetchone()
        return Tablet(*row) if row else None

    def all(self) -> list[Tablet]:
        return [Tablet(*r) for r in self.db.query(f"SELECT {_COLUMNS} FROM tablets ORDER BY branch_id, desk, id")]

    def desks(self) -> list[tuple[str, str]]:
        return self.db.query("SELECT DISTINCT branch_id, desk FROM tablets ORDER BY 1, 2").fetchall()
