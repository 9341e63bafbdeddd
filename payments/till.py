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
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from payments import health, receipts
from payments.health import DeviceHealth
from payments.commission import quote_for
from payments.journal import Journal, JournalError
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
JOURNAL_PROBE_S = 0.5       # how often a failed journal is tried again
DELIVERED_SEQS_KEPT = 512   # device event numbers remembered to ignore a re-delivery
VOUCHER_GUESSES = 5         # wrong voucher codes per window, for the whole terminal
VOUCHER_GUESS_WINDOW_S = 600.0


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
    # a payment whose visitor has not been heard from for this long may be settled (voucher for
    # any credit) when the next visitor starts; the kiosk's idle reset settles it sooner
    abandon_after_s: float = 180.0


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


def mask_voucher_code(code: str) -> str:
    """What logs and the audit trail may show of a typed voucher code."""
    code = str(code or "")[:20]
    return code[:2] + "*" * max(0, len(code) - 4) + code[-2:] if len(code) > 4 else "*" * len(code)


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
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        self.config = config
        self.validator = validator
        self.card = card
        self.printer = printer
        self.clock = clock  # wall time: only recorded, never used to measure a duration or a range
        self.monotonic = monotonic  # durations (abandonment, voucher lockout)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.version = 0  # bumped on every state change: screens long-poll on it
        self.payments: dict[str, Payment] = {}
        self.order: list[str] = []
        self.created_ids: dict[str, int] = {}  # payment -> journal id of its "created" (shift ranges)
        self.last_seen: dict[str, float] = {}  # payment -> monotonic time its visitor was last heard from
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
        # journal fault: a write failed; no money is taken until writes succeed again and every
        # device event whose delivery failed has been re-delivered and journaled
        self.journal_fault: str | None = None
        self.journal_faults = 0
        self._undelivered: dict[int, str] = {}  # device event seq -> kind, delivery failed
        self._delivered: deque[int] = deque(maxlen=DELIVERED_SEQS_KEPT)
        self._probe: threading.Thread | None = None
        self._voucher_failures: deque[float] = deque()
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
                self.created_ids[pid] = record.id
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
        with self.lock:
            self.changed.notify_all()
        if self._worker is not None:
            self._worker_queue.put(None)
            self._worker.join(timeout=15)
            self._worker = None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until the worker has nothing queued (tests, recovery)."""
        done = threading.Event()
        self._worker_queue.put(("barrier", done))
        return done.wait(timeout)

    # ================================================================== journal faults
    def _append(self, stream: str, kind: str, data: dict | None = None) -> int:
        """Journal one event durably. A failure (disk full, I/O error, read-only file) puts the
        till in the journal-fault state and is raised: nobody may act on an event that is not
        on disk."""
        try:
            return self.journal.append(stream, kind, data)
        except Exception as exc:
            self._journal_failed(exc)
            if isinstance(exc, JournalError):
                raise
            raise JournalError(f"journal write failed: {exc}") from exc

    @property
    def undelivered_device_events(self) -> int:
        """Device events whose journaling failed; the device delivers them again."""
        return len(self._undelivered)

    def enter_journal_fault(self, reason: str) -> None:
        """The journal is known not to take writes (e.g. found so at start)."""
        self._journal_failed(JournalError(reason))

    def _journal_failed(self, exc: BaseException) -> None:
        with self.lock:
            first = self.journal_fault is None
            self.journal_fault = (str(exc) or type(exc).__name__)[:200]
            if first:
                self.journal_faults += 1
            self.version += 1
            self.changed.notify_all()
        if not first:
            return
        log.error("journal write failed (%s): the kiosk takes no money until the journal writes again",
                  self.journal_fault)
        # Stop taking bills. This command cannot be journaled (the journal is what failed); it
        # moves no money, and every bill already inside is reported again by the device.
        if self.validator is not None:
            try:
                self.validator.disable()
            except Exception:
                log.exception("cannot disable the validator after a journal fault")
        with self.lock:
            if self._probe is None or not self._probe.is_alive():
                self._probe = threading.Thread(target=self._probe_journal, name="journal-probe", daemon=True)
                self._probe.start()

    def _probe_journal(self) -> None:
        """Try the journal now and then; the fault clears once a write succeeds and every
        device event whose delivery failed has been delivered (journaled) again."""
        while not self._closed:
            time.sleep(JOURNAL_PROBE_S)
            with self.lock:
                if self.journal_fault is None:
                    return
                if self._try_clear_fault():
                    return

    def _try_clear_fault(self) -> bool:
        """Called with the lock held. True once the fault is cleared."""
        if self.journal_fault is None:
            return True
        if self._undelivered:
            return False  # the device's re-delivery must be journaled first
        try:
            self.journal.append(DEVICE_STREAM, "journal_recovered", {"fault": self.journal_fault})
        except Exception:
            return False
        log.warning("journal writes again after: %s", self.journal_fault)
        self.journal_fault = None
        self.version += 1
        self.changed.notify_all()
        pid = self.cash_id
        payment = self.payments.get(pid) if pid else None
        if self.ready and payment is not None and payment.accepting_bills and not payment.bill_in_flight:
            try:
                self._execute(pid, [Command("enable_bills", {"denominations": sorted(payment.wanted_bills())})])
            except Exception:
                log.exception("cannot re-enable the validator after a journal fault")
        return True

    def _dispatch_durably(self, payment_id: str, kind: str, data: dict) -> Payment:
        """For outcomes that exist only in memory (a card result, a print result): keep trying
        until the journal takes them. Losing them would lose the record of real money."""
        while True:
            try:
                return self.dispatch(payment_id, kind, data)
            except JournalError:
                if self._closed:
                    raise
                time.sleep(JOURNAL_PROBE_S)

    # ================================================================== core dispatch
    def dispatch(self, payment_id: str, kind: str, data: dict | None = None) -> Payment:
        """Check the event against the machine, journal it durably, publish the new state, then
        carry out the commands."""
        data = dict(data or {})
        with self.lock:
            old = self.payments.get(payment_id)
            new, commands = handle(old, Event(kind, data))  # Rejected: nothing is written
            record_id = self._append(payment_id, kind, data)
            if old is None:
                self.order.append(payment_id)
                self.created_ids[payment_id] = record_id
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
                    self._append(payment_id, "device_command", {"device": "bill_validator", "name": name,
                                                                       **command.args})
                    if name == "enable_bills":
                        self.validator.enable(set(command.args.get("denominations", ())))
                    else:
                        self.validator.disable()
                elif name == "stack":
                    try:
                        self.dispatch(payment_id, "stack_intent", {"amount_kop": command.args["amount_kop"]})
                    except JournalError:
                        # never STACK a bill whose intent is not on disk: give it back
                        self.validator.return_bill()
                        continue
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
            except JournalError:
                # the event itself is on disk; its command's intent is not, so it is not sent
                # (the fault state has stopped the validator)
                log.error("command %s for %s not sent: journal fault", name, payment_id)

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
            try:
                self.dispatch(payment_id, "card_intent", {"amount_kop": amount})  # durable before Purchase
            except JournalError:
                # no intent on disk, so no Purchase is sent: the attempt ends "nothing charged"
                # as soon as the journal writes again (until then the screen shows the fault)
                self._dispatch_durably(payment_id, "card_result", {"status": "error", "text": "journal_fault"})
                return
            if self.card is None:
                result = {"status": "offline"}
            else:
                try:
                    result = plain_result(self.card.purchase(amount, merchant_id=self.config.merchant_id or None))
                except Exception as exc:  # a driver bug must not leave money unrecorded
                    log.exception("card purchase raised")
                    result = {"status": "unknown", "text": type(exc).__name__}
            self._dispatch_durably(payment_id, "card_result", result)
        elif name == "card_resolve":
            self._dispatch_durably(payment_id, "card_result", self.resolve_card(payment_id))
        elif name == "card_void":
            invoice = command.args.get("invoice_number")
            result = {"status": "skipped"}
            if self.card is not None and invoice:
                self._append(payment_id, "device_command", {"device": "card_terminal", "name": "void",
                                                                   "invoice_number": invoice})
                result = plain_result(self.card.void(invoice))
            self._dispatch_durably(payment_id, "card_void_result", {"status": result.get("status")})
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
            self._dispatch_durably(payment_id, "print_intent", {"kind": kind, "skipped": True})
            self._dispatch_durably(payment_id, "print_failed", {"error": status.get("error") or
                                                                ("paper_out" if status["paper"] == "out" else "offline")})
            return False
        try:
            self.dispatch(payment_id, "print_intent", {"kind": kind})
        except JournalError:
            # nothing is printed that the journal does not know of: once it writes, the screen's
            # receipt (number and QR) stands as the electronic receipt
            self._dispatch_durably(payment_id, "print_intent", {"kind": kind, "skipped": True})
            self._dispatch_durably(payment_id, "print_failed", {"error": "journal_fault"})
            return False
        payment = self.payments[payment_id]
        blocks = receipts.build_blocks(payment, self.receipt_context(), kind=kind, when=self.clock())
        try:
            result = self.printer.print_job(blocks)
            ok, error = bool(result.ok), getattr(result, "error", None)
        except Exception as exc:
            ok, error = False, type(exc).__name__
        if ok:
            self._dispatch_durably(payment_id, "print_done", {})
        else:
            self._dispatch_durably(payment_id, "print_failed", {"error": error or "print failed"})
        return ok

    # ================================================================== validator events
    def on_validator_event(self, event) -> None:
        """Runs in the validator's poll thread: journal synchronously, then return, so the
        driver acknowledges a bill only once it is on disk.

        Raises when the event could not be made durable: the driver then does not ACK, the
        device keeps reporting the bill, and the driver re-delivers the same event (same seq)
        until a delivery succeeds. A re-delivery of an event already handled is ignored."""
        seq = getattr(event, "seq", None)
        kind = str(getattr(event, "kind", ""))
        data = dict(getattr(event, "data", None) or {})
        with self.lock:
            if seq is not None and seq in self._delivered:
                return
            try:
                self._on_validator_event(kind, data)
            except JournalError:
                if seq is not None:
                    self._undelivered[seq] = kind
                log.error("validator event #%s %s not journaled: not acknowledged, waiting for its repeat", seq, kind)
                raise
            except Exception as exc:
                # a bug or an event this till does not understand: keep an incident record and
                # never credit anything for it; only if even that cannot be written, refuse it
                log.exception("validator event %s not handled", kind)
                self._append(DEVICE_STREAM, "validator_event_unhandled",
                             {"kind": kind, "data": data, "error": type(exc).__name__})
            if seq is not None:
                self._delivered.append(seq)
                self._undelivered.pop(seq, None)
            if self.journal_fault is not None:
                self._try_clear_fault()

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
                    self._append(DEVICE_STREAM, "validator_power_up", data)
                return
            if kind in bill_kinds:
                if kind == "escrow" and self.journal_fault is not None:
                    # no money is taken while the journal cannot record it: the bill goes back
                    log.warning("bill in escrow during a journal fault: returned")
                    self.validator.return_bill()
                    return
                if kind == "escrow" and (payment is None or not payment.accepting_bills):
                    # nobody is paying cash: the bill goes back, and the journal says so
                    self._append(DEVICE_STREAM, "stray_escrow", data)
                    self.validator.return_bill()
                    if payment is None:
                        return
                if payment is None and kind in ("stacked", "powerup_with_bill"):
                    if kind == "powerup_with_bill" and data.get("where") == "validator":
                        self._append(DEVICE_STREAM, kind, data)
                        return
                    self._orphan_bill(kind, data)
                    return
                if payment is None:
                    self._append(DEVICE_STREAM, kind, data)
                    return
                if (kind in ("stacked", "powerup_with_bill") and not payment.service_id and payment.method is None
                        and payment.stack_pending_kop is not None):
                    self._orphan_bill(kind, data, pid)  # the repeat of an orphan bill whose journaling failed
                    return
                if kind == "escrow" and not payment.accepting_bills:
                    return
                self.dispatch(pid, bill_kinds[kind], data)
                return
            if kind not in VALIDATOR_FAULT_EVENTS | VALIDATOR_OK_EVENTS | {
                    "power_up", "cassette_removed", "cassette_replaced"}:
                # e.g. a 'stacked' without a bill type: an incident for staff, never a credit
                log.error("validator reported %s %s: recorded as an incident", kind, data)
            self._append(DEVICE_STREAM, "validator_" + kind, data)
            if kind == "cassette_removed":
                self.device.cassette_out = True
                self._append(ENCASHMENT_STREAM, "cassette_removed", {})
            if kind == "cassette_replaced":
                self.device.cassette_out = False
                self._append(ENCASHMENT_STREAM, "cassette_replaced", {})
            if kind in VALIDATOR_FAULT_EVENTS:
                self.device.fault = kind
                if payment is not None and not payment.final and payment.fault != kind:
                    self.dispatch(pid, "validator_fault", {"fault": kind})
            elif kind in VALIDATOR_OK_EVENTS and self.device.fault:
                self.device.fault = None
                if payment is not None and not payment.final and payment.fault:
                    self.dispatch(pid, "validator_ok", {})

    def _orphan_bill(self, kind: str, data: dict, pid: str | None = None) -> None:
        """Cash stacked with no payment to own it (seen at start-up): it becomes a recovered
        record with a voucher for the whole sum, never lost and never silently kept. ``pid``:
        the record a failed delivery of this bill already created (its repeat continues it)."""
        amount = data.get("amount_kop")
        if not amount:
            self._append(DEVICE_STREAM, "orphan_bill_unknown_amount", data)
            return
        if pid is None:
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
    def device_health(self, *, probe: bool = False) -> dict[str, DeviceHealth]:
        """Each device's verdict by the one rule in payments/health.py. ``probe`` also asks the
        card terminal actively (PingDevice; the self-test does, screens and /healthz don't)."""
        result = {}
        if self.validator is None:
            result["bill_validator"] = health.not_configured("bill_validator")
        else:
            try:
                result["bill_validator"] = health.validator_health(
                    self.validator.status(), list(self.validator.bill_table), self.device.fault)
            except Exception as exc:
                result["bill_validator"] = health.DeviceHealth("bill_validator", True, False, "error",
                                                               {"error": type(exc).__name__})
        if self.card is None:
            result["card_terminal"] = health.not_configured("card_terminal")
        else:
            try:
                pinged = bool(self.card.ping()) if probe else None
                result["card_terminal"] = health.card_health(self.card.status(), pinged)
            except Exception as exc:
                result["card_terminal"] = health.DeviceHealth("card_terminal", True, False, "error",
                                                              {"error": type(exc).__name__})
        result["printer"] = (health.printer_health(self.printer_status()) if self.printer is not None
                             else health.not_configured("printer"))
        return result

    def availability(self) -> dict:
        """What the kiosk can take right now, for the confirm screen."""
        devices = self.device_health()
        validator = devices["bill_validator"]
        unsettled = [pid for pid in self.order if not self.payments[pid].settled]
        journal_ok = self.journal_fault is None
        return {"ready": self.ready, "cash": validator.ok and journal_ok,
                "card": devices["card_terminal"].ok and journal_ok,
                "bill_table": validator.detail.get("bills", []), "printer": self.printer_status(),
                "printer_ok": devices["printer"].ok, "fault": self.device.fault,
                "journal_fault": self.journal_fault, "busy": self.active_id is not None,
                "unsettled": len(unsettled)}

    def _create_record(self, service_id, service_name, details, quote, payer) -> str:
        payment_id = secrets.token_hex(8)
        seq = self.receipt_counter + 1  # taken only once "created" is on disk: no gaps in receipt numbers
        self.dispatch(payment_id, "created", {
            "payment_id": payment_id, "service_id": service_id, "service_name": service_name,
            "details": details, "quote": quote, "payer": payer, "receipt_seq": seq,
            "receipt_no": f"{self.config.terminal_id}-{seq:06d}", "voucher_code": new_voucher_code(),
            "at": self.clock()})
        self.receipt_counter = seq
        return payment_id

    def create(self, service, payer: Payer) -> str:
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
            if self.journal_fault is not None:
                raise Unavailable("journal")
            self._release_abandoned()
            if self.active_id is not None:
                raise Busy(self.active_id)
            pid = self._create_record(service.id, dict(service.name), details, quote.to_plain(), payer.to_plain())
            self.active_id = pid
            self.touch(pid)
            return pid

    def touch(self, payment_id: str) -> None:
        """The payment's visitor is still there (a page or status request of theirs)."""
        self.last_seen[payment_id] = self.monotonic()

    @staticmethod
    def _money_moving(p: Payment) -> bool:
        return p.bill_in_flight or p.card_pending or p.card_resolving

    def _release_abandoned(self) -> None:
        """The active payment does not block the next visitor when it is over (its receipt may
        still be printing), when it sits on the method screen with nothing paid, or when its
        visitor has gone silent for ``abandon_after_s``: then it is settled like a Cancel, so
        any credit (bills, voucher) becomes a voucher for the whole credit."""
        pid = self.active_id
        if pid is None:
            return
        p = self.payments[pid]
        if not p.final and not self._money_moving(p):
            silent_s = self.monotonic() - self.last_seen.get(pid, float("-inf"))
            if (p.status == "new" and p.credited_kop == 0) or silent_s > self.config.abandon_after_s:
                p = self.abandon(pid, "abandoned")
        if p.final and not self._money_moving(p) and self.active_id == pid:
            self.active_id = None

    def abandon(self, payment_id: str, reason: str = "visitor_left") -> Payment | None:
        """The visitor left (idle reset, "start over", gone silent). A payment waiting for a
        method or for more bills is cancelled: nothing paid -> cancelled; credit -> a voucher
        for the whole credit, printed (a bill still in flight is waited for first). A card
        operation in the terminal's hands finishes on its own result."""
        with self.lock:
            p = self.payments.get(payment_id)
            if p is None or p.final or p.cancel_requested or p.status not in ("new", "cash"):
                return p
            if p.card_pending or p.card_resolving:
                return p
            log.info("payment %s abandoned (%s), credit %d", payment_id, reason, p.credited_kop)
            return self.dispatch(payment_id, "cancel", {"reason": reason})

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
            now = self.monotonic()
            while self._voucher_failures and now - self._voucher_failures[0] > VOUCHER_GUESS_WINDOW_S:
                self._voucher_failures.popleft()
            if len(self._voucher_failures) >= VOUCHER_GUESSES:
                log.warning("voucher code %s refused: too many wrong codes", mask_voucher_code(code))
                raise Unavailable("voucher_locked")
            voucher = self.vouchers.get(code)
            if voucher is None or voucher.status != "issued":
                # codes are not guessable by design (32^8); still, a terminal-wide limit on
                # wrong codes that no new session cookie resets
                self._voucher_failures.append(now)
                log.warning("wrong voucher code %s (%d in the last %d s)", mask_voucher_code(code),
                            len(self._voucher_failures), VOUCHER_GUESS_WINDOW_S)
                raise Unavailable("voucher_invalid")
            return self.dispatch(payment_id, "redeem_voucher", {"code": code, "amount_kop": voucher.amount_kop})

    def cancel(self, payment_id: str) -> Payment:
        return self.dispatch(payment_id, "cancel", {})

    def refund_voucher(self, code: str, staff: str) -> Voucher:
        with self.lock:
            voucher = self.vouchers.get(code)
            if voucher is None or voucher.status != "issued":
                raise Unavailable("voucher_invalid")
            self._append(f"voucher:{code}", "voucher_refunded",
                                {"amount_kop": voucher.amount_kop, "by": staff})
            voucher.status, voucher.closed_by, voucher.closed_at = "refunded", staff, self.clock()
            return voucher

    # ================================================================== recovery bookkeeping
    def recovery_case(self, payment_id: str, rule: str, **detail) -> None:
        p = self.payments.get(payment_id)
        case = {"payment_id": payment_id, "rule": rule, "receipt_no": p.receipt_no if p else "",
                "status": p.status if p else "", "credited_kop": p.credited_kop if p else 0, **detail}
        self._append("recovery", "recovery_case", case)
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
            record_id = self._append(ENCASHMENT_STREAM, "encashment", report)
            report.update(id=record_id, at=self.clock())
            self.encashments.append(report)
            self.cassette = []
            return report

    def close_shift(self, staff: str) -> dict:
        from payments.reports import shift_report

        with self.lock:
            report = shift_report(self)
            report.update(number=len(self.shifts) + 1, by=staff, terminal=self.config.terminal_id)
            record_id = self._append(SHIFT_STREAM, "z_report", report)
            report.update(id=record_id, at=self.clock())
            self.shifts.append(report)
        self.print_report("Z", report)
        return report

    def print_report(self, title: str, report: dict) -> bool:
        """Service reports (X, Z, encashment) on paper; journaled like every device command."""
        from payments.reports import report_blocks

        if self.printer is None:
            return False
        self._append(DEVICE_STREAM, "device_command", {"device": "printer", "name": f"report {title}"})
        try:
            result = self.printer.print_job(report_blocks(f"{title}-ЗВІТ" if len(title) == 1 else title, report,
                                                          self.config.terminal_id))
            ok = bool(result.ok)
        except Exception:
            ok = False
        self._append(DEVICE_STREAM, "device_command_done", {"device": "printer", "ok": ok})
        return ok

    def self_test(self, print_page: bool = False) -> list[dict]:
        """Each configured device asked what it knows (the card terminal actively), judged by the
        same rule as /healthz and the screens; nothing here moves money."""
        results = []
        for name, verdict in self.device_health(probe=True).items():
            if not verdict.configured:
                continue
            ok = verdict.ok
            if name == "printer" and ok and print_page:
                ok = self.print_report("SELF-TEST", {"terminal": self.config.terminal_id})
            detail = "; ".join([verdict.state] + [f"{k} {v}" for k, v in verdict.detail.items()
                                                  if v not in (None, "", [])])
            results.append({"device": name, "ok": ok, "detail": detail})
        self._append(DEVICE_STREAM, "self_test", {"results": results})
        return results

    def masked(self, payment: Payment) -> str:
        if not payment.payer:
            return ""
        return mask_payer(payment.payer)


__all__ = ["Till", "TillConfig", "Busy", "Unavailable", "Voucher", "MoneyError"]
