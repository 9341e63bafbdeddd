"""Visitor internet pages in Chromium, by touch, axe-clean (WCAG 2.2 AA) in Ukrainian and English:
the home tile, the terms screen, the session-open page, the ended page, the blocked page, the
cannot-start page and service mode's "Visitor internet" section. The window's browsing view is
the recording fake of the WindowPort contract (the real one is tested on its own)."""
import pytest
from playwright.sync_api import expect

from tests.conftest import axe_violations
from tests.helpers import choose_staff
from tests.terminal.internet_fakes import make_ready

pytestmark = pytest.mark.browser


def to_english(page):
    page.locator('form[action="/lang/en"] button').first.tap()
    expect(page.locator("html")).to_have_attribute("lang", "en")


def test_tile_terms_open_and_ended_by_touch(app, live_server, page):
    window = make_ready(app)
    url = live_server.url
    page.goto(url + "/")
    page.locator("#internet-tile").tap()
    expect(page.locator("h1")).to_have_text("Інтернет")
    assert axe_violations(page) == []
    accept = page.get_by_role("button", name="Погоджуюсь, відкрити інтернет")
    box = accept.bounding_box()
    assert box["height"] >= 44 and box["width"] >= 200
    accept.tap()
    expect(page.get_by_role("status")).to_contain_text("Браузер відкрито")
    assert axe_violations(page) == []
    assert len(window.requests) == 1 and window.requests[0].lang == "uk"
    window.emit({"type": "started"})
    window.emit({"type": "ended", "reason": "session_limit", "seconds": 900})
    page.goto(window.requests[0].back_url)
    expect(page.get_by_role("status")).to_have_text("Час сеансу вичерпано.")
    assert axe_violations(page) == []
    page.get_by_role("link", name="На головну").last.tap()
    expect(page).to_have_url(url + "/")
    # English
    to_english(page)
    page.locator("#internet-tile").tap()
    expect(page.get_by_role("button", name="I agree, open the internet")).to_be_visible()
    assert axe_violations(page) == []
    page.goto(url + "/internet/ended?lang=en")
    expect(page.get_by_role("status")).to_have_text("The session's time is up.")
    assert axe_violations(page) == []


@pytest.mark.parametrize("lang, title", [("uk", "Цей сайт тут недоступний"), ("en", "This site is not available here")])
def test_blocked_page(app, live_server, page, lang, title):
    make_ready(app)
    page.goto(live_server.url + f"/internet/blocked?host=facebook.com&lang={lang}")
    expect(page.locator("h1")).to_have_text(title)
    expect(page.locator(".code")).to_have_text("facebook.com")
    assert axe_violations(page) == []


def test_cannot_start_page_in_both_languages(app, live_server, page):
    make_ready(app, uplink="down")
    page.goto(live_server.url + "/internet")
    expect(page.get_by_role("alert")).to_have_text("Немає зʼєднання з інтернетом. Спробуйте пізніше.")
    assert axe_violations(page) == []
    to_english(page)
    expect(page.get_by_role("alert")).to_have_text("There is no internet connection. Please try later.")
    assert axe_violations(page) == []


def test_service_section_add_and_remove_by_touch(app, live_server, page):
    make_ready(app)
    page.goto(live_server.url + "/service/login?next=/service/internet")
    choose_staff(page, "technician")
    page.locator("#pin").fill("222222")
    page.get_by_role("button", name="Увійти").tap()
    expect(page.locator("h1")).to_have_text("Інтернет для відвідувачів")
    assert axe_violations(page) == []
    page.locator("#inet-domain").fill("10.0.0.1")
    page.get_by_role("button", name="Додати", exact=True).tap()
    expect(page.get_by_role("alert")).to_have_text("Потрібне імʼя сайту, а не IP-адреса.")
    assert axe_violations(page) == []
    page.locator("#inet-domain").fill("cnap.example.ua")
    page.get_by_role("button", name="Додати", exact=True).tap()
    expect(page.get_by_role("status")).to_have_text("Додано: cnap.example.ua.")
    page.get_by_role("button", name="Вилучити cnap.example.ua").tap()
    expect(page.get_by_role("status")).to_have_text("Вилучено: cnap.example.ua.")
    to_english(page)
    expect(page.locator("h1")).to_have_text("Visitor internet")
    assert axe_violations(page) == []
