"""End to end through the web flow and the wire-true simulators (loopback TCP)."""
import pytest

from payments.journal import read_records
from tests.payments.helpers import RNOKPP, SERVICE, Kiosk, make_app, wait_until
from terminal.state import state


@pytest.fixture
def kiosk(tmp_path):
    k = Kiosk(make_app(tmp_path / "instance"))
    yield k
    k.close()


def test_index_lists_paid_services_with_server_amounts(kiosk):
    page = kiosk.client.get("/pay").get_data(as_text=True)
    assert "Оплата адміністративних послуг" in page
    assert f"/pay/service/{SERVICE}" in page and "74,00 грн" in page
    assert kiosk.client.get("/pay/service/no-such").status_code == 404


@pytest.mark.parametrize("surname,kind,value,message", [
    ("", "rnokpp", RNOKPP, "Введіть прізвище."),
    ("12345", "rnokpp", RNOKPP, "лише літери"),
    ("Шевченко", "rnokpp", "3652504576", "Такого РНОКПП не існує"),
    ("Шевченко", "rnokpp", "12345", "РНОКПП має 10 цифр"),
    ("Шевченко", "passport", "12", "Паспорт: дві літери"),
    ("Шевченко", "other", "1", "Виберіть документ"),
])
def test_bad_payer_input_gets_a_clear_message(kiosk, surname, kind, value, message):
    response = kiosk.payer(surname=surname, kind=kind, value=value)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert kiosk.till.order == []  # nothing was created


def test_confirmation_shows_details_masked_payer_and_rules(kiosk):
    assert kiosk.payer().status_code == 302
    page = kiosk.client.get("/pay/confirm").get_data(as_text=True)
    assert "Ш******о" in page and "******4575" in page
    assert "Шевченко" not in page and RNOKPP not in page
    assert "Термінал решти не видає" in page and "ваучер" in page
    service = state(kiosk.app).catalogue.service(SERVICE)
    assert service.fee.details.iban in page and service.fee.details.edrpou in page


def test_cash_with_several_bills_and_overpayment(kiosk):
    kiosk.payer()
    response = kiosk.begin("cash", amount_kop="1")  # a tampered amount is ignored
    assert response.status_code == 302
    payment = kiosk.payment()
    assert payment.total_kop == 7400 and payment.status == "cash"
    wait_until(lambda: kiosk.validator.snapshot()["enabled_types"], what="validator enabled")
    # 74 UAH due: a 1000 UAH note makes no sense and is not enabled
    assert not kiosk.validator.insert_bill(100000) or wait_until(
        lambda: 100000 in kiosk.validator.snapshot()["returned_kop"], what="1000 returned")
    kiosk.pay_bills(5000)
    status = kiosk.status()
    assert status["credited"] == "50,00 грн" and status["remaining"] == "24,00 грн"
    kiosk.pay_bills(2000)
    kiosk.insert(2000)
    kiosk.settle()
    payment = kiosk.payment()
    assert payment.status == "paid" and payment.credited_kop == 9000 and payment.voucher_out_kop == 1600
    assert payment.receipt == "printed"
    assert sorted(kiosk.validator.snapshot()["cassette_kop"]) == [2000, 2000, 5000]
    text = kiosk.printer.received_text()
    assert payment.receipt_no in text and "Шевченко" in text and "******4575" in text
    assert payment.voucher_code in text and "Переплата" in text and "1 x 50,00 грн" in text
    assert kiosk.till.vouchers[payment.voucher_code].status == "issued"
    page = kiosk.client.get(f"/pay/p/{payment.id}/receipt").get_data(as_text=True)
    assert payment.receipt_no in page and payment.voucher_code in page and "data:image/svg+xml" in page
    # the journal holds each bill exactly once, stack intent before credit
    kinds = [r.kind for r in read_records(kiosk.till.journal.path) if r.payment_id == payment.id]
    assert kinds.count("bill_stacked") == 3
    assert kinds.index("stack_intent") < kinds.index("bill_stacked")


