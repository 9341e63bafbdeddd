"""The till: the one place the kiosk's payment state changes. A facade over the parts in their
own modules, so the pay screens, service mode, recovery and the benches have one object to talk
to:

* ``payments/ledger.py`` — payments as the journal folds them (replayed at start);
* ``payments/journal_guard.py`` — journal writes and the journal-fault state;
* ``payments/validator_events.py`` — the validator's events routed to the payment they belong to;
* ``payments/card.py``, ``payments/printing.py`` — card operations and printing, run on
  ``payments/worker.py``'s thread;
* ``payments/vouchers.py`` — vouchers and the wrong-code limit;
* ``payments/shift.py`` — cassette contents, encashments, shifts (Z reports);
* ``payments/device_status.py`` — device verdicts and the self-test.

What stays here: every event goes through ``dispatch`` (checked by the pure machine, journaled
before its state is visible, then its commands carried out: intents journaled before device
calls), one payment at a time on the single set of hardware, and the visitor's actions.

Threads: web requests, the validator's poll thread (its callback journals synchronously, so a
bill is durable before the driver acknowledges it) and one worker for blocking device work
(card purchase, printing). One re-entrant lock guards all of the state."""
from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from payments import receipts
from payments.card import CardPayments
from payments.commission import quote_for
from payments.device_status import DeviceStatus
from payments.errors import Busy, Unavailable
from payments.health import DeviceHealth
from payments.journal import Journal, JournalError
from payments.journal_guard import JournalGuard
from payments.ledger import Ledger
from payments.machine import Command, Event, Payment, Rejected, handle
from payments.money import MoneyError
from payments.printing import Printing
from payments.shift import Cassette, Shifts
from payments.streams import (DEVICE_STREAM, ENCASHMENT_STREAM, RECOVERY_STREAM, RETENTION_STREAM, SHIFT_STREAM,
                              VOUCHER_STREAM_PREFIX)
from payments.taxid import Payer, mask_payer
from payments.validator_events import ValidatorEvents, ValidatorState
from payments.vouchers import Voucher, VoucherBook, mask_voucher_code, new_voucher_code, normalise_code
from payments.worker import DeviceWorker

log = logging.getLogger("cnap.payments")


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


