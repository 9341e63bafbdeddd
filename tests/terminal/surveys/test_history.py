"""Answers from a tablet token cannot rewrite history: times the tablet claims are bounded, an
ended shift takes no new answers, the anti-gaming rules judge answers by when the server
received them as well as by the tablet's times, and a step of the server's clock changes no
figure. Everything goes through the real sync API with a tablet token, on real SQLite files; the
server's clock is a fake one that the test moves (and steps) by hand."""
from __future__ import annotations

import importlib
import random
import types
import uuid as uuidlib
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from terminal import close_app, create_app
from terminal.surveys import reports
from terminal.state import state

KYIV = ZoneInfo("Europe/Kyiv")
PIN = "432154"
WHOLE = reports.Filters(date(2020, 1, 1), date(2030, 1, 1))
WITHOUT_FLAGGED = reports.Filters(date(2020, 1, 1), date(2030, 1, 1), include_flagged=False)
MIXED = ["very_good", "good", "very_good", "neutral", "good", "bad", "very_good", "good", "very_bad", "good"]


class FakeTime:
    """The server's clocks: ``true`` is real time, the wall clock is true time plus ``step``
    (an NTP step), the monotonic clock never steps."""

    def __init__(self, start: float):
        self.true, self.mono, self.step = start, 10_000.0, 0.0

    def time(self) -> float:
        return self.true + self.step

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.true += seconds
        self.mono += seconds


def at_kyiv(*args) -> float:
    return datetime(*args, tzinfo=KYIV).timestamp()


@pytest.fixture
def desk(tmp_path, monkeypatch):
    """A factory: an app whose survey store runs on a fake clock, a registered tablet, a desk
    administrator, and helpers speaking the tablet API."""
    apps = []

    def make(start: float, name: str = "instance", step: float = 0.0, **config):
        fake = FakeTime(start)
        fake.step = step
        clock = types.SimpleNamespace(time=fake.time, monotonic=fake.monotonic)
        for module in ("terminal.surveys.clock", "terminal.surveys.versions", "terminal.surveys.shifts",
                       "terminal.surveys.bursts", "terminal.surveys.forwarding", "terminal.surveys.media"):
            try:
                monkeypatch.setattr(importlib.import_module(module), "time", clock)
            except ModuleNotFoundError:
                pass
        app = create_app({"INSTANCE_PATH": str(tmp_path / name), "TESTING": True, "SECRET_KEY": "test",
                          "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": "", **config})
        apps.append(app)
        return Desk(app, fake)

    yield make
    for app in apps:
        close_app(app)


