"""The payment flows in Chromium against the simulators, touch only, axe on every pay screen."""
import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer, axe_violations
from tests.helpers import choose_staff
from tests.payments.helpers import SERVICE, Kiosk, make_app, wait_until
from terminal.state import state

pytestmark = pytest.mark.browser


@pytest.fixture
def kiosk(tmp_path):
    k = Kiosk(make_app(tmp_path / "instance"))
    server = LiveServer(k.app)
    k.url = server.url
    yield k
    server.stop()
    k.close()


def clean(page, where):
    violations = axe_violations(page)
    assert violations == [], f"{where}: {violations}"


def enter_payer(kiosk, page, service=SERVICE):
    page.goto(kiosk.url + "/pay")
    clean(page, "index")
    page.locator(f'a[href="/pay/service/{service}"]').tap()
    expect(page.locator("h1")).to_have_text("Дані платника")
    clean(page, "payer")
    # an invalid tax number is refused with a message next to the field
    page.locator("#surname").fill("Шевченко")
    page.locator("#id_value").tap()
    keypad = page.locator('#osk [data-layout="digits"]')
    expect(keypad).to_be_visible()
    for digit in "3652504576":
        keypad.locator(f'[data-key="{digit}"]').tap()
    page.get_by_role("button", name="Далі").tap()
    expect(page.locator("#id-error")).to_contain_text("Такого РНОКПП не існує")
    clean(page, "payer with errors")
    page.locator("#id_value").fill("")
    page.locator("#id_value").tap()
    for digit in "3652504575":
        page.locator(f'#osk [data-layout="digits"] [data-key="{digit}"]').tap()
    page.get_by_role("button", name="Далі").tap()
    expect(page.locator("h1")).to_have_text("Перевірте платіж")
    expect(page.get_by_text("Термінал решти не видає.").first).to_be_visible()
    clean(page, "confirm")


def test_cash_flow_with_overpayment(kiosk, page):
    enter_payer(kiosk, page)
    page.get_by_role("button", name="Готівкою").tap()
    expect(page.locator("#pay-message")).to_have_text("Вставте купюру в купюроприймач")
    expect(page.locator("body")).to_have_attribute("data-idle", "on")  # waiting for a bill: idle reset allowed
    clean(page, "cash progress")
    wait_until(lambda: kiosk.validator.insert_bill(5000), what="validator accepting")
    expect(page.locator("#pay-credited")).to_have_text("50,00 грн")
    expect(page.locator("#pay-remaining")).to_have_text("24,00 грн")
    clean(page, "cash progress with credit")
    wait_until(lambda: kiosk.validator.insert_bill(5000), what="validator accepting")
    expect(page.locator("h1")).to_have_text("Оплату прийнято", timeout=10000)
    expect(page.locator("#voucher-code")).to_be_visible()
    expect(page.get_by_text("Квитанцію надруковано.")).to_be_visible()
    clean(page, "receipt")
    page.get_by_role("button", name="Готово").tap()
    expect(page.locator("h1")).to_have_text("Вітаємо в ЦНАП!")


def test_card_flow_decline_then_approve(kiosk, page):
    kiosk.card.set_behaviour("decline")
    enter_payer(kiosk, page)
    page.get_by_role("button", name="Карткою").tap()
    expect(page.locator("#pay-card-error")).to_contain_text("Банк відхилив операцію", timeout=10000)
    clean(page, "card declined")
    kiosk.card.set_behaviour("approve")
    page.get_by_role("button", name="Спробувати картку ще раз").tap()
    expect(page.locator("h1")).to_have_text("Оплату прийнято", timeout=10000)
    clean(page, "card receipt")
    assert len(kiosk.card.purchases("approved")) == 1


def test_cancel_after_a_bill_gives_voucher_and_paper_out_receipt(kiosk, page):
    kiosk.printer.set_paper("out")
    enter_payer(kiosk, page)
    expect(page.get_by_text("квитанцію буде показано на екрані")).to_be_visible()
    page.get_by_role("button", name="Готівкою").tap()
    expect(page.locator("#pay-message")).to_have_text("Вставте купюру в купюроприймач")
    wait_until(lambda: kiosk.validator.insert_bill(2000), what="validator accepting")
    expect(page.locator("#pay-credited")).to_have_text("20,00 грн")
    page.get_by_role("button", name="Скасувати оплату").tap()
    expect(page.locator("h1")).to_have_text("Оплату скасовано — видано ваучер", timeout=10000)
    expect(page.locator("#electronic-receipt")).to_be_visible()
    clean(page, "voucher electronic receipt")


