"""Service mode in Chromium: PIN entry by touch on the on-screen keypad, axe on every page."""
import pytest
from playwright.sync_api import expect

from tests.conftest import axe_violations

pytestmark = pytest.mark.browser


def test_pin_by_touch_then_every_admin_page_is_axe_clean(live_server, page):
    page.goto(live_server.url + "/service/login")
    page.locator("#pin").tap()
    keypad = page.locator('#osk [data-layout="digits"]')
    expect(keypad).to_be_visible()
    for digit in "000000":
        keypad.locator(f'[data-key="{digit}"]').tap()
    expect(page.locator("#pin")).to_have_value("000000")
    page.get_by_role("button", name="Увійти").tap()
    expect(page.locator("h1")).to_have_text("Сервісний режим")
    for path in ("/service/", "/service/staff", "/service/audit"):
        page.goto(live_server.url + path)
        assert axe_violations(page) == [], path


def test_wrong_pin_message_is_announced_and_axe_clean(live_server, page):
    page.goto(live_server.url + "/service/login")
    page.locator("#pin").fill("1234")
    page.get_by_role("button", name="Увійти").tap()
    expect(page.get_by_role("alert")).to_have_text("Неправильний PIN-код.")
    expect(page.locator("#pin")).to_have_attribute("aria-invalid", "true")
    assert axe_violations(page) == []
