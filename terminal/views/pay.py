"""Fee payment screens: paid services → payer (surname, РНОКПП or passport) → confirmation →
cash or card with live progress → receipt; the receipt verification page; service-mode pages
(payments and X/Z reports, encashment, vouchers, recovered payments, device self-test).

The server is the only source of amounts: forms carry a method and a draft token, never a sum.
One payment at a time per terminal (the hardware is single); the visitor's session holds the
draft token and the id of the payment it owns."""
from __future__ import annotations

import hmac
import secrets
import time
from zoneinfo import ZoneInfo

from flask import (Blueprint, Flask, abort, current_app, g, jsonify, redirect, render_template, request, session,
                   url_for)

from payments import receipts
from payments.commission import quote_for
from payments.journal import JournalError
from payments.machine import Rejected
from payments.money import format_uah
from payments.reports import shift_report
from payments.taxid import Payer, collect_errors, mask_payer
from payments.till import Busy, Unavailable, mask_voucher_code
from terminal import i18n
from terminal.state import current_state, state
from terminal.limits import ascii_int
from terminal.views.power import payment_refusal
from terminal.views.service import audit, register_section, require_role

bp = Blueprint("pay", __name__)

DRAFT_TTL_S = 900
LONG_POLL_S = 10.0

i18n.register({
    "pay.title": ("Оплата адміністративних послуг", "Pay for administrative services"),
    "pay.lead": ("Виберіть послугу. Оплата готівкою або карткою, квитанція одразу.",
                 "Choose a service. Pay by cash or card and get the receipt at once."),
    "pay.none": ("Платних послуг у каталозі немає.", "The catalogue has no paid services."),
    "pay.unavailable": ("Оплата тимчасово недоступна. Зверніться до адміністратора ЦНАП.",
                        "Payment is temporarily unavailable. Please ask a ЦНАП administrator."),
    "pay.journal_fault": ("Термінал зараз не може приймати оплату: не вдається записати платіж. Гроші, які ви вже "
                          "внесли, збережено. Зверніться, будь ласка, до працівника ЦНАП.",
                          "The terminal cannot take payments right now: it cannot record them. Any money you have "
                          "already paid in is safe. Please ask a member of the ЦНАП staff."),
    "pay.voucher.locked": ("Забагато невірних кодів ваучера. Спробуйте пізніше або зверніться до каси ЦНАП.",
                           "Too many wrong voucher codes. Please try later or ask the ЦНАП cashier."),
    "pay.left.title": ("Оплату не завершено", "The payment was not completed"),
    "pay.left.voucher": ("Внесені гроші ({amount}) повернуто ваучером. Код ваучера: {code}. Ваучер друкується; "
                         "ним можна оплатити в цьому терміналі або отримати гроші в касі ЦНАП.",
                         "The money paid in ({amount}) is returned as a voucher. Voucher code: {code}. The voucher "
                         "is being printed; use it at this terminal or get the money at the ЦНАП cashier."),
    "svc.journal_fault": ("Журнал платежів не записується: термінал не приймає гроші. Звільніть місце на диску "
                          "або перевірте носій; після успішного запису оплата відновиться сама.",
                          "The payment journal cannot be written: the terminal takes no money. Free disk space "
                          "or check the storage; payments resume on their own once a write succeeds."),
    "pay.busy": ("Термінал зараз обслуговує інший платіж. Зачекайте, будь ласка, і спробуйте ще раз.",
                 "The terminal is serving another payment right now. Please wait and try again."),
    "pay.step": ("Крок {n} з 4", "Step {n} of 4"),
    "pay.payer.title": ("Дані платника", "Payer details"),
    "pay.payer.surname": ("Прізвище", "Surname"),
    "pay.payer.surname_hint": ("Кирилицею або латиницею, як у документі", "In Cyrillic or Latin letters, as in your document"),
    "pay.payer.id_kind": ("Документ", "Document"),
    "pay.payer.rnokpp": ("РНОКПП (ідентифікаційний код)", "Tax number (РНОКПП)"),
    "pay.payer.passport": ("Паспорт (відмова від РНОКПП)", "Passport (no tax number)"),
    "pay.payer.id_value": ("Номер", "Number"),
    "pay.payer.id_hint": ("РНОКПП — 10 цифр; паспорт — серія і номер (АА123456) або 9 цифр ID-картки.",
                          "Tax number: 10 digits; passport: series and number (АА123456) or the 9 digits of an ID card."),
    "pay.payer.next": ("Далі", "Next"),
    "pay.err.surname.empty": ("Введіть прізвище.", "Enter your surname."),
    "pay.err.surname.too_long": ("Прізвище задовге (до 60 символів).", "The surname is too long (up to 60 characters)."),
    "pay.err.surname.invalid": ("Прізвище може містити лише літери, апостроф, дефіс і пробіл.",
                                "A surname may contain only letters, an apostrophe, a hyphen and spaces."),
    "pay.err.id_kind.kind": ("Виберіть документ.", "Choose a document."),
    "pay.err.id_value.rnokpp_empty": ("Введіть РНОКПП.", "Enter your tax number."),
    "pay.err.id_value.rnokpp_format": ("РНОКПП має 10 цифр.", "The tax number has 10 digits."),
    "pay.err.id_value.rnokpp_checksum": ("Такого РНОКПП не існує: перевірте цифри.",
                                         "This tax number does not exist: please check the digits."),
    "pay.err.id_value.passport_empty": ("Введіть серію і номер паспорта.", "Enter the passport series and number."),
    "pay.err.id_value.passport_format": ("Паспорт: дві літери і 6 цифр (АА123456) або 9 цифр ID-картки.",
                                         "Passport: two letters and 6 digits (АА123456) or the 9 digits of an ID card."),
    "pay.err.summary": ("Виправте, будь ласка:", "Please correct:"),
    "pay.confirm.title": ("Перевірте платіж", "Check the payment"),
    "pay.confirm.payer": ("Платник", "Payer"),
    "pay.confirm.service": ("Послуга", "Service"),
    "pay.amount": ("Сума", "Amount"),
    "pay.commission": ("Комісія", "Commission"),
    "pay.total": ("До сплати", "Total to pay"),
    "pay.credited": ("Внесено", "Paid in"),
    "pay.remaining": ("Залишилось", "Remaining"),
    "pay.method": ("Як ви платите?", "How will you pay?"),
    "pay.cash": ("Готівкою", "Cash"),
    "pay.card": ("Карткою", "Card"),
    "pay.cash_off": ("Готівка зараз не приймається", "Cash cannot be accepted right now"),
    "pay.card_off": ("Оплата карткою зараз недоступна", "Card payment is unavailable right now"),
    "pay.voucher.label": ("Маєте ваучер термінала? Введіть його код", "Have a terminal voucher? Enter its code"),
    "pay.voucher.apply": ("Зарахувати ваучер", "Use the voucher"),
    "pay.voucher.invalid": ("Такого дійсного ваучера немає.", "There is no valid voucher with this code."),
    "pay.voucher.applied": ("Ваучер зараховано: {amount}.", "Voucher credited: {amount}."),
    "pay.paper.low": ("У принтері закінчується папір: квитанцію може бути показано лише на екрані.",
                      "The printer is low on paper: the receipt may be shown on screen only."),
    "pay.paper.out": ("Принтер не друкує: після оплати квитанцію буде показано на екрані з QR-кодом.",
                      "The printer is not printing: after payment the receipt is shown on screen with a QR code."),
    "pay.rules.title": ("Перед оплатою готівкою", "Before paying cash"),
    "pay.rules.no_change": ("Термінал решти не видає.", "The terminal gives no change."),
    "pay.rules.voucher": ("Переплату або внесені гроші при скасуванні видаємо ваучером: його можна використати в "
                          "цьому терміналі або отримати гроші в касі ЦНАП.",
                          "An overpayment, or the money paid in if you cancel, is given as a voucher: use it at "
                          "this terminal or get the money back at the ЦНАП cashier."),
    "pay.rules.bills": ("Приймаємо купюри: {bills}", "Accepted bills: {bills}"),
    "pay.cash.insert": ("Вставте купюру в купюроприймач", "Insert a bill into the bill acceptor"),
    "pay.cash.escrow": ("Купюру перевірено, зараховуємо…", "Bill checked, crediting…"),
    "pay.cash.fault.jammed": ("Купюра застрягла. Гроші, які ви внесли, збережено. Зверніться до адміністратора.",
                              "A bill is jammed. Your money is safe and recorded. Please call an administrator."),
    "pay.cash.fault.cassette_full": ("Касета купюроприймача заповнена: нові купюри не приймаються.",
                                     "The bill cassette is full: no more bills can be taken."),
    "pay.cash.fault.cassette_removed": ("Касету знято: нові купюри не приймаються.",
                                        "The cassette is removed: no more bills can be taken."),
    "pay.cash.fault.lost": ("Купюроприймач не відповідає. Внесені гроші збережено.",
                            "The bill acceptor does not answer. The money you paid in is recorded."),
    "pay.cash.fault.failure": ("Несправність купюроприймача. Внесені гроші збережено.",
                               "The bill acceptor has failed. The money you paid in is recorded."),
    "pay.cash.fault.cheated": ("Купюроприймач зупинено. Зверніться до адміністратора.",
                               "The bill acceptor stopped. Please call an administrator."),
    "pay.cash.fault_hint": ("Ви можете скасувати: на внесену суму буде видано ваучер.",
                            "You can cancel: you get a voucher for the amount paid in."),
    "pay.card.follow": ("Прикладіть або вставте картку і дотримуйтесь вказівок на терміналі банку.",
                        "Tap or insert your card and follow the bank terminal's instructions."),
    "pay.card.checking": ("Перевіряємо результат операції в терміналі…", "Checking the result with the terminal…"),
    "pay.card.error.declined": ("Банк відхилив операцію. Гроші не списано.", "The bank declined the payment. Nothing was charged."),
    "pay.card.error.cancelled": ("Операцію скасовано на терміналі. Гроші не списано.", "The payment was cancelled on the terminal. Nothing was charged."),
    "pay.card.error.busy": ("Термінал банку зайнятий. Спробуйте ще раз.", "The bank terminal is busy. Please try again."),
    "pay.card.error.offline": ("Термінал банку не відповідає. Гроші не списано.", "The bank terminal does not answer. Nothing was charged."),
    "pay.card.error.error": ("Помилка термінала банку. Гроші не списано.", "The bank terminal reported an error. Nothing was charged."),
    "pay.card.error.unknown_nothing_charged": ("Термінал не підтвердив оплату. Гроші не списано.",
                                              "The terminal did not confirm the payment. Nothing was charged."),
    "pay.retry_card": ("Спробувати картку ще раз", "Try the card again"),
    "pay.switch_cash": ("Оплатити готівкою", "Pay cash instead"),
    "pay.cancel": ("Скасувати оплату", "Cancel the payment"),
    "pay.cancel.returning": ("Повертаємо купюру…", "Returning your bill…"),
    "pay.progress.title": ("Оплата", "Payment"),
    "pay.progress.live": ("Стан оплати", "Payment status"),
    "pay.bills": ("Купюри", "Bills"),
    "pay.done.paid": ("Оплату прийнято", "Payment accepted"),
    "pay.done.voucher": ("Оплату скасовано — видано ваучер", "Payment cancelled — voucher issued"),
    "pay.done.partial": ("Оплату не завершено — видано ваучер", "Payment not completed — voucher issued"),
    "pay.done.cancelled": ("Оплату скасовано. Гроші не списано.", "Payment cancelled. Nothing was charged."),
    "pay.done.voided": ("Оплату не здійснено. Гроші не списано.", "Payment not made. Nothing was charged."),
    "pay.receipt.title": ("Квитанція", "Receipt"),
    "pay.receipt.number": ("Номер квитанції", "Receipt number"),
    "pay.receipt.printed": ("Квитанцію надруковано. Заберіть її внизу термінала.", "The receipt is printed. Please take it from the slot below."),
    "pay.receipt.printing": ("Друкуємо квитанцію…", "Printing the receipt…"),
    "pay.receipt.electronic": ("Принтер не зміг надрукувати. Сфотографуйте номер квитанції і QR-код — це ваша електронна квитанція.",
                               "The printer could not print. Take a photo of the receipt number and QR code: this is your electronic receipt."),
    "pay.receipt.qr": ("QR-код для перевірки квитанції", "QR code to verify the receipt"),
    "pay.voucher.code": ("Код ваучера", "Voucher code"),
    "pay.voucher.amount": ("Сума ваучера", "Voucher amount"),
    "pay.overpaid": ("Переплата", "Overpayment"),
    "pay.finish": ("Готово", "Done"),
    "pay.not_yours": ("Цей платіж відкрито в іншому вікні або іншим відвідувачем.", "This payment belongs to another window or visitor."),
    "pay.stale": ("Ця сторінка застаріла. Почніть, будь ласка, спочатку.", "This page is out of date. Please start again."),
    "pay.verify.title": ("Перевірка квитанції", "Receipt verification"),
    "pay.verify.ok": ("Квитанція справжня.", "The receipt is genuine."),
    "pay.verify.bad": ("Квитанцію не знайдено або код перевірки не збігається.", "No such receipt, or the check code does not match."),
    "pay.status": ("Стан", "Status"),
    "pay.status.paid": ("сплачено", "paid"),
    "pay.status.voucher": ("скасовано, ваучер", "cancelled, voucher"),
    "pay.status.partial": ("частково, ваучер", "partial, voucher"),
    "pay.status.cancelled": ("скасовано", "cancelled"),
    "pay.status.voided": ("не здійснено", "not made"),
    "pay.status.new": ("очікує", "waiting"),
    "pay.status.cash": ("готівка приймається", "taking cash"),
    "pay.status.card": ("картка", "card"),
    "pay.date": ("Дата", "Date"),
    "pay.method.cash": ("готівка", "cash"),
    "pay.method.card": ("картка", "card"),
    "pay.method.voucher": ("ваучер", "voucher"),
    "pay.recipient": ("Отримувач", "Recipient"),
    "pay.edrpou": ("Код ЄДРПОУ", "EDRPOU code"),
    "pay.iban": ("IBAN", "IBAN"),
    "pay.purpose": ("Призначення платежу", "Payment purpose"),
    # service mode
    "svc.pay.payments": ("Платежі та звіти зміни (X/Z)", "Payments and shift reports (X/Z)"),
    "svc.pay.encashment": ("Інкасація", "Encashment"),
    "svc.pay.vouchers": ("Ваучери переплати", "Overpayment vouchers"),
    "svc.pay.recovered": ("Відновлені платежі", "Recovered payments"),
    "svc.pay.selftest": ("Самоперевірка пристроїв", "Device self-test"),
    "svc.x_report": ("X-звіт (поточна зміна)", "X report (current shift)"),
    "svc.z_close": ("Закрити зміну (Z-звіт)", "Close the shift (Z report)"),
    "svc.z_done": ("Зміну закрито, Z-звіт №{n} надруковано.", "Shift closed, Z report #{n} printed."),
    "svc.count": ("Кількість", "Count"),
    "svc.sum": ("Сума", "Sum"),
    "svc.cassette": ("Вміст касети (за журналом)", "Cassette contents (per journal)"),
    "svc.denomination": ("Номінал", "Denomination"),
    "svc.bills": ("Купюр", "Bills"),
    "svc.total": ("Разом", "Total"),
    "svc.encash.do": ("Провести інкасацію і надрукувати акт", "Record the encashment and print the report"),
    "svc.encash.done": ("Інкасацію записано: {total}.", "Encashment recorded: {total}."),
    "svc.encash.remove_first": ("Спершу зніміть касету: інкасація записується, коли касету знято.",
                                "Remove the cassette first: the encashment is recorded while it is out."),
    "svc.cassette.out": ("Касету знято.", "The cassette is removed."),
    "svc.cassette.fill": ("Касета заповнена на {pct} % — заплануйте інкасацію.", "The cassette is {pct} % full — plan an encashment."),
    "svc.history": ("Попередні інкасації", "Previous encashments"),
    "svc.voucher.refund": ("Видати гроші (повернення в касі)", "Pay out (cashier refund)"),
    "svc.voucher.refunded": ("Ваучер {code} погашено: {amount}.", "Voucher {code} paid out: {amount}."),
    "svc.voucher.status.issued": ("дійсний", "valid"),
    "svc.voucher.status.redeemed": ("використано в терміналі", "used at the terminal"),
    "svc.voucher.status.refunded": ("видано в касі", "paid out by cashier"),
    "svc.none": ("Записів немає.", "No entries."),
    "svc.rule": ("Правило", "Rule"),
    "svc.before_after": ("Було → стало", "Before → after"),
    "svc.device": ("Пристрій", "Device"),
    "svc.result": ("Результат", "Result"),
    "svc.selftest.run": ("Запустити самоперевірку", "Run the self-test"),
    "svc.ok": ("справний", "OK"),
    "svc.fail": ("несправний", "fault"),
    "svc.receipt": ("Квитанція", "Receipt"),
    "svc.payer": ("Платник", "Payer"),
})


