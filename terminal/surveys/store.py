"""The survey store: one SQLite file in the instance folder, and the one object callers use.

``SurveyStore`` is a thin facade over the parts, each in its own module:

=====================  ==================  ====================================================
part                   module              what it keeps
=====================  ==================  ====================================================
``db``                 ``database``        the file: one writer thread, readers, the steady timeline
``definitions``        ``versions``        survey definitions, versioned
``tablet_registry``    ``tablets``         desk tablets and their tokens
``desk_shifts``        ``shifts``          desk administrators, their PINs (lockout), shifts
``answer_store``       ``answers``         answers, anti-gaming decisions, refusals
``burst_reviews``      ``bursts``          bursts of identical answers and their review
``outbox``             ``forwarding``      answers not yet forwarded to the monitoring hub
``media_library``      ``media``           the tablets' attract loop
=====================  ==================  ====================================================

Roll-ups (``rollups``) move with the answers inside the same transaction; reports read them
through ``query`` (read-only). The schema and its versions are in ``schema``.
"""
from __future__ import annotations

import sqlite3
from typing import Any, Callable, Iterable

from terminal.surveys.answers import MAX_BATCH, AnswerStore, Rejected
from terminal.surveys.antigaming import RequestRate, Rules
from terminal.surveys.bursts import BurstReviews
from terminal.surveys.clock import SteadyClock
from terminal.surveys.database import SurveyDatabase
from terminal.surveys.definitions import Definition, DefinitionError
from terminal.surveys.errors import BurstReviewError, SurveyInputError
from terminal.surveys.forwarding import ForwardingOutbox
from terminal.surveys.media import MediaLibrary
from terminal.surveys.schema import SCHEMA_VERSION
from terminal.surveys.shifts import Administrator, DeskShifts, Shift
from terminal.surveys.tablets import Tablet, TabletRegistry, token_hash
from terminal.surveys.versions import SurveyVersions


