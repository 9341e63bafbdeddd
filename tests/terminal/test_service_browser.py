"""Service mode in Chromium: choose the person and type the PIN by touch on the on-screen keypad,
the forced first PIN change, axe on every page."""
import pytest
from playwright.sync_api import expect

from tests.conftest import axe_violations
from tests.helpers import choose_staff

pytestmark = pytest.mark.browser


def type_pin_by_touch(page, field, digits):
    page.locator(field).tap()
    keypad = page.locator('#osk [data-layout="digits"]')
    expect(keypad).to_be_visible()
    for digit in digits:
        keypad.locator(f'[data-key="{digit}"]').tap()
    expect(page.locator(field)).to_have_value(digits)


def test_pin_by_touch_then_every_admin_page_is_axe_clean(live_server, page):
    page.goto(live_server.url + "/service/login")
    assert axe_violations(page) == []
    page.get_by_role("radio", name="admin").tap()
    type_pin_by_touch(page, "#pin", "000000")
    page.get_by_role("button", name="Увійти").tap()
    expect(page.locator("h1")).to_have_text("Сервісний режим")
    for path in ("/service/", "/service/staff", "/service/audit", "/service/pin"):
        page.goto(live_server.url + path)
        assert axe_violations(page) == [], path


def test_staff_tiles_are_touch_sized(live_server, page):
    page.goto(live_server.url + "/service/login")
    for tile in page.locator(".staff-tile").all():
        box = tile.bounding_box()
        assert box["height"] >= 44 and box["width"] >= 44


def test_wrong_pin_message_is_announced_and_axe_clean(live_server, page):
    page.goto(live_server.url + "/service/login")
    choose_staff(page, "admin")
    page.locator("#pin").fill("123456")
    page.get_by_role("button", name="Увійти").tap()
    expect(page.get_by_role("alert")).to_have_text("Неправильний PIN-код.")
    expect(page.locator("#pin")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("radio", name="admin")).to_be_checked()   # the choice is kept
    assert axe_violations(page) == []


@pytest.fixture
def fresh_app(tmp_path):
    """A kiosk on its first day: the seeded sample PINs must be changed."""
    from terminal import close_app, create_app

    application = create_app({"INSTANCE_PATH": str(tmp_path / "fresh"), "TESTING": True, "SECRET_KEY": "t",
                              "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": "",
                              "SERVICE_PINS_MUST_CHANGE": True})
    yield application
    close_app(application)


def test_first_login_with_a_sample_pin_leads_to_choosing_ones_own(fresh_app, browser):
    from tests.conftest import LiveServer

    server = LiveServer(fresh_app)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, has_touch=True, locale="uk-UA")
    page = context.new_page()
    try:
        page.goto(server.url + "/service/login")
        choose_staff(page, "admin")
        page.locator("#pin").fill("000000")
        page.get_by_role("button", name="Увійти").tap()
        expect(page.locator("h1")).to_have_text("Оберіть свій PIN-код")
        assert axe_violations(page) == []
        page.goto(server.url + "/service/audit")
        expect(page.locator("h1")).to_have_text("Оберіть свій PIN-код")   # nothing else first
        type_pin_by_touch(page, "#new-pin", "583920")
        type_pin_by_touch(page, "#new-pin2", "583920")
        page.get_by_role("button", name="Зберегти PIN-код").tap()
        expect(page.locator("h1")).to_have_text("Сервісний режим")
        page.goto(server.url + "/service/audit")
        expect(page.locator("h1")).to_have_text("Журнал дій працівників")
    finally:
        context.close()
        server.stop()
