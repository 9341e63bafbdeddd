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
from payments.taxid import Payer, collect_errors, mask_payer
from payments.till import Busy, Unavailable, mask_voucher_code
from terminal import i18n
from terminal.state import current_state, payment_refusal, state
from terminal.limits import ascii_int
from terminal.views.service import audit, register_section, require_role

bp = Blueprint("pay", __name__)

DRAFT_TTL_S = 900
LONG_POLL_S = 10.0

# Interface strings looked up under names built at run time (in templates or from variables),
# listed so that pybabel extracts them; their texts are in terminal/translations/.
RUNTIME_KEYS = (
    i18n.N_("pay.busy"),
    i18n.N_("pay.card.error.busy"),
    i18n.N_("pay.card.error.cancelled"),
    i18n.N_("pay.card.error.declined"),
    i18n.N_("pay.card.error.error"),
    i18n.N_("pay.card.error.offline"),
    i18n.N_("pay.card.error.unknown_nothing_charged"),
    i18n.N_("pay.cash.fault.cassette_full"),
    i18n.N_("pay.cash.fault.cassette_removed"),
    i18n.N_("pay.cash.fault.cheated"),
    i18n.N_("pay.cash.fault.failure"),
    i18n.N_("pay.cash.fault.jammed"),
    i18n.N_("pay.cash.fault.lost"),
    i18n.N_("pay.done.cancelled"),
    i18n.N_("pay.done.paid"),
    i18n.N_("pay.done.partial"),
    i18n.N_("pay.done.voided"),
    i18n.N_("pay.done.voucher"),
    i18n.N_("pay.err.id_kind.kind"),
    i18n.N_("pay.err.id_value.passport_empty"),
    i18n.N_("pay.err.id_value.passport_format"),
    i18n.N_("pay.err.id_value.rnokpp_checksum"),
    i18n.N_("pay.err.id_value.rnokpp_empty"),
    i18n.N_("pay.err.id_value.rnokpp_format"),
    i18n.N_("pay.err.surname.empty"),
    i18n.N_("pay.err.surname.invalid"),
    i18n.N_("pay.err.surname.too_long"),
    i18n.N_("pay.method.voucher"),
    i18n.N_("pay.not_yours"),
    i18n.N_("pay.receipt.printing"),
    i18n.N_("pay.stale"),
    i18n.N_("pay.status.cancelled"),
    i18n.N_("pay.status.card"),
    i18n.N_("pay.status.cash"),
    i18n.N_("pay.status.new"),
    i18n.N_("pay.status.partial"),
    i18n.N_("pay.status.voided"),
    i18n.N_("pay.status.voucher"),
    i18n.N_("pay.voucher.applied"),
    i18n.N_("svc.count"),
    i18n.N_("svc.voucher.status.issued"),
    i18n.N_("svc.voucher.status.redeemed"),
    i18n.N_("svc.voucher.status.refunded"),
)


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
    found = till().verified_receipt(number[:40], request.args.get("c", "")[:20])
    if found is None:
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
        t.print_report("X", t.x_report())
        audit("pay.x_report")
    report = t.x_report()
    recent = t.recent_payments(50)
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
                           history=t.encashment_history(10))


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
    vouchers = t.vouchers_newest_first()
    return render_template("pay/svc_vouchers.html", vouchers=vouchers, message=message)


@bp.get("/service/pay/recovered")
@require_role("cashier", "manager", "technician")
def svc_recovered():
    t = till()
    audit("pay.recovered_review")
    cases = t.recovery_history(100)
    return render_template("pay/svc_recovered.html", cases=cases)


@bp.route("/service/pay/selftest", methods=["GET", "POST"])
@require_role("technician")
def svc_selftest():
    results = None
    if request.method == "POST":
        results = till().self_test(print_page=request.form.get("print") == "1")
        audit("pay.selftest", **{r["device"]: r["ok"] for r in results})
    return render_template("pay/svc_selftest.html", results=results)