# ======================================================================== setup
def init_app(app: Flask) -> None:
    # The payment side knows nothing of this app: it is started here and its health checks and
    # shutdown hook are registered with the app's state.
    from payments.hardware import start_runtime

    kiosk_state = state(app)
    runtime = start_runtime(app.config, app.instance_path, branch_name=_branch_name(app))
    kiosk_state.till = runtime.till
    kiosk_state.hardware = runtime.hardware
    kiosk_state.closers.append(runtime.close)
    kiosk_state.health.update(runtime.health_checks)
    register_section(app, "pay.svc_payments", "svc.pay.payments", roles=("cashier", "manager"), order=10)
    register_section(app, "pay.svc_encashment", "svc.pay.encashment", roles=("cashier",), order=20)
    register_section(app, "pay.svc_vouchers", "svc.pay.vouchers", roles=("cashier", "manager"), order=30)
    register_section(app, "pay.svc_recovered", "svc.pay.recovered", roles=("cashier", "manager", "technician"), order=40)
    register_section(app, "pay.svc_selftest", "svc.pay.selftest", roles=("technician",), order=50)


@bp.errorhandler(JournalError)
def journal_failed(exc):
    """A journal write failed under a request: say so plainly, never a traceback."""
    return _message("pay.journal_fault", 503, back=None)


