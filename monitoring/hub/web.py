"""`cnap hub`'s web app for facility staff: every site at a glance, one site's entities, charts
and commands, alerts with acks and silences, survey CSAT, what ingest dropped, the audit log,
``/healthz`` and ``/metrics``.

The app only reads the hub's tables (monitoring/hub/schema.py) and queues staff actions in them:
an ack or a silence is an ``alert_requests`` row for the evaluator (which alone changes alert
state), a command is a ``commands`` row for the hub's MQTT side. It never talks MQTT itself.

Staff are the kiosk's staff model (terminal/staff.py: PINs, lockout, server-side sessions,
audit), looked up per request by ``terminal.views.service.current_staff``. Roles here:
technician (sees, acks, silences, sends commands), manager (sees, acks), admin (everything, and
manages staff). Every POST carries a CSRF token; every action is audited.

    app = create_hub_app(hub_settings({"SECRET_KEY": ...}), open_store(url), StaffStore(path))
"""
from __future__ import annotations

import functools
import json
import re
import math
import secrets
import sqlite3
import time
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import quote

from flask import (Flask, Response, abort, current_app, flash, g, get_flashed_messages, redirect,
                   render_template, request, session, url_for)
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from monitoring.alerts import SEVERITIES, default_rules
from monitoring.hub import charts, i18n, present
from monitoring.hub.db import HubStore, StoreError
from monitoring import topics
from monitoring.topics import valid_site_id
from terminal import state as state_module
from terminal.limits import AsciiIntConverter, ascii_int, local_path
from terminal.staff import StaffMember, StaffStore, valid_pin
from terminal.views.service import (SESSION_KEY, LoginAttempt, attempt_login, attempt_pin_change, client_address,
                                    current_staff, is_sample_pin, log_out)

HUB_ROLES = ("technician", "manager", "admin")
PIN_TEXTS = {"bad": "pin.bad", "mismatch": "pin.mismatch", "same": "pin.same", "sample": "pin.sample"}
LOGIN_TEXTS = {"choose": i18n.N_("login.choose"), "locked": i18n.N_("login.locked"), "wrong": i18n.N_("login.wrong"),
               "role": i18n.N_("login.role")}
ACK_ROLES = ("technician", "manager")          # admin may do everything anyway
ACT_ROLES = ("technician",)
OPEN = ("pending", "firing")
SORTS = ("problem", "name", "seen")
SURVEY_SORTS = ("csat", "answers", "site")
CHART_METRICS = ("co2_ppm", "charge_pct", "runtime_s", "loss_pct", "rtt_ms", "latency_ms", "fill_pct",
                 "clients_now", "minutes", "blocked")   # guest Wi-Fi clients; visitor browsing minutes, blocks
DEFAULT_TOP_LEVEL = 4       # the generic unit profile's levels 0…4
MAX_TEXT_PARAM = 64          # a filter word, a site id, a rule name
MAX_COMMENT = 300
MAX_REASON = 100            # topics.Command's text arguments
MAX_NAME = 40
MAX_SURVEY_ROWS = 200_000    # answers one survey page reads; more says "cut"
RULE_SUMMARIES = {rule.name: {"uk": rule.summary_uk, "en": rule.summary_en} for rule in default_rules()}

DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": "",
    "DEFAULT_LANGUAGE": "uk",
    "SESSION_IDLE_S": 15 * 60,        # a staff session ends after this long without a request
    "MAX_CONTENT_LENGTH": 16 * 1024,  # every form of the app is far smaller
    "HTTPS": False,
    "COMMAND_TTL_S": 5 * 60,          # a command not delivered by then is not acted upon
    "OVERRIDE_MAX_MINUTES": 8 * 60,
    "SILENCE_MAX_HOURS": 30 * 24,
    "CHART_HOURS": 24,
    "SITE_CSAT_DAYS": 30,
}


def hub_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The app's settings: DEFAULTS with ``overrides`` (unknown keys refused, so a typo is loud)."""
    values = dict(DEFAULTS)
    for key, value in (overrides or {}).items():
        if key not in DEFAULTS and key not in ("TESTING", "CLOCK"):
            raise ValueError(f"unknown hub web setting {key!r}; known: {', '.join(sorted(DEFAULTS))}")
        values[key] = value
    return values


