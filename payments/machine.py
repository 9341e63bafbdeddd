"""The payment state machine: pure, table-driven, no I/O, no clock, no randomness.

``handle(state, event) -> (state, commands)``. Every event the machine sees is first written to
the journal, so a payment's state is exactly the fold of its journal events: replaying the
journal rebuilds it after a crash. Commands tell the runtime (``payments.till``) what to do
with the devices; the runtime journals each command's intent (itself an event fed back here)
before it acts and the outcome after.

Statuses::

    new ──choose_cash──▶ cash ──(credited ≥ total)──▶ paid
     │ ╲                  │ cancel ──▶ (bill in flight? wait) ──▶ cancelled | voucher
     │  ╲choose_card──▶ card ──approved──▶ paid
     │                    │ declined/cancelled/busy/offline ──▶ new (try again / cash)
     │                    │ timeout/unknown ──▶ card (resolving) ──▶ paid | new (voided)
     └─cancel──▶ cancelled
    recovery_settle: cash/new with credit ──▶ paid | partial ; card unresolved ──▶ voided

Final statuses: paid, cancelled, voucher, partial, voided.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from common.transitions import handler_table
from payments.money import sensible_bills

FINAL = frozenset({"paid", "cancelled", "voucher", "partial", "voided"})
# statuses whose money must be documented on paper (or electronically when the printer fails)
NEEDS_RECEIPT = frozenset({"paid", "voucher", "partial"})
CARD_FINAL_FAILURES = frozenset({"declined", "cancelled", "busy", "offline", "error"})
CARD_UNKNOWN = frozenset({"timeout", "unknown"})


@dataclass(frozen=True)
class Event:
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    name: str  # enable_bills | disable_bills | stack | return_bill | purchase | card_resolve |
    #            card_void | print
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Payment:
    id: str
    status: str = "new"
    service_id: str = ""
    service_name: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    amount_kop: int = 0
    commission_kop: int = 0
    total_kop: int = 0
    payer: Mapping[str, str] = field(default_factory=dict)
    receipt_no: str = ""
    voucher_code: str = ""
    created_at: float = 0.0
    settled_at: float = 0.0
    method: str | None = None
    bill_table: tuple[int, ...] = ()
    credited_kop: int = 0
    bills: tuple[int, ...] = ()
    vouchers_in: tuple[tuple[str, int], ...] = ()
    escrow_kop: int | None = None
    stack_pending_kop: int | None = None
    unresolved_stack_kop: int | None = None  # a stack intent recovery closed without an outcome
    return_pending: bool = False
    card_pending: bool = False
    card_resolving: bool = False
    card_attempts: int = 0
    card: Mapping[str, Any] | None = None
    card_error: str | None = None
    cancel_requested: bool = False
    fault: str | None = None
    voucher_out_kop: int = 0
    receipt: str = "none"  # none | pending | printed | failed (electronic receipt only)
    prints: int = 0
    recovered: bool = False
    incidents: tuple[str, ...] = ()

    # ---- derived views -------------------------------------------------------------
    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def remaining_kop(self) -> int:
        return max(0, self.total_kop - self.credited_kop)

    @property
    def bill_in_flight(self) -> bool:
        return self.escrow_kop is not None or self.stack_pending_kop is not None or self.return_pending

    @property
    def settled(self) -> bool:
        """Nothing about this payment's money is open: final, no device work outstanding."""
        if not self.final or self.bill_in_flight or self.card_pending or self.card_resolving:
            return False
        if self.status in NEEDS_RECEIPT and self.receipt in ("none", "pending"):
            return False
        return True

    @property
    def accepting_bills(self) -> bool:
        return (self.status == "cash" and not self.cancel_requested and self.fault is None
                and self.remaining_kop > 0)

    def wanted_bills(self) -> set[int]:
        if not self.accepting_bills:
            return set()
        return sensible_bills(self.bill_table, self.remaining_kop)