def test_cancel_after_bills_ends_with_voucher_redeemable_once(kiosk):
    kiosk.payer()
    kiosk.begin("cash")
    kiosk.pay_bills(5000)
    kiosk.client.post(f"/pay/p/{kiosk.payment_id()}/cancel")
    kiosk.settle()
    first = kiosk.payment()
    assert first.status == "voucher" and first.voucher_out_kop == 5000
    code = first.voucher_code
    assert code in kiosk.printer.received_text()
    kiosk.client.post("/pay/finish")
    # the voucher pays part of a new payment; cash pays the rest
    kiosk.payer()
    response = kiosk.begin("voucher", voucher=code.replace("-", "").lower())
    assert response.status_code == 302
    second = kiosk.payment()
    assert second.credited_kop == 5000 and second.status == "new"
    assert kiosk.till.vouchers[code].status == "redeemed"
    kiosk.begin("cash")
    kiosk.pay_bills(2000)
    kiosk.insert(2000)
    kiosk.settle()
    assert kiosk.payment().status == "paid" and kiosk.payment().voucher_out_kop == 1600
    # a used voucher does not pay twice
    kiosk.client.post("/pay/finish")
    kiosk.payer()
    kiosk.begin("voucher", voucher=code)
    assert kiosk.payment().credited_kop == 0


def test_card_approved_receipt_has_terminal_data(kiosk):
    kiosk.payer(service="id-card-lost")  # 624 UAH + 10 UAH fixed commission
    kiosk.begin("card")
    kiosk.settle()
    payment = kiosk.payment()
    assert payment.status == "paid" and payment.total_kop == 63400
    approved = kiosk.card.purchases("approved")
    assert len(approved) == 1 and approved[0]["amount_kop"] == 63400
    text = kiosk.printer.received_text()
    assert payment.card["masked_pan"] in text and payment.card["rrn"] in text and payment.card["approval_code"] in text


@pytest.mark.parametrize("behaviour,error", [("decline", "Банк відхилив"), ("customer_cancel", "скасовано на терміналі"),
                                             ("timeout", "не підтвердив"), ("no_host", ""), ("busy", "зайнятий")])
def test_card_failures_charge_nothing_and_allow_retry(kiosk, behaviour, error):
    kiosk.card.set_behaviour(behaviour)
    kiosk.till.card.driver.timeouts.update(purchase=1.5, last_result_total=1.0)
    kiosk.payer()
    kiosk.begin("card")
    wait_until(lambda: kiosk.payment().status == "new" and kiosk.payment().card_error, what="card failure")
    status = kiosk.status()
    assert error in status["card_error"]
    assert kiosk.card.purchases("approved") == []
    assert len(kiosk.card.purchases("failed")) == (0 if behaviour == "busy" else 1)  # Purchase sent once
    kiosk.card.set_behaviour("approve")
    kiosk.begin("card")
    kiosk.settle()
    assert kiosk.payment().status == "paid" and len(kiosk.card.purchases("approved")) == 1


def test_card_lost_answer_is_resolved_by_last_result_not_a_second_purchase(kiosk):
    kiosk.card.set_behaviour("lost_response")
    kiosk.till.card.driver.timeouts.update(purchase=1.0)
    kiosk.payer()
    kiosk.begin("card")
    kiosk.settle()
    payment = kiosk.payment()
    assert payment.status == "paid"
    purchases = [m for m in kiosk.card.received if m.get("method") == "Purchase"]
    assert len(purchases) == 1 and len(kiosk.card.purchases("approved")) == 1
    assert payment.card["invoice_number"] == kiosk.card.purchases("approved")[0]["invoice"]


def test_printer_out_of_paper_payment_completes_with_electronic_receipt(kiosk):
    kiosk.printer.set_paper("out")
    kiosk.payer()
    page = kiosk.client.get("/pay/confirm").get_data(as_text=True)
    assert "квитанцію буде показано на екрані" in page
    kiosk.begin("card")
    kiosk.settle()
    payment = kiosk.payment()
    assert payment.status == "paid" and payment.receipt == "failed"
    page = kiosk.client.get(f"/pay/p/{payment.id}/receipt").get_data(as_text=True)
    assert "електронна квитанція" in page and payment.receipt_no in page and "data:image/svg+xml" in page


