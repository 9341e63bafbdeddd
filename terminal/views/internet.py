"""Free internet at the kiosk, the kiosk's own pages: the home tile (template global
``internet_tile``), the terms screen, starting a session in the window's browsing view, the
"session ended" page the window comes back to, the "this site is not available here" page the
browsing view shows for a blocked address, and service mode's "Visitor internet" section (the
allowlist and today's counters). The rule for the tile is in terminal/internet/sessions.py.

Pages the browsing view opens itself (``/internet/ended``, ``/internet/blocked?host=&lang=``)
take their language from ``lang`` (the session's language), since they may be shown by a view
that does not carry the visitor's cookie.
"""
from __future__ import annotations

import os
import unicodedata
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, current_app, g, render_template, request, url_for

from terminal import i18n
from terminal.internet.allowlist import DomainError
from terminal.internet.sessions import BrowsingSessions
from terminal.internet.store import FILE_NAME, InternetStore
from terminal.state import current_state, state
from terminal.views.service import audit, register_section, require_role

bp = Blueprint("internet", __name__)

MAX_HOST_SHOWN = 100         # a blocked host is echoed at most this long
MAX_DOMAIN_INPUT = 300       # what the allowlist form reads of a typed domain
TOP_BLOCKED_SHOWN = 10

# Interface strings looked up under names built at run time, listed so that pybabel extracts them.
RUNTIME_KEYS = (
    i18n.N_("internet.cannot.already_open"),
    i18n.N_("internet.cannot.disabled"),
    i18n.N_("internet.cannot.empty_list"),
    i18n.N_("internet.cannot.no_agent"),
    i18n.N_("internet.cannot.no_uplink"),
    i18n.N_("internet.cannot.no_window"),
    i18n.N_("internet.cannot.proxy_down"),
    i18n.N_("internet.cannot.refused"),
    i18n.N_("internet.domain_error.empty"),
    i18n.N_("internet.domain_error.invalid"),
    i18n.N_("internet.domain_error.ip_literal"),
    i18n.N_("internet.domain_error.too_long"),
    i18n.N_("internet.domain_error.too_many"),
    i18n.N_("internet.domain_error.top_level"),
    i18n.N_("internet.end.error"),
    i18n.N_("internet.end.idle"),
    i18n.N_("internet.end.session_limit"),
    i18n.N_("internet.end.stopped"),
    i18n.N_("internet.end.user"),
)
# The HTTP status of each "cannot start" page: a state of the machine (503) or of the session (409).
CANNOT_STATUS = {"already_open": 409, "refused": 409, "disabled": 404}


def init_app(app: Flask) -> None:
    from monitoring.agent_client import AgentClient

    kiosk_state = state(app)
    zone = ZoneInfo(app.config["TIMEZONE"])
    store = InternetStore(os.path.join(app.instance_path, FILE_NAME), today=lambda: datetime.now(zone).date())
    kiosk_state.closers.append(store.close)
    store.seed(app.config["INTERNET_ALLOWLIST"])
    sessions = BrowsingSessions(app.config, store, window=lambda: kiosk_state.internet_window,
                                agent_status=lambda: AgentClient.from_settings(app.config).status(),
                                workdir=os.path.join(app.instance_path, "internet"))
    kiosk_state.internet = sessions
    kiosk_state.closers.append(sessions.close)     # runs before store.close (newest first)
    kiosk_state.health["internet"] = sessions.health
    register_section(app, "internet.service", "internet.section", roles=("manager", "technician"), order=650)
    app.add_template_global(lambda: sessions.tile_visible(), "internet_tile")


def start_services(app: Flask) -> bool:
    """`cnap kiosk` calls this once the window may browse: the filtering proxy starts (when
    INTERNET_ENABLED); it stops with the app (KioskState.closers)."""
    return state(app).internet.start_proxy()


def sessions() -> BrowsingSessions:
    return current_state().internet


