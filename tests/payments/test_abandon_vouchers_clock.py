"""Payments left with credit (idle reset, a visitor gone silent), voucher code guessing, and wall
clock steps (NTP, a flat RTC battery) during payments and shift changes."""
from __future__ import annotations

import logging
import time

import pytest

from payments.taxid import Payer
from payments.till import Busy, Unavailable
from tests.payments.helpers import RNOKPP, SERVICE, Kiosk, make_app, wait_until
from terminal.state import state


@pytest.fixture
def kiosk(tmp_path):
    k = Kiosk(make_app(tmp_path / "instance"))
    yield k
    k.close()


def new_payment(kiosk, client=None) -> str:
    """A payment on the method screen owned by ``client``'s session (as the confirm view makes it)."""
    pid = kiosk.till.create(state(kiosk.app).catalogue.service(SERVICE),
                            Payer("Шевченко", "rnokpp", RNOKPP))
    with (client or kiosk.client).session_transaction() as session:
        session["pay_payment"] = pid
    return pid


def voucher_of(kiosk, amount_kop) -> str:
    """A valid voucher for ``amount_kop`` (cash paid in, then cancelled), terminal free again."""
    pid = new_payment(kiosk)
    kiosk.till.choose_cash(pid)
    kiosk.pay_bills(amount_kop)
    kiosk.till.cancel(pid)
    kiosk.settle()
    assert kiosk.payment().status == "voucher"
    return kiosk.payment().voucher_code


def credit_by(kiosk, source) -> str:
    """A payment of the kiosk's visitor with 5000 credited from ``source``, waiting for the visitor."""
    code = voucher_of(kiosk, 5000) if source != "bills" else None
    pid = new_payment(kiosk)
    if source == "bills":
        kiosk.till.choose_cash(pid)
        kiosk.pay_bills(5000)
    else:
        kiosk.till.redeem_voucher(pid, code)
        if source == "voucher_then_declined_card":
            kiosk.card.set_behaviour("decline")
            kiosk.till.choose_card(pid)
            wait_until(lambda: kiosk.payment().card_error == "declined" and kiosk.payment().status == "new",
                       what="card declined")
    assert kiosk.payment().credited_kop == 5000 and not kiosk.payment().final
    return pid


@pytest.mark.parametrize("source", ["voucher", "bills", "voucher_then_declined_card"])
def test_idle_reset_settles_a_payment_with_credit_and_frees_the_terminal(kiosk, source):
    pid = credit_by(kiosk, source)
    page = kiosk.client.post("/reset")  # kiosk.js's idle reset
    p = kiosk.till.payment(pid)
    assert p.status == "voucher" and p.voucher_out_kop == 5000
    assert page.status_code == 200 and p.voucher_code in page.get_data(as_text=True)
    assert "50,00" in page.get_data(as_text=True)
    wait_until(lambda: kiosk.till.payment(pid).settled, what="voucher printed")
    assert p.voucher_code in kiosk.printer.received_text()
    # the next visitor can pay, and the new voucher pays for them
    other = kiosk.app.test_client()
    second = new_payment(kiosk, other)
    kiosk.till.redeem_voucher(second, p.voucher_code)
    assert kiosk.till.payment(second).credited_kop == 5000
    assert kiosk.till.vouchers[p.voucher_code].status == "redeemed"


def test_idle_reset_without_credit_just_cancels(kiosk):
    pid = new_payment(kiosk)
    kiosk.till.choose_cash(pid)
    kiosk.client.post("/reset")
    assert kiosk.till.payment(pid).status == "cancelled"
    new_payment(kiosk, kiosk.app.test_client())


def test_a_silent_visitors_payment_with_credit_is_settled_for_the_next_visitor(kiosk):
    """No idle reset came (the screen was restarted): the payment's visitor has not been heard
    from for longer than the idle reset takes. Measured on the monotonic clock."""
    pid = credit_by(kiosk, "bills")
    other = kiosk.app.test_client()
    with pytest.raises(Busy):
        new_payment(kiosk, other)
    # a wall clock step of hours is not silence
    kiosk.till.clock = lambda: time.time() + 6 * 3600
    with pytest.raises(Busy):
        new_payment(kiosk, other)
    real = time.monotonic
    kiosk.till.monotonic = lambda: real() + kiosk.till.config.abandon_after_s + 1
    second = new_payment(kiosk, other)
    first = kiosk.till.payment(pid)
    assert first.status == "voucher" and first.voucher_out_kop == 5000
    assert kiosk.till.active_id == second