class Desk:
    def __init__(self, app, fake: FakeTime):
        self.app, self.fake = app, fake
        self.store = state(app).surveys
        branch = state(app).catalogue.branches[0].id
        self.tablet, self.token = self.store.register_tablet("Планшет 1", branch, "Вікно 1", "desk")
        self.admin = self.store.add_administrator("Олена К.", branch, PIN)
        self.client = app.test_client()
        self.tablet_offset = 0.0        # how far the tablet's own clock is off
        self.serial = 0

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self.token}"}

    def tablet_time(self, true_time: float) -> float:
        return true_time + self.tablet_offset

    def start_shift(self) -> int:
        response = self.client.post("/api/survey/shift", json={"pin": PIN}, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.get_json()["shift"]["id"]

    def end_shift(self) -> None:
        assert self.client.post("/api/survey/shift/end", headers=self.headers).status_code == 200

    def answer(self, main: str, given_at: float, shift_id=None, **extra) -> dict:
        """An answer given at true time ``given_at``, stamped by the tablet's clock."""
        self.serial += 1
        data = {"uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"answer-{self.serial}")), "survey": "desk",
                "version": 1, "answered_at": self.tablet_time(given_at), "main": main, "path": [], "nps": None,
                "comment": None, "shift_id": shift_id, "lang": "uk"}
        data.update(extra)
        return data

    def send(self, answers: list[dict], sent_at: float | None = None):
        """POST a batch now (the fake server time); ``sent_at`` defaults to the tablet's clock now."""
        sent_at = self.tablet_time(self.fake.true) if sent_at is None else sent_at
        response = self.client.post("/api/survey/answers", json={"sent_at": sent_at, "answers": answers},
                                    headers=self.headers)
        return response

    def send_ok(self, answers: list[dict]) -> list[dict]:
        response = self.send(answers)
        assert response.status_code == 200, response.text
        return response.get_json()["results"]

    def given_and_sent(self, main: str, gap: float, shift_id=None, delay: float = 20, **extra) -> dict:
        """An online tablet: ``gap`` s pass, a visitor answers, the tablet sends it ``delay`` s later."""
        self.fake.advance(gap)
        a = self.answer(main, self.fake.true, shift_id, **extra)
        self.fake.advance(delay)
        assert self.send_ok([a])[0]["status"] == "stored"
        return a

    def row(self, a: dict) -> dict:
        return self.store.answer(a["uuid"])

    def figures(self, filters=WHOLE):
        return reports.report(self.store, filters)["totals"]


def key_figures(f) -> tuple:
    return (f.n, f.top2, round(f.sum_score5, 6), f.nps_n, f.comments, tuple(f.distribution))


# --- times the tablet claims -------------------------------------------------------------------
def test_the_server_keeps_its_received_time_beside_the_tablets_own_times(desk):
    d = desk(at_kyiv(2026, 3, 10, 11, 0))
    d.tablet_offset = 3 * 3600                  # the tablet's clock is three hours ahead
    a = d.answer("good", d.fake.true - 120)
    assert d.send_ok([a])[0]["status"] == "stored"
    row = d.row(a)
    assert row["received_at"] == pytest.approx(d.fake.true)
    assert row["sent_at"] == pytest.approx(d.fake.true + 3 * 3600)
    assert row["tablet_answered_at"] == pytest.approx(d.fake.true - 120 + 3 * 3600)
    assert row["answered_at"] == pytest.approx(d.fake.true - 120)          # corrected by the skew


@pytest.mark.parametrize("given, sent", [
    (+3600, 0),              # given an hour after the tablet says it sent the batch
    (+121, 0),
    (0, -86400 * 30),        # the batch says it was sent a month before it arrived: answers in the future
])
def test_an_answer_from_the_future_is_refused(desk, given, sent):
    d = desk(at_kyiv(2026, 3, 10, 11, 0))
    now = d.fake.true
    a = d.answer("very_good", now + given)
    result = d.send_ok([a]) if sent == 0 else d.send([a], sent_at=now + sent).get_json()["results"]
    assert result[0]["status"] == "rejected" and result[0]["error"] == "bad_time"
    assert d.store.count_answers() == 0


def test_answers_older_than_the_offline_window_are_refused_and_newer_ones_kept(desk):
    d = desk(at_kyiv(2026, 3, 10, 11, 0), SURVEY_MAX_OFFLINE_S=2 * 86400)
    now = d.fake.true
    old, recent = d.answer("very_good", now - 2 * 86400 - 60), d.answer("good", now - 2 * 86400 + 60)
    results = d.send_ok([old, recent])
    assert [r["status"] for r in results] == ["rejected", "stored"] and results[0]["error"] == "bad_time"
    # Backdating by a skewed sent_at does not get round it: the age is measured on the tablet's clock.
    sneaky = d.answer("very_good", now)
    assert d.send([sneaky], sent_at=now + 3 * 86400).get_json()["results"][0]["error"] == "bad_time"


@pytest.mark.parametrize("sent_at", ["now", None, True, [1], {"a": 1}])
def test_a_batch_with_a_sent_at_that_is_not_a_time_is_refused_whole(desk, sent_at):
    d = desk(at_kyiv(2026, 3, 10, 11, 0))
    response = d.client.post("/api/survey/answers", json={"sent_at": sent_at, "answers": [d.answer("good", d.fake.true)]},
                             headers=d.headers)
    if sent_at is None:      # no sent_at: the tablet's times are taken as they are
        assert response.status_code == 200 and response.get_json()["results"][0]["status"] == "stored"
    else:
        assert response.status_code == 400 and d.store.count_answers() == 0


# --- shifts ---------------------------------------------------------------------------------------
def test_an_ended_shift_takes_no_new_answers_but_keeps_the_ones_queued_before_its_end(desk):
    d = desk(at_kyiv(2026, 3, 10, 9, 0))
    shift = d.start_shift()
    during = d.given_and_sent("good", 600, shift)
    # The Wi-Fi drops: two answers are queued during the shift …
    d.fake.advance(600)
    queued = [d.answer("very_good", d.fake.true, shift), d.answer("bad", d.fake.true + 300, shift)]
    d.fake.advance(600)
    d.end_shift()                               # … the shift ends (on the server) while they wait …
    d.fake.advance(300)
    # … and a tablet that did not learn of the end keeps stamping new answers with the shift.
    after = [d.answer("very_good", d.fake.true - 60, shift), d.answer("very_good", d.fake.true, shift)]
    d.fake.advance(1800)
    assert [r["status"] for r in d.send_ok(queued + after)] == ["stored"] * 4
    for a in [during, *queued]:
        assert (d.row(a)["admin_id"], d.row(a)["shift_id"]) == (d.admin.id, shift)
    for a in after:
        row = d.row(a)
        # Kept for the desk (a real visitor's opinion) but not the administrator's.
        assert (row["admin_id"], row["shift_id"], row["claimed_shift_id"], row["counted"]) == (0, None, shift, 1)
    by_admin = reports.report(d.store, reports.Filters(date(2020, 1, 1), date(2030, 1, 1), admin_id=d.admin.id))
    assert by_admin["totals"].n == 3


def test_answers_claiming_a_shift_before_it_started_are_not_the_administrators(desk):
    d = desk(at_kyiv(2026, 3, 10, 9, 0))
    d.fake.advance(3600)
    shift = d.start_shift()
    backdated = [d.answer("very_good", d.fake.true - 1800 + 60 * k, shift) for k in range(5)]
    assert [r["status"] for r in d.send_ok(backdated)] == ["stored"] * 5
    assert {(d.row(a)["admin_id"], d.row(a)["claimed_shift_id"]) for a in backdated} == {(0, shift)}


def test_deactivating_the_administrator_ends_the_shift_for_new_answers(desk):
    d = desk(at_kyiv(2026, 3, 10, 9, 0))
    shift = d.start_shift()
    before = d.given_and_sent("good", 60, shift)
    d.store.set_administrator_active(d.admin.id, False)
    later = d.given_and_sent("very_good", 120, shift)
    assert d.row(before)["admin_id"] == d.admin.id
    assert (d.row(later)["admin_id"], d.row(later)["claimed_shift_id"]) == (0, shift)


# --- anti-gaming by the time the server received answers ---------------------------------------
def morning(d: Desk, shift: int, answers: int = 36) -> list[dict]:
    """An online tablet from 09:00: an answer every five minutes, each sent as it was given."""
    return [d.given_and_sent(MIXED[k % len(MIXED)], 280, shift) for k in range(answers)]


def test_a_script_posting_hundreds_of_backdated_excellent_answers_is_flagged(desk):
    d = desk(at_kyiv(2026, 3, 10, 9, 0))
    shift = d.start_shift()
    genuine = morning(d, shift)
    before = d.figures()
    assert before.n == len(genuine)
    # A script with the tablet's key: 300 "excellent" answers spread over the last four hours
    # (human-looking spacing, so no burst by the tablet's times), posted in three batches seconds apart.
    d.fake.advance(30)
    start = d.fake.true - 4 * 3600
    script = [d.answer("very_good", start + 48 * k, shift, nps=10) for k in range(300)]
    for k in range(3):
        assert {r["status"] for r in d.send_ok(script[100 * k:100 * (k + 1)])} == {"stored"}
        d.fake.advance(2)
    rows = [d.row(a) for a in script]
    # Every one is flagged: late (the tablet was online after it and did not send it), a burst
    # (identical answers arriving together) or, by chance, a repeat of a genuine press.
    assert all(r["flag"] in ("late", "burst", "repeat") for r in rows), {r["flag"] for r in rows}
    assert sum(r["flag"] == "late" for r in rows) > 200
    # Without the answers flagged for review the figures are what the genuine answers made.
    assert key_figures(d.figures(WITHOUT_FLAGGED)) == key_figures(before)
    # Late answers are not counted even with flagged bursts included; the report says how many.
    data = reports.report(d.store, WHOLE)
    assert data["late"] == sum(r["flag"] == "late" for r in rows) > 0
    assert data["totals"].n == before.n + sum(r["flag"] == "burst" for r in rows)
    assert all(d.row(a)["flag"] is None for a in genuine)


def test_a_tablet_flushing_its_offline_queue_is_not_flagged(desk):
    d = desk(at_kyiv(2026, 3, 10, 9, 0))
    shift = d.start_shift()
    morning(d, shift, answers=6)
    # The network goes: 30 real answers over two hours wait on the tablet …
    rng = random.Random(3)
    queued = []
    for k in range(30):
        d.fake.advance(rng.choice([150, 200, 240, 300, 330]))
        queued.append(d.answer(MIXED[rng.randrange(len(MIXED))], d.fake.true, shift,
                               nps=rng.choice([None, 7, 9, 10]), comment=rng.choice([None, "дякую"])))
    assert queued[-1]["answered_at"] - queued[0]["answered_at"] > 1.5 * 3600
    d.fake.advance(400)
    # … and arrive at once (in two batches, as a tablet with a small batch size would send them).
    assert {r["status"] for r in d.send_ok(queued[:20])} == {"stored"}
    d.fake.advance(1)
    assert {r["status"] for r in d.send_ok(queued[20:])} == {"stored"}
    rows = [d.row(a) for a in queued]
    assert [r["flag"] for r in rows] == [None] * 30
    assert all(r["counted"] == 1 and r["admin_id"] == d.admin.id for r in rows)
    assert d.figures(WITHOUT_FLAGGED).n == 36


def test_a_long_backlog_arriving_in_many_batches_is_not_late(desk):
    d = desk(at_kyiv(2026, 3, 10, 8, 0))
    d.given_and_sent("good", 60)
    queued = []
    for k in range(1200):        # a busy day and a half offline, 90 s apart, mixed faces
        d.fake.advance(90)
        queued.append(d.answer(MIXED[k % len(MIXED)], d.fake.true))
    d.fake.advance(60)
    for k in range(0, 1200, 500):
        assert {r["status"] for r in d.send_ok(queued[k:k + 500])} == {"stored"}
        d.fake.advance(3)
    assert {d.row(a)["flag"] for a in queued} == {None}


# --- steps of the server's clock ----------------------------------------------------------------
def run_evening(d: Desk, step_at: int | None, step: float) -> dict:
    """A shift from 21:00 (Kyiv) with ordinary answers, a burst of twelve identical answers and more
    answers; the server's wall clock steps by ``step`` before answer ``step_at``; the shift ends and
    one answer comes after its end. Returns everything that counts."""
    gaps = [240, 300, 180, 420, 260, 310, 200, 280] + [0] * 12 + [300, 240, 360, 280, 330, 250]
    mains = MIXED[:8] + ["very_good"] * 12 + MIXED[2:8]
    shift = d.start_shift()
    answers = []
    for k, (main, gap) in enumerate(zip(mains, gaps)):
        if k == step_at:
            d.fake.step = step
        # The burst: a press every 8 s, each sent at once.
        answers.append(d.given_and_sent(main, gap, shift, delay=20 if gap else 8, nps=(k * 7) % 11))
    d.fake.advance(120)
    d.end_shift()
    answers.append(d.given_and_sent("very_good", 300, shift))
    rows = [d.row(a) for a in answers]
    for row in rows:
        row.pop("forwarded_at")
    stats = sorted(r for r in d.store.query("SELECT * FROM stats") if any(r[6:]))
    data = reports.report(d.store, WHOLE, "admin")
    return {"rows": rows, "stats": stats, "totals": key_figures(data["totals"]),
            "without_flagged": key_figures(d.figures(WITHOUT_FLAGGED)), "flagged": data["flagged"],
            "by_admin": [(b["key"], key_figures(b["figures"])) for b in data["breakdown"]],
            "bursts": [(b["answers"], b["main"]) for b in d.store.pending_bursts()[1]],
            "days": sorted({r["day"] for r in rows})}


@pytest.mark.parametrize("step_at", [3, 13])       # during the shift; in the middle of the burst
@pytest.mark.parametrize("step", [3 * 3600, -3 * 3600, 11 * 3600])
def test_a_step_of_the_server_clock_during_a_shift_and_a_burst_changes_no_figure(desk, step, step_at):
    start = at_kyiv(2026, 3, 10, 21, 0)
    steady = run_evening(desk(start, "steady"), None, 0)
    assert steady["bursts"] == [(12, "very_good")] and steady["days"] == ["2026-03-10"]
    assert steady["rows"][-1]["admin_id"] == 0          # given after the shift ended
    stepped = run_evening(desk(start, f"stepped{step}{step_at}"), step_at, step)
    assert stepped == steady


def test_a_wrong_clock_at_boot_is_corrected_before_any_answer(desk):
    """The appliance boots with its real-time clock a year behind; NTP steps it a minute later,
    before any tablet has sent anything: the survey clock follows at once."""
    true_start = at_kyiv(2026, 3, 10, 8, 0)
    d = desk(true_start, step=-365 * 86400)     # the store opens on the wrong clock
    d.fake.advance(60)
    d.fake.step = 0                             # NTP
    shift = d.start_shift()                     # reads the stepped clock first
    second, _ = d.store.register_tablet("Планшет 2", d.tablet.branch_id, "Вікно 2", "desk")
    assert second.created_at == pytest.approx(d.fake.true)
    a = d.given_and_sent("good", 60, shift)
    assert d.row(a)["admin_id"] == d.admin.id
    assert d.row(a)["answered_at"] == pytest.approx(d.fake.true - 20)
    assert d.row(a)["day"] == "2026-03-10"


def test_a_step_is_adopted_once_the_tablets_are_quiet_and_open_shifts_move_with_it(desk):
    d = desk(at_kyiv(2026, 3, 10, 9, 0), SURVEY_CLOCK_QUIET_S=1800)
    shift = d.start_shift()
    d.given_and_sent("good", 60, shift)
    d.fake.step = -2 * 3600                     # the wall clock steps back two hours
    busy = d.given_and_sent("bad", 60, shift)
    assert d.row(busy)["answered_at"] == pytest.approx(d.fake.true - 20)     # not yet: tablets are busy
    d.fake.advance(2000)                        # quiet for longer than SURVEY_CLOCK_QUIET_S
    quiet = d.given_and_sent("very_good", 60, shift)
    row = d.row(quiet)
    assert row["answered_at"] == pytest.approx(d.fake.true - 20 - 2 * 3600)  # the wall clock's time now
    assert (row["admin_id"], row["shift_id"]) == (d.admin.id, shift)         # still inside its shift


def test_a_tablet_sending_too_fast_is_told_to_wait_whatever_the_wall_clock_does(desk):
    d = desk(at_kyiv(2026, 3, 10, 9, 0), SURVEY_API_REQUESTS_PER_MIN=30)
    statuses = [d.send([d.answer(MIXED[k % 10], d.fake.true - 600 + 10 * k)]).status_code for k in range(40)]
    assert statuses == [200] * 30 + [429] * 10          # no time passed: a burst of 30, then refused
    refused = d.send([])
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 3
    assert d.store.count_answers() == 30                 # a refused batch stores nothing
    d.fake.step = 3600                                   # the wall clock jumps an hour: no refill
    assert d.send([]).status_code == 429
    d.fake.advance(10)                                   # ten seconds: five more batches (30 a minute)
    assert [d.send([]).status_code for _ in range(6)] == [200] * 5 + [429]


def test_a_file_of_the_previous_release_is_migrated_and_keeps_its_figures(tmp_path):
    import sqlite3

    from terminal.surveys.antigaming import Rules
    from terminal.surveys.store import SCHEMA_VERSION, SurveyStore
    from tests.terminal.surveys.conftest import NOW, answer

    path = str(tmp_path / "v2.sqlite")
    rules = Rules(repeat_window_s=5, burst_size=4, burst_window_s=120)
    store = SurveyStore(path, rules)
    store.ensure_default_survey()
    tablet, _ = store.register_tablet("Tablet 1", "central", "Desk 3", "desk")
    store.ingest(tablet, [answer(MIXED[k % 10], at=NOW - 5000 + 60 * k) for k in range(20)], now=NOW - 3800)
    before = key_figures(reports.report(store, WHOLE)["totals"])
    store.close()
    db = sqlite3.connect(path)                  # what release 2 wrote: no tablet times, no late count
    db.executescript("""
        DROP INDEX answers_tablet_received;
        ALTER TABLE answers DROP COLUMN sent_at; ALTER TABLE answers DROP COLUMN tablet_answered_at;
        ALTER TABLE answers DROP COLUMN claimed_shift_id; ALTER TABLE stats DROP COLUMN late;
        PRAGMA user_version = 2;""")
    db.close()
    migrated = SurveyStore(path, rules)
    try:
        assert migrated.query("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert key_figures(reports.report(migrated, WHOLE)["totals"]) == before
        old = answer("very_good", at=NOW - 4500)         # given before deliveries seen since: late
        assert migrated.ingest(tablet, [old], now=NOW)[0]["status"] == "stored"
        assert migrated.answer(old["uuid"])["flag"] == "late"
        assert reports.report(migrated, WHOLE)["late"] == 1
        rows = sorted(r for r in migrated.query("SELECT * FROM stats") if any(r[6:]))
        migrated.rebuild_rollups()
        assert sorted(r for r in migrated.query("SELECT * FROM stats") if any(r[6:])) == rows
    finally:
        migrated.close()
