"""The payment state machine, table by table: (events in) -> (status, credit, commands out)."""
import pytest

from payments.machine import Event, Payment, Rejected, handle, replay

TABLE = [100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000]


def created(total=8500, commission=0):
    return Event("created", {"payment_id": "p1", "service_id": "s1", "service_name": {"uk": "Послуга"},
                             "details": {"recipient": "R", "edrpou": "1", "iban": "UA", "purpose_code": "101",
                                         "purpose": "Збір"},
                             "quote": {"amount_kop": total - commission, "commission_kop": commission,
                                       "total_kop": total},
                             "payer": {"surname": "Шевченко", "id_kind": "rnokpp", "id_value": "3652504575"},
                             "receipt_no": "K-000001", "voucher_code": "ABCD-EFGH", "receipt_seq": 1})


def run(events, state=None):
    """Fold events; return the final state and the commands of each step."""
    steps = []
    for kind, data in events:
        state, commands = handle(state, Event(kind, data) if not isinstance(kind, Event) else kind)
        steps.append([(c.name, dict(c.args)) for c in commands])
    return state, steps


def cash(total=8500, *more):
    return run([(created(total), None), ("choose_cash", {"bill_table": TABLE}), *more])


def bill(amount):
    """A bill's full happy path: escrow -> stack intent -> stacked."""
    return [("bill_escrow", {"amount_kop": amount}), ("stack_intent", {"amount_kop": amount}),
            ("bill_stacked", {"amount_kop": amount})]


def test_created_then_cash_enables_sensible_bills():
    state, steps = cash(8500)
    assert state.status == "cash" and state.remaining_kop == 8500
    assert steps[1] == [("enable_bills", {"denominations": [100, 200, 500, 1000, 2000, 5000, 10000]})]


# (name, bills, expected status, credited, voucher_out, last step commands)
CASH_TABLE = [
    ("exact", [5000, 2000, 1000, 500], "paid", 8500, 0, [("disable_bills", {}), ("print", {"kind": "receipt"})]),
    ("overpay", [5000, 5000], "paid", 10000, 1500, [("disable_bills", {}), ("print", {"kind": "receipt"})]),
    ("partial", [5000], "cash", 5000, 0, [("enable_bills", {"denominations": [100, 200, 500, 1000, 2000, 5000]})]),
]


@pytest.mark.parametrize("name,bills,status,credited,voucher,last", CASH_TABLE, ids=[r[0] for r in CASH_TABLE])
def test_cash_table(name, bills, status, credited, voucher, last):
    events = [e for amount in bills for e in bill(amount)]
    state, steps = cash(8500, *events)
    assert (state.status, state.credited_kop, state.voucher_out_kop) == (status, credited, voucher)
    assert state.bills == tuple(bills)
    assert steps[-1] == last


def test_escrow_of_a_bill_that_makes_no_sense_is_returned():
    state, steps = cash(3000, ("bill_escrow", {"amount_kop": 100000}))
    assert steps[-1] == [("return_bill", {})]
    state, steps = run([("return_intent", {}), ("bill_returned", {"amount_kop": 100000})], state)
    assert state.credited_kop == 0 and not state.bill_in_flight and state.status == "cash"


def test_escrow_is_only_credited_on_stacked():
    state, _ = cash(8500, ("bill_escrow", {"amount_kop": 5000}), ("stack_intent", {"amount_kop": 5000}))
    assert state.credited_kop == 0 and state.stack_pending_kop == 5000 and state.bill_in_flight


# cancel: (events before cancel) -> (status after cancel, commands of cancel, after outcome)
def test_cancel_before_money_is_cancelled():
    state, steps = cash(8500, ("cancel", {}))
    assert state.status == "cancelled" and state.settled
    assert steps[-1] == [("disable_bills", {})]


def test_cancel_after_bills_gives_voucher():
    state, steps = cash(8500, *bill(5000), ("cancel", {}))
    assert state.status == "voucher" and state.voucher_out_kop == 5000
    assert steps[-1] == [("disable_bills", {}), ("print", {"kind": "voucher"})]
    assert not state.settled  # the voucher must be printed (or shown) first
    state, _ = run([("print_intent", {"kind": "voucher"}), ("print_done", {})], state)
    assert state.settled


