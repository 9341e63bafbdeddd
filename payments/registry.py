"""The bank registry: one day's completed payments per recipient account, read straight from
the journal so its totals reconcile with it by construction.

A payment belongs to the day (Europe/Kyiv by default) of the journal event that completed it.
Only payments with status ``paid`` for a catalogue service are listed; vouchers (overpayment,
cancel, partial) are the terminal's liability, not money for the recipient, and appear in the
summary only. Amounts are hryvnias with two decimals and a dot ("74.00"). Format in
docs/payments.md ("Bank registry")."""
from __future__ import annotations

import io
import json
from collections import OrderedDict
from datetime import date, datetime, time as dtime, timedelta
from zoneinfo import ZoneInfo

from payments import csvsafe
from payments.journal import read_records
from payments.machine import Event, Rejected, handle
from payments.money import format_plain

FORMAT_VERSION = 1
STREAMS = ("device", "recovery", "encashment", "shift", "retention")
CSV_FIELDS = ["record", "date", "receipt_no", "paid_at", "terminal_id", "recipient", "edrpou", "iban",
              "purpose_code", "purpose", "payer_surname", "payer_id_kind", "payer_code", "amount", "commission",
              "total", "method", "card_rrn", "card_approval_code", "count"]


def completed_payments(records, day: date, zone: ZoneInfo):
    """(payment, paid_at, completing_record_id) for payments completed on ``day``."""
    start = datetime.combine(day, dtime(0), zone).timestamp()
    end = datetime.combine(day + timedelta(days=1), dtime(0), zone).timestamp()
    states, paid_at = {}, {}
    for record in records:
        pid = record.payment_id
        if pid in STREAMS or pid.startswith("voucher:"):
            continue
        try:
            old = states.get(pid)
            new, _ = handle(old, Event(record.kind, record.data))
        except Rejected:
            continue
        states[pid] = new
        if new.status == "paid" and (old is None or old.status != "paid"):
            paid_at[pid] = (record.at, record.id)
    out = []
    for pid, (at, record_id) in paid_at.items():
        p = states[pid]
        if start <= at < end and p.service_id:
            out.append((p, at, record_id))
    out.sort(key=lambda item: item[2])
    return out, states


def build(journal_path: str, day: date, terminal_id: str, timezone: str = "Europe/Kyiv") -> dict:
    zone = ZoneInfo(timezone)
    records = read_records(journal_path)
    rows, states = completed_payments(records, day, zone)
    accounts: "OrderedDict[str, dict]" = OrderedDict()
    redacted = 0
    for p, at, record_id in rows:
        d = p.details
        # past PERSONAL_DATA_RETENTION_DAYS the journal holds only masks: say so, never pass a
        # mask off as the payer's data (payments/retention.py)
        gone = bool(p.payer.get("redacted"))
        redacted += gone
        account = accounts.setdefault(d.get("iban", ""), {
            "iban": d.get("iban", ""), "recipient": d.get("recipient", ""), "edrpou": d.get("edrpou", ""),
            "count": 0, "amount_kop": 0, "payments": []})
        account["count"] += 1
        account["amount_kop"] += p.amount_kop
        account["payments"].append({
            "receipt_no": p.receipt_no, "paid_at": datetime.fromtimestamp(at, zone).isoformat(timespec="seconds"),
            "journal_id": record_id, "purpose_code": d.get("purpose_code", ""), "purpose": d.get("purpose", ""),
            "payer_surname": "" if gone else p.payer.get("surname", ""),
            "payer_id_kind": "redacted" if gone else p.payer.get("id_kind", ""),
            "payer_code": "" if gone else p.payer.get("id_value", ""), "payer_redacted": gone,
            "amount_kop": p.amount_kop,
            "commission_kop": p.commission_kop, "total_kop": p.total_kop, "method": p.method or "",
            "card_rrn": (p.card or {}).get("rrn") or "", "card_approval_code": (p.card or {}).get("approval_code") or "",
        })
    totals = {"count": len(rows), "amount_kop": sum(p.amount_kop for p, _, _ in rows),
              "commission_kop": sum(p.commission_kop for p, _, _ in rows),
              "total_kop": sum(p.total_kop for p, _, _ in rows)}
    return {"format": "cnap-bank-registry", "version": FORMAT_VERSION, "date": day.isoformat(),
            "terminal_id": terminal_id, "timezone": timezone,
            "journal": {"path_events": len(records), "last_event_id": records[-1].id if records else 0},
            "accounts": list(accounts.values()), "totals": totals, "payer_data_redacted": redacted}


def to_json(registry: dict) -> str:
    def money(obj):
        if isinstance(obj, dict):
            return {(k[:-4] if k.endswith("_kop") else k): (format_plain(v) if k.endswith("_kop") else money(v))
                    for k, v in obj.items()}
        if isinstance(obj, list):
            return [money(v) for v in obj]
        return obj
    return json.dumps(money(registry), ensure_ascii=False, indent=2) + "\n"


def to_csv(registry: dict) -> str:
    buffer = io.StringIO()
    # Every cell through the one neutraliser: surnames and purposes must not run as formulas.
    writer = csvsafe.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\r\n",
                                numeric=("amount", "commission", "total", "count"))
    writer.writeheader()
    day, terminal = registry["date"], registry["terminal_id"]
    for account in registry["accounts"]:
        for p in account["payments"]:
            writer.writerow({"record": "payment", "date": day, "receipt_no": p["receipt_no"], "paid_at": p["paid_at"],
                             "terminal_id": terminal, "recipient": account["recipient"], "edrpou": account["edrpou"],
                             "iban": account["iban"], "purpose_code": p["purpose_code"], "purpose": p["purpose"],
                             "payer_surname": p["payer_surname"], "payer_id_kind": p["payer_id_kind"],
                             "payer_code": p["payer_code"], "amount": format_plain(p["amount_kop"]),
                             "commission": format_plain(p["commission_kop"]), "total": format_plain(p["total_kop"]),
                             "method": p["method"], "card_rrn": p["card_rrn"],
                             "card_approval_code": p["card_approval_code"], "count": 1})
        writer.writerow({"record": "account_total", "date": day, "terminal_id": terminal,
                         "recipient": account["recipient"], "edrpou": account["edrpou"], "iban": account["iban"],
                         "amount": format_plain(account["amount_kop"]), "count": account["count"]})
    totals = registry["totals"]
    writer.writerow({"record": "day_total", "date": day, "terminal_id": terminal,
                     "amount": format_plain(totals["amount_kop"]), "commission": format_plain(totals["commission_kop"]),
                     "total": format_plain(totals["total_kop"]), "count": totals["count"]})
    return buffer.getvalue()
