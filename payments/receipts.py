"""Receipts: the printed (ESC/POS blocks) and electronic forms of one payment, and the check
code in the verification QR.

The receipt is one of the two places personal data may appear (the other is the bank
registry): the payer's surname in full, the tax number masked."""
from __future__ import annotations

import hashlib
import hmac
import io
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from payments.machine import Payment
from payments.money import format_uah
from payments.taxid import mask_id

@dataclass(frozen=True)
class ReceiptContext:
    terminal_id: str
    branch: str
    verify_url: str
    key: bytes
    timezone: str = "Europe/Kyiv"


def check_code(key: bytes, payment: Payment) -> str:
    """A short keyed code binding the receipt number to its amounts: a forged paper slip with
    another sum fails verification."""
    message = f"{payment.receipt_no}|{payment.total_kop}|{payment.credited_kop}|{payment.status}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:10]


def verify_url(ctx: ReceiptContext, payment: Payment) -> str:
    return f"{ctx.verify_url}{payment.receipt_no}?c={check_code(ctx.key, payment)}"


def bills_text(bills) -> str:
    """(20000, 20000, 5000) -> "2 x 200,00 грн, 1 × 50,00 грн" (largest first)."""
    counts = Counter(bills)
    return ", ".join(f"{n} x {format_uah(v)}" for v, n in sorted(counts.items(), reverse=True))


def title_for(payment: Payment, kind: str) -> str:
    if payment.status == "paid":
        return "КВИТАНЦІЯ / RECEIPT"
    if payment.status == "partial":
        return "ЧАСТКОВА ОПЛАТА / PARTIAL PAYMENT"
    return "ВАУЧЕР / VOUCHER"


def lines(payment: Payment, ctx: ReceiptContext, *, kind: str = "receipt", when: float | None = None) -> list[tuple[str, str]]:
    """The receipt as (label, value) rows; shared by paper and screen."""
    zone = ZoneInfo(ctx.timezone)
    stamp = datetime.fromtimestamp(when if when is not None else payment.created_at, zone)
    d = payment.details
    rows: list[tuple[str, str]] = [
        ("Квитанція №", payment.receipt_no),
        ("Дата, час", stamp.strftime("%d.%m.%Y %H:%M:%S")),
        ("Термінал", ctx.terminal_id),
        ("Відділення", ctx.branch),
    ]
    if payment.payer:
        rows += [("Платник", payment.payer.get("surname", "")),
                 ("Код платника" if payment.payer.get("id_kind") == "rnokpp" else "Паспорт",
                  mask_id(payment.payer.get("id_value", "")))]
    if payment.service_id:
        rows += [("Послуга", payment.service_name.get("uk", payment.service_id)),
                 ("Отримувач", d.get("recipient", "")),
                 ("Код ЄДРПОУ", d.get("edrpou", "")),
                 ("IBAN", d.get("iban", "")),
                 ("Призначення", f"{d.get('purpose_code', '')} {d.get('purpose', '')}".strip())]
    if payment.status == "paid":
        rows += [("Сума", format_uah(payment.amount_kop)),
                 ("Комісія", format_uah(payment.commission_kop)),
                 ("Разом", format_uah(payment.total_kop))]
    else:
        rows += [("До сплати", format_uah(payment.total_kop)),
                 ("Внесено", format_uah(payment.credited_kop)),
                 ("Статус", "платіж не здійснено" if payment.status != "partial" else "сплачено частково, платіж не здійснено")]
    if payment.bills:
        rows.append(("Готівка", bills_text(payment.bills)))
    for code, amount in payment.vouchers_in:
        rows.append(("Ваучер зараховано", f"{code}: {format_uah(amount)}"))
    if payment.card:
        card = payment.card
        rows += [("Картка", f"{card.get('card_type') or ''} {card.get('masked_pan') or ''}".strip()),
                 ("Код авторизації", card.get("approval_code") or ""),
                 ("RRN", card.get("rrn") or ""),
                 ("Термінал банку", card.get("terminal_id") or "")]
    if payment.status == "paid" and payment.voucher_out_kop:
        rows.append(("Переплата", format_uah(payment.voucher_out_kop)))
    if payment.voucher_out_kop:
        rows.append(("Ваучер №", payment.voucher_code))
        rows.append(("Сума ваучера", format_uah(payment.voucher_out_kop)))
    return rows


VOUCHER_RULE = ("Термінал решти не видає. Ваучер можна використати в цьому терміналі для іншого "
                "платежу або отримати гроші в касі ЦНАП. / The terminal gives no change: use the "
                "voucher here for another payment or get the money back at the ЦНАП cashier.")


def verify_blocks(url: str) -> list[tuple]:
    """The verification address on paper, never split across lines (a split URL cannot be typed
    or clicked): on a line of its own in the normal font, else in the condensed font, else
    without its scheme, else a note that the QR below carries it (the QR always does)."""
    note = ("text", "Адреса перевірки — у QR-коді нижче / the verification address is in the QR "
                    "code below", {"align": "center"})
    fallback = [note]
    if "://" in url:
        fallback = [("text", url.split("://", 1)[1], {"align": "center", "nobreak": True, "fallback": [note]})]
    return [("text", "Перевірка / verify:", {"align": "center"}),
            ("text", url, {"align": "center", "nobreak": True, "fallback": fallback})]


def build_blocks(payment: Payment, ctx: ReceiptContext, *, kind: str = "receipt", when: float | None = None) -> list[tuple]:
    """The print job for ``devices.printer`` (``ReceiptPrinter.print_job``). One text block per
    row, not wrapped here: the driver composes lines once, at the columns of the printer it
    drives, with the value of a "label: value" row hanging under the value."""
    blocks: list[tuple] = []
    if kind == "copy" or payment.recovered:
        blocks.append(("text", "КОПІЯ / RECOVERED", {"bold": True, "align": "center", "double": True}))
    blocks.append(("text", title_for(payment, kind), {"bold": True, "align": "center", "double": True}))
    for label, value in lines(payment, ctx, kind=kind, when=when):
        blocks.append(("text", f"{label}: {value}", {"hang": len(label) + 2}))
    if payment.voucher_out_kop:
        blocks.append(("text", VOUCHER_RULE, {}))
    url = verify_url(ctx, payment)
    blocks += verify_blocks(url)
    blocks.append(("qr", url))
    blocks.append(("feed", 3))
    blocks.append(("cut",))
    return blocks


def qr_svg(data: str) -> str:
    """The verification QR as inline SVG for the electronic receipt on screen."""
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()


def qr_data_uri(data: str) -> str:
    import base64

    return "data:image/svg+xml;base64," + base64.b64encode(qr_svg(data).encode()).decode()