@bp.before_app_request
def visitor_leaves():
    """Idle reset or "start over" (``core.reset``) while this visitor owns a payment: the
    payment is settled now (credit -> voucher), so the next visitor finds the terminal free.
    When a voucher was issued its code is shown before the kiosk goes home."""
    if request.endpoint != "core.reset" or not session.get("pay_payment"):
        return None
    payment_id = session.get("pay_payment")
    try:
        payment = till().abandon(payment_id, "idle_reset")
    except (JournalError, Rejected):
        payment = till().payment(payment_id)
    token = session.get("pay_draft")
    if token:
        _drafts().pop(token, None)
    session.clear()
    if payment is not None and payment.final and payment.voucher_out_kop > 0:
        return render_template("pay/left.html", p=payment,
                               text=_("pay.left.voucher", amount=money(payment.voucher_out_kop),
                                      code=payment.voucher_code))
    return None


def _branch_name(app: Flask) -> str:
    """This kiosk's branch as printed on receipts ("" when the catalogue does not name it)."""
    catalogue = state(app).catalogue
    try:
        branch = catalogue.branch(app.config["BRANCH_ID"]) if catalogue else None
        return branch.name.get("uk", branch.id) if branch is not None else ""
    except Exception:
        return ""


def till():
    return current_state().till


