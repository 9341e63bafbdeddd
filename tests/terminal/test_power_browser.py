"""The power gate's screens in Chromium: the notice on the payment list and the refusal page,
touch only, axe-clean (WCAG 2.2 AA), in Ukrainian and in English at 200 % text."""
import pytest
from playwright.sync_api import expect

from facility.power.simulator import NutSimulator
from tests.conftest import LiveServer, axe_violations
from tests.payments.helpers import SERVICE, make_app, wait_until
from terminal import close_app
from terminal.state import state

pytestmark = pytest.mark.browser


@pytest.fixture
def short_runtime_kiosk(tmp_path):
    nut = NutSimulator(ups="sim")
    app = make_app(tmp_path / "instance", **nut.settings, POWER_POLL_S=0.1, POWER_RUNTIME_MARGIN_S=300)
    server = LiveServer(app)
    nut.set_state("OB_SHORT")  # 240 s left
    wait_until(lambda: state(app).power_gate.assessment and state(app).power_gate.assessment.stop_new_payments,
               what="the gate to close")
    yield server.url
    server.stop()
    close_app(app)
    nut.stop()


def test_paused_payments_are_explained_and_accessible(short_runtime_kiosk, page):
    page.goto(short_runtime_kiosk + "/pay")
    notice = page.get_by_role("alert")
    expect(notice).to_contain_text("Нові оплати тимчасово не приймаються")
    expect(notice).to_contain_text("приблизно на 4 хв")
    assert axe_violations(page) == []
    page.locator(f'a[href="/pay/service/{SERVICE}"]').tap()
    expect(page.get_by_role("alert")).to_contain_text("розпочаті оплати буде завершено")
    assert axe_violations(page) == []
    # English, largest text: the same message, still clean
    page.goto(short_runtime_kiosk + "/pay")
    page.locator('form[action="/lang/en"] button').first.tap()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    for pct in (125, 150, 175, 200):
        page.locator('button[name="action"][value="larger"]').first.tap()
        expect(page.locator(".size-value")).to_contain_text(str(pct))
    page.goto(short_runtime_kiosk + f"/pay/service/{SERVICE}")
    expect(page.get_by_role("alert")).to_contain_text("New payments are paused")
    assert axe_violations(page) == []