def test_fault_screen_and_service_pages_are_axe_clean(kiosk, page):
    enter_payer(kiosk, page)
    page.get_by_role("button", name="Готівкою").tap()
    wait_until(lambda: kiosk.validator.insert_bill(2000), what="validator accepting")
    expect(page.locator("#pay-credited")).to_have_text("20,00 грн")
    kiosk.validator.jam_bill()
    expect(page.locator("#pay-fault")).to_contain_text("застрягла")
    clean(page, "jam")
    page.get_by_role("button", name="Скасувати оплату").tap()
    expect(page.locator("h1")).to_have_text("Оплату скасовано — видано ваучер", timeout=10000)
    page.goto(kiosk.url + "/service/login")
    choose_staff(page, "admin")
    page.locator("#pin").fill("000000")
    page.get_by_role("button", name="Увійти").tap()
    expect(page.locator("h1")).to_have_text("Сервісний режим")
    for path in ("/service/pay/payments", "/service/pay/encashment", "/service/pay/vouchers",
                 "/service/pay/recovered", "/service/pay/selftest"):
        page.goto(kiosk.url + path)
        clean(page, path)
    page.get_by_role("button", name="Запустити самоперевірку").tap()
    expect(page.locator("table")).to_contain_text("bill_validator")
    clean(page, "selftest results")


def test_verification_and_busy_pages_are_axe_clean(kiosk, page):
    from payments.receipts import check_code
    # a first visitor's payment in progress (test client), a second visitor in Chromium
    kiosk.payer()
    kiosk.begin("cash")
    enter_payer(kiosk, page)
    page.get_by_role("button", name="Готівкою").tap()
    expect(page.get_by_role("alert")).to_contain_text("обслуговує інший платіж")
    clean(page, "busy message")
    kiosk.client.post(f"/pay/p/{kiosk.payment_id()}/cancel")
    kiosk.settle()
    payment = kiosk.payment()
    kiosk.client.post("/pay/finish")
    kiosk.payer()
    kiosk.begin("card")
    kiosk.settle()
    payment = kiosk.payment()
    page.goto(f"{kiosk.url}/receipt/{payment.receipt_no}?c={check_code(kiosk.till.config.receipt_key, payment)}")
    expect(page.get_by_role("status")).to_have_text("Квитанція справжня.")
    clean(page, "verify ok")
    page.goto(f"{kiosk.url}/receipt/{payment.receipt_no}?c=forged")
    expect(page.get_by_role("alert")).to_contain_text("Квитанцію не знайдено")
    clean(page, "verify bad")


def test_idle_reset_after_a_partly_used_voucher_frees_the_terminal(tmp_path, page):
    """Issue 8 #9: a voucher pays part, the visitor walks away on the cash screen. kiosk.js's own
    idle reset (no touch: the long poll must not keep postponing it) settles the payment with a
    voucher for the credit, shows its code, and the next visitor can pay."""
    k = Kiosk(make_app(tmp_path / "instance", IDLE_TIMEOUT_S=12, IDLE_WARNING_S=20))
    server = LiveServer(k.app)
    k.url = server.url
    try:
        # a voucher of 50,00 from an earlier, cancelled cash payment
        from payments.taxid import Payer
        till = k.till
        service = state(k.app).catalogue.service(SERVICE)
        first = till.create(service, Payer("Шевченко", "rnokpp", "3652504575"))
        till.choose_cash(first)
        wait_until(lambda: k.validator.insert_bill(5000), what="validator accepting")
        wait_until(lambda: till.payment(first).credited_kop == 5000, what="credit")
        till.cancel(first)
        wait_until(lambda: till.payment(first).settled, what="voucher printed")
        code = till.payment(first).voucher_code
        enter_payer(k, page)
        page.locator("#voucher").fill(code)
        page.get_by_role("button", name="Зарахувати ваучер").tap()
        expect(page.get_by_text("Внесено: 50,00 грн")).to_be_visible()
        page.get_by_role("button", name="Готівкою").tap()
        expect(page.locator("#pay-message")).to_have_text("Вставте купюру в купюроприймач")
        # nobody touches the screen: warning after 12 s, reset 20 s later
        expect(page.locator("#idle-dialog")).to_be_visible(timeout=30000)
        expect(page.locator("#left-voucher-code")).to_be_visible(timeout=40000)
        left = page.locator("#left-voucher-code").inner_text().strip()
        assert left != code and till.vouchers[left].amount_kop == 5000
        clean(page, "left with a voucher")
        wait_until(lambda: till.active_id is None, what="terminal free")
        page.get_by_role("link", name="Готово").tap()
        enter_payer(k, page)
        page.get_by_role("button", name="Готівкою").tap()
        expect(page.locator("#pay-message")).to_have_text("Вставте купюру в купюроприймач")
    finally:
        server.stop()
        k.close()