class SurveyStore:
    def __init__(self, path: str, rules: Rules | None = None, timezone: str = "Europe/Kyiv",
                 clock: SteadyClock | None = None):
        self.path = path
        self.rules = rules or Rules()
        self.clock = clock or SteadyClock()
        self._request_rate = RequestRate(self.rules.requests_per_minute)
        self.db = SurveyDatabase(path, self.rules, self.clock, timezone)
        self.zone = self.db.zone
        self.definitions = SurveyVersions(self.db)
        self.tablet_registry = TabletRegistry(self.db, self.definitions)
        self.desk_shifts = DeskShifts(self.db)
        self.answer_store = AnswerStore(self.db, self.definitions, self.tablet_registry, self.desk_shifts)
        self.burst_reviews = BurstReviews(self.db)
        self.outbox = ForwardingOutbox(self.db)
        self.media_library = MediaLibrary(self.db)

    def close(self) -> None:
        self.db.close()

    # --- the file -----------------------------------------------------------------------------
    def query(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """One read-only statement on this thread's connection (reports, exports, checks)."""
        return self.db.query(sql, params)

    def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn(db)`` in one write transaction of the store's writer (bulk imports, benches)."""
        return self.db.write(fn)

    def now(self) -> float:
        """Now on the store's steady timeline (see ``clock``)."""
        return self.db.now()

    def day_of(self, ts: float) -> str:
        return self.db.day_of(ts)

    def request_wait(self, tablet_id: int) -> float:
        """0 when the tablet may send another batch now; otherwise seconds to wait (see RequestRate)."""
        return self._request_rate.wait(tablet_id, self.clock.monotonic())

    # --- definitions ------------------------------------------------------------------------
    def ensure_default_survey(self) -> None:
        self.definitions.ensure_default_survey()

    def save_definition(self, source: str, created_by: str | None = None) -> tuple[str, int]:
        return self.definitions.save_definition(source, created_by)

    def activate_version(self, survey_id: str, version: int) -> None:
        self.definitions.activate_version(survey_id, version)

    def definition(self, survey_id: str, version: int) -> Definition | None:
        return self.definitions.definition(survey_id, version)

    def current(self, survey_id: str) -> tuple[int, Definition] | None:
        return self.definitions.current(survey_id)

    def surveys(self) -> list[dict]:
        return self.definitions.surveys()

    def versions(self, survey_id: str) -> list[dict]:
        return self.definitions.versions(survey_id)

    def source(self, survey_id: str, version: int) -> str | None:
        return self.definitions.source(survey_id, version)

    # --- tablets ------------------------------------------------------------------------------
    def register_tablet(self, label: str, branch_id: str, desk: str, survey_id: str) -> tuple[Tablet, str]:
        return self.tablet_registry.register(label, branch_id, desk, survey_id)

    def reissue_token(self, tablet_id: int) -> str:
        return self.tablet_registry.reissue_token(tablet_id)

    def revoke_tablet(self, tablet_id: int) -> None:
        self.tablet_registry.revoke(tablet_id)

    def tablet(self, tablet_id: int) -> Tablet | None:
        return self.tablet_registry.tablet(tablet_id)

    def tablet_by_token(self, token: str) -> Tablet | None:
        return self.tablet_registry.by_token(token)

    def tablets(self) -> list[Tablet]:
        return self.tablet_registry.all()

    def desks(self) -> list[tuple[str, str]]:
        return self.tablet_registry.desks()

    # --- desk administrators and shifts ----------------------------------------------------
    def add_administrator(self, name: str, branch_id: str, pin: str) -> Administrator:
        return self.desk_shifts.add_administrator(name, branch_id, pin)

    def set_administrator_active(self, admin_id: int, active: bool) -> None:
        self.desk_shifts.set_administrator_active(admin_id, active)

    def administrators(self) -> list[Administrator]:
        return self.desk_shifts.administrators()

    def pin_locked_for(self, tablet_id: int) -> int:
        return self.desk_shifts.pin_locked_for(tablet_id)

    def start_shift(self, tablet: Tablet, pin: str, now: float | None = None) -> Shift | None:
        return self.desk_shifts.start_shift(tablet, pin, now)

    def end_shift(self, tablet: Tablet, now: float | None = None) -> None:
        self.desk_shifts.end_shift(tablet, now)

    def current_shift(self, tablet_id: int) -> Shift | None:
        return self.desk_shifts.current_shift(tablet_id)

    def shift(self, shift_id: int) -> Shift | None:
        return self.desk_shifts.shift(shift_id)

    # --- answers ------------------------------------------------------------------------------
    def ingest(self, tablet: Tablet, answers: Any, sent_at: Any = None, now: float | None = None) -> list[dict]:
        return self.answer_store.ingest(tablet, answers, sent_at, now)

    def rebuild_rollups(self) -> None:
        self.answer_store.rebuild_rollups()

    def answer(self, uuid: str) -> dict | None:
        return self.answer_store.answer(uuid)

    def answers(self, where: str = "1", params: Iterable = ()) -> list[dict]:
        return self.answer_store.answers(where, params)

    def count_answers(self) -> int:
        return self.answer_store.count()

    def rejections(self, limit: int = 50) -> list[dict]:
        return self.answer_store.rejections(limit)

    # --- review of bursts -----------------------------------------------------------------------
    def burst(self, burst_id: int) -> dict | None:
        return self.burst_reviews.burst(burst_id)

    def pending_bursts(self, limit: int = 20, offset: int = 0) -> tuple[int, list[dict]]:
        return self.burst_reviews.pending(limit, offset)

    def reviewed_bursts(self, limit: int = 10) -> list[dict]:
        return self.burst_reviews.reviewed(limit)

    def review_burst(self, burst_id: int, decision: str, reviewer: str, reviewer_id: int | None = None,
                     expected_answers: int | None = None, now: float | None = None) -> dict:
        return self.burst_reviews.review(burst_id, decision, reviewer, reviewer_id, expected_answers, now)

    # --- forwarding seam (the MQTT agent plugs in here) --------------------------------------
    def pending_for_forwarding(self, limit: int = 500) -> list[dict]:
        return self.outbox.pending(limit)

    def count_pending_forwarding(self) -> int:
        return self.outbox.count_pending()

    def mark_forwarded(self, uuids: Iterable[str], at: float | None = None) -> int:
        return self.outbox.mark_forwarded(uuids, at)

    # --- attract-loop media ------------------------------------------------------------------
    def add_media(self, filename: str, kind: str, alt_uk: str, alt_en: str, duration_s: int, size: int) -> int:
        return self.media_library.add(filename, kind, alt_uk, alt_en, duration_s, size)

    def media(self) -> list[dict]:
        return self.media_library.all()

    def remove_media(self, media_id: int) -> str | None:
        return self.media_library.remove(media_id)


__all__ = ["SurveyStore", "Tablet", "Administrator", "Shift", "Rejected", "SurveyInputError", "BurstReviewError",
           "DefinitionError", "token_hash", "MAX_BATCH", "SCHEMA_VERSION"]
