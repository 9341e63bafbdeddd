"""Overpayment vouchers: their codes, the book of vouchers issued, redeemed and paid out (folded
from the payments and the ``voucher:<code>`` streams), and the terminal-wide limit on wrong codes
(docs/payments.md, "Vouchers"). The till's lock guards the book."""
from __future__ import annotations

import logging
import secrets
from collections import deque
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

from payments.errors import Unavailable
from payments.machine import Payment
from payments.streams import VOUCHER_STREAM_PREFIX

log = logging.getLogger("cnap.payments")

VOUCHER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
VOUCHER_GUESSES = 5         # wrong voucher codes per window, for the whole terminal
VOUCHER_GUESS_WINDOW_S = 600.0


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


def mask_voucher_code(code: str) -> str:
    """What logs and the audit trail may show of a typed voucher code."""
    code = str(code or "")[:20]
    return code[:2] + "*" * max(0, len(code) - 4) + code[-2:] if len(code) > 4 else "*" * len(code)


def new_voucher_code() -> str:
    raw = "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def normalise_code(code: str) -> str:
    """A typed code as the book keeps it: upper case, no spaces, ``XXXX-XXXX``."""
    code = (code or "").strip().upper().replace(" ", "")
    if len(code) == 8 and "-" not in code:
        code = f"{code[:4]}-{code[4:]}"
    return code


class VoucherBook:
    def __init__(self, *, write: Callable[[str, str, dict], int], now: Callable[[], float],
                 monotonic: Callable[[], float]) -> None:
        self._write = write          # durable journal write (raises JournalError)
        self._now = now              # wall time, only recorded
        self._monotonic = monotonic  # the guess window
        self._vouchers: dict[str, Voucher] = {}
        self._refunds: dict[str, tuple[str, float]] = {}  # code -> (by, at), from the journal
        self._wrong_codes: deque[float] = deque()

    # ------------------------------------------------------------------ replay
    def replay(self, record) -> None:
        """A record of a ``voucher:<code>`` stream."""
        if record.kind == "voucher_refunded":
            self._refunds[record.payment_id[len(VOUCHER_STREAM_PREFIX):]] = (record.data.get("by", ""), record.at)

    def rebuild(self, payments: list[tuple[str, Payment]]) -> None:
        """Every voucher from the replayed payments (oldest first) and the refunds."""
        vouchers: dict[str, Voucher] = {}
        for pid, p in payments:
            if p.final and p.voucher_out_kop > 0:
                vouchers[p.voucher_code] = Voucher(p.voucher_code, p.voucher_out_kop, pid, p.receipt_no,
                                                   p.settled_at or p.created_at)
        for _, p in payments:
            for code, _ in p.vouchers_in:
                if code in vouchers:
                    vouchers[code].status = "redeemed"
                    vouchers[code].closed_by = p.receipt_no
        for code, (by, at) in self._refunds.items():
            if code in vouchers:
                vouchers[code].status = "refunded"
                vouchers[code].closed_by = by
                vouchers[code].closed_at = at
        self._vouchers = vouchers

    # ------------------------------------------------------------------ live
    def note(self, payment_id: str, payment: Payment) -> None:
        """A payment changed: a final one with credit left issues (or raises) its voucher; the
        codes it redeemed are used up."""
        if payment.final and payment.voucher_out_kop:
            voucher = self._vouchers.get(payment.voucher_code)
            if voucher is None:
                self._vouchers[payment.voucher_code] = Voucher(payment.voucher_code, payment.voucher_out_kop,
                                                               payment_id, payment.receipt_no, self._now())
            else:
                voucher.amount_kop = payment.voucher_out_kop
        for code, _ in payment.vouchers_in:
            if code in self._vouchers and self._vouchers[code].status == "issued":
                self._vouchers[code].status = "redeemed"
                self._vouchers[code].closed_by = payment.receipt_no

    def redeemable(self, code: str) -> Voucher:
        """The issued voucher for ``code`` (already normalised), or Unavailable: ``voucher_locked``
        after too many wrong codes, ``voucher_invalid`` (counted as a wrong code)."""
        now = self._monotonic()
        while self._wrong_codes and now - self._wrong_codes[0] > VOUCHER_GUESS_WINDOW_S:
            self._wrong_codes.popleft()
        if len(self._wrong_codes) >= VOUCHER_GUESSES:
            log.warning("voucher code %s refused: too many wrong codes", mask_voucher_code(code))
            raise Unavailable("voucher_locked")
        voucher = self._vouchers.get(code)
        if voucher is None or voucher.status != "issued":
            # codes are not guessable by design (32^8); still, a terminal-wide limit on
            # wrong codes that no new session cookie resets
            self._wrong_codes.append(now)
            log.warning("wrong voucher code %s (%d in the last %d s)", mask_voucher_code(code),
                        len(self._wrong_codes), VOUCHER_GUESS_WINDOW_S)
            raise Unavailable("voucher_invalid")
        return voucher

    def refund(self, code: str, staff: str) -> Voucher:
        """The cashier pays the voucher out (journaled ``voucher_refunded``)."""
        voucher = self._vouchers.get(code)
        if voucher is None or voucher.status != "issued":
            raise Unavailable("voucher_invalid")
        self._write(f"{VOUCHER_STREAM_PREFIX}{code}", "voucher_refunded", {"amount_kop": voucher.amount_kop, "by": staff})
        voucher.status, voucher.closed_by, voucher.closed_at = "refunded", staff, self._now()
        return voucher

    # ------------------------------------------------------------------ reading
    def get(self, code: str) -> Voucher | None:
        return self._vouchers.get(code)

    def mapping(self) -> Mapping[str, Voucher]:
        """A read-only view: code -> voucher."""
        return MappingProxyType(self._vouchers)

    def newest_first(self) -> list[Voucher]:
        return sorted(self._vouchers.values(), key=lambda v: v.issued_at, reverse=True)
