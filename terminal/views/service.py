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
import re
from dataclasses import dataclass

from flask import (Blueprint, Flask, abort, current_app, g, redirect, render_template, request,
                   session, url_for)

from terminal import i18n, settings as settings_module
from terminal.state import current_state, state
from terminal.limits import ascii_int, local_path
from terminal.staff import ROLES, StaffMember, StaffStore, is_published_sample, valid_pin

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
    state(app).closers.append(store.close)   # its writer thread and connection
    register_section(app, "service.staff", "service.section.staff", roles=("admin",), order=890)
    register_section(app, "service.audit_log", "service.section.audit", roles=("admin",), order=900)
    register_section(app, "service.stop_kiosk", "service.section.stop", roles=("technician",), order=990)
    register_section(app, "service.facility", "service.section.facility", roles=("technician",), order=700)

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
    """The seeded PINs (SERVICE_PINS) are published in the README: never a real PIN, in service
    mode or on the hub (which has no seeds of its own, so the kiosk's published ones count)."""
    published = current_app.config.get("SERVICE_PINS") or settings_module.BY_NAME["SERVICE_PINS"].default
    return is_published_sample(pin, published)


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
    path = local_path(target)
    return path if path and path.startswith("/service/") else url_for("service.index")


@dataclass
class LoginAttempt:
    """The outcome of one log-in form: ``staff`` logged in (a session is open), or the message
    and HTTP status to show with the form again; ``chosen`` is the staff id that was picked."""
    staff: StaffMember | None = None
    message: str | None = None
    status: int = 200
    chosen: int | None = None


# The messages of a failed log-in, as keys of the caller's catalogue: choose, locked, wrong, role.
SERVICE_LOGIN_TEXTS = {"choose": i18n.N_("service.login.choose"), "locked": i18n.N_("service.login.locked"),
                       "wrong": i18n.N_("service.login.wrong")}


def attempt_login(gettext, texts: dict[str, str], *, prefix: str = "",
                  roles: tuple[str, ...] | None = None) -> LoginAttempt:
    """One POSTed log-in (``staff_id``, ``pin``) against the staff store, for service mode and
    the monitoring hub alike: the one lockout, a fresh server-side session, every outcome audited
    (actions ``<prefix>login``, ``<prefix>login.failed`` …). ``roles``: who may log in here (others
    are refused after a right PIN, and that is audited too). ``texts`` names the messages in the
    caller's catalogue (``gettext``), as SERVICE_LOGIN_TEXTS does."""
    store = staff_store()
    chosen = ascii_int(request.form.get("staff_id"), 0, 2**62, default=None, name="staff_id")
    pin = request.form.get("pin", "")[:64]
    client = client_address()
    if chosen is None:
        return LoginAttempt(message=gettext(texts["choose"]), status=400)
    result = store.login(chosen, pin, client)
    if result.staff and roles is not None and result.staff.role not in roles and result.staff.role != "admin":
        store.audit(result.staff, f"{prefix}login.refused_role", client=client)
        return LoginAttempt(message=gettext(texts["role"]), status=403, chosen=chosen)
    if result.staff:
        _start_session(result.staff)
        store.audit(result.staff, f"{prefix}login", client=client)
        return LoginAttempt(staff=result.staff, chosen=chosen)
    if result.locked_s:
        return LoginAttempt(message=gettext(texts["locked"], seconds=result.locked_s), status=429, chosen=chosen)
    store.audit(None, f"{prefix}login.failed", staff_id=chosen, client=client)
    for counter in result.lockout:
        store.audit(None, f"{prefix}login.lockout", staff_id=chosen, client=client, counter=counter)
    return LoginAttempt(message=gettext(texts["wrong"]), status=401, chosen=chosen)


@bp.route("/login", methods=["GET", "POST"])
def login():
    store = staff_store()
    attempt = LoginAttempt()
    if request.method == "POST":
        attempt = attempt_login(i18n.gettext, SERVICE_LOGIN_TEXTS)
        if attempt.staff:
            if attempt.staff.must_change:
                return redirect(url_for("service.change_pin"))
            return redirect(_safe_service_target(request.args.get("next", "")))
    return render_template("service/login.html", message=attempt.message, members=store.members(active_only=True),
                           chosen=attempt.chosen), attempt.status


def log_out(prefix: str = "") -> None:
    """Ends every open session of this person (other screens too), not just this cookie's, and
    audits it as ``<prefix>logout``; a cookie whose session already lapsed is ended as well."""
    staff = current_staff()
    if staff:
        ended = staff_store().end_sessions(staff.id, "logout")
        staff_store().audit(staff, f"{prefix}logout", sessions=ended)
    elif session.get(SESSION_KEY):
        staff_store().end_session(session[SESSION_KEY], "logout")
    session.pop(SESSION_KEY, None)


