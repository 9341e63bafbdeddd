"""The desk tablet in real Chromium (tablet viewport, touch): answer surveys, stop the server for
real, answer more (and reload the app from the Service Worker's cache), start the server again on
the same port and SQLite file, and check the stored set is exactly what was answered."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from playwright.sync_api import expect

from terminal import close_app, create_app
from terminal.server import BackgroundServer
from terminal.state import state

pytestmark = pytest.mark.browser


def make_app(instance):
    return create_app({"INSTANCE_PATH": str(instance), "TESTING": True, "SECRET_KEY": "test",
                       "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": "",
                       "SURVEY_REPEAT_WINDOW_S": 0, "SURVEY_THANKS_S": 1})


def give_answer(page, face, options=(), nps=None, comment=None):
    page.locator(f'#faces [data-option="{face}"]').tap()
    for option in options:
        page.locator(f'#choices [data-option="{option}"]').tap()
    if page.locator("#screen-followup").is_visible():
        page.locator("#screen-followup .step-skip").tap()
    expect(page.locator("#screen-nps")).to_be_visible()
    if nps is None:
        page.locator("#screen-nps .step-skip").tap()
    else:
        page.locator(f'#nps [data-value="{nps}"]').tap()
    expect(page.locator("#screen-comment")).to_be_visible()
    if comment is None:
        page.locator("#screen-comment .step-skip").tap()
    else:
        page.locator("#comment").tap()
        for ch in comment:   # typed on the on-screen keyboard, as a visitor would
            page.locator(f'#osk .osk-layout:not([hidden]) [data-key="{ch}"]').tap()
        page.locator("#comment-send").tap()
    expect(page.locator("#screen-thanks")).to_be_visible()
    expect(page.locator("#screen-main")).to_be_visible(timeout=5000)
    return (face, tuple(options), nps, comment)


def stored_set(store):
    return Counter((a["main"], tuple(option for _, option in json.loads(a["path"])), a["nps"], a["comment"])
                   for a in store.answers())


def test_no_answer_is_lost_or_duplicated_when_the_server_goes_away(tmp_path, browser):
    instance = tmp_path / "instance"
    app = make_app(instance)
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    tablet, token = store.register_tablet("Планшет 1", branch, "Вікно 1", "desk")
    olena = store.add_administrator("Олена К.", branch, "432154")
    server = BackgroundServer(app)
    port = server.port
    context = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True, locale="uk-UA")
    page = context.new_page()
    second_app = second_server = None
    try:
        page.goto(f"{server.url}/tablet/#token={token}")
        expect(page.locator("#main-question")).to_have_text("Як вас обслужили сьогодні?")
        expect(page.locator("body")).to_have_attribute("data-sw", "ready")  # no eval: the CSP forbids it
        assert "token" not in page.url     # the token left the address bar for local storage
        # From now on every request of the page passes through the Service Worker.
        page.reload()
        expect(page.locator("#main-question")).to_have_text("Як вас обслужили сьогодні?")

        # The administrator marks the start of the shift with a PIN.
        page.locator("#staff-open").tap()
        page.locator("#shift-pin").fill("999999")
        page.get_by_role("button", name="Почати зміну").tap()
        expect(page.locator("#shift-message")).to_have_text("Неправильний PIN-код.")
        page.locator("#shift-pin").fill("432154")
        page.get_by_role("button", name="Почати зміну").tap()
        expect(page.locator("#staff-current")).to_contain_text("Олена К.")
        page.locator("#staff-back").tap()

        expected = Counter()
        expected[give_answer(page, "very_good", ["speed"], nps=10)] += 1
        expected[give_answer(page, "bad", ["waiting", "queue"], nps=4, comment="дякую")] += 1
        expected[give_answer(page, "neutral")] += 1
        expect(page.locator("body")).to_have_attribute("data-queue", "0", timeout=15000)
        assert stored_set(store) == expected

        # Switch the server off for real.
        server.stop()
        close_app(app)
        expected[give_answer(page, "good", ["comfort"], nps=9)] += 1
        expected[give_answer(page, "very_bad", ["politeness"], nps=0, comment="черга")] += 1
        # The app reloads from the Service Worker's cache while the server is away.
        page.reload()
        expect(page.locator("#main-question")).to_have_text("Як вас обслужили сьогодні?")
        page.locator("#staff-open").tap()   # the tablet still knows who is at the desk
        expect(page.locator("#staff-current")).to_contain_text("Олена К.")
        page.locator("#staff-back").tap()
        expected[give_answer(page, "very_good", ["competence"])] += 1
        expected[give_answer(page, "bad", ["documents"], nps=6)] += 1
        expect(page.locator("body")).to_have_attribute("data-queue", "4")

        # On again: same port, same SQLite file.
        second_app = make_app(instance)
        second_server = BackgroundServer(second_app, port=port)
        second_store = state(second_app).surveys
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("body")).to_have_attribute("data-queue", "0", timeout=45000)
        answers = second_store.answers()
        assert stored_set(second_store) == expected
        assert len(answers) == sum(expected.values()) == 7
        assert all(a["admin_id"] == olena.id and a["tablet_id"] == tablet.id for a in answers)
        assert all(a["counted"] == 1 for a in answers)

        # Sending the whole history again (a lost confirmation) changes nothing.
        results = page.evaluate("""async (payload) => {
            const r = await fetch('/api/survey/answers', {method: 'POST', body: JSON.stringify(payload),
              headers: {'Authorization': 'Bearer ' + localStorage.getItem('cnap-survey-token'),
                        'Content-Type': 'application/json'}});
            return (await r.json()).results.map(x => x.status);
        }""", {"sent_at": None, "answers": [
            {"uuid": a["uuid"], "survey": a["survey_id"], "version": a["version"], "answered_at": a["answered_at"],
             "main": a["main"], "path": json.loads(a["path"]), "nps": a["nps"], "comment": a["comment"],
             "shift_id": a["shift_id"]} for a in answers]})
        assert results == ["duplicate"] * 7
        assert second_store.answers() == answers
    finally:
        context.close()
        if second_server:
            second_server.stop()
            close_app(second_app)
