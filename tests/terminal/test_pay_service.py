"""Service mode pages of the payment terminal: roles, audit, encashment, vouchers, X/Z, recovery."""
import pytest

from tests.helpers import service_login
from tests.payments.helpers import Kiosk, make_app, wait_until
from terminal.state import state


@pytest.fixture
def kiosk(tmp_path):
    k = Kiosk(make_app(tmp_path / "instance"))
    yield k
    k.close()


def login(client, pin):
    response = service_login(client, pin)
    assert response.status_code == 302


def cash_paid(kiosk, bills):
    kiosk.client.post("/pay/finish")
    kiosk.payer()
    kiosk.begin("cash")
    kiosk.pay_bills(*bills[:-1])
    kiosk.insert(bills[-1])
    kiosk.settle()
    return kiosk.payment()


def test_pages_need_login_and_role(kiosk):
    staff = kiosk.app.test_client()
    assert staff.get("/service/pay/encashment").status_code == 302
    login(staff, "222222")  # technician
    assert staff.get("/service/pay/encashment").status_code == 403
    assert staff.get("/service/pay/selftest").status_code == 200
    audit = [e["action"] for e in state(kiosk.app).staff.audit_log()]
    assert "forbidden" in audit


def test_encashment_counts_per_denomination_and_needs_cassette_out(kiosk):
    cash_paid(kiosk, [5000, 5000])
    cash_paid(kiosk, [5000, 2000, 2000])
    staff = kiosk.app.test_client()
    login(staff, "111111")  # cashier
    page = staff.get("/service/pay/encashment").get_data(as_text=True)
    assert 'id="cassette-bills">5<' in page and "190,00 грн" in page
    assert 'id="cassette-fill"' not in page   # 5 of the profile's 1000 bills
    state(kiosk.app).hardware.cassette_capacity = 6   # a small cassette: 5 bills is 83 %
    page = staff.get("/service/pay/encashment").get_data(as_text=True)
    assert "Касета заповнена на 83 %" in page
    state(kiosk.app).hardware.cassette_capacity = 1000
    response = staff.post("/service/pay/encashment")
    assert "Спершу зніміть касету" in response.get_data(as_text=True)
    kiosk.validator.remove_cassette()
    wait_until(lambda: kiosk.till.device.cassette_out, what="cassette removal detected")
    kiosk.printer.clear()
    page = staff.post("/service/pay/encashment").get_data(as_text=True)
    assert "Інкасацію записано: 190,00 грн" in page
    printed = kiosk.printer.received_text()
    assert "ENCASHMENT" in printed and "50,00 грн x 3" in printed and "20,00 грн x 2" in printed
    assert kiosk.till.encashments[-1]["counts"] == {"2000": 2, "5000": 3}
    assert kiosk.till.cassette_counts() == {}
    assert "pay.encashment" in [e["action"] for e in state(kiosk.app).staff.audit_log()]
    kiosk.validator.replace_cassette()
    wait_until(lambda: not kiosk.till.device.cassette_out, what="cassette back")
    # the collection report is exported from the journal as well
    import argparse
    import json
    from payments import cli as payments_cli
    from terminal.cli import settings_for_instance
    parser = argparse.ArgumentParser()
    payments_cli.add_commands(parser.add_subparsers(), load_settings=settings_for_instance)
    out = kiosk.app.instance_path + "/enc.json"
    args = parser.parse_args(["payments", "encashments", "--instance", kiosk.app.instance_path, "--out", out])
    assert args.func(args) == 0
    exported = json.load(open(out))
    assert exported[-1]["counts"] == {"2000": 2, "5000": 3} and exported[-1]["total_kop"] == 19000


def test_voucher_list_and_cashier_refund_once(kiosk):
    payment = cash_paid(kiosk, [5000, 5000])  # 74 due: 26 overpaid
    staff = kiosk.app.test_client()
    login(staff, "111111")
    page = staff.get("/service/pay/vouchers").get_data(as_text=True)
    assert payment.voucher_code in page and "26,00 грн" in page
    page = staff.post("/service/pay/vouchers", data={"code": payment.voucher_code}).get_data(as_text=True)
    assert "погашено" in page
    page = staff.post("/service/pay/vouchers", data={"code": payment.voucher_code}).get_data(as_text=True)
    assert "Такого дійсного ваучера немає" in page
    # a refunded voucher cannot pay at the terminal
    kiosk.client.post("/pay/finish")
    kiosk.payer()
    kiosk.begin("voucher", voucher=payment.voucher_code)
    assert kiosk.payment().credited_kop == 0


def test_x_and_z_reports(kiosk):
    cash_paid(kiosk, [5000, 5000])
    staff = kiosk.app.test_client()
    login(staff, "111111")
    page = staff.get("/service/pay/payments").get_data(as_text=True)
    assert 'id="x-paid">1<' in page and "74,00 грн" in page
    assert "Шевченко" not in page and "Ш******о" in page
    page = staff.post("/service/pay/payments", data={"action": "z"}).get_data(as_text=True)
    assert "Зміну закрито" in page and 'id="x-paid">0<' in page
    assert "Z-ЗВІТ" in kiosk.printer.received_text()


def test_recovered_cases_are_listed(tmp_path):
    k = Kiosk(make_app(tmp_path / "instance"))
    till = k.till
    k.payer()
    k.begin("cash")
    k.pay_bills(2000)
    pid = k.payment_id()
    # what a crash leaves behind: the next start (same instance folder) settles it
    till.close()
    till.journal.close()
    state(k.app).hardware.validator.driver.stop()
    sims = state(k.app).hardware
    for sim in sims.simulators.values():
        sim.stop()
    k2 = Kiosk(make_app(tmp_path / "instance"))
    try:
        assert k2.till.payment(pid).status == "partial"
        staff = k2.app.test_client()
        login(staff, "111111")
        page = staff.get("/service/pay/recovered").get_data(as_text=True)
        assert "settle_open" in page and "KIOSK-01-000001" in page
    finally:
        k2.close()