@bp.post("/logout")
def logout():
    log_out()
    return redirect(url_for("catalogue.home"))


# Why a new PIN was refused, as keys of the caller's catalogue: bad, mismatch, same, sample.
SERVICE_PIN_TEXTS = {"bad": "service.staff.bad_pin", "mismatch": "service.pin.mismatch", "same": "service.pin.same",
                     "sample": "service.pin.sample"}


def attempt_pin_change(staff: StaffMember, texts: dict[str, str], *, prefix: str = "") -> str | None:
    """One POSTed change of one's own PIN (``pin`` typed twice as ``pin2``) under the appliance's
    one PIN rule: 6–12 ASCII digits, not the current PIN, not a printed sample. On success every
    session of the person ends (copies of the cookie included), this browser gets a fresh one,
    the change is audited as ``<prefix>change_own_pin`` and None is returned; otherwise the key
    of the reason in ``texts``."""
    store = staff_store()
    pin = request.form.get("pin", "")[:64]
    if not valid_pin(pin):
        return texts["bad"]
    if pin != request.form.get("pin2", "")[:64]:
        return texts["mismatch"]
    if store.pin_matches(staff.id, pin):
        return texts["same"]
    if is_sample_pin(pin):
        return texts["sample"]
    store.set_pin(staff.id, pin)
    store.audit(staff, f"{prefix}change_own_pin", forced=staff.must_change, client=client_address())
    session.pop(SESSION_KEY, None)
    _start_session(store.member(staff.id))
    return None


@bp.route("/pin", methods=["GET", "POST"])
def change_pin():
    """One's own new PIN: forced after a sample PIN, open to anyone logged in. Every session of
    the person ends (copies of the cookie included) and this screen gets a fresh one."""
    staff = current_staff()
    if staff is None:
        return redirect(url_for("service.login", next=request.path))
    g.staff = staff
    message = None
    if request.method == "POST":
        message = attempt_pin_change(staff, SERVICE_PIN_TEXTS, prefix="staff.")
        if message is None:
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


# --- the building: ventilation, power, uplinks, as `cnap agent` reports them --------------------
# Interface strings looked up under names built at run time (in templates or from variables),
# listed so that pybabel extracts them; their texts are in terminal/translations/.
RUNTIME_KEYS = (
    i18n.N_("facility.controller.power"),
    i18n.N_("facility.controller.uplinks"),
    i18n.N_("facility.controller.ventilation"),
    i18n.N_("facility.no"),
    i18n.N_("facility.override.cancelled"),
    i18n.N_("facility.override.done"),
    i18n.N_("facility.override.no_agent"),
    i18n.N_("facility.override.no_answer"),
    i18n.N_("facility.override.refused"),
    i18n.N_("facility.word.all_down"),
    i18n.N_("facility.word.all_uplinks_down"),
    i18n.N_("facility.word.backup"),
    i18n.N_("facility.word.co2_implausible"),
    i18n.N_("facility.word.co2_stale"),
    i18n.N_("facility.word.co2_stuck"),
    i18n.N_("facility.word.degraded"),
    i18n.N_("facility.word.demand"),
    i18n.N_("facility.word.down"),
    i18n.N_("facility.word.extract_fan_fault"),
    i18n.N_("facility.word.filter_dirty"),
    i18n.N_("facility.word.frost_protection"),
    i18n.N_("facility.word.hours_unknown"),
    i18n.N_("facility.word.level_not_applied"),
    i18n.N_("facility.word.low_battery"),
    i18n.N_("facility.word.normal"),
    i18n.N_("facility.word.not_loaded"),
    i18n.N_("facility.word.off"),
    i18n.N_("facility.word.ok"),
    i18n.N_("facility.word.on_battery"),
    i18n.N_("facility.word.online"),
    i18n.N_("facility.word.override"),
    i18n.N_("facility.word.poll_failed"),
    i18n.N_("facility.word.poll_stuck"),
    i18n.N_("facility.word.primary"),
    i18n.N_("facility.word.probe_stopped"),
    i18n.N_("facility.word.replace_battery"),
    i18n.N_("facility.word.route_failed"),
    i18n.N_("facility.word.schedule"),
    i18n.N_("facility.word.shutdown"),
    i18n.N_("facility.word.starting"),
    i18n.N_("facility.word.status_failed"),
    i18n.N_("facility.word.supply_fan_fault"),
    i18n.N_("facility.word.unavailable"),
    i18n.N_("facility.word.unit_unavailable"),
    i18n.N_("facility.word.uplink_down"),
    i18n.N_("facility.yes"),
)

