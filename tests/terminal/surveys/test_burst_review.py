"""Review of bursts flagged by anti-gaming: burst identities, decisions that move the roll-ups
exactly, refusals that change nothing, the forwarding outbox, migration of an old file, and the
service-mode page (roles, messages, audit, axe)."""
from __future__ import annotations

import random
import re
import sqlite3
import time
from datetime import date

import pytest
from playwright.sync_api import expect

from terminal.surveys import reports
from terminal.surveys.antigaming import Rules
from terminal.surveys.store import SCHEMA_VERSION, BurstReviewError, SurveyStore
from tests.conftest import axe_violations
from tests.helpers import choose_staff, service_login
from tests.terminal.surveys.conftest import NOW, answer
from terminal.state import state

WHOLE = (date(2020, 1, 1), date(2030, 1, 1))


def filters(include_flagged=True):
    return reports.Filters(*WHOLE, include_flagged=include_flagged)


def burst_of(main="very_good", start=NOW - 3000, size=5, step=10, **extra):
    """``size`` identical answers ``step`` s apart (the fixture's rules: 4 in 120 s make a burst)."""
    return [answer(main, at=start + step * k, **extra) for k in range(size)]


def rollups(store) -> dict[str, set]:
    """Both roll-up tables without the all-zero rows an incremental move leaves behind."""
    db = store.db.reader()
    stats = {r for r in db.execute("SELECT * FROM stats") if any(r[6:])}
    stats = {r[:8] + (round(r[8], 9),) + r[9:] for r in stats}
    reasons = {r for r in db.execute("SELECT * FROM reason_stats WHERE n != 0")}
    return {"stats": stats, "reasons": reasons}


def assert_rollups_equal_a_recomputation(store):
    incremental = rollups(store)
    store.rebuild_rollups()
    assert rollups(store) == incremental


def assert_report_matches_answers(store):
    raw = store.answers()
    for include in (True, False):
        got = reports.report(store, filters(include))
        want = reports.figures_from_answers(raw, include)
        t = got["totals"]
        assert (t.n, t.top2, t.nps_n, t.nps_pro, t.nps_det, t.comments, t.distribution) == \
               (want.n, want.top2, want.nps_n, want.nps_pro, want.nps_det, want.comments, want.distribution)
        assert t.sum_score5 == pytest.approx(want.sum_score5)
    ranked = reports.report(store, filters())["reasons"]
    assert {(r["question_id"], r["option_id"]): r["n"] for r in ranked} == reports.reasons_from_answers(raw)


def traffic(store, tablet):
    """Ordinary answers around one burst with follow-ups, NPS and comments; returns the burst's uuids."""
    store.ingest(tablet, [answer("bad", at=NOW - 5000, path=[["why_bad", "waiting"]], nps=3),
                          answer("good", at=NOW - 4000, nps=9, comment="добре")], now=NOW)
    burst = burst_of(path=[["liked", "speed"]], nps=10, comment="чудово")
    store.ingest(tablet, burst, now=NOW)
    store.ingest(tablet, [answer("neutral", at=NOW - 1000), answer("neutral", at=NOW - 998)], now=NOW)  # a repeat
    return [a["uuid"] for a in burst]


# --- the store ---------------------------------------------------------------------------------
def test_a_burst_has_one_identity_and_waits_for_review(store, tablet):
    uuids = traffic(store, tablet)
    total, pending = store.pending_bursts()
    assert total == 1
    (burst,) = pending
    assert (burst["answers"], burst["main"], burst["tablet_id"], burst["desk"]) == (5, "very_good", tablet.id, "Desk 3")
    assert (burst["first_at"], burst["last_at"]) == (NOW - 3000, NOW - 2960)
    assert burst["admin_ids"] == [0] and burst["decision"] is None
    assert {a["uuid"] for a in store.answers("burst_id = ?", [burst["id"]])} == set(uuids)
    data = reports.report(store, filters())
    assert (data["flagged"], data["reviewed_genuine"], data["reviewed_excluded"], data["repeats"]) == (5, 0, 0, 1)


