"""The bill validator's events, routed to the payment they belong to.

Runs in the validator driver's poll thread and journals synchronously, so the driver
acknowledges a bill (CCNET ACK) only once it is on disk. An event that cannot be journaled is
raised back to the driver, which withholds the ACK and delivers the same event (same ``seq``)
again; a re-delivery of an event already handled is ignored. Bills with no payment to own them
become "Unassigned cash" records with a voucher; faults stop and resume cash taking."""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

from payments.journal import JournalError
from payments.journal_guard import JournalGuard
from payments.ledger import Ledger
from payments.machine import Payment
from payments.streams import DEVICE_STREAM, ENCASHMENT_STREAM

log = logging.getLogger("cnap.payments")

VALIDATOR_FAULT_EVENTS = {"jammed", "cassette_full", "cassette_removed", "lost", "failure", "cheated"}
VALIDATOR_OK_EVENTS = {"idle", "disabled", "online", "cassette_replaced"}
BILL_EVENTS = {"escrow": "bill_escrow", "stacked": "bill_stacked", "returned": "bill_returned",
               "rejected": "bill_rejected", "powerup_with_bill": "powerup_with_bill"}  # device -> payment event
DELIVERED_SEQS_KEPT = 512   # device event numbers remembered to ignore a re-delivery


@dataclass
class ValidatorState:
    """What the till knows about the validator right now (from its events)."""
    fault: str | None = None
    cassette_out: bool = False


