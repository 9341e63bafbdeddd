"""Shift (X/Z) reports and the printed forms of service reports, all computed from the journal's
folded state so they reconcile with it by construction."""
from __future__ import annotations

from collections import Counter

from payments.machine import Payment
from payments.money import format_uah


def shift_totals(payments: list[Payment], *, since_id: int, since: float) -> dict:
    """Totals of one shift's payments (those created after journal id ``since_id``, see
    payments/shift.py). Shifts are ranges of journal ids, never of wall time: the clock may be
    stepped (NTP, a flat RTC battery) and no payment may fall between two shifts or land in
    both. ``since`` (when the last Z was taken) is only shown."""
    rows = list(payments)
    paid = [p for p in rows if p.status == "paid" and p.service_id]
    by_status = Counter(p.status for p in rows)
    cash_in = sum(sum(p.bills) for p in rows)
    card_in = sum(p.card["amount_kop"] for p in rows if p.card)
    return {
        "since": since, "since_id": since_id, "payments": len(rows), "by_status": dict(by_status),
        "paid_count": len(paid),
        "amount_kop": sum(p.amount_kop for p in paid),
        "commission_kop": sum(p.commission_kop for p in paid),
        "total_kop": sum(p.total_kop for p in paid),
        "cash_in_kop": cash_in, "card_in_kop": card_in,
        "vouchers_in_kop": sum(a for p in rows for _, a in p.vouchers_in),
        "vouchers_out_kop": sum(p.voucher_out_kop for p in rows if p.final),
    }


LABELS = {"payments": "Платежів", "paid_count": "Сплачено", "amount_kop": "Сума зборів",
          "commission_kop": "Комісія", "total_kop": "Разом сплачено", "cash_in_kop": "Готівка внесена",
          "card_in_kop": "Картки", "vouchers_in_kop": "Ваучери зараховано", "vouchers_out_kop": "Ваучери видано",
          "bills": "Купюр", "by": "Працівник", "terminal": "Термінал", "number": "Номер"}


def report_blocks(title: str, report: dict, terminal_id: str) -> list[tuple]:
    blocks: list[tuple] = [("text", title, {"bold": True, "align": "center", "double": True}),
                           ("text", f"Термінал: {terminal_id}", {})]
    for key, value in report.items():
        if key in ("since", "id", "at", "since_id"):
            continue
        label = LABELS.get(key, key)
        if key.endswith("_kop"):
            value = format_uah(int(value))
        elif key == "counts":
            for denomination, count in value.items():
                blocks.append(("text", f"{format_uah(int(denomination))} x {count}", {}))
            continue
        elif key == "by_status":
            value = ", ".join(f"{k}: {v}" for k, v in sorted(value.items()))
        blocks.append(("text", f"{label}: {value}", {}))
    blocks += [("feed", 3), ("cut",)]
    return blocks
