"""Answers from the desk tablets: validation, anti-gaming decisions, storage with their roll-ups,
and the record of what was refused.

Re-sending an answer changes nothing (the tablet-made UUID is the primary key); a batch is one
transaction, so a tablet is told "stored" only after its answers are on disk.
"""
from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
from typing import Any, Iterable

from terminal.surveys import antigaming, rollups
from terminal.surveys.antigaming import BURST, LATE, REPEAT, Recent, clean_text
from terminal.surveys.bursts import burst_for
from terminal.surveys.database import SurveyDatabase
from terminal.surveys.definitions import MAX_DEPTH
from terminal.surveys.shifts import DeskShifts
from terminal.surveys.tablets import Tablet, TabletRegistry
from terminal.surveys.versions import SurveyVersions

log = logging.getLogger("cnap.surveys")

MAX_BATCH = 500
MAX_FUTURE_S = 120          # an answer this far ahead of the server (tablet clock corrected) is refused
# How far an answer's time may lie outside its shift and still belong to it: the error of the
# tablet clock correction (network delay of the request that measured it).
SHIFT_GRACE_S = 30
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Rejected(Exception):
    def __init__(self, code: str, message: str):
        # Messages may quote what the tablet sent: short and printable, whatever it sent.
        message = clean_text(message, multiline=False)
        message = message if len(message) <= 160 else message[:159] + "…"
        self.code, self.message = code, message
        super().__init__(message)


class AnswerStore:
    def __init__(self, db: SurveyDatabase, versions: SurveyVersions, tablets: TabletRegistry, shifts: DeskShifts):
        self.db = db
        self.versions = versions
        self.tablets = tablets
        self.shifts = shifts

    def ingest(self, tablet: Tablet, answers: Any, sent_at: Any = None, now: float | None = None) -> list[dict]:
        """Store a batch from one tablet in one transaction. Returns one result per answer:
        ``stored`` (new), ``duplicate`` (already stored from this tablet: nothing changes) or
        ``rejected`` with an error code and message (logged; nothing stored changes).

        Times: ``now`` (the store's steady clock unless given) is when the server received the
        batch and is stored as ``received_at``; the tablet's ``sent_at`` and each answer's own
        ``answered_at`` are stored as the tablet said them, and ``answered_at`` corrected by the
        tablet's clock error (now − sent_at) is what reports, shifts and anti-gaming use. An answer
        corrected into the future or older than ``rules.max_offline_s`` is refused."""
        now = self.db.now() if now is None else now
        self.db.clock.touch()
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
        def store(db) -> None:
            self.tablets.seen(db, tablet.id, now)
            for i, answer in prepared:
                owner = db.execute("SELECT tablet_id FROM answers WHERE uuid=?", (answer["uuid"],)).fetchone()
                if owner is not None:
                    if owner[0] == tablet.id:
                        results[i] = {"uuid": answer["uuid"], "status": "duplicate"}
                    else:
                        results[i] = {"uuid": answer["uuid"], "status": "rejected", "error": "uuid_taken",
                                      "message": "this answer id belongs to another tablet"}
                    continue
                flags.append(self._insert(db, tablet, answer, now))
                results[i] = {"uuid": answer["uuid"], "status": "stored"}
            rejections[:] = [(now, tablet.id, (result["uuid"] or "")[:64], result["error"])
                             for result in results if result and result["status"] == "rejected"]
            if rejections:
                db.executemany("INSERT INTO rejections(at, tablet_id, uuid, reason) VALUES (?,?,?,?)", rejections)

        rejections: list[tuple] = []
        flags: list[str | None] = []
        self.db.write(store)
        late = flags.count(LATE)
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
        definition = self.versions.definition(survey_id, version) if len(survey_id) <= 64 else None
        if definition is None:
            raise Rejected("unknown_survey", f"survey {_short(survey_id)} has no version {version}")
        answered_at = raw.get("answered_at")
        if not _is_number(answered_at):
            raise Rejected("bad_time", "answered_at must be a number of seconds")
        tablet_answered_at = float(answered_at)
        answered_at = tablet_answered_at + skew
        if not math.isfinite(answered_at) or answered_at > now + MAX_FUTURE_S:
            raise Rejected("bad_time", "answered_at is after the time the batch was sent")
        if answered_at < now - self.db.rules.max_offline_s:
            raise Rejected("bad_time", f"answered_at is more than {self.db.rules.max_offline_s / 86400:g} days "
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
            shift = self.shifts.shift(shift_id) if _is_id(shift_id) else None
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
        rules = self.db.rules
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
                burst_id = burst_for(db, tablet.id, a["main"], sorted(run), now)
        row = {**a, "tablet_id": tablet.id, "branch_id": tablet.branch_id, "desk": tablet.desk,
               "day": self.db.day_of(a["answered_at"]), "received_at": now, "counted": counted, "flag": flag,
               "repeat_of": repeat_of, "path": json.dumps(a["path"], ensure_ascii=False), "burst_id": burst_id,
               "review": None}
        db.execute(
            "INSERT INTO answers(uuid, tablet_id, branch_id, desk, survey_id, version, shift_id, admin_id, "
            "answered_at, day, received_at, main, score, scale, path, nps, comment, lang, counted, flag, repeat_of, "
            "burst_id, sent_at, tablet_answered_at, claimed_shift_id) VALUES (:uuid,:tablet_id,:branch_id,:desk,"
            ":survey_id,:version,:shift_id,:admin_id,:answered_at,:day,:received_at,:main,:score,:scale,:path,:nps,"
            ":comment,:lang,:counted,:flag,:repeat_of,:burst_id,:sent_at,:tablet_answered_at,:claimed_shift_id)", row)
        rollups.add(db, row, +1)
        for uuid in burst_uuids:
            member = rollups.answer_row(db, uuid)
            rollups.add(db, member, -1)
            # Forwarded unflagged: the hub must get it again with its flag.
            db.execute("UPDATE answers SET flag=?, burst_id=?, forwarded_at=NULL WHERE uuid=?", (BURST, burst_id, uuid))
            member.update(flag=BURST, burst_id=burst_id)
            rollups.add(db, member, +1)
        return flag

    def answer(self, uuid: str) -> dict | None:
        row = self.db.query(rollups.ANSWER_SELECT + "WHERE uuid=?", (uuid,)).fetchone()
        return dict(zip(rollups.ANSWER_COLUMNS, row)) if row else None

    def answers(self, where: str = "1", params: Iterable = ()) -> list[dict]:
        rows = self.db.query(rollups.ANSWER_SELECT + f"WHERE {where} ORDER BY answered_at", tuple(params)).fetchall()
        return [dict(zip(rollups.ANSWER_COLUMNS, r)) for r in rows]

    def count(self) -> int:
        return self.db.query("SELECT COUNT(*) FROM answers").fetchone()[0]

    def rejections(self, limit: int = 50) -> list[dict]:
        rows = self.db.query("SELECT at, tablet_id, uuid, reason FROM rejections ORDER BY id DESC LIMIT ?",
                             (limit,)).fetchall()
        return [{"at": r[0], "tablet_id": r[1], "uuid": r[2], "reason": r[3]} for r in rows]

    def rebuild_rollups(self) -> None:
        """Recompute the roll-ups from the answers (after a bulk import or to verify them)."""
        self.db.write(rollups.rebuild)


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
