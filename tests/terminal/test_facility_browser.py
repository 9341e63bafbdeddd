"""The Facility section in Chromium: axe-clean (WCAG 2.2 AA) with the agent up, after an override,
with form errors and with the agent down; touch-sized controls; no sideways scrolling at 200 %."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import axe_violations
from tests.facility.fakes import FakeController
from tests.helpers import choose_staff
from tests.terminal.test_facility_screen import closed_port, start_agent

pytestmark = pytest.mark.browser


def log_in_as_technician(page, url):
    page.goto(url + "/service/login")
    choose_staff(page, "technician")
    page.locator("#pin").fill("222222")
    page.get_by_role("button", name="Увійти").tap()
    expect(page.locator("h1")).to_have_text("Сервісний режим")


def test_facility_screens_are_axe_clean_and_touch_sized(app, live_server, page):
    vent = FakeController("ventilation", state="demand", extra={"co2_ppm": 812, "filter_pressure_pa": 140})
    agent = start_agent(app, [vent, FakeController("power", state="online")], {"uplinks": "cannot import"})
    try:
        log_in_as_technician(page, live_server.url)
        page.get_by_role("link", name="Будівля").tap()
        expect(page.locator("h1")).to_have_text("Будівля")
        expect(page.locator("[data-controller]")).to_have_count(3)
        assert axe_violations(page) == []
        for control in page.locator("main button, main input:not([type=hidden]), main a.btn").all():
            box = control.bounding_box()
            assert box["height"] >= 44 and box["width"] >= 44, control.evaluate("e => e.outerHTML")
        # Errors: announced, linked to their fields, still axe-clean.
        page.locator("#override-level").fill("150")
        page.locator("#override-minutes").fill("30")
        page.get_by_role("button", name="Увімкнути ручний режим").tap()
        expect(page.locator("#override-errors")).to_contain_text("Рівень — ціле число від 0 до 100.")
        expect(page.locator("#override-level")).to_have_attribute("aria-invalid", "true")
        assert axe_violations(page) == []
        assert vent.commands == []
        # A good one reaches the controller; the answer is shown as a status message.
        page.locator("#override-level").fill("70")
        page.get_by_role("button", name="Увімкнути ручний режим").tap()
        expect(page.get_by_role("status")).to_contain_text("Ручний режим увімкнено.")
        assert vent.commands == [("override", {"level": 70, "minutes": 30})]
        assert axe_violations(page) == []
        # At 200 % text on a tablet-sized screen the page still never scrolls sideways.
        page.set_viewport_size({"width": 800, "height": 1280})
        page.goto(live_server.url + "/")
        while not page.locator(".size-value").inner_text().endswith(" 200 %"):
            page.locator('button[name="action"][value="larger"]').click()
            page.wait_for_load_state("load")
        page.goto(live_server.url + "/service/facility")
        expect(page.locator("html")).to_have_class(re.compile(r"\bsize-200\b"))
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
        assert axe_violations(page) == []
    finally:
        agent.stop()
    app.config["AGENT_PORT"] = closed_port()
    page.goto(live_server.url + "/service/facility")
    expect(page.get_by_role("alert")).to_contain_text("Агент недоступний")
    assert axe_violations(page) == []