def test_a_bill_in_flight_is_never_abandoned(kiosk):
    pid = new_payment(kiosk)
    kiosk.till.choose_cash(pid)
    kiosk.validator.stack_time_s = 600.0
    kiosk.insert(2000)
    wait_until(lambda: kiosk.payment().stack_pending_kop == 2000 and kiosk.validator.state.name == "stacking",
               what="stacking")
    assert kiosk.status()["idle_ok"] is False  # the screen keeps the visitor: money in flight
    real = time.monotonic
    kiosk.till.monotonic = lambda: real() + 10 * kiosk.till.config.abandon_after_s
    with pytest.raises(Busy):
        new_payment(kiosk, kiosk.app.test_client())
    with kiosk.validator.lock:
        kiosk.validator.until = time.monotonic()
    wait_until(lambda: kiosk.payment().credited_kop == 2000, what="credit")
    assert kiosk.status()["idle_ok"] is True  # waiting for the next bill: the idle reset may end it


def test_voucher_guessing_is_limited_for_the_terminal_and_logged_masked(kiosk, caplog):
    code = voucher_of(kiosk, 2000)
    caplog.set_level(logging.WARNING, logger="cnap.payments")
    wrong = ["ABCD-EFGH", "ZZZZ-ZZZZ", "QWER-TYUP", "MNBV-CXZA", "LKJH-GFDS"]
    for guess in wrong:
        pid = new_payment(kiosk, kiosk.app.test_client())  # a new session cookie each time
        with pytest.raises(Unavailable) as refused:
            kiosk.till.redeem_voucher(pid, guess)
        assert refused.value.reason == "voucher_invalid"
    pid = new_payment(kiosk, kiosk.app.test_client())
    with pytest.raises(Unavailable) as refused:
        kiosk.till.redeem_voucher(pid, code)  # even the right code, while locked
    assert refused.value.reason == "voucher_locked"
    assert kiosk.till.payment(pid).credited_kop == 0
    logged = caplog.text
    assert all(guess not in logged for guess in wrong) and code not in logged
    assert "AB*****GH" in logged
    real = time.monotonic
    kiosk.till.monotonic = lambda: real() + 601
    assert kiosk.till.redeem_voucher(pid, code).credited_kop == 2000


def test_voucher_lockout_is_said_plainly_and_audited(kiosk):
    voucher_of(kiosk, 2000)
    kiosk.payer()
    for _ in range(6):
        response = kiosk.begin("voucher", voucher="ABCD-EFGH")
        assert response.status_code == 302
    page = kiosk.client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Забагато невірних кодів ваучера" in page
    entries = state(kiosk.app).staff.audit_log() if state(kiosk.app).staff is not None else None
    if entries is None:
        from terminal.views.service import staff_store
        with kiosk.app.app_context():
            entries = staff_store().audit_log()
    rejected = [e for e in entries if e["action"] == "pay.voucher_rejected"]
    assert len(rejected) == 6 and all(e["detail"]["code"] == "AB*****GH" for e in rejected)
    assert rejected[0]["detail"]["reason"] == "voucher_locked"


class SteppedClock:
    """Wall time that an NTP step can move by hours."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.time() + self.offset


def pay_cash(kiosk, clock=None, step_s=0.0):
    pid = new_payment(kiosk)
    kiosk.till.choose_cash(pid)
    kiosk.pay_bills(5000)
    if clock is not None:
        clock.offset += step_s  # the step lands mid-payment
    kiosk.pay_bills(5000)
    kiosk.settle()
    assert kiosk.payment().status == "paid"
    return pid


@pytest.mark.parametrize("step_h", [-3, 3])
def test_clock_steps_change_no_money_and_no_counts_in_shift_reports(kiosk, step_h):
    clock = SteppedClock()
    kiosk.till.clock = clock
    kiosk.till.journal.clock = clock
    pay_cash(kiosk, clock, step_h * 3600)
    pay_cash(kiosk)
    z1 = kiosk.till.close_shift("cashier")
    assert (z1["paid_count"], z1["total_kop"], z1["cash_in_kop"], z1["payments"]) == (2, 14800, 20000, 2)
    clock.offset -= abs(step_h) * 3600 * 2  # after the Z, the clock goes back past it
    pay_cash(kiosk)
    x = kiosk.till.x_report()
    assert (x["paid_count"], x["total_kop"], x["cash_in_kop"], x["payments"]) == (1, 7400, 10000, 1)
    clock.offset += abs(step_h) * 3600 * 4  # and forward again
    pay_cash(kiosk, clock, -abs(step_h) * 3600)
    z2 = kiosk.till.close_shift("cashier")
    assert (z2["paid_count"], z2["total_kop"], z2["cash_in_kop"], z2["payments"]) == (2, 14800, 20000, 2)
    # every payment is in exactly one shift
    assert z1["paid_count"] + z2["paid_count"] == len([p for p in kiosk.till.payments.values()
                                                       if p.status == "paid"])
    assert kiosk.till.x_report()["payments"] == 0