# --- app ----------------------------------------------------------------------------------------
HUB_STATE_KEY = "cnap.hub"


@dataclass
class HubAppState:
    """What the hub's views share (typed, like the kiosk's terminal/state.py). ``metric_sources``
    are the other parts of the hub process (evaluator, notifier, ingest): name → a callable giving
    their counters, published on /metrics as ``cnap_hub_<name>_<counter>``."""
    store: HubStore
    clock: Callable[[], float]
    metric_sources: dict[str, Callable[[], Mapping[str, Any]]] = field(default_factory=dict)


def create_hub_app(settings: Mapping[str, Any], store: HubStore, staff: StaffStore) -> Flask:
    settings = hub_settings(settings)
    app = Flask(__name__)
    app.config.update({k: v for k, v in settings.items() if k != "CLOCK"})
    app.config["SECRET_KEY"] = settings["SECRET_KEY"] or secrets.token_hex(32)
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SECURE"] = bool(settings["HTTPS"])
    app.config["SESSION_COOKIE_NAME"] = "cnap_hub"
    app.config["WTF_CSRF_TIME_LIMIT"] = None            # lives as long as the session
    app.config["SERVICE_SESSION_S"] = settings["SESSION_IDLE_S"]   # read by current_staff
    app.config["MAX_FORM_MEMORY_SIZE"] = settings["MAX_CONTENT_LENGTH"]
    app.config["MAX_FORM_PARTS"] = 50
    app.url_map.converters["int"] = AsciiIntConverter
    app.extensions[HUB_STATE_KEY] = HubAppState(store=store, clock=settings.get("CLOCK") or time.time)
    # The kiosk's session lookup (current_staff) finds the staff store where the kiosk keeps it.
    state_module.install(app).staff = staff
    i18n.init_app(app)
    CSRFProtect(app)
    _register(app)
    return app


def hub_state(app: Flask | None = None) -> "HubAppState":
    return (app or current_app).extensions[HUB_STATE_KEY]


def hub_store() -> HubStore:
    return hub_state().store


def now() -> float:
    return hub_state().clock()


def staff_store() -> StaffStore:
    return state_module.current_state().staff


def audit(what: str, **detail) -> None:
    staff_store().audit(g.get("staff"), what, **detail)