def catalogue():
    return current_state().catalogue


def money(kop: int) -> str:
    return format_uah(kop, g.get("lang", "uk"))


# ======================================================================== drafts
def _drafts() -> dict:
    return current_state().pay_drafts


def _new_draft(service_id: str, payer: Payer) -> str:
    token = secrets.token_urlsafe(16)
    with current_state().pay_drafts_lock:
        now = time.monotonic()
        for key in [k for k, d in _drafts().items() if now - d["at"] > DRAFT_TTL_S]:
            _drafts().pop(key, None)
        # personal data stays on the server; the cookie only carries the token
        _drafts()[token] = {"service_id": service_id, "payer": payer, "payment_id": None, "at": now}
    session["pay_draft"] = token
    return token


def _draft(token: str | None = None):
    token = token or session.get("pay_draft")
    draft = _drafts().get(token) if token else None
    if draft is None or time.monotonic() - draft["at"] > DRAFT_TTL_S:
        return None, None
    return token, draft


def _owned_payment(payment_id: str):
    """The payment if this visitor's session owns it; else 403 (another tab of another visitor)."""
    if session.get("pay_payment") != payment_id:
        abort(403)
    payment = till().payment(payment_id)
    if payment is None:
        abort(404)
    till().touch(payment_id)
    return payment


