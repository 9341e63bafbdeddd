"""Service mode: staff choose their name and type their PIN; each area adds its sections for the
roles it trusts; every action is written to the audit log.

Sessions live on the server (``terminal.staff``): the cookie carries only a random session id,
checked on every service-mode request, so logout, deactivation and a PIN change end every copy of
the cookie at once, and idle sessions end after ``SERVICE_SESSION_S`` whatever the browser does.
Someone who logged in with a seeded sample PIN is sent to "choose your PIN" from every page
until they have. The kiosk's idle reset (/reset) ends the screen's own session too.
Every wrong PIN and every lockout is audited with the client address; attempts refused while
locked are not audited one by one (they cost nothing to send, and a flood must not fill the disk).

Other blueprints use:
    from terminal.views.service import register_section, require_role, audit
    register_section(app, "pay.encashment", "service.section.encashment", roles=("cashier", "admin"))
    @require_role("cashier", "admin")
    def encashment(): ...; audit("encashment.done", cassette=...)
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from flask import (Blueprint, Flask, abort, current_app, g, redirect, render_template, request,
                   session, url_for)

from terminal import i18n
from terminal.state import current_state, state
from terminal.limits import ascii_int
from terminal.staff import ROLES, StaffMember, StaffStore, valid_pin

bp = Blueprint("service", __name__, url_prefix="/service")

# Interface strings looked up under names built at run time (in templates or from variables),
# listed so that pybabel extracts them; their texts are in terminal/translations/.
RUNTIME_KEYS = (
    i18n.N_("role.admin"),
    i18n.N_("role.cashier"),
    i18n.N_("role.manager"),
    i18n.N_("role.technician"),
    i18n.N_("service.forbidden"),
    i18n.N_("service.login.pin"),
    i18n.N_("service.pin.mismatch"),
    i18n.N_("service.pin.same"),
    i18n.N_("service.pin.sample"),
    i18n.N_("service.staff.bad_name"),
    i18n.N_("service.staff.bad_pin"),
    i18n.N_("service.staff.last_admin"),
    i18n.N_("service.staff.saved"),
)


@dataclass(frozen=True)
class Section:
    endpoint: str
    title_key: str
    roles: tuple[str, ...]
    order: int


SESSION_KEY = "staff_sid"   # the only service-mode value in the cookie: a random session id


def init_app(app: Flask) -> None:
    path = os.path.join(app.instance_path, app.config["SERVICE_DB"])
    store = StaffStore(path)
    store.seed(app.config["SERVICE_PINS"], must_change=app.config["SERVICE_PINS_MUST_CHANGE"])
    state(app).staff = store
    register_section(app, "service.staff", "service.section.staff", roles=("admin",), order=890)
    register_section(app, "service.audit_log", "service.section.audit", roles=("admin",), order=900)
    register_section(app, "service.stop_kiosk", "service.section.stop", roles=("technician",), order=990)

    @app.before_request
    def _idle_reset_ends_the_screen_session():
        # The kiosk's idle reset forgets the visitor's cookie; the server-side session it named
        # must end too, or a copy of that cookie would stay good until SERVICE_SESSION_S.
        if request.endpoint == "core.reset" and session.get(SESSION_KEY):
            store.end_session(session[SESSION_KEY], "reset")


def register_section(app: Flask, endpoint: str, title_key: str, roles=("admin",), order: int = 100) -> None:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)} for {endpoint}")
    state(app).service_sections.append(Section(endpoint, title_key, tuple(roles), order))


def staff_store() -> StaffStore:
    return current_state().staff


def is_sample_pin(pin: str) -> bool:
    """The seeded PINs (SERVICE_PINS) are published in the README: never a real PIN."""
    pairs = (p.partition(":") for p in current_app.config["SERVICE_PINS"].split(","))
    return any(pin == sample.strip() for _, _, sample in pairs)


def client_address() -> str:
    return request.remote_addr or "unknown"


def current_staff() -> StaffMember | None:
    """The staff member of this request's live server-side session (looked up once per request)."""
    if "service_staff" in g:
        return g.service_staff
    token = session.get(SESSION_KEY)
    staff = staff_store().check_session(token, current_app.config["SERVICE_SESSION_S"]) if token else None
    if token and staff is None:
        session.pop(SESSION_KEY, None)
    g.service_staff = staff
    return staff


def _start_session(staff: StaffMember) -> None:
    old = session.get(SESSION_KEY)
    if old:
        staff_store().end_session(old, "replaced")
    session[SESSION_KEY] = staff_store().open_session(staff.id, client_address())
    g.service_staff = staff


def audit(action: str, **detail) -> None:
    staff_store().audit(current_staff(), action, **detail)