def require_role(*roles: str):
    """Log in first; a sample PIN must be changed first; admin may do everything."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            member = current_staff()
            if member is None:
                return redirect(url_for("login", next=request.full_path if request.method == "GET" else None))
            g.staff = member
            if member.must_change:
                return redirect(url_for("change_pin"))
            if member.role not in roles and member.role != "admin":
                staff_store().audit(member, "forbidden", endpoint=request.endpoint)
                abort(403)
            return view(*args, **kwargs)
        return wrapper
    return decorator


def text_param(source: Mapping, name: str, limit: int = MAX_TEXT_PARAM) -> str:
    value = source.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def site_param(value: Any) -> str:
    if not valid_site_id(value):
        abort(404)
    return value


def choice(value: Any, allowed: tuple[str, ...], default: str) -> str:
    return value if value in allowed else default


# --- queries ------------------------------------------------------------------------------------
SITES_SQL = (
    "SELECT s.site, s.status, s.last_seen, COALESCE(a.critical, 0), COALESCE(a.warning, 0), "
    "COALESCE(a.pending, 0), COALESCE(a.open, 0) FROM sites s LEFT JOIN ("
    "  SELECT site, SUM(CASE WHEN status = 'firing' AND severity = 'critical' THEN 1 ELSE 0 END) AS critical,"
    "  SUM(CASE WHEN status = 'firing' AND severity = 'warning' THEN 1 ELSE 0 END) AS warning,"
    "  SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS pending, COUNT(*) AS open"
    "  FROM alerts WHERE status IN ('pending', 'firing') GROUP BY site) a ON a.site = s.site")

ALERT_COLUMNS = ("key, serial, rule, site, device, severity, status, active_since, fired_at, resolved_at, "
                 "silenced, inhibited")


def site_overview() -> list[dict]:
    """Every site with its badge, in one query (4,070 sites must not mean 4,070 queries)."""
    rows = []
    for site, status, last_seen, critical, warning, pending, open_count in hub_store().query(SITES_SQL):
        badge = present.health(status, critical, warning, pending)
        rows.append({"site": site, "health": badge, "rank": present.HEALTH_RANK[badge],
                     "last_seen": last_seen, "open": int(open_count or 0)})
    return rows


def sort_sites(rows: list[dict], order: str) -> list[dict]:
    if order == "name":
        return sorted(rows, key=lambda r: r["site"])
    if order == "seen":   # longest silent first: that is the question this order answers
        return sorted(rows, key=lambda r: (present.finite(r["last_seen"]) or -math.inf, r["site"]))
    return sorted(rows, key=lambda r: (r["rank"], -r["open"], r["site"]))


def alert_dicts(rows: list[tuple]) -> list[dict]:
    names = ALERT_COLUMNS.split(", ")
    return [dict(zip(names, row)) for row in rows]


def open_alerts(site: str | None = None) -> list[dict]:
    where, params = "status IN ('pending', 'firing')", []
    if site is not None:
        where += " AND site = ?"
        params.append(site)
    alerts = alert_dicts(hub_store().query(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {where} "
        "ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, "
        "CASE status WHEN 'firing' THEN 0 ELSE 1 END, active_since LIMIT 1000", params))
    acks: dict[tuple, list[dict]] = {}
    for key, serial, at, who, comment in hub_store().query(
            "SELECT k.key, k.serial, k.at, k.who, k.comment FROM alert_acks k JOIN alerts a "
            "ON a.key = k.key AND a.serial = k.serial WHERE a.status IN ('pending', 'firing')"
            + (" AND a.site = ?" if site is not None else "") + " ORDER BY k.at", params):
        acks.setdefault((key, serial), []).append({"at": at, "who": who, "comment": comment})
    for alert in alerts:
        alert["acks"] = acks.get((alert["key"], alert["serial"]), [])
    return alerts


def rule_summary(rule: str) -> str:
    texts = RULE_SUMMARIES.get(rule)
    return texts.get(i18n.current_language(), texts["uk"]) if texts else rule


# --- views --------------------------------------------------------------------------------------
def _register(app: Flask) -> None:
    @app.before_request
    def _language():
        g.lang = i18n.current_language()

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def _globals():
        return {"staff": g.get("staff"), "lang": i18n.current_language(), "kyiv_time": present.kyiv_time,
                "ago": lambda at: present.ago(at, now(), i18n.gettext), "rule_summary": rule_summary,
                "messages": get_flashed_messages(with_categories=True)}

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return render_template("error.html", code=400, message=i18n.gettext("error.csrf")), 400

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = exc.code or 500
        key = {403: "error.forbidden", 404: "error.not_found", 405: "error.method",
               413: "error.too_large"}.get(code, "error.bad_request")
        return render_template("error.html", code=code, message=i18n.gettext(key)), code

    def _store_unavailable(exc: Exception):
        # The store is down or locked past its timeout: say so (503), do not look broken (500).
        current_app.logger.warning("hub store unavailable: %s", type(exc).__name__)
        return render_template("error.html", code=503, message=i18n.gettext("error.store")), 503

    for error in _store_errors():
        app.register_error_handler(error, _store_unavailable)

    @app.get("/healthz")
    def healthz():
        try:
            hub_store().query_one("SELECT COUNT(*) FROM sites")
        except Exception as exc:   # any store failure means "not healthy", said plainly
            return {"ok": False, "store": type(exc).__name__}, 503
        return {"ok": True}

    @app.get("/metrics")
    def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        return Response(generate_latest(_metrics_registry()), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                        headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- login -----------------------------------------------------------------------------
    @app.route("/login", methods=["GET", "POST"])
    def login():
        store = staff_store()
        attempt = LoginAttempt()
        if request.method == "POST":
            attempt = attempt_login(i18n.gettext, LOGIN_TEXTS, prefix="hub.", roles=HUB_ROLES)
            if attempt.staff:
                if attempt.staff.must_change:
                    return redirect(url_for("change_pin"))
                return redirect(local_path(request.args.get("next", "")) or url_for("sites"))
        message, chosen, status = attempt.message, attempt.chosen, attempt.status
        members = [m for m in store.members(active_only=True) if m["role"] in HUB_ROLES]
        return render_template("login.html", message=message, members=members, chosen=chosen), status

    @app.post("/logout")
    def logout():
        log_out(prefix="hub.")
        return redirect(url_for("login"))

    @app.route("/pin", methods=["GET", "POST"])
    def change_pin():
        member = current_staff()
        if member is None:
            return redirect(url_for("login"))
        g.staff = member
        message = None
        if request.method == "POST":
            message = attempt_pin_change(member, PIN_TEXTS, prefix="hub.")
            if message is None:
                return redirect(url_for("sites"))
        return render_template("pin.html", message=message), (400 if message else 200)

    @app.post("/lang")
    def set_language():
        session["lang"] = choice(request.form.get("lang"), i18n.LANGUAGES, "uk")
        target = local_path(request.form.get("next", ""))
        return redirect(target if target else url_for("sites"))

    # --- sites -----------------------------------------------------------------------------
    @app.get("/")
    @require_role(*HUB_ROLES)
    def sites():
        order = choice(request.args.get("sort"), SORTS, "problem")
        query = text_param(request.args, "q").lower()
        rows = site_overview()
        counts = {name: 0 for name in present.HEALTH_ORDER}
        for row in rows:
            counts[row["health"]] += 1
        if query:
            rows = [r for r in rows if query in r["site"]]
        # Text worked out once per badge and per row here, not in the template: 4,070 rows.
        labels = {name: i18n.gettext(f"health.{name}") for name in present.HEALTH_ORDER}
        base, clock = url_for("site", site="x")[:-1], now()
        for row in rows:
            row["label"] = labels[row["health"]]
            row["ago"] = present.ago(row["last_seen"], clock, i18n.gettext)
            row["href"] = base + quote(row["site"], safe="")
        return render_template("sites.html", rows=sort_sites(rows, order), order=order, query=query,
                               counts=counts, total=sum(counts.values()))

    @app.get("/site/<site>")
    @require_role(*HUB_ROLES)
    def site(site: str):
        site = site_param(site)
        db = hub_store()
        head = db.query_one("SELECT status, status_at, first_seen, last_seen, skew_s, bridge FROM sites "
                            "WHERE site = ?", (site,))
        if head is None:
            abort(404)
        status, status_at, first_seen, last_seen, skew_s, bridge = head
        clock = now()
        entities, entities_payloads = [], {}
        for entity, kind, payload, sent_at, received_at in db.query(
                "SELECT entity, kind, payload, sent_at, received_at FROM entities WHERE site = ? "
                "ORDER BY entity LIMIT 200", (site,)):
            entities_payloads[entity] = present.load_json(payload)
            entities.append({"entity": entity, "title": present.entity_title(entity, i18n.gettext, i18n.known),
                             "received_at": received_at,
                             "rows": present.entity_rows(present.load_json(payload), i18n.gettext, i18n.known)})
        alerts = open_alerts(site)
        counts = {"critical": 0, "warning": 0, "pending": 0}
        for alert in alerts:
            if alert["status"] == "pending":
                counts["pending"] += 1
            elif alert["severity"] in ("critical", "warning"):
                counts[alert["severity"]] += 1
        badge = present.health(status, counts["critical"], counts["warning"], counts["pending"])
        commands = {}
        names = {command_account(StaffMember(m["id"], m["name"], m["role"])): m["name"]
                 for m in staff_store().members()}
        for row in db.query("SELECT id, controller, action, args, requested_by, requested_at, expires_at, "
                            "sent_at, result_ok, result_message, result_at FROM commands WHERE site = ? "
                            "ORDER BY requested_at DESC LIMIT 20", (site,)):
            command = dict(zip(("id", "controller", "action", "args", "requested_by", "requested_at",
                                "expires_at", "sent_at", "result_ok", "result_message", "result_at"), row))
            command["args"] = present.load_json(command["args"])
            command["state"] = command_state(command, clock)
            command["by_name"] = names.get(command["requested_by"], command["requested_by"])
            commands.setdefault(command["controller"], command)
        return render_template("site.html", site=site, status=status, status_at=status_at, badge=badge,
                               first_seen=first_seen, last_seen=last_seen, skew_s=present.finite(skew_s),
                               bridge=bridge, entities=entities, alerts=alerts, commands=commands,
                               charts=site_charts(site, clock), csat=site_csat(site, clock),
                               fan_levels=fan_levels(entities_payloads), max_minutes=current_app.config["OVERRIDE_MAX_MINUTES"],
                               can_act=g.staff.role in ("technician", "admin"))

    @app.post("/site/<site>/ventilation")
    @require_role(*ACT_ROLES)
    def ventilation_override(site: str):
        site = site_param(site)
        limit = current_app.config["OVERRIDE_MAX_MINUTES"]
        # The controller's own command (facility/ventilation: override {level, minutes}); the site
        # brings the level inside its unit's limits and answers what it set.
        level = ascii_int(request.form.get("level"), 0, topics.MAX_FAN_LEVEL, default=None, name="level")
        minutes = ascii_int(request.form.get("minutes"), 1, limit, default=None, name="minutes")
        if level is None or minutes is None:
            flash(i18n.gettext("command.bad_override", max=limit), "error")
            return redirect(url_for("site", site=site))
        queue_command(site, "ventilation", "override", {"level": level, "minutes": minutes})
        return redirect(url_for("site", site=site))

    @app.post("/site/<site>/kiosk")
    @require_role(*ACT_ROLES)
    def kiosk_service(site: str):
        site = site_param(site)
        on = request.form.get("on")
        reason = text_param(request.form, "reason", MAX_REASON)
        if on not in ("1", "0") or (on == "1" and not reason):
            flash(i18n.gettext("command.bad_kiosk"), "error")
            return redirect(url_for("site", site=site))
        queue_command(site, "kiosk", "out_of_service", {"on": on == "1", "reason": reason})
        return redirect(url_for("site", site=site))

    # --- alerts ----------------------------------------------------------------------------
    @app.get("/alerts")
    @require_role(*HUB_ROLES)
    def alerts():
        clock = now()
        db = hub_store()
        silences = []
        for row in db.query("SELECT id, matchers, starts_at, ends_at, creator, comment FROM silences "
                            "WHERE ended_at IS NULL AND ends_at > ? ORDER BY ends_at LIMIT 500", (clock,)):
            silence = dict(zip(("id", "matchers", "starts_at", "ends_at", "creator", "comment"), row))
            matchers = present.load_json(silence["matchers"])
            silence["matchers"] = matchers if isinstance(matchers, dict) else {}
            silences.append(silence)
        history = alert_dicts(db.query(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE status = 'resolved' "
                                       "ORDER BY resolved_at DESC LIMIT 100"))
        queued = db.query_one("SELECT COUNT(*) FROM alert_requests WHERE done_at IS NULL")[0]
        refused = [dict(zip(("kind", "payload", "who", "at", "error"), row)) for row in db.query(
            "SELECT kind, payload, who, at, error FROM alert_requests WHERE error IS NOT NULL AND at >= ? "
            "ORDER BY at DESC LIMIT 20", (clock - 86400,))]
        for request_row in refused:
            request_row["payload"] = present.load_json(request_row["payload"])
        return render_template("alerts.html", alerts=open_alerts(), silences=silences, history=history,
                               queued=queued, refused=refused, rules=sorted(RULE_SUMMARIES), severities=SEVERITIES,
                               max_hours=current_app.config["SILENCE_MAX_HOURS"],
                               can_act=g.staff.role in ("technician", "admin"))

    @app.post("/alerts/ack")
    @require_role(*ACK_ROLES)
    def ack():
        key = text_param(request.form, "key", 200)
        serial = ascii_int(request.form.get("serial"), 0, 2**53, default=None, name="serial")
        comment = text_param(request.form, "comment", MAX_COMMENT)
        back = local_path(request.form.get("next", "")) or url_for("alerts")
        if not key or serial is None or not comment:
            flash(i18n.gettext("ack.comment_required"), "error")
            return redirect(back)
        found = hub_store().query_one("SELECT status FROM alerts WHERE key = ? AND serial = ?", (key, serial))
        if found is None:
            abort(404)
        if found[0] != "firing":   # the alert machine takes acks of firing alerts only
            flash(i18n.gettext("ack.not_firing"), "error")
            return redirect(back)
        queue_alert_request("ack", {"key": key, "serial": serial, "comment": comment})
        audit("hub.ack", key=key, serial=serial, comment=comment)
        flash(i18n.gettext("ack.queued"), "ok")
        return redirect(back)

    @app.post("/silences")
    @require_role(*ACT_ROLES)
    def silence():
        matchers = {}
        site = text_param(request.form, "site")
        if site:
            if not valid_site_id(site):
                flash(i18n.gettext("silence.bad_site"), "error")
                return redirect(url_for("alerts"))
            matchers["site"] = site
        for label, allowed in (("rule", tuple(RULE_SUMMARIES)), ("severity", SEVERITIES)):
            value = request.form.get(label, "")
            if value:
                if value not in allowed:
                    abort(400)
                matchers[label] = value
        hours = ascii_int(request.form.get("hours"), 1, current_app.config["SILENCE_MAX_HOURS"],
                          default=None, name="hours")
        comment = text_param(request.form, "comment", MAX_COMMENT)
        if not matchers or hours is None or not comment:
            flash(i18n.gettext("silence.incomplete", max=current_app.config["SILENCE_MAX_HOURS"]), "error")
            return redirect(url_for("alerts"))
        starts = now()
        queue_alert_request("silence", {"matchers": matchers, "starts_at": starts,
                                        "ends_at": starts + hours * 3600, "comment": comment})
        audit("hub.silence", matchers=matchers, hours=hours, comment=comment)
        flash(i18n.gettext("silence.queued"), "ok")
        return redirect(url_for("alerts"))

    @app.post("/silences/<silence_id>/end")
    @require_role(*ACT_ROLES)
    def end_silence(silence_id: str):
        if len(silence_id) > 100 or hub_store().query_one(
                "SELECT 1 FROM silences WHERE id = ?", (silence_id,)) is None:
            abort(404)
        queue_alert_request("end_silence", {"id": silence_id})
        audit("hub.end_silence", id=silence_id)
        flash(i18n.gettext("silence.end_queued"), "ok")
        return redirect(url_for("alerts"))

    # --- surveys, dropped, audit, staff ----------------------------------------------------------
    @app.get("/surveys")
    @require_role(*HUB_ROLES)
    def surveys():
        days = ascii_int(request.args.get("days"), 1, 366, default=30, name="days")
        order = choice(request.args.get("sort"), SURVEY_SORTS, "csat")
        rows = hub_store().query(
            "SELECT site, payload FROM survey_answers WHERE COALESCE(answered_at, received_at) >= ? "
            "LIMIT ?", (now() - days * 86400, MAX_SURVEY_ROWS + 1))
        cut = len(rows) > MAX_SURVEY_ROWS
        figures = present.csat_by_site(rows[:MAX_SURVEY_ROWS])
        table = [{"site": site, "answers": f.answers, "csat": f.csat, "mean": f.mean}
                 for site, f in figures.items() if f.answers]
        if order == "site":
            table.sort(key=lambda r: r["site"])
        elif order == "answers":
            table.sort(key=lambda r: (-r["answers"], r["site"]))
        else:   # the worst first: that is where staff look
            table.sort(key=lambda r: (r["csat"], r["site"]))
        return render_template("surveys.html", table=table, days=days, order=order, cut=cut)

    @app.get("/dropped")
    @require_role(*HUB_ROLES)
    def dropped():
        rows = hub_store().query("SELECT at, site, topic, reason FROM dropped ORDER BY at DESC LIMIT 300")
        return render_template("dropped.html", rows=rows)

    @app.get("/audit")
    @require_role("technician")
    def audit_log():
        return render_template("audit.html", entries=staff_store().audit_log(300))

    @app.route("/staff", methods=["GET", "POST"])
    @require_role("admin")
    def staff_page():
        store = staff_store()
        if request.method == "POST":
            action = request.form.get("action")
            if action == "add":
                name = text_param(request.form, "name", MAX_NAME)
                role = request.form.get("role")
                pin = request.form.get("pin", "")[:64]
                if not name or role not in HUB_ROLES or not valid_pin(pin) or is_sample_pin(pin):
                    flash(i18n.gettext("staff.bad"), "error")
                else:
                    added = store.add(name, role, pin)
                    audit("hub.staff.add", staff_id=added.id, role=role)
                    flash(i18n.gettext("staff.saved"), "ok")
            elif action == "deactivate":
                target = ascii_int(request.form.get("staff_id"), 0, 2**62, name="staff_id")
                try:
                    store.set_active(target, False)
                except ValueError:
                    flash(i18n.gettext("staff.last_admin"), "error")
                else:
                    audit("hub.staff.deactivate", staff_id=target)
                    flash(i18n.gettext("staff.saved"), "ok")
            else:
                abort(400)
            return redirect(url_for("staff_page"))
        return render_template("staff.html", members=store.members(), roles=HUB_ROLES)


def _store_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [StoreError, sqlite3.OperationalError]
    try:
        import psycopg
    except ImportError:   # a SQLite-only hub need not have psycopg installed
        return tuple(errors)
    return (*errors, psycopg.OperationalError)


def fan_levels(payloads: Mapping[str, Any]) -> range:
    """Levels offered for an override: 0 (stopped) to the unit's top level as the site reported
    it, or to DEFAULT_TOP_LEVEL before the site said."""
    ventilation = payloads.get("ventilation")
    top = ventilation.get("max_level") if isinstance(ventilation, dict) else None
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= topics.MAX_FAN_LEVEL:
        top = DEFAULT_TOP_LEVEL
    return range(0, top + 1)


def command_state(command: dict, clock: float) -> str:
    if command["result_ok"] is not None:
        return "done" if command["result_ok"] else "refused"
    if present.finite(command["expires_at"]) is not None and command["expires_at"] < clock:
        return "expired"
    return "sent" if command["sent_at"] is not None else "queued"


def command_account(member: StaffMember) -> str:
    """Who sent a command, in the form a site accepts (topics.Command.by: an account name): a
    staff member's name may be any text, their id is not."""
    return f"staff.{member.id}"


