"""The payments as the journal folds them: each one's current state, in the order they were
created, with the journal id of its "created" record (shifts are ranges of journal ids) and the
receipt numbers taken so far. Memory only; the journal is the truth and ``replay`` rebuilds it.
The till's lock guards it."""
from __future__ import annotations

import dataclasses
import logging
from types import MappingProxyType
from typing import Callable, Mapping

from payments.machine import Event, Payment, Rejected, handle

log = logging.getLogger("cnap.payments")


class Ledger:
    def __init__(self) -> None:
        self._payments: dict[str, Payment] = {}
        self._order: list[str] = []
        self._created_ids: dict[str, int] = {}
        self._receipt_seq = 0

    # ------------------------------------------------------------------ writing
    def replay(self, record) -> tuple[Payment | None, Payment] | None:
        """Fold one journal record of a payment; returns (old, new), or None if it does not
        replay (never expected: events are checked before they are written)."""
        old = self._payments.get(record.payment_id)
        try:
            new, _ = handle(old, Event(record.kind, record.data))
        except Rejected as exc:
            log.error("journal event %s %s for %s does not replay: %s", record.id, record.kind,
                      record.payment_id, exc)
            return None
        if old is None:
            self._receipt_seq = max(self._receipt_seq, int(record.data.get("receipt_seq", 0)))
        self.put(record.payment_id, record.id, new)
        return old, new

    def put(self, payment_id: str, record_id: int, payment: Payment) -> None:
        """The payment's state after the event journaled as ``record_id``."""
        if payment_id not in self._payments:
            self._order.append(payment_id)
            self._created_ids[payment_id] = record_id
        self._payments[payment_id] = payment

    def next_receipt_seq(self) -> int:
        return self._receipt_seq + 1

    def take_receipt_seq(self, seq: int) -> None:
        """``seq`` is on disk (its payment's "created" record): no gaps in receipt numbers."""
        self._receipt_seq = seq

    def redact_payer(self, payment_id: str, redact: Callable[[dict], dict]) -> None:
        """Replace the payer of ``payment_id`` by ``redact(payer)`` (retention: the journal's
        copy was masked, so is the one in memory)."""
        payment = self._payments.get(payment_id)
        if payment is not None and payment.payer and not payment.payer.get("redacted"):
            self._payments[payment_id] = dataclasses.replace(payment, payer=redact(payment.payer))

    # ------------------------------------------------------------------ reading
    def get(self, payment_id: str | None) -> Payment | None:
        return self._payments.get(payment_id) if payment_id else None

    def __contains__(self, payment_id: str) -> bool:
        return payment_id in self._payments

    def __len__(self) -> int:
        return len(self._order)

    def ids(self) -> list[str]:
        """Payment ids, oldest first."""
        return list(self._order)

    def mapping(self) -> Mapping[str, Payment]:
        """A read-only view: payment id -> state."""
        return MappingProxyType(self._payments)

    def in_order(self) -> list[tuple[str, Payment]]:
        return [(pid, self._payments[pid]) for pid in self._order]

    def newest(self, count: int) -> list[Payment]:
        """The last ``count`` payments created, newest first."""
        return [self._payments[pid] for pid in reversed(self._order[-count:])] if count > 0 else []

    def unsettled_ids(self) -> list[str]:
        return [pid for pid in self._order if not self._payments[pid].settled]

    def bill_in_flight(self) -> bool:
        """Some payment has a bill in escrow or stacking."""
        return any(p.bill_in_flight for p in self._payments.values())

    def find_receipt(self, receipt_no: str) -> Payment | None:
        """The payment with this receipt number (the newest, should one repeat)."""
        for pid in reversed(self._order):
            if self._payments[pid].receipt_no == receipt_no:
                return self._payments[pid]
        return None

    def created_between(self, since_id: int, until_id: int | None = None) -> list[Payment]:
        """Payments whose "created" journal id is in (since_id, until_id]."""
        return [self._payments[pid] for pid in self._order
                if self._created_ids.get(pid, 0) > since_id
                and (until_id is None or self._created_ids.get(pid, 0) <= until_id)]

    def used_invoices(self, except_id: str | None = None) -> set:
        """Card invoice numbers already booked to a payment (other than ``except_id``)."""
        return {p.card.get("invoice_number") for pid, p in self._payments.items()
                if p.card and pid != except_id and p.card.get("invoice_number")}
