"""Money in integer kopiykas: formatting, validation and which bills make sense to accept."""
from __future__ import annotations

from typing import Iterable


class MoneyError(ValueError):
    pass


def kop(value) -> int:
    """Accept only a true integer amount in kopiykas (never a float, never a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MoneyError(f"amount must be integer kopiykas, got {type(value).__name__}")
    if value < 0:
        raise MoneyError("amount must not be negative")
    return value


def format_uah(amount_kop: int, lang: str = "uk") -> str:
    """12345 -> "123,45 грн" ("123.45 UAH" in English); a narrow no-break space groups thousands."""
    sign = "−" if amount_kop < 0 else ""
    hryvnias, kopiykas = divmod(abs(int(amount_kop)), 100)
    whole = f"{hryvnias:,}".replace(",", "\u202f")
    if lang == "uk":
        return f"{sign}{whole},{kopiykas:02d} грн"
    return f"{sign}{whole}.{kopiykas:02d} UAH"


def format_plain(amount_kop: int) -> str:
    """12345 -> "123.45": the bank registry's amount format (no grouping, dot separator)."""
    sign = "-" if amount_kop < 0 else ""
    hryvnias, kopiykas = divmod(abs(int(amount_kop)), 100)
    return f"{sign}{hryvnias}.{kopiykas:02d}"


def sensible_bills(bill_table: Iterable[int], remaining_kop: int) -> set[int]:
    """Bills worth accepting while ``remaining_kop`` is still due.

    Every bill not larger than what is due, plus the single smallest bill that covers it: a
    visitor owing 30 UAH may pay with a 50 but not a 1000 (the terminal gives no change, so the
    overpayment stays below one sensible bill)."""
    if remaining_kop <= 0:
        return set()
    bills = sorted({int(b) for b in bill_table if int(b) > 0})
    allowed = {b for b in bills if b <= remaining_kop}
    covering = [b for b in bills if b >= remaining_kop]
    if covering:
        allowed.add(covering[0])
    return allowed