def queue_command(site: str, controller: str, action: str, args: dict) -> str | None:
    """A commands row for the hub's MQTT side, checked first against the very model the site
    will check it with (topics.Command), so a row the worker could not send is never queued.
    The id is a UUID in its usual text form (what Command.id takes)."""
    command_id = str(uuid.uuid4())
    member: StaffMember = g.staff
    at = now()
    ttl = int(current_app.config["COMMAND_TTL_S"])
    try:
        topics.Command(ts=datetime.fromtimestamp(at, timezone.utc), id=command_id, action=action, args=args,
                       by=command_account(member), ttl_s=ttl)
    except (ValueError, TypeError, OverflowError):   # pydantic's ValidationError is a ValueError
        flash(i18n.gettext("command.invalid"), "error")
        return None
    with hub_store().transaction() as tx:
        tx.execute("INSERT INTO commands (id, site, controller, action, args, requested_by, requested_at, "
                   "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (command_id, site, controller, action, json.dumps(args, ensure_ascii=False),
                    command_account(member), at, at + ttl))
    audit("hub.command", site=site, controller=controller, command=action, args=args, id=command_id)
    flash(i18n.gettext("command.queued"), "ok")
    return command_id


def queue_alert_request(kind: str, payload: dict) -> None:
    with hub_store().transaction() as tx:
        tx.execute("INSERT INTO alert_requests (kind, payload, who, at) VALUES (?, ?, ?, ?)",
                   (kind, json.dumps(payload, ensure_ascii=False), g.staff.name, now()))