def test_double_submit_and_second_tab_start_one_payment(kiosk):
    kiosk.payer()
    draft = kiosk.draft()
    first = kiosk.client.post("/pay/confirm", data={"draft": draft, "method": "card"})
    second = kiosk.client.post("/pay/confirm", data={"draft": draft, "method": "card"})
    assert first.status_code == second.status_code == 302
    assert second.headers["Location"] == first.headers["Location"]
    kiosk.settle()
    assert len(kiosk.till.order) == 1 and len(kiosk.card.purchases("approved")) == 1


def test_another_visitor_cannot_start_while_money_is_in_flight(kiosk):
    kiosk.payer()
    kiosk.begin("cash")
    kiosk.pay_bills(2000)
    other = kiosk.app.test_client()
    kiosk.payer(client=other)
    response = kiosk.begin("card", client=other)
    assert response.status_code == 409 and "обслуговує інший платіж" in response.get_data(as_text=True)
    # nor may it see or cancel the first visitor's payment
    pid = kiosk.payment_id()
    assert other.get(f"/pay/p/{pid}/status").status_code == 403
    assert other.post(f"/pay/p/{pid}/cancel").status_code == 403
    assert kiosk.payment().status == "cash"


def test_tampered_draft_and_methods_are_refused(kiosk):
    kiosk.payer()
    assert kiosk.client.post("/pay/confirm", data={"draft": "forged", "method": "cash"}).status_code == 400
    assert kiosk.client.post("/pay/confirm", data={"draft": kiosk.draft(), "method": "free"}).status_code == 400
    assert kiosk.till.order == []


def test_back_during_payment_returns_to_progress(kiosk):
    kiosk.payer()
    kiosk.begin("cash")
    pid = kiosk.payment_id()
    response = kiosk.client.get("/pay/confirm")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/pay/p/{pid}")
    page = kiosk.client.get(f"/pay/p/{pid}").get_data(as_text=True)
    # waiting for a bill, nothing in flight: the idle reset may end it (settled, voucher for any credit)
    assert 'data-idle="on"' in page


def test_jam_stops_cash_and_cancel_gives_voucher(kiosk):
    kiosk.payer()
    kiosk.begin("cash")
    kiosk.pay_bills(2000)
    kiosk.validator.jam_bill()
    wait_until(lambda: kiosk.payment().fault == "jammed", what="fault seen")
    status = kiosk.status()
    assert "застрягла" in status["fault"]
    assert not kiosk.till.availability()["cash"]
    kiosk.client.post(f"/pay/p/{kiosk.payment_id()}/cancel")
    kiosk.settle()
    assert kiosk.payment().status == "voucher" and kiosk.payment().voucher_out_kop == 2000
    kiosk.validator.clear_jam()
    wait_until(lambda: kiosk.till.availability()["cash"], what="cash back after the jam clears")


@pytest.mark.parametrize("fault", ["cassette_full", "remove_cassette"])
def test_cassette_faults_refuse_new_cash(kiosk, fault):
    if fault == "cassette_full":
        kiosk.validator.set_cassette_full()
    else:
        kiosk.validator.remove_cassette()
    wait_until(lambda: kiosk.till.device.fault is not None, what="fault")
    kiosk.payer()
    page = kiosk.client.get("/pay/confirm").get_data(as_text=True)
    assert "Готівка зараз не приймається" in page
    response = kiosk.begin("cash")
    assert response.status_code == 409