def test_genuine_makes_the_burst_ordinary_counted_answers(store, tablet):
    uuids = traffic(store, tablet)
    before_all = reports.report(store, filters(True))["totals"]
    before_without = reports.report(store, filters(False))["totals"]
    assert before_all.n == before_without.n + 5
    burst_id = store.pending_bursts()[1][0]["id"]

    recorded = store.review_burst(burst_id, "genuine", reviewer="Марія", reviewer_id=7, expected_answers=5, now=NOW)

    assert (recorded["decision"], recorded["reviewed_by"], recorded["reviewer_id"], recorded["answers_reviewed"],
            recorded["reviewed_at"]) == ("genuine", "Марія", 7, 5, NOW)
    with_flag = reports.report(store, filters(True))
    without_flag = reports.report(store, filters(False))
    # Counted in every report now, whatever the tick box says.
    assert with_flag["totals"].n == without_flag["totals"].n == before_all.n
    assert with_flag["totals"].distribution == before_all.distribution
    assert without_flag["comments"][0]["text"] == "чудово"
    assert (with_flag["flagged"], with_flag["reviewed_genuine"], with_flag["reviewed_excluded"]) == (0, 5, 0)
    # The flag is history and stays; the decision sits beside it.
    members = [store.answer(u) for u in uuids]
    assert {(m["flag"], m["review"], m["counted"], m["burst_id"]) for m in members} == {("burst", "genuine", 1, burst_id)}
    assert store.pending_bursts() == (0, [])
    assert_report_matches_answers(store)
    assert_rollups_equal_a_recomputation(store)


def test_keep_excluded_takes_the_burst_out_of_every_count(store, tablet):
    uuids = traffic(store, tablet)
    before_without = reports.report(store, filters(False))
    burst_id = store.pending_bursts()[1][0]["id"]

    store.review_burst(burst_id, "excluded", reviewer="Марія", expected_answers=5)

    for include in (True, False):
        data = reports.report(store, filters(include))
        assert data["totals"].n == before_without["totals"].n
        assert data["totals"].distribution == before_without["totals"].distribution
        assert [r["n"] for r in data["reasons"]] == [r["n"] for r in before_without["reasons"]]
        assert all(c["text"] != "чудово" for c in data["comments"])
        assert (data["flagged"], data["reviewed_genuine"], data["reviewed_excluded"], data["repeats"]) == (0, 0, 5, 1)
    members = [store.answer(u) for u in uuids]
    assert {(m["flag"], m["review"], m["counted"]) for m in members} == {("burst", "excluded", 0)}
    assert store.count_answers() == 9       # nothing deleted
    csv = list(reports.csv_rows(store, filters(False), {}))
    assert sum(row[-1] == "excluded" for row in csv) == 5
    assert_report_matches_answers(store)
    assert_rollups_equal_a_recomputation(store)


@pytest.mark.parametrize("first, second", [("genuine", "excluded"), ("excluded", "genuine"), ("genuine", "genuine")])
def test_a_second_review_is_refused_and_changes_nothing(store, tablet, first, second):
    traffic(store, tablet)
    burst_id = store.pending_bursts()[1][0]["id"]
    store.review_burst(burst_id, first, reviewer="Марія", expected_answers=5)
    answers_before, rollups_before, burst_before = store.answers(), rollups(store), store.burst(burst_id)
    with pytest.raises(BurstReviewError) as refused:
        store.review_burst(burst_id, second, reviewer="Іван", expected_answers=5)
    assert refused.value.code == "already_reviewed"
    assert (store.answers(), rollups(store), store.burst(burst_id)) == (answers_before, rollups_before, burst_before)


@pytest.mark.parametrize("change, code", [
    ({"burst_id": 999}, "unknown_burst"),
    ({"decision": "delete"}, "bad_decision"),
    ({"expected_answers": 4}, "burst_changed"),   # the manager saw 4; a fifth arrived since
])
def test_bad_reviews_are_refused_and_change_nothing(store, tablet, change, code):
    traffic(store, tablet)
    burst_id = store.pending_bursts()[1][0]["id"]
    answers_before, rollups_before = store.answers(), rollups(store)
    args = {"burst_id": burst_id, "decision": "genuine", "expected_answers": 5, **change}
    with pytest.raises(BurstReviewError) as refused:
        store.review_burst(args["burst_id"], args["decision"], reviewer="Марія",
                           expected_answers=args["expected_answers"])
    assert refused.value.code == code
    assert (store.answers(), rollups(store)) == (answers_before, rollups_before)
    assert store.pending_bursts()[0] == 1