def _page_language() -> None:
    """``?lang=uk|en`` (the browsing session's language) wins for this page only."""
    lang = request.args.get("lang", "")
    if lang in i18n.LANGUAGES:
        g.lang = lang


def _cannot(reason: str):
    status = CANNOT_STATUS.get(reason, 503)
    return render_template("internet/cannot.html", reason=reason), status


def _limits() -> dict:
    config = current_app.config
    return {"minutes": config["INTERNET_SESSION_MIN"], "idle_s": config["INTERNET_IDLE_S"],
            "extend_min": config["INTERNET_EXTEND_MIN"]}


@bp.get("/internet")
def terms():
    reason = sessions().unavailable_reason()
    if reason is not None:
        return _cannot(reason)
    return render_template("internet/terms.html", domains=sessions().store.domains(), **_limits())


@bp.post("/internet/start")
def start():
    back = request.host_url.rstrip("/") + url_for("internet.ended", lang=g.lang)
    reason = sessions().start(g.lang, back_url=back)
    if reason is not None:
        return _cannot(reason)
    return render_template("internet/open.html", **_limits())


@bp.get("/internet/ended")
def ended():
    _page_language()
    status = sessions().status()
    if status["open"]:
        return render_template("internet/open.html", **_limits())
    end = status["last_end"]
    minutes = round(end["seconds"] / 60) if end else None
    return render_template("internet/ended.html", reason=end["reason"] if end else None, minutes=minutes)


def shown_host(raw: str | None) -> str:
    """A blocked address's host as the page may echo it: printable, short (escaped by Jinja)."""
    text = "".join(ch for ch in (raw or "")[:MAX_HOST_SHOWN * 4]
                   if unicodedata.category(ch)[0] not in ("C", "Z") or ch == " ").strip()
    return text if len(text) <= MAX_HOST_SHOWN else text[:MAX_HOST_SHOWN - 1] + "…"


@bp.get("/internet/blocked")
def blocked():
    _page_language()
    return render_template("internet/blocked.html", host=shown_host(request.args.get("host")),
                           domains=sessions().store.domains())


# --- service mode: "Інтернет для відвідувачів / Visitor internet" ---------------------------------
@bp.route("/service/internet", methods=["GET", "POST"])
@require_role("manager", "technician")
def service():
    browsing = sessions()
    store = browsing.store
    message, ok, typed = None, False, ""
    if request.method == "POST":
        action = request.form.get("action", "")
        if action == "add":
            typed = request.form.get("domain", "")[:MAX_DOMAIN_INPUT]
            try:
                domain, added = store.add(typed)
            except DomainError as exc:
                message = i18n.gettext(f"internet.domain_error.{exc.code}")
            else:
                if added:
                    audit("internet.allowlist.add", domain=domain)
                    applied = browsing.allowlist_changed()
                    message, ok, typed = i18n.gettext("internet.service.added", domain=domain), True, ""
                    if not applied and browsing.proxy is not None:
                        message += " " + i18n.gettext("internet.service.not_applied")
                else:
                    message, ok, typed = i18n.gettext("internet.service.already", domain=domain), True, ""
        elif action == "remove":
            domain = request.form.get("domain", "")[:MAX_DOMAIN_INPUT]
            if store.remove(domain):
                audit("internet.allowlist.remove", domain=domain)
                browsing.allowlist_changed()
                message, ok = i18n.gettext("internet.service.removed", domain=domain), True
            else:
                message = i18n.gettext("internet.service.not_listed")
        else:
            message = i18n.gettext("internet.service.bad_action")
    reason = browsing.unavailable_reason()
    today = store.day_counters(top=TOP_BLOCKED_SHOWN)
    status = 200 if ok or message is None else 400
    return render_template("internet/service.html", domains=store.domains(), message=message, ok=ok,
                           typed=typed, reason=reason, today=today, proxy_error=browsing.proxy_error,
                           uplink_problem=browsing.uplinks.problem, enabled=browsing.enabled), status