def test_receipt_verification_page(kiosk):
    kiosk.payer()
    kiosk.begin("card")
    kiosk.settle()
    payment = kiosk.payment()
    from payments.receipts import check_code
    code = check_code(kiosk.till.config.receipt_key, payment)
    page = kiosk.client.get(f"/receipt/{payment.receipt_no}?c={code}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Квитанція справжня" in text and "Ш******о" in text and "Шевченко" not in text
    assert kiosk.client.get(f"/receipt/{payment.receipt_no}?c=0000000000").status_code == 404


def test_the_printed_qr_code_opens_the_receipt_verification(kiosk):
    import zxingcpp
    from urllib.parse import urlsplit

    kiosk.printer.clear()
    kiosk.payer()
    kiosk.begin("card")
    kiosk.settle()
    payment = kiosk.payment()
    wait_until(lambda: kiosk.printer.images(), what="receipt printed")
    (image,) = kiosk.printer.images()
    (decoded,) = [r.text for r in zxingcpp.read_barcodes(image)]   # read as a phone camera would
    assert decoded.startswith(kiosk.app.config["RECEIPT_VERIFY_URL"] + str(payment.receipt_no) + "?c=")
    url = urlsplit(decoded)
    page = kiosk.client.get(f"{url.path}?{url.query}")
    assert page.status_code == 200 and "Квитанція справжня" in page.get_data(as_text=True)
    # the same address is printed above the code, whole on one line (font B on 80 mm)
    assert decoded in kiosk.printer.received_text().splitlines()


def test_validator_lost_stops_cash_honestly_and_comes_back(kiosk):
    kiosk.validator.set_silent(True)   # unplugged or dead: no answer to any poll
    wait_until(lambda: not kiosk.till.availability()["cash"], timeout=40, what="validator declared lost")
    kiosk.payer()
    page = kiosk.client.get("/pay/confirm").get_data(as_text=True)
    assert "Готівка зараз не приймається" in page
    assert kiosk.begin("cash").status_code == 409
    payment = kiosk.payment()
    assert payment.status == "new" and payment.credited_kop == 0   # cash never chosen, validator never enabled
    kiosk.validator.set_silent(False)
    wait_until(lambda: kiosk.till.availability()["cash"], timeout=40, what="validator back online")
    assert kiosk.begin("cash").status_code == 302
    kiosk.pay_bills(5000, 5000)   # 74 грн due: 50 + 50, the 26 over becomes a voucher
    kiosk.settle()
    assert kiosk.payment().status == "paid"


def test_card_terminal_offline_offers_no_card_and_charges_nothing(kiosk):
    kiosk.card.set_silent(True)
    kiosk.payer()
    wait_until(lambda: not kiosk.till.availability()["card"], timeout=20, what="card terminal offline")
    page = kiosk.client.get("/pay/confirm").get_data(as_text=True)
    assert "Оплата карткою зараз недоступна" in page
    assert kiosk.begin("card").status_code == 409
    assert kiosk.card.purchases("approved") == [] and kiosk.card.purchases("failed") == []
    kiosk.card.set_silent(False)
    wait_until(lambda: kiosk.till.availability()["card"], timeout=20, what="card terminal back")
    kiosk.begin("card")
    kiosk.settle()
    assert kiosk.payment().status == "paid" and len(kiosk.card.purchases("approved")) == 1


def test_58mm_printer_profile_gets_a_receipt_composed_at_its_width(tmp_path):
    k = Kiosk(make_app(tmp_path / "instance", PRINTER_PROFILE="generic-58mm-cp1125"))
    try:
        assert k.printer.width_dots == 384 and k.till.printer.width_chars == 32
        k.payer(service="id-card-lost")
        k.begin("card")
        k.settle()
        payment = k.payment()
        wait_until(lambda: k.printer.images(), what="receipt printed")
        lines = [line for line in k.printer.lines if line["kind"] == "text"]
        assert lines and all(len(line["text"]) <= k.printer.columns(line) for line in lines)
        text = k.printer.received_text()
        assert payment.receipt_no in text and "Шевченко" in text and "Відділення:" in text
        # the address (too long for 42 columns) is never split: the QR carries it
        assert "?c=" not in text and "QR" in text
    finally:
        k.close()
