"""Retention of personal data in the payment journal.

The journal keeps the payer's full surname and tax number (or passport) only as long as the bank
registry may need them: ``PERSONAL_DATA_RETENTION_DAYS`` (default 90) after the payment was
settled. Then they are replaced by their masked form (``payments.taxid.redacted_payer``):

* one ``redaction`` event on the ``retention`` stream says what was redacted (payment and event
  ids, the fields), why (retention days, the settlement cut-off), by whom and when;
* in the same transaction each affected event's ``data`` is rewritten to its masked text, which
  is first recorded in the append-only ``redactions`` table — the only UPDATE the journal's
  triggers permit (``payments/journal.py``);
* ``secure_delete`` zeroes the old bytes inside the database pages, and a WAL checkpoint
  (TRUNCATE) leaves no old page image in the -wal file.

Payments not yet settled, or settled within the retention, are untouched. Money, states and
receipt numbers never change, so the till, the shift reports and the registry replay a redacted
journal to the same totals; the registry says plainly that a payer was redacted.

The kiosk runs this at start-up and every ``RUN_EVERY_S`` through the journal's single writer
(``Journal.call``); ``cnap payments redact [--dry-run]`` runs it on the journal file directly
(SQLite's own lock keeps it apart from a running kiosk's writer).
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from payments.journal import Journal, connect
from payments.machine import Event, Rejected, handle
from payments.taxid import redacted_payer

log = logging.getLogger("cnap.payments.retention")

STREAM = "retention"
KIND = "redaction"
FIELDS = ["payer.surname", "payer.id_value"]
DAY_S = 86400.0
RUN_EVERY_S = 3600.0  # a redaction is due at most this much later than the retention says
CHECKPOINT_BUSY_MS = 2000  # a long reader (registry export) must not stall payments for longer
CHUNK = 500


@dataclass
class Result:
    payments: list[str] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    redaction_id: int | None = None
    cutoff: float = 0.0
    dry_run: bool = False
    checkpointed: bool | None = None  # None: not tried (dry run)


def needs_redaction(data: dict) -> bool:
    payer = data.get("payer") if isinstance(data, dict) else None
    return isinstance(payer, dict) and bool(payer.get("surname") or payer.get("id_value")) \
        and not payer.get("redacted")


def redacted_data(data: dict) -> dict:
    return dict(data, payer=redacted_payer(data["payer"]))


def _payload(data: dict) -> str:
    # the journal's own encoding (Journal.submit), so a redacted event reads like any other
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _chunks(items: list, size: int = CHUNK):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def due(db: sqlite3.Connection, cutoff: float) -> tuple[list[str], list[int]]:
    """Payments settled before ``cutoff`` whose events still carry personal data, and those
    events. A payment created after the cut-off cannot have settled before it, so only the
    older, unredacted payments are folded: cheap enough to run every hour."""
    candidates = [row[0] for row in db.execute(
        "SELECT payment_id FROM events WHERE kind = 'created' AND at < ? "
        "AND json_extract(data, '$.payer.redacted') IS NULL "
        "AND (json_extract(data, '$.payer.surname') IS NOT NULL "
        "     OR json_extract(data, '$.payer.id_value') IS NOT NULL) "
        "GROUP BY payment_id ORDER BY MIN(id)", (cutoff,))]
    payments: list[str] = []
    events: list[int] = []
    for chunk in _chunks(candidates):
        marks = ",".join("?" * len(chunk))
        rows = db.execute(f"SELECT id, at, payment_id, kind, data FROM events WHERE payment_id IN ({marks}) "
                          "ORDER BY id", chunk).fetchall()
        states: dict = {}
        settled_at: dict[str, float] = {}
        personal: dict[str, list[int]] = {}
        for event_id, at, pid, kind, data in rows:
            data = json.loads(data)
            if needs_redaction(data):
                personal.setdefault(pid, []).append(event_id)
            try:
                old = states.get(pid)
                new, _ = handle(old, Event(kind, data))
            except Rejected:
                continue
            states[pid] = new
            if not new.settled:
                settled_at.pop(pid, None)
            elif pid not in settled_at:
                settled_at[pid] = at  # when it became settled (the last time)
        for pid in chunk:
            if pid in settled_at and settled_at[pid] < cutoff and personal.get(pid):
                payments.append(pid)
                events.extend(personal[pid])
    return payments, events


def _checkpoint(db: sqlite3.Connection) -> bool:
    """Copy the WAL into the database and truncate it to zero bytes, so no old page image of a
    redacted event stays in the -wal file."""
    db.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
    try:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        db.execute("PRAGMA busy_timeout=30000")
    if busy:
        log.warning("retention: WAL checkpoint blocked by a reader; it is tried again on the next run")
    return not busy


def _apply(db: sqlite3.Connection, *, cutoff: float, days: int, by: str, at: float, boot: int,
           dry_run: bool) -> Result:
    result = Result(cutoff=cutoff, dry_run=dry_run)
    payments, events = due(db, cutoff)
    result.payments, result.events = payments, events
    if dry_run:
        return result
    if events:
        db.execute("PRAGMA secure_delete=ON")  # zero the old bytes in the pages, not just unlink them
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = []
            for chunk in _chunks(events):
                marks = ",".join("?" * len(chunk))
                rows += db.execute(f"SELECT id, data FROM events WHERE id IN ({marks}) ORDER BY id", chunk).fetchall()
            changes = [(event_id, redacted_data(json.loads(data))) for event_id, data in rows
                       if needs_redaction(json.loads(data))]
            if changes:
                record = {"payments": payments, "events": [event_id for event_id, _ in changes],
                          "fields": FIELDS, "retention_days": days, "settled_before": cutoff, "by": by}
                cur = db.execute("INSERT INTO events(at, boot, payment_id, kind, data) VALUES (?,?,?,?,?)",
                                 (at, boot, STREAM, KIND, _payload(record)))
                result.redaction_id = cur.lastrowid
                for event_id, data in changes:
                    text = _payload(data)
                    db.execute("INSERT INTO redactions(event_id, redaction_id, data) VALUES (?,?,?)",
                               (event_id, result.redaction_id, text))
                    db.execute("UPDATE events SET data = ? WHERE id = ?", (text, event_id))
            result.events = [event_id for event_id, _ in changes]
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    result.checkpointed = _checkpoint(db)
    return result


def _check_days(days) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"PERSONAL_DATA_RETENTION_DAYS must be a whole number of days >= 1, not {days!r}")
    return days


def redact(journal: Journal | str, *, days: int, now: float | None = None, by: str = "kiosk",
           dry_run: bool = False) -> Result:
    """Redact what is past the retention. ``journal``: a running ``Journal`` (the work goes
    through its writer thread) or the path of a journal file (the CLI)."""
    days = _check_days(days)
    now = time.time() if now is None else now
    cutoff = now - days * DAY_S
    if isinstance(journal, Journal):
        def work(db):
            return _apply(db, cutoff=cutoff, days=days, by=by, at=journal.clock(), boot=journal.boot,
                          dry_run=dry_run)
        result = journal.call(work)
    else:
        db = connect(journal)
        try:
            row = db.execute("SELECT value FROM meta WHERE key='boots'").fetchone()
            result = _apply(db, cutoff=cutoff, days=days, by=by, at=now, boot=int(row[0]) if row else 0,
                            dry_run=dry_run)
        finally:
            db.close()
    if result.events and not dry_run:
        log.info("retention: payer data of %d payment(s) settled before %s redacted (event %s)",
                 len(result.payments), time.strftime("%Y-%m-%d", time.localtime(cutoff)), result.redaction_id)
    return result


def run(till, *, days: int, by: str = "kiosk") -> Result:
    """Redact the journal and the running till's copies of the same payers."""
    result = redact(till.journal, days=days, by=by)
    if result.payments:
        till.redact_payers(result.payments, redacted_payer)
    return result


def start_timer(till, *, days: int, every_s: float = RUN_EVERY_S) -> Callable[[], None]:
    """Run ``run`` every ``every_s`` in a daemon thread; returns the function that stops it."""
    _check_days(days)
    stop = threading.Event()

    def loop():
        while not stop.wait(every_s):
            try:
                run(till, days=days)
            except Exception:  # logged, and tried again on the next round
                log.exception("retention: redaction failed")

    threading.Thread(target=loop, name="retention", daemon=True).start()
    return stop.set