def test_cancel_with_bill_in_escrow_returns_it_first():
    # a bill in escrow with no stack intent yet (the validator holds it): Cancel returns it
    state2, steps2 = cash(8500, *bill(2000), ("validator_fault", {"fault": "jammed"}),
                          ("bill_escrow", {"amount_kop": 5000}))
    assert steps2[-1] == [("return_bill", {})]
    state2, steps2 = cash(8500, *bill(2000))
    state2 = Payment(**{**state2.__dict__, "escrow_kop": 5000})
    state2, steps2 = run([("cancel", {})], state2)
    assert steps2[-1] == [("disable_bills", {}), ("return_bill", {})]
    assert state2.status == "cash" and state2.cancel_requested
    state2, steps2 = run([("return_intent", {}), ("bill_returned", {"amount_kop": 5000})], state2)
    assert state2.status == "voucher" and state2.voucher_out_kop == 2000


def test_cancel_while_stacking_waits_and_counts_the_bill():
    state, _ = cash(8500, *bill(2000), ("bill_escrow", {"amount_kop": 5000}), ("stack_intent", {"amount_kop": 5000}),
                    ("cancel", {}))
    assert state.status == "cash" and state.cancel_requested
    state, steps = run([("bill_stacked", {"amount_kop": 5000})], state)
    assert state.status == "voucher" and state.voucher_out_kop == 7000 and state.credited_kop == 7000


def test_fault_stops_taking_bills_and_recovers():
    state, steps = cash(8500, *bill(2000), ("validator_fault", {"fault": "jammed"}))
    assert steps[-1] == [("disable_bills", {})] and not state.accepting_bills
    state, steps = run([("bill_escrow", {"amount_kop": 1000})], state)
    assert steps[-1] == [("return_bill", {})]
    state, steps = run([("bill_returned", {}), ("validator_ok", {})], state)
    assert steps[-1][0][0] == "enable_bills" and state.accepting_bills


# card: (result event) -> (status, commands)
CARD_TABLE = [
    ({"status": "approved", "amount_kop": 8500, "rrn": "1", "invoice_number": "7", "masked_pan": "4***1"}, "paid",
     [("print", {"kind": "receipt"})]),
    ({"status": "declined"}, "new", []),
    ({"status": "cancelled"}, "new", []),
    ({"status": "busy"}, "new", []),
    ({"status": "offline"}, "new", []),
    ({"status": "timeout"}, "card", [("card_resolve", {})]),
    ({"status": "unknown"}, "card", [("card_resolve", {})]),
    ({"status": "approved", "amount_kop": 1, "invoice_number": "9"}, "card", [("card_void", {"invoice_number": "9"})]),
]


@pytest.mark.parametrize("result,status,commands", CARD_TABLE, ids=[f"{r[0]['status']}-{i}" for i, r in enumerate(CARD_TABLE)])
def test_card_table(result, status, commands):
    state, steps = run([(created(8500), None), ("choose_card", {})])
    assert steps[-1] == [("purchase", {"amount_kop": 8500})]
    state, steps = run([("card_intent", {"amount_kop": 8500}), ("card_result", result)], state)
    assert state.status == status
    assert steps[-1] == commands
    if status == "paid":
        assert state.card["rrn"] == "1" and state.credited_kop == 8500
    if status == "new":
        assert state.card_error == result["status"]


def test_card_unknown_resolution_never_purchases_again():
    state, _ = run([(created(8500), None), ("choose_card", {}), ("card_intent", {"amount_kop": 8500}),
                    ("card_result", {"status": "timeout"})])
    state, steps = run([("card_result", {"status": "unknown", "resolution": True})], state)
    assert state.status == "new" and state.card_error == "unknown_nothing_charged"
    assert all(name != "purchase" for step in steps for name, _ in step)
    state, steps = run([("choose_card", {})], state)  # the visitor may try again, as a new attempt
    assert steps[-1] == [("purchase", {"amount_kop": 8500})]


def test_card_after_cash_is_refused():
    state, _ = cash(8500, *bill(2000), ("cancel", {}))
    with pytest.raises(Rejected):
        handle(state, Event("choose_card", {}))


@pytest.mark.parametrize("kind", ["choose_cash", "choose_card"])
def test_double_method_is_rejected(kind):
    state, _ = cash(8500)
    with pytest.raises(Rejected):
        handle(state, Event(kind, {"bill_table": TABLE}))


def test_events_before_creation_are_rejected():
    with pytest.raises(Rejected):
        handle(None, Event("bill_stacked", {"amount_kop": 100}))
    state, _ = run([(created(), None)])
    with pytest.raises(Rejected):
        handle(state, created())


def test_inconsistent_quote_is_rejected():
    bad = created(8500)
    bad.data["quote"]["total_kop"] = 1
    with pytest.raises(Rejected):
        handle(None, bad)