def test_a_run_continuing_after_a_review_waits_for_a_review_of_its_own(store, tablet):
    store.ingest(tablet, burst_of(size=4, start=NOW - 3000), now=NOW)
    first_id = store.pending_bursts()[1][0]["id"]
    store.review_burst(first_id, "genuine", reviewer="Марія", expected_answers=4)
    store.ingest(tablet, burst_of(size=2, start=NOW - 2960), now=NOW)    # the same presses go on
    total, (pending,) = store.pending_bursts()
    assert total == 1 and pending["id"] != first_id and pending["answers"] == 2
    assert store.burst(first_id)["answers"] == 4
    assert reports.report(store, filters(False))["totals"].n == 4
    assert reports.report(store, filters(True))["totals"].n == 6
    assert_report_matches_answers(store)
    assert_rollups_equal_a_recomputation(store)


def test_a_late_answer_that_joins_two_pending_bursts_merges_them(store, tablet):
    start = NOW - 5000
    store.ingest(tablet, burst_of(size=4, start=start), now=start + 35)            # 0, 10, 20, 30
    store.ingest(tablet, burst_of(size=4, start=start + 400), now=start + 435)    # 400 … 430: a second burst
    assert store.pending_bursts()[0] == 2
    # Answers synced late from another tablet session fill the gap, 30 s apart, then one lands
    # between the first two answers of the second burst.
    store.ingest(tablet, [answer("very_good", at=start + 60 + 30 * k) for k in range(11)], now=NOW)  # 60 … 360
    assert store.pending_bursts()[0] == 2
    store.ingest(tablet, [answer("very_good", at=start + 406)], now=NOW)
    total, (merged,) = store.pending_bursts()
    assert total == 1 and merged["answers"] == 4 + 4 + 11 + 1
    assert store.query("SELECT COUNT(*) FROM bursts").fetchone()[0] == 1
    assert_rollups_equal_a_recomputation(store)
    store.review_burst(merged["id"], "excluded", reviewer="Марія", expected_answers=20)
    assert reports.report(store, filters(True))["totals"].n == 0
    assert_rollups_equal_a_recomputation(store)


def test_random_traffic_and_reviews_keep_rollups_equal_to_a_recomputation(store, tablet):
    other, _ = store.register_tablet("Tablet 2", "north", "Desk 1", "desk")
    rng = random.Random(11)
    at = NOW - 30 * 86400
    for round_no in range(40):
        at += rng.choice([30, 600, 5000])
        face = rng.choice(["very_bad", "bad", "neutral", "good", "very_good"])
        device = rng.choice([tablet, other])
        size = rng.choice([1, 2, 4, 6])
        store.ingest(device, [answer(face, at=at + 10 * k, nps=rng.choice([None, 2, 9]),
                                     path=[["liked", "speed"]] if face in ("good", "very_good") else [])
                              for k in range(size)], now=at + 10 * size + 5)     # sent as given
        at += 10 * size
        if round_no % 5 == 4:
            for burst in store.pending_bursts(5)[1][:2]:
                store.review_burst(burst["id"], rng.choice(["genuine", "excluded"]), reviewer="Марія",
                                   expected_answers=burst["answers"])
    reviewed = store.query("SELECT COUNT(*) FROM bursts WHERE decision IS NOT NULL").fetchone()[0]
    assert reviewed >= 2 and store.pending_bursts()[0] >= 1
    assert_report_matches_answers(store)
    assert_rollups_equal_a_recomputation(store)


def test_a_review_puts_the_answers_back_into_the_forwarding_outbox(store, tablet):
    uuids = traffic(store, tablet)
    everything = [a["uuid"] for a in store.pending_for_forwarding(100)]
    store.mark_forwarded(everything, at=NOW)
    assert store.count_pending_forwarding() == 0
    burst_id = store.pending_bursts()[1][0]["id"]
    store.review_burst(burst_id, "excluded", reviewer="Марія", expected_answers=5)
    pending = store.pending_for_forwarding(100)
    assert {p["uuid"] for p in pending} == set(uuids)
    assert {(p["review"], p["counted"], p["burst_id"]) for p in pending} == {("excluded", 0, burst_id)}


