"""Bursts of identical answers (see ``antigaming``): their identity, and a manager's review, which
is recorded on the burst and on each answer (``review``) so the original ``flag`` is never
rewritten."""
from __future__ import annotations

import sqlite3
import time

from terminal.surveys import rollups
from terminal.surveys.antigaming import EXCLUDED, REVIEW_DECISIONS
from terminal.surveys.database import SurveyDatabase
from terminal.surveys.errors import BurstReviewError

_SELECT = (
    "SELECT b.id, b.tablet_id, t.label, MIN(a.branch_id), MIN(a.desk), b.main, MAX(a.survey_id), "
    "MAX(a.version), MIN(a.answered_at), MAX(a.answered_at), COUNT(a.uuid), GROUP_CONCAT(DISTINCT a.admin_id), "
    "b.created_at, b.decision, b.reviewed_at, b.reviewed_by, b.reviewer_id, b.answers_reviewed "
    "FROM bursts b JOIN answers a ON a.burst_id = b.id LEFT JOIN tablets t ON t.id = b.tablet_id ")


def _as_dict(r) -> dict:
    return {"id": r[0], "tablet_id": r[1], "tablet_label": r[2], "branch_id": r[3], "desk": r[4], "main": r[5],
            "survey_id": r[6], "version": r[7], "first_at": r[8], "last_at": r[9], "answers": r[10],
            "admin_ids": sorted(int(x) for x in str(r[11]).split(",")) if r[11] is not None else [],
            "created_at": r[12], "decision": r[13], "reviewed_at": r[14], "reviewed_by": r[15],
            "reviewer_id": r[16], "answers_reviewed": r[17]}


def burst_for(db: sqlite3.Connection, tablet_id: int, main: str, run: list[str], now: float) -> int:
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


class BurstReviews:
    def __init__(self, db: SurveyDatabase):
        self.db = db

    def burst(self, burst_id: int) -> dict | None:
        row = self.db.query(_SELECT + "WHERE b.id=? GROUP BY b.id", (burst_id,)).fetchone()
        return _as_dict(row) if row else None

    def pending(self, limit: int = 20, offset: int = 0) -> tuple[int, list[dict]]:
        """(how many bursts wait for review, one page of them, newest last answer first)."""
        db = self.db.reader()
        total = db.execute("SELECT COUNT(*) FROM bursts b WHERE decision IS NULL AND "
                           "EXISTS (SELECT 1 FROM answers a WHERE a.burst_id = b.id)").fetchone()[0]
        rows = db.execute(_SELECT + "WHERE b.decision IS NULL GROUP BY b.id "
                          "ORDER BY MAX(a.answered_at) DESC, b.id DESC LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        return total, [_as_dict(r) for r in rows]

    def reviewed(self, limit: int = 10) -> list[dict]:
        rows = self.db.query(_SELECT + "WHERE b.decision IS NOT NULL GROUP BY b.id "
                             "ORDER BY b.reviewed_at DESC, b.id DESC LIMIT ?", (limit,)).fetchall()
        return [_as_dict(r) for r in rows]

    def review(self, burst_id: int, decision: str, reviewer: str, reviewer_id: int | None = None,
               expected_answers: int | None = None, now: float | None = None) -> dict:
        """Record a manager's decision on a pending burst, in one transaction: ``genuine`` makes its
        answers ordinary counted answers, ``excluded`` takes them out of every count. The answers
        keep their ``burst`` flag; the roll-ups move exactly. ``expected_answers`` is the number
        the manager saw: if more arrived since, nothing is decided. Returns the burst as recorded."""
        if decision not in REVIEW_DECISIONS:
            raise BurstReviewError("bad_decision", f"decision must be one of {', '.join(REVIEW_DECISIONS)}")
        now = time.time() if now is None else now

        def record(db) -> None:
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
                member = rollups.answer_row(db, uuid)
                rollups.add(db, member, -1)
                member["review"] = decision
                if decision == EXCLUDED:
                    member["counted"] = 0
                # forwarded_at cleared: the hub counted these answers as flagged; it must learn the decision.
                db.execute("UPDATE answers SET review=?, counted=?, forwarded_at=NULL WHERE uuid=?",
                           (decision, member["counted"], uuid))
                rollups.add(db, member, +1)
            db.execute("UPDATE bursts SET decision=?, reviewed_at=?, reviewed_by=?, reviewer_id=?, answers_reviewed=? "
                       "WHERE id=?", (decision, now, reviewer, reviewer_id, len(uuids), burst_id))
        self.db.write(record)
        return self.burst(burst_id)
