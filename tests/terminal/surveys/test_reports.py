"""Reports: the roll-ups agree with the raw answers; CSAT, mean, loyalty index, reasons, comments."""
import random
from datetime import date, datetime

import pytest
import yaml

from terminal.surveys import reports
from terminal.surveys.definitions import DEFAULT_DEFINITION
from tests.terminal.surveys.conftest import NOW, answer

FACES = ["very_bad", "bad", "neutral", "good", "very_good"]
PATHS = {"very_bad": [["why_bad", "waiting"], ["waiting_where", "queue"]], "bad": [["why_bad", "politeness"]],
         "neutral": [["improve", "speed"]], "good": [["liked", "comfort"]], "very_good": []}


def whole_period(store):
    return reports.Filters(date(2020, 1, 1), date(2030, 1, 1))


def test_known_figures(store, tablet):
    # 4 answers: two top-2 faces → CSAT 50 %; marks 5,4,2,1 → mean 3; NPS: 10, 9 promoters, 3 detractor → 33.3
    store.ingest(tablet, [answer("very_good", at=NOW - 400, nps=10), answer("good", at=NOW - 300, nps=9),
                          answer("bad", at=NOW - 200, nps=3), answer("very_bad", at=NOW - 100)], now=NOW)
    t = reports.report(store, whole_period(store))["totals"]
    assert (t.n, t.csat, t.mean) == (4, 50.0, 3.0)
    assert t.nps_n == 3 and t.loyalty == pytest.approx(100 / 3)
    assert t.distribution == [1, 1, 0, 1, 1]


def test_rollups_match_raw_answers_after_random_traffic_with_repeats_and_bursts(store, tablet):
    other, _ = store.register_tablet("Tablet 2", "north", "Desk 1", "desk")
    admin = store.add_administrator("Олена К.", "central", "432154")
    at = NOW - 20 * 86400
    shift = store.start_shift(tablet, "432154", now=at)
    rng = random.Random(7)
    for round_no in range(60):
        batch = []
        for _ in range(rng.randint(1, 8)):
            at += rng.choice([1, 3, 30, 600, 4000])      # some presses inside the repeat window
            face = rng.choice(FACES if rng.random() < 0.7 else ["very_good"])
            batch.append(answer(face, at=at, path=PATHS[face][:rng.randint(0, 2)],
                                nps=rng.choice([None, *range(11)]), comment=rng.choice([None, "ок"]),
                                shift_id=shift.id))
        # Each batch sent as it was given (an online tablet).
        store.ingest(tablet, batch, now=at + 1)
        store.ingest(other, [answer(rng.choice(FACES), at=at + 0.5)], now=at + 1)
        if round_no % 20 == 19:      # someone pressing the best face over and over
            store.ingest(tablet, [answer("very_good", at=at + 10 * (k + 1), nps=10) for k in range(5)], now=at + 55)
            at += 60
    raw = store.answers()
    assert any(a["flag"] == "repeat" for a in raw) and any(a["flag"] == "burst" for a in raw)
    for include in (True, False):
        filters = reports.Filters(date(2020, 1, 1), date(2030, 1, 1), include_flagged=include)
        got = reports.report(store, filters)["totals"]
        want = reports.figures_from_answers(raw, include)
        assert (got.n, got.top2, got.nps_n, got.nps_pro, got.nps_det, got.comments, got.distribution) == \
               (want.n, want.top2, want.nps_n, want.nps_pro, want.nps_det, want.comments, want.distribution)
        assert got.sum_score5 == pytest.approx(want.sum_score5)
    # Per desk, per administrator and per branch.
    by_branch = reports.report(store, reports.Filters(date(2020, 1, 1), date(2030, 1, 1), branch_id="north"))
    assert by_branch["totals"].n == reports.figures_from_answers([a for a in raw if a["branch_id"] == "north"]).n
    by_admin = reports.report(store, reports.Filters(date(2020, 1, 1), date(2030, 1, 1), admin_id=admin.id), "admin")
    assert by_admin["totals"].n == reports.figures_from_answers([a for a in raw if a["admin_id"] == admin.id]).n
    assert [b["key"] for b in by_admin["breakdown"]] == [(admin.id,)]
    # Reasons ranked, counted from the raw paths.
    ranked = reports.report(store, whole_period(store))["reasons"]
    raw_reasons = reports.reasons_from_answers(raw)
    assert {(r["question_id"], r["option_id"]): r["n"] for r in ranked} == raw_reasons
    assert [r["n"] for r in ranked] == sorted((r["n"] for r in ranked), reverse=True)
    # A rebuild from the raw answers gives the same roll-ups.
    before = reports.report(store, whole_period(store))["totals"]
    store.rebuild_rollups()
    after = reports.report(store, whole_period(store))["totals"]
    assert (before.n, before.top2, before.distribution, before.nps_n) == (after.n, after.top2, after.distribution,
                                                                         after.nps_n)
    # The period filter: one day only.
    day = raw[len(raw) // 2]["day"]
    one_day = reports.report(store, reports.Filters(date.fromisoformat(day), date.fromisoformat(day)))
    assert one_day["totals"].n == reports.figures_from_answers([a for a in raw if a["day"] == day]).n


def test_mean_and_csat_compare_versions_with_four_and_five_faces(store, tablet):
    data = yaml.safe_load(DEFAULT_DEFINITION)
    data["main"]["faces"].pop(2)
    store.save_definition(yaml.safe_dump(data, allow_unicode=True))
    store.ingest(tablet, [answer("good", version=2, at=NOW - 100), answer("bad", version=2, at=NOW - 50)], now=NOW)
    t = reports.report(store, whole_period(store))["totals"]
    # 4 faces: good is 3 of 4 → 3.67 of 5 and top-2; bad is 2 of 4 → 2.33 of 5.
    assert t.csat == 50.0 and t.mean == pytest.approx((1 + 2 * 4 / 3 + 1 + 1 * 4 / 3) / 2)


def test_report_comments_are_masked_and_trend_buckets(store, tablet):
    store.ingest(tablet, [answer("good", comment="пишіть на ivan@example.com", at=NOW - 100)], now=NOW)
    data = reports.report(store, whole_period(store))
    assert data["comments"][0]["text"] == "пишіть на i•••@example.com"
    assert data["bucket"] == "month"
    short = reports.Filters(date(2025, 10, 1), date(2025, 10, 20))
    assert reports.bucket_of(short) == "day"


def test_filters_from_query_arguments():
    f = reports.Filters.from_args({"from": "2025-02-10", "to": "2025-01-01", "admin": "3", "flagged": "0"},
                                  date(2025, 6, 1))
    assert (f.date_from, f.date_to, f.admin_id, f.include_flagged) == (date(2025, 1, 1), date(2025, 2, 10), 3, False)
    f = reports.Filters.from_args({"from": "garbage"}, date(2025, 6, 1))
    assert f.date_to == date(2025, 6, 1) and (f.date_to - f.date_from).days == 29


def test_csv_rows_carry_every_answer_with_masked_comments(store, tablet):
    store.ingest(tablet, [answer("bad", path=[["why_bad", "premises"]], comment="тел. 067 123 45 67", at=NOW - 10)],
                 now=NOW)
    rows = list(reports.csv_rows(store, whole_period(store), {}))
    assert len(rows) == 1 and len(rows[0]) == len(reports.CSV_COLUMNS)
    assert "why_bad=premises" in rows[0] and "123 45 67" not in rows[0][15]