def test_answers_flagged_after_forwarding_are_forwarded_again_with_their_flag(store, tablet):
    first = burst_of(size=3)
    store.ingest(tablet, first, now=NOW)
    store.mark_forwarded([a["uuid"] for a in first], at=NOW)
    fourth = answer("very_good", at=NOW - 3000 + 30)
    store.ingest(tablet, [fourth], now=NOW)                     # completes the burst
    pending = store.pending_for_forwarding(100)
    assert {p["uuid"] for p in pending} == {a["uuid"] for a in first} | {fourth["uuid"]}
    assert {p["flag"] for p in pending} == {"burst"}


# --- migration of a file written before bursts had an identity ------------------------------------
V1_ANSWER_COLUMNS = ["uuid", "tablet_id", "branch_id", "desk", "survey_id", "version", "shift_id", "admin_id",
                     "answered_at", "day", "received_at", "main", "score", "scale", "path", "nps", "comment", "lang",
                     "counted", "flag", "repeat_of", "forwarded_at"]


def downgrade_to_v1(path):
    """Turn the file back into what the first release wrote: no burst ids, reviews or bursts table."""
    db = sqlite3.connect(path)
    db.executescript("""
        DROP INDEX answers_burst; DROP INDEX answers_tablet_received;
        ALTER TABLE answers DROP COLUMN sent_at; ALTER TABLE answers DROP COLUMN tablet_answered_at;
        ALTER TABLE answers DROP COLUMN claimed_shift_id; ALTER TABLE stats DROP COLUMN late;
        ALTER TABLE answers DROP COLUMN burst_id; ALTER TABLE answers DROP COLUMN review;
        ALTER TABLE stats DROP COLUMN reviewed_genuine; ALTER TABLE stats DROP COLUMN reviewed_excluded;
        DROP INDEX bursts_pending; DROP TABLE bursts;
        PRAGMA user_version = 0;""")
    assert [r[1] for r in db.execute("PRAGMA table_info(answers)")] == V1_ANSWER_COLUMNS
    db.close()