def _message(key: str, code: int = 409, back: str | None = None):
    return render_template("pay/message.html", message=_(key), back=back), code


def _(key, **params):
    return i18n.gettext(key, **params)


# ======================================================================== visitor flow
@bp.get("/pay")
def index():
    services = catalogue().paid_services()
    rows = [(s, quote_for(s.fee)) for s in services]
    return render_template("pay/index.html", rows=rows, ready=till().ready, journal_fault=till().journal_fault,
                           power_notice=payment_refusal())


@bp.route("/pay/service/<service_id>", methods=["GET", "POST"])
def start(service_id: str):
    service = catalogue().service(service_id)
    if service is None or not service.paid:
        abort(404)
    if till().journal_fault is not None:
        return _message("pay.journal_fault", 503)
    if not till().ready:
        return _message("pay.unavailable", 503)
    if refusal := payment_refusal():  # short UPS runtime: no new payment (docs/facility-power.md)
        return render_template("pay/message.html", message=refusal, back=url_for("pay.index")), 503
    values = {"surname": "", "id_kind": "rnokpp", "id_value": ""}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = {k: (request.form.get(k) or "")[:80] for k in values}
        found = collect_errors(values["surname"], values["id_kind"], values["id_value"])
        if not found:
            payer = Payer.parse(values["surname"], values["id_kind"], values["id_value"])
            _new_draft(service.id, payer)
            return redirect(url_for("pay.confirm"))
        errors = {e.field: _(f"pay.err.{e.field}.{e.code}") for e in found}
    else:
        token, draft = _draft()
        if draft and draft["service_id"] == service.id and draft["payment_id"] is None:
            p = draft["payer"]  # "Back" from confirmation: the form keeps what was typed
            values = {"surname": p.surname, "id_kind": p.id_kind, "id_value": p.id_value}
    return render_template("pay/payer.html", s=service, quote=quote_for(service.fee), values=values,
                           errors=errors), (400 if errors else 200)