class Rejected(Exception):
    """An event that makes no sense in the current state (a stale button, a second tab)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


Handler = Callable[[Payment, Mapping[str, Any]], tuple[Payment, list[Command]]]
TABLE: dict[str, Handler]
TABLE, on = handler_table()


def handle(state: Payment | None, event: Event) -> tuple[Payment, list[Command]]:
    """Apply one event. Raises ``Rejected`` for events the state does not allow; the runtime
    checks with ``check`` before journaling, so a rejected event never enters the journal."""
    fn = TABLE.get(event.kind)
    if fn is None:
        raise Rejected(f"unknown event {event.kind}")
    if state is None:
        if event.kind != "created":
            raise Rejected("no such payment")
        state = Payment(id=str(event.data["payment_id"]))
    elif event.kind == "created":
        raise Rejected("payment exists")
    new, commands = fn(state, event.data)
    return new, commands


def replay(events) -> Payment | None:
    """Fold journal events (Event objects) into the payment's state, ignoring commands."""
    state = None
    for event in events:
        state, _ = handle(state, event)
    return state


# ---- helpers ---------------------------------------------------------------------------
def _incident(state: Payment, text: str) -> tuple[str, ...]:
    return state.incidents + (text,)


def _credit_bill(state: Payment, amount: int) -> Payment:
    return replace(state, credited_kop=state.credited_kop + amount, bills=state.bills + (amount,),
                   escrow_kop=None, stack_pending_kop=None)


def _after_credit(state: Payment) -> tuple[Payment, list[Command]]:
    """What a new credit means: finish a pending cancel, complete, or take the next bill."""
    if state.final:
        # money that arrived after the payment ended (a bill already inside the validator when
        # it was disabled): never lost, it raises the voucher and is printed.
        extra = state.credited_kop - state.total_kop if state.status == "paid" else state.credited_kop
        new = replace(state, voucher_out_kop=max(0, extra), incidents=_incident(state, "late_bill"))
        return new, [Command("print", {"kind": "voucher"})]
    if state.cancel_requested:
        return _finish_cancel(state)
    if state.credited_kop >= state.total_kop:
        return _complete(state)
    if state.status == "cash":
        return state, [Command("enable_bills", {"denominations": sorted(state.wanted_bills())})]
    return state, []


def _complete(state: Payment) -> tuple[Payment, list[Command]]:
    over = state.credited_kop - state.total_kop
    new = replace(state, status="paid", voucher_out_kop=over, escrow_kop=None)
    commands = [Command("disable_bills")] if state.method == "cash" else []
    return new, commands + [Command("print", {"kind": "receipt"})]


def _finish_cancel(state: Payment) -> tuple[Payment, list[Command]]:
    if state.bill_in_flight:
        return state, []  # wait for the bill's outcome (stacked or returned)
    if state.credited_kop == 0:
        return replace(state, status="cancelled"), []
    if state.credited_kop >= state.total_kop:
        return _complete(state)
    return (replace(state, status="voucher", voucher_out_kop=state.credited_kop),
            [Command("print", {"kind": "voucher"})])


def _require(cond: bool, reason: str) -> None:
    if not cond:
        raise Rejected(reason)


# ---- the table -------------------------------------------------------------------------
@on("created")
def _created(s: Payment, d):
    quote = d["quote"]
    _require(quote["amount_kop"] + quote["commission_kop"] == quote["total_kop"], "inconsistent quote")
    return replace(s, status="new", service_id=d["service_id"], service_name=dict(d["service_name"]),
                   details=dict(d["details"]), amount_kop=quote["amount_kop"],
                   commission_kop=quote["commission_kop"], total_kop=quote["total_kop"],
                   payer=dict(d["payer"]), receipt_no=d["receipt_no"], voucher_code=d["voucher_code"],
                   created_at=d.get("at", 0.0)), []


@on("choose_cash")
def _choose_cash(s: Payment, d):
    _require(s.status == "new", "not_awaiting_method")
    new = replace(s, status="cash", method="cash", bill_table=tuple(d.get("bill_table", ())),
                  card_error=None, fault=None)
    if new.remaining_kop == 0:
        return _complete(new)
    return new, [Command("enable_bills", {"denominations": sorted(new.wanted_bills())})]


@on("choose_card")
def _choose_card(s: Payment, d):
    _require(s.status == "new", "not_awaiting_method")
    _require(not s.bills, "cash_already_taken")
    new = replace(s, status="card", method="card", card_error=None)
    return new, [Command("purchase", {"amount_kop": new.remaining_kop})]