def site_charts(site: str, clock: float) -> list[dict]:
    """One chart per (entity, metric) of the chart metrics with samples in the last CHART_HOURS,
    read in one query."""
    hours = current_app.config["CHART_HOURS"]
    start = clock - hours * 3600
    # Metrics are named by their path in the payload (sensors.hall.co2_ppm, ups.charge_pct):
    # a chart metric is one whose last part is in CHART_METRICS.
    wanted = " OR ".join("metric = ? OR metric LIKE ?" for _ in CHART_METRICS)
    patterns = [p for name in CHART_METRICS for p in (name, f"%.{name}")]
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for entity, metric, at, value in hub_store().query(
            f"SELECT entity, metric, at, value FROM samples WHERE site = ? AND ({wanted}) "
            "AND at >= ? AND at <= ? ORDER BY entity, metric, at LIMIT 50000",
            (site, *patterns, start, clock + 300)):
        if present.finite(at) is not None and present.finite(value) is not None:
            series.setdefault((entity, metric), []).append((float(at), float(value)))
    result = []
    for index, ((entity, metric), points) in enumerate(sorted(series.items())):
        values = [v for _, v in points]
        title = f"{present.entity_title(entity, i18n.gettext, i18n.known)}: {metric_name(metric)}"
        figures = i18n.gettext("chart.figures", low=_fmt(min(values)), high=_fmt(max(values)),
                               last=_fmt(values[-1]), at=present.kyiv_time(points[-1][0]), hours=hours)
        result.append({"title": title, "figures": figures,
                       "svg": charts.line_svg(f"chart{index}", points, title, figures, start, clock,
                                              present.kyiv_time(start), present.kyiv_time(clock))})
    return result


