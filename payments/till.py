"""The runtime around the pure machine: journals every event before its state is visible, turns
commands into device calls (intent journaled before, outcome after), routes device events to the
payment they belong to, and keeps one payment at a time on the single set of hardware.

Threads: web requests, the validator's poll thread (its callback journals synchronously, so a
bill is durable before the driver acknowledges it) and one worker for blocking device work
(card purchase, printing)."""
from __future__ import annotations

import dataclasses
import logging
import queue
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from payments import receipts
from payments.commission import quote_for
from payments.journal import Journal
from payments.machine import Command, Event, Payment, Rejected, handle
from payments.money import MoneyError
from payments.taxid import Payer, mask_payer

log = logging.getLogger("cnap.payments")

VOUCHER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
DEVICE_STREAM = "device"
ENCASHMENT_STREAM = "encashment"
SHIFT_STREAM = "shift"
RETENTION_STREAM = "retention"
VALIDATOR_FAULT_EVENTS = {"jammed", "cassette_full", "cassette_removed", "lost", "failure", "cheated"}
VALIDATOR_OK_EVENTS = {"idle", "disabled", "online", "cassette_replaced"}


class Busy(Exception):
    """The hardware serves another payment right now."""


class Unavailable(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class TillConfig:
    terminal_id: str = "KIOSK-01"
    branch: str = "central"
    merchant_id: str | None = None
    verify_url: str = "http://127.0.0.1:8080/receipt/"
    max_payment_kop: int = 5_000_000
    receipt_key: bytes = b"test-key"
    timezone: str = "Europe/Kyiv"


@dataclass
class Voucher:
    code: str
    amount_kop: int
    payment_id: str
    receipt_no: str
    issued_at: float
    status: str = "issued"  # issued | redeemed | refunded
    closed_by: str = ""
    closed_at: float = 0.0


@dataclass
class Device:
    """What the till knows about the validator right now (from its events)."""
    fault: str | None = None
    cassette_out: bool = False
    events: list = field(default_factory=list)


def new_voucher_code() -> str:
    raw = "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def plain_result(result: Any) -> dict:
    if result is None:
        return {"status": "unknown"}
    if dataclasses.is_dataclass(result):
        data = dataclasses.asdict(result)
    elif isinstance(result, dict):
        data = dict(result)
    else:
        data = dict(vars(result))
    data.pop("raw", None)  # the terminal's raw message may carry more than we may keep
    return {k: v for k, v in data.items() if isinstance(v, (str, int, float, bool, type(None)))}


class Till:
    def __init__(self, journal: Journal, config: TillConfig, *, validator=None, card=None, printer=None,
                 clock: Callable[[], float] = time.time) -> None:
        self.journal = journal
        self.config = config
        self.validator = validator
        self.card = card
        self.printer = printer
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.version = 0  # bumped on every state change: screens long-poll on it
        self.payments: dict[str, Payment] = {}
        self.order: list[str] = []
        self.vouchers: dict[str, Voucher] = {}
        self.refunds: dict[str, tuple[str, float]] = {}
        self.active_id: str | None = None
        self.cash_id: str | None = None
        self.receipt_counter = 0
        self.cassette: list[tuple[int, int]] = []  # (journal id, kop) credited since last encashment
        self.encashments: list[dict] = []
        self.shifts: list[dict] = []
        self.device = Device()
        self.recovery_cases: list[dict] = []
        self.ready = False
        self.last_error: str | None = None
        self._worker_queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._load()

    # ================================================================== replay
    def _load(self) -> None:
        states: dict[str, Payment] = {}
        for record in self.journal.records():
            pid, kind, data = record.payment_id, record.kind, record.data
            if pid == ENCASHMENT_STREAM:
                if kind == "encashment":
                    self.encashments.append(dict(data, id=record.id, at=record.at))
                    self.cassette = []
                continue
            if pid == SHIFT_STREAM:
                if kind == "z_report":
                    self.shifts.append(dict(data, id=record.id, at=record.at))
                continue
            if pid.startswith("voucher:"):
                if kind == "voucher_refunded":
                    self.refunds[pid[len("voucher:"):]] = (data.get("by", ""), record.at)
                continue
            if pid == RETENTION_STREAM:  # redactions of personal data (payments/retention.py)
                continue
            if pid == DEVICE_STREAM or pid == "recovery":
                if kind == "recovery_case":
                    self.recovery_cases.append(dict(data, at=record.at))
                continue
            try:
                old = states.get(pid)
                new, _ = handle(old, Event(kind, data))
            except Rejected as exc:  # never expected: events are checked before they are written
                log.error("journal event %s %s for %s does not replay: %s", record.id, kind, pid, exc)
                continue
            if old is None:
                self.order.append(pid)
                self.receipt_counter = max(self.receipt_counter, int(data.get("receipt_seq", 0)))
            if len(new.bills) > (len(old.bills) if old else 0):
                self.cassette.append((record.id, new.bills[-1]))
            if new.method == "cash" or new.bills:
                self.cash_id = pid
            states[pid] = new
        self.payments = states
        self._rebuild_vouchers()
        for pid in self.order:
            p = self.payments[pid]
            if not p.settled:
                self.active_id = pid  # recovery settles it before anyone else is served

    def _rebuild_vouchers(self) -> None:
        vouchers: dict[str, Voucher] = {}
        for pid in self.order:
            p = self.payments[pid]
            if p.final and p.voucher_out_kop > 0:
                vouchers[p.voucher_code] = Voucher(p.voucher_code, p.voucher_out_kop, pid, p.receipt_no,
                                                   p.settled_at or p.created_at)
        for pid in self.order:
            for code, _ in self.payments[pid].vouchers_in:
                if code in vouchers:
                    vouchers[code].status = "redeemed"
                    vouchers[code].closed_by = self.payments[pid].receipt_no
        for code, (by, at) in self.refunds.items():
            if code in vouchers:
                vouchers[code].status = "refunded"
                vouchers[code].closed_by = by
                vouchers[code].closed_at = at
        self.vouchers = vouchers

    # ================================================================== lifecycle
    def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="till-worker", daemon=True)
            self._worker.start()
        if self.validator is not None:
            self.validator.subscribe(self.on_validator_event)

    def close(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker_queue.put(None)
            self._worker.join(timeout=15)
            self._worker = None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until the worker has nothing queued (tests, recovery)."""
        done = threading.Event()
        self._worker_queue.put(("barrier", done))
        return done.wait(timeout)

    # ================================================================== core dispatch
    def dispatch(self, payment_id: str, kind: str, data: dict | None = None) -> Payment:
        """Check the event against the machine, journal it durably, publish the new state, then
        carry out the commands."""
        data = dict(data or {})
        with self.lock:
            old = self.payments.get(payment_id)
            new, commands = handle(old, Event(kind, data))  # Rejected: nothing is written
            record_id = self.journal.append(payment_id, kind, data)
            if old is None:
                self.order.append(payment_id)
            if len(new.bills) > (len(old.bills) if old else 0):
                self.cassette.append((record_id, new.bills[-1]))
            self.payments[payment_id] = new
            self.version += 1
            self.changed.notify_all()
            if new.final and new.voucher_out_kop:
                voucher = self.vouchers.get(new.voucher_code)
                if voucher is None:
                    self.vouchers[new.voucher_code] = Voucher(new.voucher_code, new.voucher_out_kop, payment_id,
                                                              new.receipt_no, self.clock())
                else:
                    voucher.amount_kop = new.voucher_out_kop
            for code, _ in new.vouchers_in:
                if code in self.vouchers and self.vouchers[code].status == "issued":
                    self.vouchers[code].status = "redeemed"
                    self.vouchers[code].closed_by = new.receipt_no
            if self.active_id == payment_id and new.settled and not new.bill_in_flight:
                self.active_id = None
            log.info("payment %s %s -> %s credited=%d", payment_id, kind, new.status, new.credited_kop)
            self._execute(payment_id, commands)
        return new

    def _execute(self, payment_id: str, commands: list[Command]) -> None:
        for command in commands:
            name = command.name
            try:
                if name in ("enable_bills", "disable_bills"):
                    if self.validator is None:
                        continue
                    self.journal.append(payment_id, "device_command", {"device": "bill_validator", "name": name,
                                                                       **command.args})
                    if name == "enable_bills":
                        self.validator.enable(set(command.args.get("denominations", ())))
                    else:
                        self.validator.disable()
                elif name == "stack":
                    self.dispatch(payment_id, "stack_intent", {"amount_kop": command.args["amount_kop"]})
                    self.validator.stack()
                elif name == "return_bill":
                    self.dispatch(payment_id, "return_intent", {})
                    self.validator.return_bill()
                elif name == "card_interrupt":
                    if self.card is not None and hasattr(self.card, "interrupt"):
                        self._worker_queue.put(("interrupt", payment_id, command))
                else:  # purchase, card_resolve, card_void, print: blocking device work
                    self._worker_queue.put(("command", payment_id, command))
            except Rejected as exc:
                log.warning("command %s for %s refused: %s", name, payment_id, exc)

    # ================================================================== worker
    def _work(self) -> None:
        while True:
            item = self._worker_queue.get()
            if item is None:
                return
            if item[0] == "barrier":
                item[1].set()
                continue
            kind, payment_id, command = item
            try:
                if kind == "interrupt":
                    self.card.interrupt()
                else:
                    self._blocking(payment_id, command)
            except Exception:
                log.exception("device command %s for %s failed", command.name, payment_id)

    def _blocking(self, payment_id: str, command: Command) -> None:
        name = command.name
        if name == "purchase":
            amount = int(command.args["amount_kop"])
            self.dispatch(payment_id, "card_intent", {"amount_kop": amount})  # durable before Purchase
            if self.card is None:
                result = {"status": "offline"}
            else:
                try:
                    result = plain_result(self.card.purchase(amount, merchant_id=self.config.merchant_id or None))
                except Exception as exc:  # a driver bug must not leave money unrecorded
                    log.exception("card purchase raised")
                    result = {"status": "unknown", "text": type(exc).__name__}
            self.dispatch(payment_id, "card_result", result)
        elif name == "card_resolve":
            self.dispatch(payment_id, "card_result", self.resolve_card(payment_id))
        elif name == "card_void":
            invoice = command.args.get("invoice_number")
            result = {"status": "skipped"}
            if self.card is not None and invoice:
                self.journal.append(payment_id, "device_command", {"device": "card_terminal", "name": "void",
                                                                   "invoice_number": invoice})
                result = plain_result(self.card.void(invoice))
            self.dispatch(payment_id, "card_void_result", {"status": result.get("status")})
        elif name == "print":
            self.print_receipt(payment_id, command.args.get("kind", "receipt"))

    # ================================================================== card
    def used_invoices(self, except_id: str | None = None) -> set:
        return {p.card.get("invoice_number") for pid, p in self.payments.items()
                if p.card and pid != except_id and p.card.get("invoice_number")}

    def resolve_card(self, payment_id: str, *, recovery: bool = False) -> dict:
        """Ask the terminal for its last result (never a second Purchase). Approved, for this
        amount and not already booked to another payment: it is ours; anything else: nothing
        was charged (a stray approval is voided)."""
        payment = self.payments[payment_id]
        result = {"status": "unknown"}
        if self.card is not None:
            try:
                result = plain_result(self.card.last_result())
            except Exception:
                log.exception("card last_result raised")
        ours = (result.get("status") == "approved" and result.get("amount_kop") == payment.remaining_kop
                and result.get("invoice_number") not in self.used_invoices(payment_id))
        if ours:
            return dict(result, resolution=True, recovery=recovery)
        return {"status": "unknown", "resolution": True, "recovery": recovery,
                "text": f"last result: {result.get('status')}"}

    # ================================================================== printing
    def receipt_context(self) -> receipts.ReceiptContext:
        return receipts.ReceiptContext(self.config.terminal_id, self.config.branch, self.config.verify_url,
                                       self.config.receipt_key, self.config.timezone)

    def printer_status(self) -> dict:
        if self.printer is None:
            return {"online": False, "paper": "none", "cover_open": False, "error": "no printer"}
        try:
            status = self.printer.status()
            return {"online": bool(status.online), "paper": status.paper, "cover_open": bool(status.cover_open),
                    "error": status.error}
        except Exception as exc:
            return {"online": False, "paper": "unknown", "cover_open": False, "error": type(exc).__name__}

    def print_receipt(self, payment_id: str, kind: str = "receipt") -> bool:
        status = self.printer_status()
        if not status["online"] or status["paper"] == "out" or status["cover_open"]:
            self.dispatch(payment_id, "print_intent", {"kind": kind, "skipped": True})
            self.dispatch(payment_id, "print_failed", {"error": status.get("error") or
                                                       ("paper_out" if status["paper"] == "out" else "offline")})
            return False
        self.dispatch(payment_id, "print_intent", {"kind": kind})
        payment = self.payments[payment_id]
        blocks = receipts.build_blocks(payment, self.receipt_context(), kind=kind, when=self.clock())
        try:
            result = self.printer.print_job(blocks)
            ok, error = bool(result.ok), getattr(result, "error", None)
        except Exception as exc:
            ok, error = False, type(exc).__name__
        if ok:
            self.dispatch(payment_id, "print_done", {})
        else:
            self.dispatch(payment_id, "print_failed", {"error": error or "print failed"})
        return ok

    # ================================================================== validator events
    def on_validator_event(self, event) -> None:
        """Runs in the validator's poll thread: journal synchronously, then return, so the
        driver acknowledges a bill only once it is on disk."""
        try:
            self._on_validator_event(event.kind, dict(event.data))
        except Exception:
            log.exception("validator event %s not handled", event.kind)

    def _on_validator_event(self, kind: str, data: dict) -> None:
        bill_kinds = {"escrow": "bill_escrow", "stacked": "bill_stacked", "returned": "bill_returned",
                      "rejected": "bill_rejected", "powerup_with_bill": "powerup_with_bill"}
        with self.lock:
            pid = self.cash_id
            payment = self.payments.get(pid) if pid else None
            if kind == "power_up_at_start":
                # plain power-up seen before RESET: only a STACK the journal sent matters
                if payment is not None and payment.stack_pending_kop is not None:
                    self.dispatch(pid, "powerup_with_bill", {"where": "unknown", "amount_kop": None,
                                                            "stack_sent": True, "at_start": True})
                else:
                    self.journal.append(DEVICE_STREAM, "validator_power_up", data)
                return
            if kind in bill_kinds:
                if kind == "escrow" and (payment is None or not payment.accepting_bills):
                    # nobody is paying cash: the bill goes back, and the journal says so
                    self.journal.append(DEVICE_STREAM, "stray_escrow", data)
                    self.validator.return_bill()
                    if payment is None:
                        return
                if payment is None and kind in ("stacked", "powerup_with_bill"):
                    if kind == "powerup_with_bill" and data.get("where") == "validator":
                        self.journal.append(DEVICE_STREAM, kind, data)
                        return
                    self._orphan_bill(kind, data)
                    return
                if payment is None:
                    self.journal.append(DEVICE_STREAM, kind, data)
                    return
                if kind == "escrow" and not payment.accepting_bills:
                    return
                self.dispatch(pid, bill_kinds[kind], data)
                return
            self.journal.append(DEVICE_STREAM, "validator_" + kind, data)
            if kind == "cassette_removed":
                self.device.cassette_out = True
                self.journal.append(ENCASHMENT_STREAM, "cassette_removed", {})
            if kind == "cassette_replaced":
                self.device.cassette_out = False
                self.journal.append(ENCASHMENT_STREAM, "cassette_replaced", {})
            if kind in VALIDATOR_FAULT_EVENTS:
                self.device.fault = kind
                if payment is not None and not payment.final and payment.fault != kind:
                    self.dispatch(pid, "validator_fault", {"fault": kind})
            elif kind in VALIDATOR_OK_EVENTS and self.device.fault:
                self.device.fault = None
                if payment is not None and not payment.final and payment.fault:
                    self.dispatch(pid, "validator_ok", {})

    def _orphan_bill(self, kind: str, data: dict) -> None:
        """Cash stacked with no payment to own it (seen at start-up): it becomes a recovered
        record with a voucher for the whole sum, never lost and never silently kept."""
        amount = data.get("amount_kop")
        if not amount:
            self.journal.append(DEVICE_STREAM, "orphan_bill_unknown_amount", data)
            return
        pid = self._create_record("", {"uk": "Нерозподілена готівка", "en": "Unassigned cash"}, {},
                                  {"amount_kop": 0, "commission_kop": 0, "total_kop": 0}, {})
        self.cash_id = pid
        self.dispatch(pid, "stack_intent", {"amount_kop": amount, "orphan": True})
        self.dispatch(pid, "bill_stacked" if kind == "stacked" else "powerup_with_bill",
                      dict(data, recovered=True))
        if not self.payments[pid].final:
            self.dispatch(pid, "recovery_settle", {})
        self.recovery_case(pid, "orphan_bill", amount_kop=amount)

    # ================================================================== visitor actions
    def availability(self) -> dict:
        """What the kiosk can take right now, for the confirm screen."""
        validator_ok = False
        bill_table: list[int] = []
        if self.validator is not None:
            try:
                status = self.validator.status()
                bill_table = list(self.validator.bill_table)
                validator_ok = bool(status.online) and not self.device.fault and bool(bill_table)
            except Exception:
                validator_ok = False
        card_ok = False
        if self.card is not None:
            try:
                status = self.card.status()
                card_ok = bool(status.online)
            except Exception:
                card_ok = False
        unsettled = [pid for pid in self.order if not self.payments[pid].settled]
        return {"ready": self.ready, "cash": validator_ok, "card": card_ok, "bill_table": bill_table,
                "printer": self.printer_status(), "fault": self.device.fault,
                "busy": self.active_id is not None, "unsettled": len(unsettled)}

    def _create_record(self, service_id, service_name, details, quote, payer) -> str:
        payment_id = secrets.token_hex(8)
        self.receipt_counter += 1
        seq = self.receipt_counter
        self.dispatch(payment_id, "created", {
            "payment_id": payment_id, "service_id": service_id, "service_name": service_name,
            "details": details, "quote": quote, "payer": payer, "receipt_seq": seq,
            "receipt_no": f"{self.config.terminal_id}-{seq:06d}", "voucher_code": new_voucher_code(),
            "at": self.clock()})
        return payment_id

    def create(self, service, payer: Payer, *, lang_names: dict | None = None) -> str:
        """A new payment for ``service`` (the catalogue's record: the amount comes from there,
        never from a request)."""
        if service is None or service.fee is None:
            raise Unavailable("not_paid_service")
        quote = quote_for(service.fee)
        if quote.total_kop <= 0 or quote.total_kop > self.config.max_payment_kop:
            raise Unavailable("amount_out_of_range")
        d = service.fee.details
        details = {"recipient": d.recipient, "edrpou": d.edrpou, "iban": d.iban,
                   "purpose_code": d.purpose_code, "purpose": (d.purpose or {}).get("uk", "")}
        with self.lock:
            if not self.ready:
                raise Unavailable("not_ready")
            self._release_abandoned()
            if self.active_id is not None:
                raise Busy(self.active_id)
            pid = self._create_record(service.id, dict(service.name), details, quote.to_plain(), payer.to_plain())
            self.active_id = pid
            return pid

    def _release_abandoned(self) -> None:
        """A payment left on the method screen (no money moved, nothing in flight) does not
        block the next visitor: it is cancelled."""
        pid = self.active_id
        if pid is None:
            return
        p = self.payments[pid]
        if p.status == "new" and not p.card_pending and not p.card_resolving and p.credited_kop == 0:
            self.dispatch(pid, "cancel", {"reason": "abandoned"})
            if self.active_id == pid and self.payments[pid].settled:
                self.active_id = None

    def choose_cash(self, payment_id: str) -> Payment:
        with self.lock:
            avail = self.availability()
            if not avail["cash"]:
                raise Unavailable("cash_unavailable")
            self.cash_id = payment_id
            return self.dispatch(payment_id, "choose_cash", {"bill_table": avail["bill_table"]})

    def choose_card(self, payment_id: str) -> Payment:
        with self.lock:
            if not self.availability()["card"]:
                raise Unavailable("card_unavailable")
            return self.dispatch(payment_id, "choose_card", {})

    def redeem_voucher(self, payment_id: str, code: str) -> Payment:
        code = (code or "").strip().upper().replace(" ", "")
        if len(code) == 8 and "-" not in code:
            code = f"{code[:4]}-{code[4:]}"
        with self.lock:
            voucher = self.vouchers.get(code)
            if voucher is None or voucher.status != "issued":
                raise Unavailable("voucher_invalid")
            return self.dispatch(payment_id, "redeem_voucher", {"code": code, "amount_kop": voucher.amount_kop})

    def cancel(self, payment_id: str) -> Payment:
        return self.dispatch(payment_id, "cancel", {})

    def refund_voucher(self, code: str, staff: str) -> Voucher:
        with self.lock:
            voucher = self.vouchers.get(code)
            if voucher is None or voucher.status != "issued":
                raise Unavailable("voucher_invalid")
            self.journal.append(f"voucher:{code}", "voucher_refunded",
                                {"amount_kop": voucher.amount_kop, "by": staff})
            voucher.status, voucher.closed_by, voucher.closed_at = "refunded", staff, self.clock()
            return voucher

    # ================================================================== recovery bookkeeping
    def recovery_case(self, payment_id: str, rule: str, **detail) -> None:
        p = self.payments.get(payment_id)
        case = {"payment_id": payment_id, "rule": rule, "receipt_no": p.receipt_no if p else "",
                "status": p.status if p else "", "credited_kop": p.credited_kop if p else 0, **detail}
        self.journal.append("recovery", "recovery_case", case)
        self.recovery_cases.append(dict(case, at=self.clock()))

    # ================================================================== views
    def wait_change(self, since: int, timeout: float) -> int:
        """Block until the version moves past ``since`` (or timeout); returns the version."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.version <= since:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(left)
            return self.version

    def payment(self, payment_id: str) -> Payment | None:
        return self.payments.get(payment_id)

    def cassette_counts(self) -> dict[int, int]:
        return dict(Counter(kop for _, kop in self.cassette))

    def encash(self, staff: str) -> dict:
        with self.lock:
            counts = self.cassette_counts()
            report = {"counts": {str(k): v for k, v in sorted(counts.items())},
                      "bills": sum(counts.values()), "total_kop": sum(k * v for k, v in counts.items()),
                      "by": staff, "terminal": self.config.terminal_id,
                      "since_id": self.encashments[-1]["id"] if self.encashments else 0}
            record_id = self.journal.append(ENCASHMENT_STREAM, "encashment", report)
            report.update(id=record_id, at=self.clock())
            self.encashments.append(report)
            self.cassette = []
            return report

    def close_shift(self, staff: str) -> dict:
        from payments.reports import shift_report

        with self.lock:
            report = shift_report(self)
            report.update(number=len(self.shifts) + 1, by=staff, terminal=self.config.terminal_id)
            record_id = self.journal.append(SHIFT_STREAM, "z_report", report)
            report.update(id=record_id, at=self.clock())
            self.shifts.append(report)
        self.print_report("Z", report)
        return report

    def print_report(self, title: str, report: dict) -> bool:
        """Service reports (X, Z, encashment) on paper; journaled like every device command."""
        from payments.reports import report_blocks

        if self.printer is None:
            return False
        self.journal.append(DEVICE_STREAM, "device_command", {"device": "printer", "name": f"report {title}"})
        try:
            result = self.printer.print_job(report_blocks(f"{title}-ЗВІТ" if len(title) == 1 else title, report,
                                                          self.config.terminal_id))
            ok = bool(result.ok)
        except Exception:
            ok = False
        self.journal.append(DEVICE_STREAM, "device_command_done", {"device": "printer", "ok": ok})
        return ok

    def self_test(self, print_page: bool = False) -> list[dict]:
        """Each device asked what it knows; nothing here moves money."""
        results = []
        if self.validator is not None:
            try:
                st = self.validator.status()
                results.append({"device": "bill_validator", "ok": bool(st.online) and not self.device.fault,
                                "detail": f"{st.state}; bills {list(self.validator.bill_table)}; "
                                          f"fault {self.device.fault or '-'}"})
            except Exception as exc:
                results.append({"device": "bill_validator", "ok": False, "detail": type(exc).__name__})
        if self.card is not None:
            try:
                ok = bool(self.card.ping())
                results.append({"device": "card_terminal", "ok": ok, "detail": "PingDevice " + ("ok" if ok else "no answer")})
            except Exception as exc:
                results.append({"device": "card_terminal", "ok": False, "detail": type(exc).__name__})
        if self.printer is not None:
            st = self.printer_status()
            ok = st["online"] and st["paper"] != "out" and not st["cover_open"]
            if ok and print_page:
                ok = self.print_report("SELF-TEST", {"terminal": self.config.terminal_id})
            results.append({"device": "printer", "ok": ok, "detail": f"paper {st['paper']}, cover "
                                                                    f"{'open' if st['cover_open'] else 'closed'}"})
        self.journal.append(DEVICE_STREAM, "self_test", {"results": results})
        return results

    def masked(self, payment: Payment) -> str:
        if not payment.payer:
            return ""
        return mask_payer(payment.payer)


__all__ = ["Till", "TillConfig", "Busy", "Unavailable", "Voucher", "MoneyError"]
