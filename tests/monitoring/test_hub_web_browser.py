"""The hub's web app in Chromium, served by waitress as `cnap hub` serves it: log in with the
form, every page axe-clean (WCAG 2.2 AA) in Ukrainian and in English, large targets, table cells
that never split a word, an ack done by hand."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from monitoring.hub import schema
from monitoring.hub.db import open_store
from terminal.server import BackgroundServer
from tests.conftest import axe_violations
from tests.monitoring.test_hub_web import NOW, PINS, add_alert, add_internet_entities, add_site, make_app, make_staff

pytestmark = pytest.mark.browser

PAGES = ("/", "/site/kyiv-1", "/alerts", "/surveys", "/dropped", "/audit", "/staff", "/pin")


@pytest.fixture
def hub_server(tmp_path):
    store = schema.ensure(open_store(tmp_path / "hub.db"))
    staff, ids = make_staff(tmp_path / "staff.db")
    app = make_app(store, staff)
    add_site(store, "kyiv-1")
    add_site(store, "zaporizhzhia-oblast-centr", status="offline", last_seen=NOW - 7200)
    add_site(store, "never-heard", status="unknown", last_seen=NOW - 90000)
    key = add_alert(store, "kyiv-1", rule="ups_low_battery", severity="critical")
    add_alert(store, "kyiv-1", rule="co2_high", status="pending")
    add_alert(store, "zaporizhzhia-oblast-centr", rule="printer_paper_out", status="resolved", key="r1")
    with store.transaction() as tx:
        tx.execute("UPDATE alerts SET resolved_at = ? WHERE status = 'resolved'", (NOW - 100,))
        tx.execute("INSERT INTO alert_acks (key, serial, at, who, comment) VALUES (?, 1, ?, 'Technician', "
                   "'Виїхали на об''єкт')", (key, NOW - 60))
        tx.execute("INSERT INTO entities VALUES ('kyiv-1', 'power', 'power', ?, ?, ?)",
                   (json.dumps({"v": 1, "ts": NOW, "available": True, "state": "on_battery",
                                "ups": {"status": "on_battery", "charge_pct": 40, "runtime_s": 600},
                                "inputs": [{"name": "mains", "live": False}]}), NOW, NOW))
        tx.execute("INSERT INTO entities VALUES ('kyiv-1', 'device/printer', 'device', ?, ?, ?)",
                   (json.dumps({"v": 1, "ts": NOW, "online": True, "state": "idle", "paper": "near_end"}), NOW, NOW))
        tx.executemany("INSERT INTO samples VALUES ('kyiv-1', 'power', 'charge_pct', ?, ?)",
                       [(NOW - 600 * i, 40 + i) for i in range(30)])
        tx.execute("INSERT INTO survey_answers VALUES ('u1', 'kyiv-1', ?, ?, ?)",
                   (NOW - 60, NOW, json.dumps({"score": 5, "scale": 5})))
        tx.execute("INSERT INTO dropped (at, site, topic, reason) VALUES (?, 'kyiv-1', 'cnap/kyiv-1/bogus', 'topic')",
                   (NOW,))
        tx.execute("INSERT INTO silences (id, matchers, starts_at, ends_at, creator, comment, created_at) "
                   "VALUES ('s1', ?, ?, ?, 'Technician', 'ремонт', ?)",
                   (json.dumps({"site": "kyiv-1"}), NOW, NOW + 3600, NOW))
        tx.execute("INSERT INTO commands (id, site, controller, action, args, requested_by, requested_at, "
                   "expires_at, sent_at, result_ok, result_message, result_at) VALUES ('c1', 'kyiv-1', "
                   "'ventilation', 'override', '{\"level\": 0, \"minutes\": 30}', 'Technician', ?, ?, ?, 1, "
                   "'ok', ?)", (NOW - 30, NOW + 270, NOW - 29, NOW - 28))
    add_internet_entities(store)   # visitor internet and guest Wi-Fi on the site page, with their charts
    server = BackgroundServer(app, host="127.0.0.1", port=0)
    server.store = store
    yield server
    server.stop()
    staff.close()
    store.close()


def log_in(page, server, name="Admin", pin=PINS["admin"]):
    page.goto(server.url + "/login")
    page.get_by_label(name, exact=False).first.check()
    page.locator("#pin").fill(pin)
    page.locator("form.stack button").click()
    expect(page.locator("h1")).to_have_text("Усі об'єкти")


def test_every_page_is_axe_clean_in_ukrainian_and_english(hub_server, page):
    page.goto(hub_server.url + "/login")
    assert axe_violations(page) == []
    log_in(page, hub_server)
    for lang in ("uk", "en"):
        for path in PAGES:
            page.goto(hub_server.url + path)
            assert page.locator("html").get_attribute("lang") == lang
            assert axe_violations(page) == [], (lang, path)
        page.goto(hub_server.url + "/")
        page.locator(".tools button[name=lang]").click()
    page.goto(hub_server.url + "/no-such-page")
    assert axe_violations(page) == []


def test_targets_are_large_and_words_are_not_split(hub_server, page):
    log_in(page, hub_server)
    page.set_viewport_size({"width": 390, "height": 800})   # a phone: tables scroll, words stay whole
    for path in ("/", "/alerts", "/site/kyiv-1"):
        page.goto(hub_server.url + path)
        for control in page.locator("main button, main select, main input:not([type=hidden]), nav a").all():
            box = control.bounding_box()
            if box:   # hidden in a scrolled region still has a box
                assert box["height"] >= 24 and box["width"] >= 24, (path, control.inner_html()[:80])
        for button in page.locator("main button").all():
            assert button.bounding_box()["height"] >= 44, path
        styles = page.evaluate("""() => [...document.querySelectorAll('td, th')].map(cell => {
            const s = getComputedStyle(cell); return s.wordBreak + '/' + s.overflowWrap + '/' + s.hyphens; })""")
        assert set(styles) <= {"normal/normal/manual"}, (path, set(styles))


def test_ack_by_hand(hub_server, page):
    log_in(page, hub_server, name="Manager", pin=PINS["manager"])
    page.goto(hub_server.url + "/site/kyiv-1")
    first = page.locator("form[action='/alerts/ack']").first
    first.get_by_label("Коментар").fill("Перевіряю ДБЖ")
    first.get_by_role("button", name="Підтвердити").click()
    expect(page.get_by_role("status").first).to_contain_text("Підтвердження прийнято")
    who, payload = hub_server.store.query_one("SELECT who, payload FROM alert_requests WHERE kind = 'ack'")
    assert who == "Manager" and json.loads(payload)["comment"] == "Перевіряю ДБЖ"