def test_voucher_redeem_pays_and_reissues_change():
    state, steps = run([(created(8500), None), ("redeem_voucher", {"code": "AAAA-BBBB", "amount_kop": 10000})])
    assert state.status == "paid" and state.voucher_out_kop == 1500
    assert steps[-1] == [("print", {"kind": "receipt"})]
    with pytest.raises(Rejected):
        handle(state, Event("redeem_voucher", {"code": "AAAA-BBBB", "amount_kop": 10000}))


def test_voucher_partial_then_cash_for_the_rest():
    state, steps = run([(created(8500), None), ("redeem_voucher", {"code": "A", "amount_kop": 5000}),
                        ("choose_cash", {"bill_table": TABLE})])
    assert steps[-1] == [("enable_bills", {"denominations": [100, 200, 500, 1000, 2000, 5000]})]
    state, _ = run(bill(5000), state)
    assert state.status == "paid" and state.voucher_out_kop == 1500


# recovery verdicts
RECOVERY_TABLE = [
    ("cash_complete", [*bill(5000), *bill(5000)], "paid", None),
    ("cash_partial", [*bill(5000)], "partial", 5000),
    ("cash_nothing", [], "cancelled", None),
]


@pytest.mark.parametrize("name,events,status,voucher", RECOVERY_TABLE, ids=[r[0] for r in RECOVERY_TABLE])
def test_recovery_settle(name, events, status, voucher):
    state, _ = cash(8500, *events)
    if state.status == "paid":  # crashed before the receipt was printed
        state, steps = run([("print_intent", {"kind": "receipt"}), ("recovery_settle", {})], state)
        assert steps[-1] == [("print", {"kind": "copy"})]
    else:
        state, steps = run([("recovery_settle", {})], state)
        if status != "cancelled":
            assert ("print", {"kind": "copy"}) in steps[-1]
    assert state.status == status and state.recovered
    if voucher:
        assert state.voucher_out_kop == voucher


def test_recovery_with_bill_in_flight_after_device_reported():
    state, _ = cash(8500, ("bill_escrow", {"amount_kop": 5000}), ("stack_intent", {"amount_kop": 5000}))
    state, _ = run([("bill_lost_in_flight", {}), ("recovery_settle", {})], state)
    assert state.status == "cancelled" and state.credited_kop == 0


def test_recovery_refuses_unresolved_card():
    state, _ = run([(created(8500), None), ("choose_card", {}), ("card_intent", {"amount_kop": 8500})])
    with pytest.raises(Rejected):
        handle(state, Event("recovery_settle", {}))
    state, _ = run([("card_result", {"status": "unknown", "resolution": True, "recovery": True})], state)
    assert state.status == "voided" and state.settled


@pytest.mark.parametrize("where,stack_sent,credited", [
    ("stacker", False, 5000), ("unknown", True, 5000), ("validator", True, 0), ("unknown", False, 0)])
def test_powerup_with_bill(where, stack_sent, credited):
    state, _ = cash(8500, ("bill_escrow", {"amount_kop": 5000}))
    if stack_sent:
        state, _ = run([("stack_intent", {"amount_kop": 5000})], state)
    state, _ = run([("powerup_with_bill", {"where": where, "amount_kop": None, "stack_sent": stack_sent})], state)
    assert state.credited_kop == credited and not state.bill_in_flight


def test_repeated_stacked_after_a_kill_is_not_credited_twice():
    """Journaled, then killed before the ACK: the validator repeats 0x81 to the next host."""
    state, _ = cash(8500, *bill(5000))
    state, steps = run([("bill_stacked", {"amount_kop": 5000})], state)
    assert state.credited_kop == 5000 and steps[-1] == []
    assert state.incidents[-1] == "duplicate_stacked_ignored:5000"


def test_bill_landing_after_recovery_gave_up_is_still_credited():
    state, _ = cash(8500, ("bill_escrow", {"amount_kop": 5000}), ("stack_intent", {"amount_kop": 5000}),
                    ("bill_lost_in_flight", {}), ("recovery_settle", {}))
    assert state.status == "cancelled" and state.credited_kop == 0
    state, steps = run([("bill_stacked", {"amount_kop": None})], state)
    assert state.credited_kop == 5000 and state.voucher_out_kop == 5000
    assert steps[-1] == [("print", {"kind": "voucher"})] and "late_bill" in state.incidents


def test_replay_equals_live_fold():
    events = [created(8500), Event("choose_cash", {"bill_table": TABLE})] + [Event(k, d) for k, d in bill(5000) + bill(5000)]
    live = None
    for e in events:
        live, _ = handle(live, e)
    assert replay(events) == live