def test_an_old_file_is_migrated_with_its_bursts_identified(tmp_path):
    path = str(tmp_path / "old.sqlite")
    rules = Rules(repeat_window_s=5, burst_size=4, burst_window_s=120)
    store = SurveyStore(path, rules)
    store.ensure_default_survey()
    t1, _ = store.register_tablet("Tablet 1", "central", "Desk 3", "desk")
    t2, _ = store.register_tablet("Tablet 2", "north", "Desk 1", "desk")
    # Each batch sent as it was given (an online tablet).
    for batch in ([answer("good", at=NOW - 9000)], burst_of(size=5, start=NOW - 8000, nps=10),
                  [answer("bad", at=NOW - 7000)], burst_of("bad", size=4, start=NOW - 6000),
                  burst_of("bad", size=4, start=NOW - 5000)):                # two bursts of "bad", far apart
        store.ingest(t1, batch, now=batch[-1]["answered_at"] + 5)
    store.ingest(t2, burst_of("neutral", size=6, start=NOW - 8000, path=[["improve", "speed"]]), now=NOW - 7900)
    expected = sorted(sorted(a["uuid"] for a in store.answers("burst_id = ?", [b["id"]]))
                      for b in store.pending_bursts()[1])
    figures = reports.report(store, filters())
    store.close()
    downgrade_to_v1(path)

    migrated = SurveyStore(path, rules)
    try:
        assert migrated.query("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        total, pending = migrated.pending_bursts()
        assert total == 4
        assert sorted(sorted(a["uuid"] for a in migrated.answers("burst_id = ?", [b["id"]])) for b in pending) == expected
        after = reports.report(migrated, filters())
        assert (after["totals"].n, after["flagged"], after["reviewed_genuine"]) == (figures["totals"].n, 19, 0)
        assert_rollups_equal_a_recomputation(migrated)
        # A migrated burst is reviewed like any other.
        neutral = next(b for b in pending if b["main"] == "neutral")
        migrated.review_burst(neutral["id"], "genuine", reviewer="Марія", expected_answers=6)
        assert reports.report(migrated, filters(False))["totals"].n == figures["totals"].n - 19 + 6
        assert_report_matches_answers(migrated)
        assert_rollups_equal_a_recomputation(migrated)
    finally:
        migrated.close()
    # Opening the migrated file again changes nothing.
    again = SurveyStore(path, rules)
    try:
        assert again.pending_bursts()[0] == 3
    finally:
        again.close()


# --- service mode ------------------------------------------------------------------------------
MANAGER_PIN, CASHIER_PIN = "515151", "111111"


@pytest.fixture
def burst_app(app):
    """The app with one tablet, an administrator on shift and one pending burst of five answers."""
    state(app).staff.add("Марія", "manager", MANAGER_PIN)
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    tablet, _ = store.register_tablet("Планшет 1", branch, "Вікно 1", "desk")
    store.add_administrator("Олена К.", branch, "432154")
    now = time.time()
    shift = store.start_shift(tablet, "432154", now=now - 3600)
    store.ingest(tablet, [answer("good", at=now - 3000, shift_id=shift.id)])
    size = app.config["SURVEY_BURST_SIZE"] + 1
    store.ingest(tablet, [answer("very_good", at=now - 1200 + 2 * app.config["SURVEY_REPEAT_WINDOW_S"] * k,
                                 shift_id=shift.id) for k in range(size)])
    assert store.pending_bursts()[0] == 1
    app.burst_size = size
    return app


def login(client, pin):
    assert service_login(client, pin).status_code == 302


def review(client, burst_id, decision="genuine", answers=None):
    return client.post(f"/service/surveys/bursts/{burst_id}/review", data={
        "decision": decision, "answers": "" if answers is None else str(answers)})


def audit_actions(app):
    return [e for e in state(app).staff.audit_log() if e["action"] == "survey.burst.review"]


def test_the_review_page_lists_the_burst_for_a_manager(burst_app):
    client = burst_app.test_client()
    login(client, MANAGER_PIN)
    assert "Перевірка серій однакових відповідей" in client.get("/service/").text
    page = client.get("/service/surveys/bursts")
    assert page.status_code == 200
    text = page.text
    assert "Серій, що чекають на перевірку: 1. Показано 1–1." in text
    assert "Планшет 1" in text and "Вікно 1" in text and "Олена К." in text and "Чудово" in text
    assert f'<td class="burst-n">{burst_app.burst_size}</td>' in text
    assert "навіть якщо у звіті позначено" in text      # what "keep excluded" means is said on the page


def test_roles_other_than_manager_and_admin_cannot_review(burst_app):
    client = burst_app.test_client()
    burst_id = state(burst_app).surveys.pending_bursts()[1][0]["id"]
    response = review(client, burst_id, answers=burst_app.burst_size)
    assert response.status_code == 302 and "/service/login" in response.headers["Location"]
    login(client, CASHIER_PIN)
    assert "Перевірка серій" not in client.get("/service/").text
    assert client.get("/service/surveys/bursts").status_code == 403
    assert review(client, burst_id, answers=burst_app.burst_size).status_code == 403
    assert state(burst_app).surveys.pending_bursts()[0] == 1
    assert audit_actions(burst_app) == []


@pytest.mark.parametrize("pin", [MANAGER_PIN, "000000"])   # manager and admin
def test_a_decision_is_recorded_audited_and_shown(burst_app, pin):
    client = burst_app.test_client()
    login(client, pin)
    store = state(burst_app).surveys
    burst_id = store.pending_bursts()[1][0]["id"]
    response = review(client, burst_id, "excluded", answers=burst_app.burst_size)
    assert response.status_code == 302 and response.headers["Location"].endswith("/service/surveys/bursts")
    page = client.get("/service/surveys/bursts").text
    assert f"Серію залишено поза звітами: {burst_app.burst_size} відповідей не враховуються." in page
    assert "Немає серій, що чекають на перевірку." in page and "залишено поза звітами" in page
    staff_name = "Марія" if pin == MANAGER_PIN else "admin"
    assert store.burst(burst_id)["reviewed_by"] == staff_name
    (entry,) = audit_actions(burst_app)
    assert entry["detail"]["decision"] == "excluded" and entry["detail"]["burst"] == burst_id
    assert entry["detail"]["answers"] == burst_app.burst_size and entry["name"] == staff_name
    report = client.get("/service/surveys/reports").text
    assert 'id="kpi-count">1<' in report
    assert f"залишено поза звітами — {burst_app.burst_size}." in report


@pytest.mark.parametrize("how, status, message", [
    ("twice", 409, "Цю серію вже перевірено раніше. Нічого не змінено."),
    ("unknown", 404, "Такої серії немає. Нічого не змінено."),
    ("stale", 409, "Поки сторінка була відкрита, до серії додалися відповіді."),
    ("missing count", 409, "Поки сторінка була відкрита, до серії додалися відповіді."),
    ("bad decision", 400, "Невідоме рішення. Нічого не змінено."),
])
def test_bad_review_requests_get_a_clear_message_and_change_nothing(burst_app, how, status, message):
    client = burst_app.test_client()
    login(client, MANAGER_PIN)
    store = state(burst_app).surveys
    burst_id = store.pending_bursts()[1][0]["id"]
    n = burst_app.burst_size
    if how == "twice":
        assert review(client, burst_id, "genuine", n).status_code == 302
    answers_before, audit_before = store.answers(), audit_actions(burst_app)
    response = {"twice": lambda: review(client, burst_id, "excluded", n),
                "unknown": lambda: review(client, burst_id + 100, "genuine", n),
                "stale": lambda: review(client, burst_id, "genuine", n - 1),
                "missing count": lambda: review(client, burst_id, "genuine"),
                "bad decision": lambda: review(client, burst_id, "delete", n)}[how]()
    assert response.status_code == status
    assert message in response.text and 'role="alert"' in response.text
    assert store.answers() == answers_before and audit_actions(burst_app) == audit_before


def test_review_only_by_post(burst_app):
    client = burst_app.test_client()
    login(client, MANAGER_PIN)
    burst_id = state(burst_app).surveys.pending_bursts()[1][0]["id"]
    assert client.get(f"/service/surveys/bursts/{burst_id}/review?decision=genuine").status_code == 405
    assert state(burst_app).surveys.pending_bursts()[0] == 1


def test_the_list_is_newest_first_and_paginated(app):
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    tablet, _ = store.register_tablet("Планшет 1", branch, "Вікно 1", "desk")
    size, gap = app.config["SURVEY_BURST_SIZE"], 2 * app.config["SURVEY_REPEAT_WINDOW_S"]
    start = time.time() - 25 * 3600
    for b in range(25):     # 25 bursts an hour apart, alternating faces so each run is its own burst
        store.ingest(tablet, [answer("very_good" if b % 2 else "very_bad", at=start + 3600 * b + gap * k)
                              for k in range(size)])
    client = app.test_client()
    login(client, "000000")
    first = client.get("/service/surveys/bursts").text
    assert "Серій, що чекають на перевірку: 25. Показано 1–20." in first
    ids = [int(i) for i in re.findall(r'<tr id="burst-(\d+)"', first)]
    assert len(ids) == 20 and ids == sorted(ids, reverse=True)    # ingested in time order: newest = highest id
    assert 'rel="next"' in first and 'rel="prev"' not in first
    second = client.get("/service/surveys/bursts?page=2").text
    assert "Показано 21–25." in second and second.count('<tr id="burst-') == 5 and 'rel="prev"' in second
    assert "Показано 21–25." in client.get("/service/surveys/bursts?page=9").text   # a stale page number


@pytest.mark.browser
def test_the_review_page_is_axe_clean_and_touch_sized(browser, live_server, burst_app):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, has_touch=True, locale="uk-UA")
    page = context.new_page()
    page.goto(f"{live_server.url}/service/login")
    choose_staff(page, "Марія")
    page.locator("#pin").fill(MANAGER_PIN)
    page.locator("#pin").press("Enter")
    expect(page.locator("h1")).to_have_text("Сервісний режим")
    page.goto(f"{live_server.url}/service/surveys/bursts")
    expect(page.locator("#bursts-count")).to_contain_text("1–1")
    assert axe_violations(page) == []
    for button in page.locator("#bursts button").all():
        box = button.bounding_box()
        assert box["width"] >= 44 and box["height"] >= 44
    page.get_by_role("button", name="English").tap()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.locator('#bursts button[data-decision="genuine"]').tap()
    expect(page.locator(".notice")).to_contain_text(f"Burst counted: {burst_app.burst_size} answers")
    expect(page.locator("#reviewed")).to_contain_text("counted as genuine")
    assert axe_violations(page) == []
    context.close()
