"""The forwarding outbox, the seam for the monitoring agent: ``pending(limit)`` returns answers
the hub does not have yet, ``mark_forwarded(uuids)`` records that it has them. An answer whose
flag or review changes is pending again (its ``forwarded_at`` is cleared)."""
from __future__ import annotations

import json
import time
from typing import Iterable

from terminal.surveys import rollups
from terminal.surveys.database import SurveyDatabase


class ForwardingOutbox:
    def __init__(self, db: SurveyDatabase):
        self.db = db

    def pending(self, limit: int = 500) -> list[dict]:
        """Answers the monitoring hub does not have yet, oldest received first. Comments are
        already masked. Call ``mark_forwarded`` with their UUIDs once the hub acknowledged."""
        rows = self.db.query(rollups.ANSWER_SELECT + "WHERE forwarded_at IS NULL ORDER BY received_at LIMIT ?",
                             (limit,)).fetchall()
        result = []
        for r in rows:
            row = dict(zip(rollups.ANSWER_COLUMNS, r))
            row["path"] = json.loads(row["path"])
            result.append(row)
        return result

    def count_pending(self) -> int:
        return self.db.query("SELECT COUNT(*) FROM answers WHERE forwarded_at IS NULL").fetchone()[0]

    def mark_forwarded(self, uuids: Iterable[str], at: float | None = None) -> int:
        at = time.time() if at is None else at
        pairs = [(at, u) for u in uuids]
        return self.db.write(lambda db: db.executemany(
            "UPDATE answers SET forwarded_at=? WHERE uuid=? AND forwarded_at IS NULL", pairs).rowcount)