@on("redeem_voucher")
def _redeem(s: Payment, d):
    _require(s.status == "new", "not_awaiting_method")
    code, amount = str(d["code"]), int(d["amount_kop"])
    _require(all(c != code for c, _ in s.vouchers_in), "voucher_used")
    new = replace(s, credited_kop=s.credited_kop + amount, vouchers_in=s.vouchers_in + ((code, amount),))
    if new.credited_kop >= new.total_kop:
        return _complete(replace(new, method=new.method or "voucher"))
    return new, []


@on("bill_escrow")
def _escrow(s: Payment, d):
    amount = d.get("amount_kop")
    if (s.accepting_bills and s.stack_pending_kop is None and s.escrow_kop is None
            and amount in s.wanted_bills()):
        return replace(s, escrow_kop=amount), [Command("stack", {"amount_kop": amount})]
    return replace(s, escrow_kop=amount), [Command("return_bill")]


@on("stack_intent")
def _stack_intent(s: Payment, d):
    return replace(s, stack_pending_kop=int(d["amount_kop"]), escrow_kop=None), []


@on("return_intent")
def _return_intent(s: Payment, d):
    return replace(s, return_pending=True), []


@on("bill_stacked")
def _stacked(s: Payment, d):
    if s.stack_pending_kop is None and s.unresolved_stack_kop is None:
        # Every STACK is journaled as an intent before it is sent, so a 0x81 with no open intent
        # is one already credited: the host was killed after journaling it but before its ACK,
        # and the validator repeated it to the next host.
        return replace(s, incidents=_incident(s, f"duplicate_stacked_ignored:{d.get('amount_kop')}")), []
    amount = d.get("amount_kop")
    if amount is None:
        amount = s.stack_pending_kop if s.stack_pending_kop is not None else s.unresolved_stack_kop
    new = _credit_bill(replace(s, unresolved_stack_kop=None), int(amount))
    if d.get("recovered"):
        new = replace(new, recovered=True, incidents=_incident(new, f"stacked_seen_at_startup:{amount}"))
    return _after_credit(new)


@on("bill_returned")
def _returned(s: Payment, d):
    new = replace(s, escrow_kop=None, stack_pending_kop=None, return_pending=False)
    if new.cancel_requested and not new.final:
        return _finish_cancel(new)
    if new.status == "cash" and new.accepting_bills:
        return new, [Command("enable_bills", {"denominations": sorted(new.wanted_bills())})]
    return new, []


@on("bill_rejected")
def _rejected(s: Payment, d):
    return replace(s, escrow_kop=None), []


@on("bill_lost_in_flight")
def _lost_in_flight(s: Payment, d):
    """Recovery: a stack intent without outcome and the validator shows no bill: the device
    never stacked it (it returned the bill on RESET or on escrow timeout)."""
    new = replace(s, escrow_kop=None, stack_pending_kop=None, return_pending=False,
                  unresolved_stack_kop=s.stack_pending_kop,  # a 0x81 arriving later is still credited
                  incidents=_incident(s, f"bill_not_stacked:{s.stack_pending_kop}"))
    if new.cancel_requested and not new.final:
        return _finish_cancel(new)
    return new, []


@on("powerup_with_bill")
def _powerup(s: Payment, d):
    where = d.get("where")
    amount = d.get("amount_kop")
    if amount is None:
        amount = s.stack_pending_kop if s.stack_pending_kop is not None else s.escrow_kop
    in_cassette = where == "stacker" or (where == "unknown" and (d.get("stack_sent") or s.stack_pending_kop))
    if in_cassette and amount:
        new = _credit_bill(s, int(amount))
        new = replace(new, incidents=_incident(new, f"powerup_bill_in_stacker:{amount}"))
        return _after_credit(new)
    new = replace(s, escrow_kop=None, stack_pending_kop=None, return_pending=False,
                  incidents=_incident(s, f"powerup_bill_returned:{amount}"))
    if new.cancel_requested and not new.final:
        return _finish_cancel(new)
    return new, []


@on("validator_fault")
def _fault(s: Payment, d):
    new = replace(s, fault=str(d.get("fault", "failure")))
    return new, ([Command("disable_bills")] if s.status == "cash" else [])


