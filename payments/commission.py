"""The terminal's commission and the quote shown to the visitor: computed here, never trusted
from a browser."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from payments.money import MoneyError, kop


@dataclass(frozen=True)
class Quote:
    amount_kop: int      # the fee itself, goes to the recipient
    commission_kop: int  # the terminal's charge
    total_kop: int       # what the visitor pays

    def to_plain(self) -> dict:
        return asdict(self)


def commission_kop(commission, amount_kop: int) -> int:
    """Commission per the catalogue rule: none, fixed, or percent (basis points) rounded half up
    to a kopiyka and clamped to [min, max] (max 0 = no ceiling)."""
    amount_kop = kop(amount_kop)
    kind = getattr(commission, "kind", "none") if commission is not None else "none"
    if kind == "none":
        return 0
    if kind == "fixed":
        return kop(commission.fixed_kop)
    if kind == "percent":
        bp = kop(commission.percent_bp)
        value = (amount_kop * bp + 5000) // 10000  # integer half-up rounding, no floats
        if commission.min_kop:
            value = max(value, kop(commission.min_kop))
        if commission.max_kop:
            value = min(value, kop(commission.max_kop))
        return value
    raise MoneyError(f"unknown commission kind {kind!r}")


def quote_for(fee) -> Quote:
    amount = kop(fee.amount_kop)
    extra = commission_kop(fee.commission, amount)
    return Quote(amount, extra, amount + extra)
