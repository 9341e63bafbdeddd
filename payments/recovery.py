"""Start-up recovery: before the kiosk serves anyone, every payment the journal shows as open is
settled from the journal and from what the devices still know.

Rules (docs/payments.md has the full table):
* cash credited, payment not finished  -> paid (credit covers the total) or partial (voucher
  for the credit); a receipt marked "КОПІЯ / RECOVERED" is printed;
* a bill whose stack intent has no outcome: the validator is given time to report it (a bill
  still stacking is credited when it lands; a power-up with a bill in the stacker is credited);
  if it reports nothing, the bill was not stacked and nothing is credited;
* a card purchase in flight -> the terminal's last result is asked (never a second Purchase):
  approved for this amount and not booked elsewhere -> paid and printed; anything else -> voided,
  nothing charged;
* a print interrupted (intent without outcome) -> printed again as a copy.
Every settled case is journaled as a ``recovery_case`` and listed in service mode.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("cnap.payments.recovery")

STABLE_STATES = {"idling", "unit_disabled", "offline", "drop_cassette_full", "drop_cassette_out",
                 "validator_jammed", "cassette_jammed", "failure", "cheated", "pause"}


def _wait_validator(till, timeout_s: float) -> None:
    if till.validator is None:
        return
    deadline = time.monotonic() + timeout_s
    try:
        till.validator.disable()
    except Exception:
        log.exception("cannot disable the validator")
    while time.monotonic() < deadline:
        try:
            status = till.validator.status()
        except Exception:
            return
        if (not status.online or status.state.lower() in STABLE_STATES) and not till.bill_in_flight():
            return
        time.sleep(0.05)


def recover(till, *, validator_timeout_s: float = 4.0) -> list[dict]:
    cases: list[dict] = []
    open_ids = till.unsettled_ids()
    if open_ids:
        log.warning("recovery: %d open payment(s)", len(open_ids))
        _wait_validator(till, validator_timeout_s)
    for pid in open_ids:
        before = till.payment(pid)
        if before.settled:  # a device report during the wait settled it
            continue
        if before.bill_in_flight:
            till.dispatch(pid, "bill_lost_in_flight", {})
        payment = till.payment(pid)
        if payment.card_pending or payment.card_resolving:
            till.dispatch(pid, "card_result", till.resolve_card(pid, recovery=True))
            till.wait_idle()
        payment = till.payment(pid)
        if not payment.settled:
            if payment.receipt == "pending" or (payment.final and payment.receipt == "none"):
                rule = "reprint"
            elif payment.final:
                rule = "settled"
            else:
                rule = "settle_open"
            till.dispatch(pid, "recovery_settle", {})
            till.wait_idle()
        else:
            rule = "card_resolved"
        after = till.payment(pid)
        detail = {"before": before.status, "after": after.status, "total_kop": after.total_kop,
                  "voucher_kop": after.voucher_out_kop, "bills": list(after.bills),
                  "card": bool(after.card), "receipt": after.receipt}
        till.recovery_case(pid, rule, **detail)
        cases.append({"payment_id": pid, "rule": rule, **detail})
        log.warning("recovery: payment %s %s -> %s (%s)", after.receipt_no, before.status, after.status, rule)
    till.wait_idle()
    unsettled = till.finish_recovery()
    if unsettled:
        log.error("recovery left %d payment(s) unsettled: %s", len(unsettled), unsettled)
    return cases
