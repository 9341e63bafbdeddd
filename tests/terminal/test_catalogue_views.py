"""Catalogue screens through the test client: every information-card field, branch hours,
search endpoints under absurd input."""
import re
from datetime import date, datetime, time

import pytest

from terminal.catalogue.model import Branch, Interval
from payments.money import format_uah
from terminal.views.catalogue import branch_status_text, week_rows
from terminal.state import state


def a_paid_service(app):
    cat = state(app).catalogue
    return next(s for s in cat.services.values() if s.paid and s.stages and s.refusal_grounds)


def test_service_card_shows_every_information_card_field(app, client):
    s = a_paid_service(app)
    page = client.get(f"/service/{s.id}").text
    for text in (s.name["uk"], s.short["uk"], s.provider["uk"], s.term["uk"], s.result["uk"],
                 s.documents[0]["uk"], s.receive_ways[0]["uk"], s.legal_acts[0]["uk"],
                 s.refusal_grounds[0]["uk"], s.stages[0].step["uk"], s.fee.legal_basis["uk"],
                 s.fee.details.recipient, s.fee.details.edrpou, s.fee.details.iban,
                 s.fee.details.purpose["uk"], format_uah(s.fee.amount_kop, "uk")):
        assert text.replace("'", "&#39;") in page, text
    for heading in ("Які документи потрібні", "Строк надання", "Результат", "Як отримати результат",
                    "Нормативні акти", "Підстава для стягнення плати", "Код ЄДРПОУ", "Етапи надання"):
        assert heading in page


def test_free_service_says_so(app, client):
    cat = state(app).catalogue
    free = next(s for s in cat.services.values() if not s.paid)
    page = client.get(f"/service/{free.id}").text
    assert "Послуга надається безоплатно." in page
    assert "IBAN" not in page


def test_every_sample_screen_renders(app, client):
    cat = state(app).catalogue
    for c in cat.categories:
        assert client.get(f"/category/{c.id}").status_code == 200
    for s in cat.services.values():
        assert client.get(f"/service/{s.id}").status_code == 200, s.id
    for p in cat.packages.values():
        page = client.get(f"/package/{p.id}")
        assert page.status_code == 200
        for service in cat.package_services(p):
            assert service.name["uk"].replace("'", "&#39;") in page.text
    assert client.get("/branches").status_code == 200


@pytest.mark.parametrize("query", [
    "", "   ", "!!!???...,,,", "\x00\x01\x1b[31m", "а" * 10_000, "😀🙈", "<script>alert(1)</script>",
    "'; DROP TABLE services; --", "%", "\u202e\u200b",
])
def test_absurd_search_input_is_handled(client, query):
    html = client.get("/search", query_string={"q": query})
    assert html.status_code == 200
    assert "<script>alert(1)</script>" not in html.text
    api = client.get("/api/search", query_string={"q": query})
    assert api.status_code == 200
    body = api.get_json()
    assert isinstance(body["results"], list) and len(body["results"]) <= 20
    assert len(body["query"]) <= 200


def test_search_api_returns_ranked_highlighted_hits(client):
    body = client.get("/api/search", query_string={"q": "загранпаспорт"}).get_json()
    top = body["results"][0]
    assert top["kind"] == "service"
    assert "кордон" in "".join(text for text, _ in top["segments"]).lower()
    assert top["url"] == f"/service/{top['id']}"


def test_search_page_works_without_javascript(client):
    page = client.get("/search", query_string={"q": "прописка"}).text
    assert re.search(r"Знайдено \d+ результат", page)
    assert "<mark>" in page or "місця проживання" in page


BRANCH = Branch(id="b", name={"uk": "Центр"}, address={"uk": "вул. Тестова, 1"},
                week={0: (Interval(time(8), time(13)), Interval(time(14), time(17))),
                      1: (Interval(time(8), time(20)),), 5: (Interval(time(9), time(13)),)},
                special_days={date(2026, 12, 1): ()})


@pytest.mark.parametrize("moment, is_open, text", [
    (datetime(2026, 11, 23, 9, 0), True, "Відчинено до 13:00"),            # Monday morning
    (datetime(2026, 11, 23, 13, 30), False, "Зачинено · відчиниться сьогодні о 14:00"),  # lunch break
    (datetime(2026, 11, 23, 17, 0), False, "Зачинено · відчиниться вт о 08:00"),  # closes at 17:00 sharp
    (datetime(2026, 11, 28, 14, 0), False, "Зачинено · відчиниться пн о 08:00"),  # Saturday afternoon
    (datetime(2026, 11, 30, 18, 0), False, "Зачинено · відчиниться сб о 09:00"),  # Tue 1 Dec is a holiday, Wed–Fri closed
])
def test_branch_open_now_and_closes_at(app, moment, is_open, text):
    with app.test_request_context():
        assert branch_status_text(BRANCH, moment, "uk") == (is_open, text)


def test_week_rows_show_breaks_and_days_off(app):
    with app.test_request_context():
        rows = week_rows(BRANCH, "uk")
    assert rows[0] == ("Понеділок", "08:00–17:00, перерва 13:00–14:00")
    assert rows[6] == ("Неділя", "вихідний")


def test_service_card_and_pay_screen_show_the_same_amount_in_each_language(app, client):
    # One formatter for every screen: the card and the payment flow must never disagree.
    s = a_paid_service(app)
    for lang, text in (("uk", format_uah(s.fee.amount_kop, "uk")), ("en", format_uah(s.fee.amount_kop, "en"))):
        client.post(f"/lang/{lang}", data={"next": "/"})
        assert text in client.get(f"/service/{s.id}").text
        assert text in client.get("/pay").text


@pytest.mark.parametrize("kop, uk, en", [(0, "0,00 грн", "0.00 UAH"), (27900, "279,00 грн", "279.00 UAH"),
                                         (123456789, "1\u202f234\u202f567,89 грн", "1\u202f234\u202f567.89 UAH"),
                                         (-5, "−0,05 грн", "−0.05 UAH")])
def test_money_is_formatted_from_integer_kopiykas(kop, uk, en):
    assert format_uah(kop, "uk") == uk
    assert format_uah(kop, "en") == en