@on("validator_ok")
def _ok(s: Payment, d):
    new = replace(s, fault=None)
    if new.accepting_bills and not new.bill_in_flight:
        return new, [Command("enable_bills", {"denominations": sorted(new.wanted_bills())})]
    return new, []


@on("cancel")
def _cancel(s: Payment, d):
    if s.final:
        raise Rejected("already_final")
    if s.status == "new":
        return _finish_cancel(replace(s, cancel_requested=True))
    if s.status == "cash":
        new = replace(s, cancel_requested=True)
        commands = [Command("disable_bills")]
        if s.escrow_kop is not None and s.stack_pending_kop is None and not s.return_pending:
            commands.append(Command("return_bill"))
            return new, commands
        finished, more = _finish_cancel(new)
        return finished, commands + more
    # card: the purchase is in the terminal's hands; its result ends the payment
    return replace(s, cancel_requested=True), [Command("card_interrupt")]


@on("card_intent")
def _card_intent(s: Payment, d):
    _require(s.status == "card", "not_card")
    return replace(s, card_pending=True, card_attempts=s.card_attempts + 1,
                   incidents=s.incidents), []


@on("card_result")
def _card_result(s: Payment, d):
    status = d.get("status")
    new = replace(s, card_pending=False, recovered=s.recovered or bool(d.get("recovery")))
    if status == "approved":
        expected = s.remaining_kop
        if d.get("amount_kop") != expected or s.final:
            # never keep money we did not ask for: void it
            return (replace(new, card_resolving=False, incidents=_incident(new, "card_amount_mismatch")),
                    [Command("card_void", {"invoice_number": d.get("invoice_number")})])
        card = {k: d.get(k) for k in ("amount_kop", "approval_code", "rrn", "masked_pan", "card_type",
                                      "terminal_id", "merchant_id", "invoice_number", "response_code")}
        paid = replace(new, card=card, card_resolving=False, card_error=None,
                       credited_kop=s.credited_kop + d["amount_kop"])
        return _complete(paid)
    if status in CARD_UNKNOWN and not d.get("resolution"):
        # the driver already asked getLastResult once; ask again, never purchase again
        return replace(new, card_resolving=True), [Command("card_resolve")]
    # a definite failure, or a resolution that found no approval: nothing was charged
    error = status if status in CARD_FINAL_FAILURES else "unknown_nothing_charged"
    new = replace(new, card_resolving=False, card_error=error)
    if d.get("recovery"):
        return replace(new, status="voided" if new.credited_kop == 0 else new.status,
                       recovered=True), []
    if new.cancel_requested:
        return _finish_cancel(replace(new, status="new"))
    return replace(new, status="new"), []


@on("card_void_result")
def _card_void(s: Payment, d):
    return replace(s, incidents=_incident(s, f"card_void:{d.get('status')}")), []


@on("print_intent")
def _print_intent(s: Payment, d):
    return replace(s, receipt="pending", prints=s.prints + 1), []


@on("print_done")
def _print_done(s: Payment, d):
    return replace(s, receipt="printed"), []


@on("print_failed")
def _print_failed(s: Payment, d):
    return replace(s, receipt="failed", incidents=_incident(s, f"print_failed:{d.get('error')}")), []


@on("recovery_settle")
def _recovery_settle(s: Payment, d):
    """Start-up recovery's verdict for a payment the crash left open (after the devices have
    reported every bill and card result they still knew about)."""
    new = replace(s, recovered=True, cancel_requested=False, escrow_kop=None,
                  stack_pending_kop=None, return_pending=False, fault=None)
    if s.final:
        if s.status in NEEDS_RECEIPT and s.receipt in ("none", "pending"):
            return new, [Command("print", {"kind": "copy"})]
        return new, []
    if s.card_pending or s.card_resolving:
        raise Rejected("card_unresolved")
    if new.credited_kop == 0:
        return replace(new, status="cancelled"), []
    if new.credited_kop >= new.total_kop:
        paid, _ = _complete(new)
        return paid, [Command("disable_bills"), Command("print", {"kind": "copy"})]
    return (replace(new, status="partial", voucher_out_kop=new.credited_kop),
            [Command("disable_bills"), Command("print", {"kind": "copy"})])


@on("device_command")
def _device_command(s: Payment, d):
    return s, []  # the intent record of a command that moves no money (enable, disable, void)