class Till:
    def __init__(self, journal: Journal, config: TillConfig, *, validator=None, card=None, printer=None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.validator = validator
        self.clock = clock  # wall time: only recorded, never used to measure a duration or a range
        self.monotonic = monotonic  # durations (abandonment, voucher lockout)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.version = 0  # bumped on every state change: screens long-poll on it
        now = lambda: self.clock()  # noqa: E731  (read at call time: tests step the clocks)
        self.ledger = Ledger()
        self.journal_guard = JournalGuard(journal, self.lock, on_change=self._state_changed,
                                          on_first_fault=self._stop_taking_bills,
                                          may_clear=lambda: self.validator_events.undelivered == 0,
                                          on_cleared=self._resume_cash)
        write = self.journal_guard.append
        self.voucher_book = VoucherBook(write=write, now=now, monotonic=lambda: self.monotonic())
        self.cassette = Cassette(write=write, now=now, terminal_id=config.terminal_id)
        self.shift_book = Shifts(self.ledger, write=write, now=now, terminal_id=config.terminal_id)
        self.worker = DeviceWorker()
        self.printing = Printing(printer, config, payment=self.ledger.get, dispatch=self.dispatch,
                                 dispatch_durably=self.dispatch_durably, write=write, now=now)
        self.cards = CardPayments(card, merchant_id=config.merchant_id, ledger=self.ledger, dispatch=self.dispatch,
                                  dispatch_durably=self.dispatch_durably, write=write)
        self.validator_events = ValidatorEvents(validator, self.lock, ledger=self.ledger, journal=self.journal_guard,
                                                dispatch=self.dispatch, new_record=self._new_record,
                                                recovery_case=self.recovery_case)
        self.device_status = DeviceStatus(validator=validator, card=card, printing=self.printing,
                                          validator_state=self.validator_events.state, write=write,
                                          terminal_id=config.terminal_id)
        self._last_seen: dict[str, float] = {}  # payment -> monotonic time its visitor was last heard from
        self._active_id: str | None = None
        self._ready = False
        self._recovery_cases: list[dict] = []
        self._replay()

    # ================================================================== replay
    def _replay(self) -> None:
        with self.lock:
            for record in self.journal.records():
                stream = record.payment_id
                if stream == ENCASHMENT_STREAM:
                    self.cassette.replay(record)
                elif stream == SHIFT_STREAM:
                    self.shift_book.replay(record)
                elif stream.startswith(VOUCHER_STREAM_PREFIX):
                    self.voucher_book.replay(record)
                elif stream == RETENTION_STREAM:  # redactions of personal data (payments/retention.py)
                    pass
                elif stream in (DEVICE_STREAM, RECOVERY_STREAM):
                    if record.kind == "recovery_case":
                        self._recovery_cases.append(dict(record.data, at=record.at))
                else:
                    folded = self.ledger.replay(record)
                    if folded is None:
                        continue
                    old, new = folded
                    if len(new.bills) > (len(old.bills) if old else 0):
                        self.cassette.credit(record.id, new.bills[-1])
                    if new.method == "cash" or new.bills:
                        self.validator_events.cash_payment_id = stream
            self.voucher_book.rebuild(self.ledger.in_order())
            unsettled = self.ledger.unsettled_ids()
            if unsettled:
                self._active_id = unsettled[-1]  # recovery settles it before anyone else is served

    # ================================================================== lifecycle
    def start(self) -> None:
        self.worker.start()
        if self.validator is not None:
            self.validator.subscribe(self.on_validator_event)

    def close(self) -> None:
        self.journal_guard.close()
        with self.lock:
            self.changed.notify_all()
        self.worker.close()

    @property
    def closed(self) -> bool:
        return self.journal_guard.closed

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until the worker has nothing queued (tests, recovery)."""
        return self.worker.wait_idle(timeout)

    def _state_changed(self) -> None:
        """Called with the lock held: wake the screens' long polls."""
        self.version += 1
        self.changed.notify_all()

    # ================================================================== journal and its faults
    @property
    def journal(self) -> Journal:
        return self.journal_guard.journal

    @journal.setter
    def journal(self, journal: Journal) -> None:
        self.journal_guard.journal = journal

    @property
    def journal_fault(self) -> str | None:
        """Why journal writes fail now (no money is taken meanwhile); None while they succeed."""
        return self.journal_guard.fault

    @property
    def journal_faults(self) -> int:
        return self.journal_guard.faults

    @property
    def undelivered_device_events(self) -> int:
        """Device events whose journaling failed; the device delivers them again."""
        return self.validator_events.undelivered

    def enter_journal_fault(self, reason: str) -> None:
        """The journal is known not to take writes (e.g. found so at start)."""
        self.journal_guard.enter_fault(reason)

    def _stop_taking_bills(self) -> None:
        # This command cannot be journaled (the journal is what failed); it moves no money, and
        # every bill already inside is reported again by the device.
        if self.validator is not None:
            try:
                self.validator.disable()
            except Exception:
                log.exception("cannot disable the validator after a journal fault")

    def _resume_cash(self) -> None:
        """The journal writes again (lock held): a cash payment still in progress takes bills."""
        pid = self.cash_id
        payment = self.ledger.get(pid)
        if self._ready and payment is not None and payment.accepting_bills and not payment.bill_in_flight:
            try:
                self._execute(pid, [Command("enable_bills", {"denominations": sorted(payment.wanted_bills())})])
            except Exception:
                log.exception("cannot re-enable the validator after a journal fault")

    def dispatch_durably(self, payment_id: str, kind: str, data: dict) -> Payment:
        """``dispatch`` retried until the journal takes the event (for outcomes that exist only
        in memory: a card result, a print result)."""
        return self.journal_guard.retry_until_written(lambda: self.dispatch(payment_id, kind, data))

    # ================================================================== core dispatch
    def dispatch(self, payment_id: str, kind: str, data: dict | None = None) -> Payment:
        """Check the event against the machine, journal it durably, publish the new state, then
        carry out the commands."""
        data = dict(data or {})
        with self.lock:
            old = self.ledger.get(payment_id)
            new, commands = handle(old, Event(kind, data))  # Rejected: nothing is written
            record_id = self.journal_guard.append(payment_id, kind, data)
            self.ledger.put(payment_id, record_id, new)
            if len(new.bills) > (len(old.bills) if old else 0):
                self.cassette.credit(record_id, new.bills[-1])
            self._state_changed()
            self.voucher_book.note(payment_id, new)
            if self._active_id == payment_id and new.settled and not new.bill_in_flight:
                self._active_id = None
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
                    self.journal_guard.append(payment_id, "device_command",
                                              {"device": "bill_validator", "name": name, **command.args})
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
                    if self.cards.can_interrupt:
                        self.worker.submit(self.cards.interrupt, f"{name} for {payment_id}")
                else:  # purchase, card_resolve, card_void, print: blocking device work
                    self.worker.submit(self._device_job(payment_id, command), f"{name} for {payment_id}")
            except Rejected as exc:
                log.warning("command %s for %s refused: %s", name, payment_id, exc)
            except JournalError:
                # the event itself is on disk; its command's intent is not, so it is not sent
                # (the fault state has stopped the validator)
                log.error("command %s for %s not sent: journal fault", name, payment_id)

    def _device_job(self, payment_id: str, command: Command) -> Callable[[], None]:
        """The blocking device work a command asks for, to run on the worker thread."""
        args = command.args
        return {
            "purchase": lambda: self.cards.purchase(payment_id, args["amount_kop"]),
            "card_resolve": lambda: self.cards.settle_lost_answer(payment_id),
            "card_void": lambda: self.cards.void(payment_id, args.get("invoice_number")),
            "print": lambda: self.printing.print_receipt(payment_id, args.get("kind", "receipt")),
        }.get(command.name, lambda: None)

    # ================================================================== devices
    @property
    def card(self):
        return self.cards.card

    @property
    def printer(self):
        return self.printing.printer

    @property
    def device(self) -> ValidatorState:
        """What the till knows about the validator right now (fault, cassette out)."""
        return self.validator_events.state

    @property
    def cash_id(self) -> str | None:
        """The payment the validator's bills belong to."""
        return self.validator_events.cash_payment_id

    @cash_id.setter
    def cash_id(self, payment_id: str | None) -> None:
        self.validator_events.cash_payment_id = payment_id

    def on_validator_event(self, event) -> None:
        """The validator driver's subscriber (payments/validator_events.py): raises when the
        event could not be journaled, so the driver does not ACK and delivers it again."""
        self.validator_events.on_event(event)

    def resolve_card(self, payment_id: str, *, recovery: bool = False) -> dict:
        return self.cards.resolve(payment_id, recovery=recovery)

    def receipt_context(self) -> receipts.ReceiptContext:
        return self.printing.receipt_context()

    def print_report(self, title: str, report: dict) -> bool:
        """Service reports (X, Z, encashment) on paper; journaled like every device command."""
        return self.printing.print_report(title, report)

    def device_health(self, *, probe: bool = False) -> dict[str, DeviceHealth]:
        """Each device's verdict by the one rule in payments/health.py (payments/device_status.py)."""
        return self.device_status.health(probe=probe)

    def self_test(self, print_page: bool = False) -> list[dict]:
        return self.device_status.self_test(print_page)

    def availability(self) -> dict:
        """What the kiosk can take right now, for the confirm screen."""
        devices = self.device_health()
        validator = devices["bill_validator"]
        journal_ok = self.journal_fault is None
        return {"ready": self._ready, "cash": validator.ok and journal_ok,
                "card": devices["card_terminal"].ok and journal_ok,
                "bill_table": validator.detail.get("bills", []), "printer": self.printing.status(),
                "printer_ok": devices["printer"].ok, "fault": self.device.fault,
                "journal_fault": self.journal_fault, "busy": self._active_id is not None,
                "unsettled": len(self.ledger.unsettled_ids())}

    # ================================================================== visitor actions
    def _new_record(self, service_id, service_name, details, quote, payer) -> str:
        payment_id = secrets.token_hex(8)
        seq = self.ledger.next_receipt_seq()  # taken only once "created" is on disk: no gaps in receipt numbers
        self.dispatch(payment_id, "created", {
            "payment_id": payment_id, "service_id": service_id, "service_name": service_name,
            "details": details, "quote": quote, "payer": payer, "receipt_seq": seq,
            "receipt_no": f"{self.config.terminal_id}-{seq:06d}", "voucher_code": new_voucher_code(),
            "at": self.clock()})
        self.ledger.take_receipt_seq(seq)
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
            if not self._ready:
                raise Unavailable("not_ready")
            if self.journal_fault is not None:
                raise Unavailable("journal")
            self._release_abandoned()
            if self._active_id is not None:
                raise Busy(self._active_id)
            pid = self._new_record(service.id, dict(service.name), details, quote.to_plain(), payer.to_plain())
            self._active_id = pid
            self.touch(pid)
            return pid

    def touch(self, payment_id: str) -> None:
        """The payment's visitor is still there (a page or status request of theirs)."""
        self._last_seen[payment_id] = self.monotonic()

    @staticmethod
    def _money_moving(p: Payment) -> bool:
        return p.bill_in_flight or p.card_pending or p.card_resolving

    def _release_abandoned(self) -> None:
        """The active payment does not block the next visitor when it is over (its receipt may
        still be printing), when it sits on the method screen with nothing paid, or when its
        visitor has gone silent for ``abandon_after_s``: then it is settled like a Cancel, so
        any credit (bills, voucher) becomes a voucher for the whole credit."""
        pid = self._active_id
        if pid is None:
            return
        p = self.ledger.get(pid)
        if not p.final and not self._money_moving(p):
            silent_s = self.monotonic() - self._last_seen.get(pid, float("-inf"))
            if (p.status == "new" and p.credited_kop == 0) or silent_s > self.config.abandon_after_s:
                p = self.abandon(pid, "abandoned")
        if p.final and not self._money_moving(p) and self._active_id == pid:
            self._active_id = None

    def abandon(self, payment_id: str, reason: str = "visitor_left") -> Payment | None:
        """The visitor left (idle reset, "start over", gone silent). A payment waiting for a
        method or for more bills is cancelled: nothing paid -> cancelled; credit -> a voucher
        for the whole credit, printed (a bill still in flight is waited for first). A card
        operation in the terminal's hands finishes on its own result."""
        with self.lock:
            p = self.ledger.get(payment_id)
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
        code = normalise_code(code)
        with self.lock:
            voucher = self.voucher_book.redeemable(code)
            return self.dispatch(payment_id, "redeem_voucher", {"code": code, "amount_kop": voucher.amount_kop})

    def cancel(self, payment_id: str) -> Payment:
        return self.dispatch(payment_id, "cancel", {})

    # ================================================================== recovery
    @property
    def ready(self) -> bool:
        """Start-up recovery has settled every payment: the kiosk may take money."""
        return self._ready

    def mark_not_ready(self) -> None:
        """Recovery could not finish (it runs again later)."""
        self._ready = False

    def unsettled_ids(self) -> list[str]:
        """Payments not settled yet, oldest first (recovery settles them)."""
        with self.lock:
            return self.ledger.unsettled_ids()

    def bill_in_flight(self) -> bool:
        """Some payment has a bill in escrow or stacking (recovery waits for the validator)."""
        with self.lock:
            return self.ledger.bill_in_flight()

    def finish_recovery(self) -> list[str]:
        """Recovery is done: the till is ready unless a payment is still unsettled (its ids are
        returned)."""
        with self.lock:
            if self._active_id is not None and self.ledger.get(self._active_id).settled:
                self._active_id = None
            unsettled = self.ledger.unsettled_ids()
            self._ready = not unsettled
            return unsettled

    def recovery_case(self, payment_id: str, rule: str, **detail) -> None:
        """Journal one case recovery settled (service mode lists them)."""
        p = self.ledger.get(payment_id)
        case = {"payment_id": payment_id, "rule": rule, "receipt_no": p.receipt_no if p else "",
                "status": p.status if p else "", "credited_kop": p.credited_kop if p else 0, **detail}
        self.journal_guard.append(RECOVERY_STREAM, "recovery_case", case)
        self._recovery_cases.append(dict(case, at=self.clock()))

    @property
    def recovery_cases(self) -> list[dict]:
        """Every recovery case, oldest first (a copy)."""
        return list(self._recovery_cases)

    def recovery_history(self, count: int) -> list[dict]:
        """The last ``count`` recovery cases, newest first."""
        return list(reversed(self._recovery_cases[-count:])) if count > 0 else []

    def redact_payers(self, payment_ids, redact: Callable[[dict], dict]) -> None:
        """Retention masked these payments' payer data in the journal: mask the copies in memory."""
        with self.lock:
            for pid in payment_ids:
                self.ledger.redact_payer(pid, redact)

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
        return self.ledger.get(payment_id)

    @property
    def payments(self) -> Mapping[str, Payment]:
        """Read-only: payment id -> state."""
        return self.ledger.mapping()

    @property
    def order(self) -> list[str]:
        """Payment ids, oldest first (a copy)."""
        return self.ledger.ids()

    @property
    def active_id(self) -> str | None:
        """The payment the hardware serves now (None: the next visitor may start)."""
        return self._active_id

    def recent_payments(self, count: int) -> list[Payment]:
        """The last ``count`` payments created, newest first."""
        with self.lock:
            return self.ledger.newest(count)

    def verified_receipt(self, receipt_no: str, check_code: str) -> Payment | None:
        """The payment behind a receipt's QR, if its check code is right."""
        with self.lock:
            found = self.ledger.find_receipt(receipt_no)
        if found is None or not hmac.compare_digest(receipts.check_code(self.config.receipt_key, found).encode(),
                                                    str(check_code).encode("utf-8", "replace")):
            return None
        return found

    def masked(self, payment: Payment) -> str:
        if not payment.payer:
            return ""
        return mask_payer(payment.payer)

    # ================================================================== vouchers
    @property
    def vouchers(self) -> Mapping[str, Voucher]:
        """Read-only: code -> voucher."""
        return self.voucher_book.mapping()

    def vouchers_newest_first(self) -> list[Voucher]:
        with self.lock:
            return self.voucher_book.newest_first()

    def refund_voucher(self, code: str, staff: str) -> Voucher:
        with self.lock:
            return self.voucher_book.refund(code, staff)

    # ================================================================== cassette and shifts
    def cassette_counts(self) -> dict[int, int]:
        with self.lock:
            return self.cassette.counts()

    @property
    def encashments(self) -> list[dict]:
        """Encashment reports, oldest first (a copy)."""
        return self.cassette.history()

    def encashment_history(self, count: int) -> list[dict]:
        """The last ``count`` encashment reports, newest first."""
        return list(reversed(self.cassette.history(count)))

    def encash(self, staff: str) -> dict:
        with self.lock:
            return self.cassette.encash(staff)

    @property
    def shifts(self) -> list[dict]:
        """Z reports, oldest first (a copy)."""
        return self.shift_book.history()

    def x_report(self) -> dict:
        """Totals since the last Z report (payments/shift.py)."""
        with self.lock:
            return self.shift_book.x_report()

    def close_shift(self, staff: str) -> dict:
        """The Z report: journaled, then printed."""
        with self.lock:
            report = self.shift_book.close(staff)
        self.print_report("Z", report)
        return report


__all__ = ["Till", "TillConfig", "Busy", "Unavailable", "Voucher", "MoneyError", "mask_voucher_code"]