def _confirm_context(draft, payment=None):
    service = catalogue().service(draft["service_id"])
    if service is None or not service.paid:
        abort(404)
    avail = till().availability()
    return {"s": service, "quote": quote_for(service.fee), "payer": draft["payer"],
            "payer_masked": draft["payer"].masked,
            "avail": avail, "payment": payment,
            "bills": ", ".join(money(b) for b in sorted(avail["bill_table"]))}


@bp.get("/pay/confirm")
def confirm():
    token, draft = _draft()
    if draft is None:
        return _message("pay.stale", 400, back=url_for("pay.index"))
    payment = till().payment(draft["payment_id"]) if draft["payment_id"] else None
    if payment is not None and payment.status != "new":
        return redirect(url_for("pay.progress", payment_id=payment.id))
    return render_template("pay/confirm.html", token=token, voucher_error=request.args.get("voucher_error"),
                           **_confirm_context(draft, payment))


@bp.post("/pay/confirm")
def begin():
    """Start (or continue) the payment. The only inputs are the method, the draft token and a
    voucher code: the amount is the catalogue's, computed here."""
    token, draft = _draft(request.form.get("draft"))
    if draft is None or not hmac.compare_digest(token, session.get("pay_draft") or ""):
        return _message("pay.stale", 400, back=url_for("pay.index"))
    method = request.form.get("method", "")
    if method not in ("cash", "card", "voucher"):
        abort(400)
    the_till = till()
    with current_state().pay_drafts_lock:
        payment_id = draft["payment_id"]
        try:
            if payment_id is None:
                if refusal := payment_refusal():  # new payments only: one in flight goes on
                    return render_template("pay/message.html", message=refusal, back=url_for("pay.index")), 503
                service = catalogue().service(draft["service_id"])
                payment_id = the_till.create(service, draft["payer"])
                draft["payment_id"] = payment_id
                session["pay_payment"] = payment_id
        except Busy:
            return _message("pay.busy", 409, back=url_for("pay.confirm"))
        except Unavailable as exc:
            if exc.reason == "journal":
                return _message("pay.journal_fault", 503)
            return _message("pay.unavailable", 503, back=url_for("pay.index"))
    if session.get("pay_payment") != payment_id:
        return _message("pay.not_yours", 403, back=url_for("pay.index"))
    payment = the_till.payment(payment_id)
    the_till.touch(payment_id)
    if payment.status != "new":  # a double submit: the first one already started it
        return redirect(url_for("pay.progress", payment_id=payment_id))
    try:
        if method == "voucher":
            the_till.redeem_voucher(payment_id, request.form.get("voucher", "")[:20])
            if the_till.payment(payment_id).status == "new":
                return redirect(url_for("pay.confirm"))
        elif method == "cash":
            the_till.choose_cash(payment_id)
        else:
            the_till.choose_card(payment_id)
    except Unavailable as exc:
        if exc.reason in ("voucher_invalid", "voucher_locked"):
            # every wrong code is in the audit trail (masked); the limit is the till's, per terminal
            audit("pay.voucher_rejected", code=mask_voucher_code(request.form.get("voucher", "")),
                  reason=exc.reason)
            return redirect(url_for("pay.confirm", voucher_error="locked" if exc.reason == "voucher_locked" else 1))
        if the_till.journal_fault is not None:
            return _message("pay.journal_fault", 503)
        return _message("pay.cash_off" if method == "cash" else "pay.card_off", 409, back=url_for("pay.confirm"))
    except Rejected:
        pass  # a second tab already moved it on
    return redirect(url_for("pay.progress", payment_id=payment_id))