FACILITY_BASE_KEYS = ("available", "state", "alerts", "events", "polled_at", "fault")
FACILITY_EVENTS_SHOWN = 30
FACILITY_VALUE_CHARS = 200
FACILITY_LIST_ROWS = 10
_ISO_MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)")
FACILITY_LEVEL_MAX = 100      # ventilation levels offered when the controller does not say its max_level


def _facility_word(word) -> str:
    """A controller's machine word (state, alert, reading name) in the visitor's language when
    a text exists, else readable as it is."""
    word = str(word)
    key = f"facility.word.{word}"
    return i18n.gettext(key) if i18n.known(key) else word.replace("_", " ")


def _facility_name(name: str) -> str:
    key = f"facility.controller.{name}"
    return i18n.gettext(key) if i18n.known(key) else name.replace("_", " ")


def _facility_value(value) -> str:
    if isinstance(value, bool):
        text = i18n.gettext("facility.yes") if value else i18n.gettext("facility.no")
    elif isinstance(value, dict):
        text = "; ".join(f"{_facility_word(k)}: {_facility_value(v)}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(_facility_value(v) for v in value)
    elif value is None:
        text = "—"
    elif isinstance(value, str) and _ISO_MOMENT.fullmatch(value):
        text = _facility_time(value)   # a moment in UTC, shown in the branch's time zone
    else:
        text = str(value)
    return text if len(text) <= FACILITY_VALUE_CHARS else text[:FACILITY_VALUE_CHARS - 1] + "…"


def _facility_readings(values: dict) -> list[tuple[str, str]]:
    """A controller's own readings as table rows: nested objects one row per field, lists of
    objects (uplinks, …) one row per item named by its ``name``; empty ones left out."""
    rows: list[tuple[str, str]] = []
    for key, value in values.items():
        if value is None or value == "" or value == [] or value == {}:
            continue
        if isinstance(value, dict):
            # "readings" holds the measurements themselves: their names alone are the labels.
            prefix = "" if key == "readings" else _facility_word(key) + ": "
            rows += [(prefix + _facility_word(k), _facility_value(v)) for k, v in value.items()
                     if v is not None and v != ""]
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for number, item in enumerate(value[:FACILITY_LIST_ROWS], 1):
                label = f"{_facility_word(key)}: {item.get('name') or number}"
                # The item's own scalars only: nested detail (per-probe figures, …) would drown it.
                rows.append((label, _facility_value({k: v for k, v in item.items() if k != "name"
                                                     and v is not None and not isinstance(v, (dict, list))})))
        else:
            rows.append((_facility_word(key), _facility_value(value)))
    return rows


def _facility_time(stamp) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    try:
        moment = datetime.fromisoformat(str(stamp))
        if moment.tzinfo is not None:
            moment = moment.astimezone(ZoneInfo(current_app.config["TIMEZONE"]))
    except (ValueError, OverflowError):   # not a moment, or one at the edge of the calendar
        return str(stamp)[:40]
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _facility_view(status: dict) -> dict:
    """The agent's status as the screen shows it: each controller's state, alerts and readings,
    and every controller's events merged, newest first."""
    language = i18n.current_language()
    panels, events = [], []
    for name, raw in status.get("controllers", {}).items():
        raw = raw if isinstance(raw, dict) else {}
        readings = _facility_readings({k: v for k, v in raw.items() if k not in FACILITY_BASE_KEYS})
        panels.append({"name": name, "title": _facility_name(name), "available": raw.get("available") is True,
                       "disabled": raw.get("state") == "disabled",
                       "state": _facility_word(raw.get("state", "unavailable")),
                       "alerts": [_facility_word(a) for a in raw.get("alerts", []) if isinstance(a, str)]
                       if isinstance(raw.get("alerts"), list) else [],
                       "fault": _facility_value(raw["fault"]) if raw.get("fault") else None,
                       "polled_at": _facility_time(raw["polled_at"]) if raw.get("polled_at") else None,
                       "readings": readings})
        for event in raw.get("events", []) if isinstance(raw.get("events"), list) else []:
            if not isinstance(event, dict):
                continue
            text = event.get(f"text_{language}") or event.get("text_uk") or event.get("kind", "")
            events.append({"at": str(event.get("at", "")), "when": _facility_time(event.get("at", "")),
                           "where": _facility_name(name), "text": _facility_value(text)})
    events.sort(key=lambda e: e["at"], reverse=True)
    ventilation = status.get("controllers", {}).get("ventilation")
    ventilation = ventilation if isinstance(ventilation, dict) else {}
    return {"panels": panels, "events": events[:FACILITY_EVENTS_SHOWN],
            "as_of": _facility_time(status.get("at", "")), "max_level": _ventilation_max_level(ventilation),
            "override_on": ventilation.get("state") == "override"}


def _ventilation_max_level(ventilation: dict) -> int:
    level = ventilation.get("max_level")
    return level if isinstance(level, int) and not isinstance(level, bool) and 1 <= level <= 1000 else FACILITY_LEVEL_MAX


def _facility_page(result=None, errors=None, values=None, status_code=200):
    from monitoring.agent_client import AgentClient, AgentUnavailable

    client = AgentClient.from_settings(current_app.config)
    try:
        view, problem = _facility_view(client.status()), None
    except AgentUnavailable as exc:
        current_app.logger.warning("facility screen: %s", exc)
        view, problem = None, str(exc)
    limit = current_app.config["VENT_OVERRIDE_MAX_MIN"]
    return render_template("service/facility.html", view=view, problem=problem, result=result,
                           errors=errors or {}, values=values or {"level": "", "minutes": ""},
                           max_minutes=limit, max_level=view["max_level"] if view else FACILITY_LEVEL_MAX), status_code


def _whole_number(raw: str | None, lo: int, hi: int) -> int | None:
    text = (raw or "").strip()[:8]
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if lo <= number <= hi else None


@bp.get("/facility")
@require_role("technician")
def facility():
    return _facility_page()


@bp.post("/facility/override")
@require_role("technician")
def facility_override():
    """Ventilation at a level for some minutes: checked here, then passed to the agent, whose
    controller may still refuse (its own limits, the equipment unavailable)."""
    from monitoring.agent_client import AgentClient, AgentUnavailable

    limit = current_app.config["VENT_OVERRIDE_MAX_MIN"]
    values = {"level": request.form.get("level", "")[:8], "minutes": request.form.get("minutes", "")[:8]}
    # The ventilation's own max_level when the agent says it (the controller checks it again).
    max_level = _current_max_level()
    level = _whole_number(values["level"], 0, max_level)
    minutes = _whole_number(values["minutes"], 1, limit)
    errors = {}
    if level is None:
        errors["level"] = i18n.gettext("facility.override.bad_level", max=max_level)
    if minutes is None:
        errors["minutes"] = i18n.gettext("facility.override.bad_minutes", max=limit)
    if errors:
        return _facility_page(errors=errors, values=values, status_code=400)
    try:
        answer = AgentClient.from_settings(current_app.config).command(
            "ventilation", "override", {"level": level, "minutes": minutes})
    except AgentUnavailable as exc:
        current_app.logger.warning("ventilation override: %s", exc)
        audit("facility.override", level=level, minutes=minutes, ok=False,
              reason="no answer in time" if exc.maybe_done else "agent unavailable")
        key = "facility.override.no_answer" if exc.maybe_done else "facility.override.no_agent"
        return _facility_page(result={"ok": False, "key": key, "message": ""}, values=values, status_code=503)
    audit("facility.override", level=level, minutes=minutes, ok=answer["ok"])
    result = {"ok": answer["ok"], "message": answer["message"][:300],
              "key": "facility.override.done" if answer["ok"] else "facility.override.refused"}
    return _facility_page(result=result, values={} if answer["ok"] else values,
                          status_code=200 if answer["ok"] else 409)


def _current_max_level() -> int:
    from monitoring.agent_client import AgentClient, AgentUnavailable

    try:
        controllers = AgentClient.from_settings(current_app.config).status()["controllers"]
    except AgentUnavailable:
        return FACILITY_LEVEL_MAX
    ventilation = controllers.get("ventilation")
    return _ventilation_max_level(ventilation if isinstance(ventilation, dict) else {})


@bp.post("/facility/override/cancel")
@require_role("technician")
def facility_override_cancel():
    """Back to automatic control before the override's time is up."""
    from monitoring.agent_client import AgentClient, AgentUnavailable

    try:
        answer = AgentClient.from_settings(current_app.config).command("ventilation", "cancel_override", {})
    except AgentUnavailable as exc:
        current_app.logger.warning("ventilation override cancel: %s", exc)
        audit("facility.override_cancel", ok=False)
        key = "facility.override.no_answer" if exc.maybe_done else "facility.override.no_agent"
        return _facility_page(result={"ok": False, "key": key, "message": ""}, status_code=503)
    audit("facility.override_cancel", ok=answer["ok"])
    result = {"ok": answer["ok"], "message": answer["message"][:300],
              "key": "facility.override.cancelled" if answer["ok"] else "facility.override.refused"}
    return _facility_page(result=result, status_code=200 if answer["ok"] else 409)