def metric_name(metric: str) -> str:
    """'sensors.hall.co2_ppm' → "Датчики · hall · CO₂, ppm"."""
    words = []
    for part in str(metric).split(".")[:6]:
        key = f"field.{part}"
        words.append(i18n.gettext(key) if i18n.known(key) else part)
    return " · ".join(words)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.1f}"


def site_csat(site: str, clock: float) -> dict:
    days = current_app.config["SITE_CSAT_DAYS"]
    rows = hub_store().query("SELECT site, payload FROM survey_answers WHERE site = ? AND "
                             "COALESCE(answered_at, received_at) >= ? LIMIT ?",
                             (site, clock - days * 86400, MAX_SURVEY_ROWS))
    figures = present.csat_by_site(rows).get(site, present.Csat())
    return {"days": days, "answers": figures.answers, "csat": figures.csat, "mean": figures.mean}


RESERVED_SUFFIXES = ("_sum", "_count", "_bucket", "_total", "_created", "_info")


def _metrics_registry():
    """A registry whose one collector reads the store at scrape time."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily

    store = hub_store()

    class HubCollector:
        def collect(self):
            up = GaugeMetricFamily("cnap_hub_store_up", "1 when the hub's store answered this scrape")
            sites = GaugeMetricFamily("cnap_hub_sites", "Sites by health badge", labels=["status"])
            alerts = GaugeMetricFamily("cnap_hub_open_alerts", "Open alerts (pending or firing) by severity",
                                       labels=["severity"])
            try:
                counts = {name: 0 for name in present.HEALTH_ORDER}
                for _, status, _, critical, warning, pending, _ in store.query(SITES_SQL):
                    counts[present.health(status, critical, warning, pending)] += 1
                by_severity = {name: 0 for name in SEVERITIES}
                for severity, count in store.query("SELECT severity, COUNT(*) FROM alerts WHERE status IN "
                                                   "('pending', 'firing') GROUP BY severity"):
                    if severity in by_severity:
                        by_severity[severity] = count
            except Exception:   # a scrape reports a broken store as store_up 0, not as an error page
                up.add_metric([], 0)
                yield up
                return
            up.add_metric([], 1)
            for name, count in counts.items():
                sites.add_metric([name], count)
            for name, count in by_severity.items():
                alerts.add_metric([name], count)
            yield from (up, sites, alerts)

    class PartsCollector:
        def collect(self):
            for source, counters in hub_state().metric_sources.items():
                try:
                    values = counters()
                except Exception:   # a part that cannot say is left out of this scrape
                    continue
                for name, value in sorted(values.items()):
                    number = present.finite(value)
                    if number is None or isinstance(value, bool) or not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
                        continue
                    if name.endswith(RESERVED_SUFFIXES):   # those say histogram, summary or counter
                        name = f"{name}_value"
                    gauge = GaugeMetricFamily(f"cnap_hub_{source}_{name}", f"{source}: {name}")
                    gauge.add_metric([], number)
                    yield gauge

    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector())
    registry.register(PartsCollector())
    return registry


# Keys looked up under names built at run time, listed so that pybabel extracts them.
RUNTIME_KEYS = tuple(i18n.N_(k) for k in (
    "health.offline", "health.critical", "health.warning", "health.pending", "health.unknown", "health.ok",
    "severity.critical", "severity.warning", "severity.info", "status.pending", "status.firing",
    "status.resolved", "command.state.done", "command.state.refused", "command.state.expired",
    "command.state.sent", "command.state.queued", "role.admin", "role.technician", "role.manager",
    "role.cashier", "pin.bad", "pin.mismatch", "pin.same", "pin.sample", "mode.off", "mode.schedule", "mode.demand",
    "unit.bytes", "unit.kb", "unit.mb", "unit.gb", "unit.tb"))