def status_view(payment) -> dict:
    """Everything the progress screen shows, as text the browser only displays."""
    t = till()
    view = {
        "id": payment.id, "status": payment.status, "method": payment.method,
        "total": money(payment.total_kop), "credited": money(payment.credited_kop),
        "remaining": money(payment.remaining_kop), "credited_kop": payment.credited_kop,
        "bills": [money(b) for b in payment.bills], "version": t.version,
        "escrow": payment.escrow_kop is not None or payment.stack_pending_kop is not None,
        # done once the receipt question is answered (printed, or failed: the screen is the receipt)
        "final": payment.final, "done": payment.settled or (payment.final and payment.status in ("cancelled", "voided")),
        # the idle reset may end a payment that waits for the visitor (method, or the next bill):
        # it is then settled with a voucher for any credit; never while money is in flight
        "idle_ok": payment.final or (payment.status in ("new", "cash") and not payment.bill_in_flight
                                     and not payment.cancel_requested),
        "message": "", "fault": "", "card_error": "",
    }
    if payment.status == "cash":
        view["message"] = _("pay.cash.escrow") if view["escrow"] else _("pay.cash.insert")
        if payment.cancel_requested:
            view["message"] = _("pay.cancel.returning")
        if payment.fault:
            view["fault"] = _(f"pay.cash.fault.{payment.fault}") + " " + _("pay.cash.fault_hint")
    elif payment.status == "card":
        view["message"] = _("pay.card.checking") if payment.card_resolving else _("pay.card.follow")
    elif payment.status == "new" and payment.card_error:
        view["card_error"] = _(f"pay.card.error.{payment.card_error}")
    elif payment.final:
        view["message"] = _(f"pay.done.{payment.status}")
    if t.journal_fault is not None and not payment.final:
        view["fault"] = _("pay.journal_fault")
    if view["done"]:
        view["next_url"] = url_for("pay.receipt", payment_id=payment.id)
    return view


@bp.get("/pay/p/<payment_id>")
def progress(payment_id: str):
    payment = _owned_payment(payment_id)
    if payment.final and status_view(payment)["done"]:
        return redirect(url_for("pay.receipt", payment_id=payment_id))
    avail = till().availability()
    return render_template("pay/progress.html", p=payment, view=status_view(payment), avail=avail,
                           bills=", ".join(money(b) for b in sorted(avail["bill_table"])))


@bp.get("/pay/p/<payment_id>/status")
def status(payment_id: str):
    """Long poll: answers at once when ``since`` is behind, else when the payment changes."""
    _owned_payment(payment_id)
    since = ascii_int(request.args.get("since"), 0, 2**62, default=-1, name="since")
    t = till()
    if since >= 0:
        t.wait_change(since, LONG_POLL_S)
    return jsonify(status_view(t.payment(payment_id)))


@bp.post("/pay/p/<payment_id>/cancel")
def cancel(payment_id: str):
    _owned_payment(payment_id)
    try:
        till().cancel(payment_id)
    except Rejected:
        pass  # already finished: show where it stands
    if request.accept_mimetypes.best == "application/json":
        return jsonify(status_view(till().payment(payment_id)))
    return redirect(url_for("pay.progress", payment_id=payment_id))


def receipt_context(payment):
    t = till()
    ctx = t.receipt_context()
    url = receipts.verify_url(ctx, payment)
    return {"rows": receipts.lines(payment, ctx, when=payment.created_at), "verify": url,
            "qr": receipts.qr_data_uri(url)}


