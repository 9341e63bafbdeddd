"""axe-core (WCAG 2.2 AA) on every tablet screen and every survey page of service mode, in both
languages and with high contrast, on a tablet viewport."""
from __future__ import annotations

import base64
import time
import uuid

import pytest
from playwright.sync_api import expect

from tests.conftest import axe_violations
from tests.helpers import choose_staff
from terminal.state import state

pytestmark = pytest.mark.browser

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@pytest.fixture
def tablet_page(browser, live_server, app):
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    tablet, token = store.register_tablet("Планшет 1", branch, "Вікно 1", "desk")
    store.add_administrator("Олена К.", branch, "432154")
    path = app.instance_path + "/survey_media/" + "a" * 24 + ".png"
    with open(path, "wb") as fh:
        fh.write(PNG)
    store.add_media("a" * 24 + ".png", "image", "Логотип ЦНАП", "ЦНАП logo", 5, len(PNG))
    context = browser.new_context(viewport={"width": 800, "height": 1280}, has_touch=True, locale="uk-UA")
    page = context.new_page()
    page.goto(f"{live_server.url}/tablet/#token={token}")
    expect(page.locator("#screen-main")).to_be_visible()
    yield page
    context.close()


def check(page, where):
    violations = axe_violations(page)
    assert violations == [], f"{where}: {violations}"


@pytest.mark.parametrize("lang", ["uk", "en"])
def test_every_tablet_screen_is_axe_clean(tablet_page, lang):
    page = tablet_page
    if lang == "en":
        page.locator("#lang-toggle").tap()
        expect(page.locator("#main-question")).to_have_text("How were you served today?")
    check(page, "main")
    page.locator('#faces [data-option="bad"]').tap()
    expect(page.locator("#screen-followup")).to_be_visible()
    check(page, "follow-up")
    page.locator('#choices [data-option="waiting"]').tap()
    expect(page.locator("#screen-followup")).to_be_visible()
    check(page, "second-level follow-up")
    page.locator('#choices [data-option="queue"]').tap()
    expect(page.locator("#screen-nps")).to_be_visible()
    check(page, "nps")
    page.locator('#nps [data-value="7"]').tap()
    expect(page.locator("#screen-comment")).to_be_visible()
    page.locator("#comment").tap()
    expect(page.locator("#osk")).to_be_visible()
    check(page, "comment with keyboard")
    page.locator("#comment-send").tap()
    expect(page.locator("#screen-thanks")).to_be_visible()
    check(page, "thanks")
    expect(page.locator("#screen-main")).to_be_visible(timeout=10000)
    page.locator("#staff-open").tap()
    check(page, "administrator shift")
    page.locator("#staff-back").tap()
    page.locator("#contrast-toggle").tap()
    expect(page.locator("html")).to_have_class("tablet-html contrast")
    check(page, "main, high contrast")
    page.evaluate("window.cnapTablet.attract()")
    expect(page.locator("#attract-image")).to_be_visible()
    check(page, "attract loop")


def test_attract_loop_pauses_on_touch(tablet_page):
    page = tablet_page
    page.evaluate("window.cnapTablet.attract()")
    expect(page.locator("#attract")).to_be_visible()
    expect(page.locator("#attract-image")).to_have_attribute("alt", "Логотип ЦНАП")
    page.locator("#attract").tap()
    expect(page.locator("#attract")).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-attract", "off")
    # The touch that stopped the loop answered nothing.
    assert page.evaluate("document.body.dataset.state") == "main"


def test_unregistered_and_revoked_tablets_say_so(browser, live_server, app):
    context = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/tablet/")
    expect(page.locator("#screen-unpaired")).to_be_visible()
    check(page, "unpaired")
    page.goto(f"{live_server.url}/tablet/#token=forged")
    page.reload()
    expect(page.locator("#unpaired-body")).to_contain_text("Відкрийте на цьому планшеті посилання")
    store = state(app).surveys
    tablet, token = store.register_tablet("Планшет 1", state(app).catalogue.branches[0].id, "Вікно 1", "desk")
    store.revoke_tablet(tablet.id)
    page.goto(f"{live_server.url}/tablet/#token={token}")
    page.reload()
    expect(page.locator("#unpaired-body")).to_contain_text("відкликано")
    context.close()


def seed_answers(store, tablet, admin_shift):
    now = time.time()
    answers = []
    for i, (main, path, nps, comment) in enumerate([
            ("very_good", [["liked", "speed"]], 10, "Все швидко, мій номер 0671234567"),
            ("bad", [["why_bad", "waiting"], ["waiting_where", "queue"]], 3, "Довга черга"),
            ("good", [], 8, None), ("neutral", [["improve", "information"]], None, None)]):
        answers.append({"uuid": str(uuid.uuid4()), "survey": "desk", "version": 1, "answered_at": now - 3600 * (i + 1),
                        "main": main, "path": path, "nps": nps, "comment": comment, "shift_id": admin_shift})
    store.ingest(tablet, answers)


@pytest.mark.parametrize("lang", ["uk", "en"])
def test_every_survey_service_page_is_axe_clean(browser, live_server, app, lang):
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    tablet, _ = store.register_tablet("Планшет 1", branch, "Вікно 1", "desk")
    store.add_administrator("Олена К.", branch, "432154")
    shift = store.start_shift(tablet, "432154", now=time.time() - 5 * 3600)   # before the seeded answers
    seed_answers(store, tablet, shift.id)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, has_touch=True, locale="uk-UA")
    page = context.new_page()
    page.goto(f"{live_server.url}/service/login")
    choose_staff(page, "admin")
    page.locator("#pin").fill("000000")
    page.locator("#pin").press("Enter")
    expect(page.locator("h1")).to_have_text("Сервісний режим")
    if lang == "en":
        page.get_by_role("button", name="English").tap()
        expect(page.locator("html")).to_have_attribute("lang", "en")
    page.goto(f"{live_server.url}/service/surveys/tablets")
    page.locator("#label").fill("Планшет 2")
    page.locator("#desk").fill("Вікно 2")
    page.locator("#desk").press("Enter")
    expect(page.locator("#tablet-link")).to_contain_text("#token=")
    expect(page.locator("img.qr")).to_be_visible()
    check(page, "tablets with a new link")
    for path in ("/service/surveys/administrators", "/service/surveys/definitions",
                 "/service/surveys/definitions/desk/edit", "/service/surveys/media", "/service/surveys/reports",
                 "/service/surveys/reports?group=admin", "/service/surveys/reports?from=2020-01-01&to=2020-01-02"):
        page.goto(live_server.url + path)
        check(page, path)
    page.goto(live_server.url + "/service/surveys/reports")
    expect(page.locator("#kpi-count")).to_have_text("4")
    page.get_by_role("button", name="Висока контрастність" if lang == "uk" else "High contrast").tap()
    expect(page.locator("html")).to_have_class("size-100 contrast")
    page.wait_for_load_state()
    check(page, "reports, high contrast")
    context.close()
