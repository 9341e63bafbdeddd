"""The daily roll-ups the reports read (``stats``, ``reason_stats``), kept in step with the answers
inside the transaction that changes them; ``rebuild`` recomputes them from the answers."""
from __future__ import annotations

import json
import sqlite3

from terminal.surveys.antigaming import BURST, EXCLUDED, GENUINE, LATE
from terminal.surveys.scoring import (SQL_DETRACTOR, SQL_PROMOTER, SQL_SCORE5, SQL_TOP, is_detractor,
                                      is_promoter, is_top, score5)

ANSWER_COLUMNS = ("uuid", "tablet_id", "branch_id", "desk", "survey_id", "version", "shift_id", "admin_id",
                  "answered_at", "day", "received_at", "main", "score", "scale", "path", "nps", "comment",
                  "lang", "counted", "flag", "repeat_of", "forwarded_at", "burst_id", "review", "sent_at",
                  "tablet_answered_at", "claimed_shift_id")
ANSWER_SELECT = f"SELECT {', '.join(ANSWER_COLUMNS)} FROM answers "


def answer_row(db: sqlite3.Connection, uuid: str) -> dict:
    """One stored answer as a dict of its columns (``path`` as stored: JSON text)."""
    return dict(zip(ANSWER_COLUMNS, db.execute(ANSWER_SELECT + "WHERE uuid=?", (uuid,)).fetchone()))


def add(db: sqlite3.Connection, row: dict, sign: int) -> None:
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


def rebuild(db: sqlite3.Connection) -> None:
    """Recompute the roll-ups from the answers (inside the caller's write)."""
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