def require_role(*roles: str):
    """Service-mode views: log in first, choose a PIN of one's own if still on a sample one;
    admin may do everything."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            staff = current_staff()
            if staff is None:
                return redirect(url_for("service.login", next=request.path))
            if staff.must_change:
                return redirect(url_for("service.change_pin"))
            if staff.role not in roles and staff.role != "admin":
                staff_store().audit(staff, "forbidden", endpoint=request.endpoint)
                abort(403)
            g.staff = staff
            return view(*args, **kwargs)
        return wrapper
    return decorator


@bp.get("/")
@require_role(*ROLES)
def index():
    staff = g.staff
    sections = sorted((s for s in current_state().service_sections
                       if staff.role in s.roles or staff.role == "admin"), key=lambda s: s.order)
    return render_template("service/index.html", staff=staff, sections=sections)


def _safe_service_target(target: str) -> str:
    return target if target.startswith("/service/") and not target.startswith("//") else url_for("service.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    store = staff_store()
    message, chosen, status = None, None, 200
    if request.method == "POST":
        chosen = ascii_int(request.form.get("staff_id"), 0, 2**62, default=None, name="staff_id")
        pin = request.form.get("pin", "")[:64]
        client = client_address()
        if chosen is None:
            message, status = i18n.gettext("service.login.choose"), 400
        else:
            result = store.login(chosen, pin, client)
            if result.staff:
                _start_session(result.staff)
                store.audit(result.staff, "login", client=client)
                if result.staff.must_change:
                    return redirect(url_for("service.change_pin"))
                return redirect(_safe_service_target(request.args.get("next", "")))
            if result.locked_s:
                message, status = i18n.gettext("service.login.locked", seconds=result.locked_s), 429
            else:
                store.audit(None, "login.failed", staff_id=chosen, client=client)
                for counter in result.lockout:
                    store.audit(None, "login.lockout", staff_id=chosen, client=client, counter=counter)
                message, status = i18n.gettext("service.login.wrong"), 401
    return render_template("service/login.html", message=message, members=store.members(active_only=True),
                           chosen=chosen), status


@bp.post("/logout")
def logout():
    """Ends every open session of this person (other screens too), not just this cookie's."""
    staff = current_staff()
    if staff:
        ended = staff_store().end_sessions(staff.id, "logout")
        staff_store().audit(staff, "logout", sessions=ended)
    elif session.get(SESSION_KEY):
        staff_store().end_session(session[SESSION_KEY], "logout")
    session.pop(SESSION_KEY, None)
    return redirect(url_for("catalogue.home"))


@bp.route("/pin", methods=["GET", "POST"])
def change_pin():
    """One's own new PIN: forced after a sample PIN, open to anyone logged in. Every session of
    the person ends (copies of the cookie included) and this screen gets a fresh one."""
    staff = current_staff()
    if staff is None:
        return redirect(url_for("service.login", next=request.path))
    g.staff = staff
    store = staff_store()
    message = None
    if request.method == "POST":
        pin = request.form.get("pin", "")[:64]
        if not valid_pin(pin):
            message = "service.staff.bad_pin"
        elif pin != request.form.get("pin2", "")[:64]:
            message = "service.pin.mismatch"
        elif store.pin_matches(staff.id, pin):
            message = "service.pin.same"
        elif is_sample_pin(pin):
            message = "service.pin.sample"
        else:
            store.set_pin(staff.id, pin)
            store.audit(staff, "staff.change_own_pin", forced=staff.must_change, client=client_address())
            session.pop(SESSION_KEY, None)
            _start_session(store.member(staff.id))
            return redirect(url_for("service.index"))
    return render_template("service/pin.html", staff=staff, message=message), (400 if message else 200)


@bp.get("/audit")
@require_role("admin")
def audit_log():
    return render_template("service/audit.html", entries=staff_store().audit_log())


@bp.route("/staff", methods=["GET", "POST"])
@require_role("admin")
def staff():
    store = staff_store()
    message, ok = None, False
    if request.method == "POST":
        action = request.form.get("action", "")
        pin = request.form.get("pin", "").strip()
        target = ascii_int(request.form.get("staff_id"), 0, 2**62, default=0, name="staff_id")
        if action in ("add", "set_pin") and not valid_pin(pin):
            message = "service.staff.bad_pin"
        elif action in ("add", "set_pin") and is_sample_pin(pin):
            message = "service.pin.sample"
        elif action == "add":
            name = " ".join(request.form.get("name", "").split())
            role = request.form.get("role", "")
            if not name or len(name) > 60 or role not in ROLES:
                message = "service.staff.bad_name"
            else:
                member = store.add(name, role, pin)
                audit("staff.add", staff_id=member.id, role=role)
                message, ok = "service.staff.saved", True
        elif action == "set_pin":
            try:
                store.set_pin(target, pin)   # ends every open session of that person
            except ValueError:
                abort(404)
            audit("staff.set_pin", staff_id=target)
            if target == g.staff.id:       # one's own: this screen goes on with a fresh session
                _start_session(store.member(target))
            message, ok = "service.staff.saved", True
        elif action in ("activate", "deactivate"):
            try:
                store.set_active(target, action == "activate")
            except ValueError as exc:
                if "no such" in str(exc):
                    abort(404)
                message = "service.staff.last_admin"
            else:
                audit(f"staff.{action}", staff_id=target)
                message, ok = "service.staff.saved", True
        else:
            abort(400)
    return render_template("service/staff.html", members=store.members(), roles=ROLES,
                           message=message, ok=ok), (200 if ok or message is None else 400)


# --- stopping the kiosk on purpose (the kiosk window refuses every other way to close) ---------


@bp.route("/stop", methods=["GET", "POST"])
@require_role("technician")
def stop_kiosk():
    """A deliberate stop: `cnap kiosk` closes the window, stops the server and exits 0. The stop
    is requested once the answer has been sent, so the screen shows that it is stopping."""
    stop = current_state().kiosk_stop
    if stop is None:
        return render_template("service/stop.html", state="unavailable"), (409 if request.method == "POST" else 200)
    if request.method == "GET":
        return render_template("service/stop.html", state="confirm")
    audit("kiosk.stop", client=request.remote_addr or "unknown")
    response = current_app.make_response(render_template("service/stop.html", state="stopping"))
    response.call_on_close(lambda: stop("service mode"))
    return response


@bp.app_template_global()
def on_kiosk_window() -> bool:
    """True in the kiosk's own window, which refuses downloads and file choosers: pages show
    ``service/_files_elsewhere.html`` there instead of links and pickers that would do nothing."""
    from terminal.shell import WINDOW_USER_AGENT_MARK  # plain constant; shell imports GTK lazily

    return WINDOW_USER_AGENT_MARK in request.headers.get("User-Agent", "")