class ValidatorEvents:
    def __init__(self, validator, lock: threading.RLock, *, ledger: Ledger, journal: JournalGuard,
                 dispatch: Callable[[str, str, dict], Payment], new_record: Callable[..., str],
                 recovery_case: Callable[..., None]) -> None:
        self.validator = validator
        self.state = ValidatorState()
        # the payment the validator's bills belong to (the last one that chose cash)
        self.cash_payment_id: str | None = None
        self._lock = lock
        self._ledger = ledger
        self._journal = journal
        self._dispatch = dispatch
        self._new_record = new_record          # a payment record without a service (orphan cash)
        self._recovery_case = recovery_case
        self._undelivered: dict[int, str] = {}  # device event seq -> kind, delivery failed
        self._delivered: deque[int] = deque(maxlen=DELIVERED_SEQS_KEPT)

    @property
    def undelivered(self) -> int:
        """Device events whose journaling failed; the device delivers them again."""
        return len(self._undelivered)

    def on_event(self, event) -> None:
        """The driver's subscriber. Raises when the event could not be made durable: the
        driver then does not ACK, the device keeps reporting the bill, and the driver
        re-delivers the same event until a delivery succeeds."""
        seq = getattr(event, "seq", None)
        kind = str(getattr(event, "kind", ""))
        data = dict(getattr(event, "data", None) or {})
        with self._lock:
            if seq is not None and seq in self._delivered:
                return
            try:
                self._route(kind, data)
            except JournalError:
                if seq is not None:
                    self._undelivered[seq] = kind
                log.error("validator event #%s %s not journaled: not acknowledged, waiting for its repeat", seq, kind)
                raise
            except Exception as exc:
                # a bug or an event this till does not understand: keep an incident record and
                # never credit anything for it; only if even that cannot be written, refuse it
                log.exception("validator event %s not handled", kind)
                self._journal.append(DEVICE_STREAM, "validator_event_unhandled",
                                     {"kind": kind, "data": data, "error": type(exc).__name__})
            if seq is not None:
                self._delivered.append(seq)
                self._undelivered.pop(seq, None)
            if self._journal.fault is not None:
                self._journal.try_clear()

    def _route(self, kind: str, data: dict) -> None:
        pid = self.cash_payment_id
        payment = self._ledger.get(pid)
        if kind == "power_up_at_start":
            # plain power-up seen before RESET: only a STACK the journal sent matters
            if payment is not None and payment.stack_pending_kop is not None:
                self._dispatch(pid, "powerup_with_bill", {"where": "unknown", "amount_kop": None,
                                                          "stack_sent": True, "at_start": True})
            else:
                self._journal.append(DEVICE_STREAM, "validator_power_up", data)
            return
        if kind in BILL_EVENTS:
            self._route_bill(kind, data, pid, payment)
            return
        self._route_state(kind, data, pid, payment)

    def _route_bill(self, kind: str, data: dict, pid: str | None, payment: Payment | None) -> None:
        if kind == "escrow" and self._journal.fault is not None:
            # no money is taken while the journal cannot record it: the bill goes back
            log.warning("bill in escrow during a journal fault: returned")
            self.validator.return_bill()
            return
        if kind == "escrow" and (payment is None or not payment.accepting_bills):
            # nobody is paying cash: the bill goes back, and the journal says so
            self._journal.append(DEVICE_STREAM, "stray_escrow", data)
            self.validator.return_bill()
            if payment is None:
                return
        if payment is None and kind in ("stacked", "powerup_with_bill"):
            if kind == "powerup_with_bill" and data.get("where") == "validator":
                self._journal.append(DEVICE_STREAM, kind, data)
                return
            self._orphan_bill(kind, data)
            return
        if payment is None:
            self._journal.append(DEVICE_STREAM, kind, data)
            return
        if (kind in ("stacked", "powerup_with_bill") and not payment.service_id and payment.method is None
                and payment.stack_pending_kop is not None):
            self._orphan_bill(kind, data, pid)  # the repeat of an orphan bill whose journaling failed
            return
        if kind == "escrow" and not payment.accepting_bills:
            return
        self._dispatch(pid, BILL_EVENTS[kind], data)

    def _route_state(self, kind: str, data: dict, pid: str | None, payment: Payment | None) -> None:
        if kind not in VALIDATOR_FAULT_EVENTS | VALIDATOR_OK_EVENTS | {
                "power_up", "cassette_removed", "cassette_replaced"}:
            # e.g. a 'stacked' without a bill type: an incident for staff, never a credit
            log.error("validator reported %s %s: recorded as an incident", kind, data)
        self._journal.append(DEVICE_STREAM, "validator_" + kind, data)
        if kind == "cassette_removed":
            self.state.cassette_out = True
            self._journal.append(ENCASHMENT_STREAM, "cassette_removed", {})
        if kind == "cassette_replaced":
            self.state.cassette_out = False
            self._journal.append(ENCASHMENT_STREAM, "cassette_replaced", {})
        if kind in VALIDATOR_FAULT_EVENTS:
            self.state.fault = kind
            if payment is not None and not payment.final and payment.fault != kind:
                self._dispatch(pid, "validator_fault", {"fault": kind})
        elif kind in VALIDATOR_OK_EVENTS and self.state.fault:
            self.state.fault = None
            if payment is not None and not payment.final and payment.fault:
                self._dispatch(pid, "validator_ok", {})

    def _orphan_bill(self, kind: str, data: dict, pid: str | None = None) -> None:
        """Cash stacked with no payment to own it (seen at start-up): it becomes a recovered
        record with a voucher for the whole sum, never lost and never silently kept. ``pid``:
        the record a failed delivery of this bill already created (its repeat continues it)."""
        amount = data.get("amount_kop")
        if not amount:
            self._journal.append(DEVICE_STREAM, "orphan_bill_unknown_amount", data)
            return
        if pid is None:
            pid = self._new_record("", {"uk": "Нерозподілена готівка", "en": "Unassigned cash"}, {},
                                   {"amount_kop": 0, "commission_kop": 0, "total_kop": 0}, {})
            self.cash_payment_id = pid
            self._dispatch(pid, "stack_intent", {"amount_kop": amount, "orphan": True})
        self._dispatch(pid, "bill_stacked" if kind == "stacked" else "powerup_with_bill", dict(data, recovered=True))
        if not self._ledger.get(pid).final:
            self._dispatch(pid, "recovery_settle", {})
        self._recovery_case(pid, "orphan_bill", amount_kop=amount)
