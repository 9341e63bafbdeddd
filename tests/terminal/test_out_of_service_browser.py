"""The out-of-service screens in Chromium: the notice on the payment list and the refusal page,
touch only, axe-clean (WCAG 2.2 AA), in Ukrainian and in English at 200 % text; the catalogue
still opens."""
import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer, axe_violations
from tests.payments.helpers import SERVICE, make_app
from terminal import close_app
from terminal.state import state

pytestmark = pytest.mark.browser


@pytest.fixture
def out_of_service_kiosk(tmp_path):
    app = make_app(tmp_path / "instance")
    assert state(app).out_of_service.set(True, "equipment_fault", "hub.central")[0]
    server = LiveServer(app)
    yield server.url
    server.stop()
    close_app(app)


def test_out_of_service_is_explained_and_accessible(out_of_service_kiosk, page):
    url = out_of_service_kiosk
    page.goto(url + "/pay")
    notice = page.get_by_role("alert")
    expect(notice).to_contain_text("Оплата тимчасово недоступна: несправність обладнання")
    assert axe_violations(page) == []
    page.locator(f'a[href="/pay/service/{SERVICE}"]').tap()
    expect(page.get_by_role("alert")).to_contain_text("Розпочаті оплати буде завершено")
    assert axe_violations(page) == []
    # the home screen and the catalogue still work
    page.get_by_role("link", name="На головну").first.tap()
    expect(page).to_have_url(url + "/")
    assert axe_violations(page) == []
    # English, largest text: the same message, still clean
    page.goto(url + "/pay")
    page.locator('form[action="/lang/en"] button').first.tap()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    for pct in (125, 150, 175, 200):
        page.locator('button[name="action"][value="larger"]').first.tap()
        expect(page.locator(".size-value")).to_contain_text(str(pct))
    page.goto(url + f"/pay/service/{SERVICE}")
    expect(page.get_by_role("alert")).to_contain_text("Payment is temporarily unavailable: an equipment fault")
    assert axe_violations(page) == []