@bp.get("/pay/p/<payment_id>/receipt")
def receipt(payment_id: str):
    payment = _owned_payment(payment_id)
    if not payment.final:
        return redirect(url_for("pay.progress", payment_id=payment_id))
    return render_template("pay/receipt.html", p=payment, **receipt_context(payment))


@bp.post("/pay/finish")
def finish():
    token = session.pop("pay_draft", None)
    session.pop("pay_payment", None)
    if token:
        _drafts().pop(token, None)
    return redirect(url_for("catalogue.home"))


@bp.get("/receipt/<number>")
def verify(number: str):
    t = till()
    found = None
    code = request.args.get("c", "")
    for pid in reversed(t.order):
        p = t.payments[pid]
        if p.receipt_no == number[:40]:
            found = p
            break
    ok = found is not None and hmac.compare_digest(receipts.check_code(t.config.receipt_key, found), code[:20])
    if not ok:
        return render_template("pay/verify.html", ok=False, p=None), 404
    return render_template("pay/verify.html", ok=True, p=found,
                           payer=mask_payer(found.payer))


# ======================================================================== service mode
def _zone():
    return ZoneInfo(current_app.config["TIMEZONE"])


@bp.route("/service/pay/payments", methods=["GET", "POST"])
@require_role("cashier", "manager")
def svc_payments():
    t = till()
    message = None
    if request.method == "POST" and request.form.get("action") == "z":
        report = t.close_shift(g.staff.name)
        audit("pay.z_report", number=report["number"], total_kop=report["total_kop"])
        message = _("svc.z_done", n=report["number"])
    elif request.method == "POST" and request.form.get("action") == "x":
        t.print_report("X", shift_report(t))
        audit("pay.x_report")
    report = shift_report(t)
    recent = [t.payments[pid] for pid in reversed(t.order[-50:])]
    return render_template("pay/svc_payments.html", report=report, recent=recent, masked=t.masked,
                           message=message, shifts=t.shifts[-5:], journal_fault=t.journal_fault)


@bp.route("/service/pay/encashment", methods=["GET", "POST"])
@require_role("cashier")
def svc_encashment():
    t = till()
    message = None
    if request.method == "POST":
        if not t.device.cassette_out and request.form.get("confirm_without_removal") != "1":
            message = _("svc.encash.remove_first")
        else:
            report = t.encash(g.staff.name)
            t.print_report("ENCASHMENT", report)
            audit("pay.encashment", total_kop=report["total_kop"], bills=report["bills"])
            message = _("svc.encash.done", total=money(report["total_kop"]))
    counts = t.cassette_counts()
    fill = int(100 * sum(counts.values()) / current_state().hardware.cassette_capacity)
    return render_template("pay/svc_encashment.html", counts=sorted(counts.items()), fill=fill,
                           total=sum(k * v for k, v in counts.items()), bills=sum(counts.values()),
                           cassette_out=t.device.cassette_out, message=message,
                           history=list(reversed(t.encashments[-10:])))


@bp.route("/service/pay/vouchers", methods=["GET", "POST"])
@require_role("cashier", "manager")
def svc_vouchers():
    t = till()
    message = None
    if request.method == "POST":
        if g.staff.role not in ("cashier", "admin"):
            abort(403)
        code = request.form.get("code", "")[:20]
        try:
            voucher = t.refund_voucher(code, g.staff.name)
            audit("pay.voucher_refund", code=code, amount_kop=voucher.amount_kop)
            message = _("svc.voucher.refunded", code=code, amount=money(voucher.amount_kop))
        except Unavailable:
            message = _("pay.voucher.invalid")
    vouchers = sorted(t.vouchers.values(), key=lambda v: v.issued_at, reverse=True)
    return render_template("pay/svc_vouchers.html", vouchers=vouchers, message=message)


@bp.get("/service/pay/recovered")
@require_role("cashier", "manager", "technician")
def svc_recovered():
    t = till()
    audit("pay.recovered_review")
    cases = list(reversed(t.recovery_cases[-100:]))
    return render_template("pay/svc_recovered.html", cases=cases)


@bp.route("/service/pay/selftest", methods=["GET", "POST"])
@require_role("technician")
def svc_selftest():
    results = None
    if request.method == "POST":
        results = till().self_test(print_page=request.form.get("print") == "1")
        audit("pay.selftest", **{r["device"]: r["ok"] for r in results})
    return render_template("pay/svc_selftest.html", results=results)
