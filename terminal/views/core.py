"""What every screen shares: language and display preferences, idle reset, health, metrics,
error pages."""
from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import (Blueprint, Flask, Response, current_app, g, jsonify, redirect, render_template,
                   request, session, url_for)
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from terminal import i18n, limits
from terminal.state import current_state, state

bp = Blueprint("core", __name__)

# Interface strings looked up under names built at run time (in templates or from variables),
# listed so that pybabel extracts them; their texts are in terminal/translations/.
RUNTIME_KEYS = (
    i18n.N_("error.bad_request.body"),
    i18n.N_("error.bad_request.title"),
    i18n.N_("error.not_found.body"),
    i18n.N_("error.not_found.title"),
    i18n.N_("error.server.body"),
    i18n.N_("error.server.title"),
    i18n.N_("osk.digits"),
    i18n.N_("prefs.contrast_off"),
    i18n.N_("prefs.contrast_on"),
    i18n.N_("prefs.language"),
    i18n.N_("prefs.text_size"),
)

TEXT_SIZES = (100, 125, 150, 175, 200)

# A static URL carries ?v=<its content hash>; with that exact version it may be kept for good.
IMMUTABLE = "public, max-age=31536000, immutable"


def content_hashes(folder: str) -> dict[str, str]:
    """Every file under ``folder`` (posix path relative to it) -> the first 12 hex digits of its
    SHA-256. Computed once when the app is built: the files ship with the package."""
    hashes = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()[:12]
            hashes[os.path.relpath(path, folder).replace(os.sep, "/")] = digest
    return hashes


def version_static(app: Flask, endpoint: str, folder: str) -> None:
    """url_for(endpoint, filename=…) adds ?v=<content hash>, and a request carrying the current
    hash is answered with a year-long immutable Cache-Control. Without it (or with an old one) the
    file keeps its revalidating headers, so a page from before an update never pins stale bytes."""
    state(app).static_versions[endpoint] = content_hashes(folder)


def safe_next(target: str | None) -> str:
    """Only paths on this kiosk, else the home screen."""
    return limits.local_path(target) or url_for("catalogue.home")


def init_app(app: Flask) -> None:
    registry = CollectorRegistry()
    requests_total = Counter("cnap_http_requests_total", "HTTP requests served",
                             ["endpoint", "method", "status"], registry=registry)
    latency = Histogram("cnap_http_request_seconds", "HTTP request latency", ["endpoint"],
                        buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                        registry=registry)
    kiosk_state = state(app)
    kiosk_state.metrics = registry
    version_static(app, "static", app.static_folder)
    i18n.init_app(app)
    # The browser's catalogues are versioned like static files: ?v=<hash> is immutable.
    kiosk_state.static_versions["core.js_catalogue"] = i18n.js_catalogue_versions()

    @app.url_defaults
    def _static_version(endpoint: str, values: dict) -> None:
        versions = kiosk_state.static_versions.get(endpoint)
        if versions is not None and "v" not in values:
            digest = versions.get(values.get("filename", ""))
            if digest:
                values["v"] = digest

    @app.before_request
    def _start_timer_and_language():
        g.request_started = time.perf_counter()
        lang = session.get("lang")
        g.lang = lang if lang in i18n.LANGUAGES else app.config["DEFAULT_LANGUAGE"]

    @app.after_request
    def _count(response: Response):
        endpoint = request.endpoint or "unmatched"
        requests_total.labels(endpoint, request.method, str(response.status_code)).inc()
        started = getattr(g, "request_started", None)
        if started is not None:
            latency.labels(endpoint).observe(time.perf_counter() - started)
        # A kiosk page must never be framed or sniffed; the CSP keeps every resource local.
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                    "script-src 'self'; frame-ancestors 'none'")
        # Pages and JSON may carry personal data or voucher codes: no browser cache keeps them
        # (a kiosk's next visitor, a shared tablet). Static files stay cacheable, and a view
        # that chose its own policy for content without personal data (tablet app shell,
        # content-addressed media) keeps it. same-origin, not no-referrer: our own CSRF checks
        # may read the Referer; other origins never see a URL with a receipt number or check code.
        versions = kiosk_state.static_versions.get(endpoint)
        if versions is not None:
            digest = versions.get((request.view_args or {}).get("filename", ""))
            if digest and response.status_code in (200, 304) and request.args.get("v") == digest:
                response.headers["Cache-Control"] = IMMUTABLE
        elif request.endpoint != "static" and not (request.endpoint or "").endswith(".static"):
            response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.context_processor
    def _template_globals():
        return {
            "lang": g.get("lang", "uk"),
            "other_lang": "en" if g.get("lang", "uk") == "uk" else "uk",
            "text_size": session.get("text_size", 100),
            "high_contrast": bool(session.get("contrast")),
            "idle_timeout_s": current_app.config["IDLE_TIMEOUT_S"],
            "idle_warning_s": max(20, current_app.config["IDLE_WARNING_S"]),
        }

    zone = ZoneInfo(app.config["TIMEZONE"])

    @app.template_filter("datetime")
    def _format_datetime(value) -> str:
        """Epoch seconds or a datetime, shown in the kiosk's time zone."""
        if isinstance(value, (int, float)):
            value = datetime.fromtimestamp(value, zone)
        elif value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(zone).strftime("%d.%m.%Y %H:%M:%S")

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        # The idle reset must always bring the screen home, also when the page outlived its
        # session (a kiosk restart changes the key). Without a valid token it changes nothing:
        # a forged reset cannot end anyone's payment, and a page whose session is gone has
        # nothing left to forget.
        if request.endpoint == "core.reset":
            return redirect(url_for("catalogue.home"))
        return _http_error(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
            return jsonify(error=exc.name, message=exc.description), exc.code
        key = {404: "not_found", 400: "bad_request", 403: "forbidden", 413: "too_large"}.get(exc.code, "server")
        return render_template("error.html", code=exc.code, key=key), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        current_app.logger.exception("unhandled error on %s", request.path)
        if request.path.startswith("/api/"):
            return jsonify(error="Internal Server Error"), 500
        return render_template("error.html", code=500, key="server"), 500


@bp.post("/lang/<code>")
def set_language(code: str):
    if code in i18n.LANGUAGES:
        session["lang"] = code
    return redirect(safe_next(request.form.get("next")))


@bp.get("/i18n/<filename>")
def js_catalogue(filename: str):
    """The interface strings for the page's scripts (static/i18n.js), ``uk.json`` or ``en.json``."""
    return i18n.catalogue_response(filename)


@bp.post("/prefs")
def set_preferences():
    size = session.get("text_size", 100)
    action = request.form.get("action")
    if action == "larger":
        size = next((s for s in TEXT_SIZES if s > size), TEXT_SIZES[-1])
    elif action == "smaller":
        size = next((s for s in reversed(TEXT_SIZES) if s < size), TEXT_SIZES[0])
    elif action == "contrast":
        session["contrast"] = not session.get("contrast", False)
    session["text_size"] = size
    return redirect(safe_next(request.form.get("next")))


@bp.post("/reset")
def reset():
    """Idle reset and "start over": forget the visitor entirely. A POST with the page's CSRF
    token (kiosk.js sends one): it ends a payment and a staff session, so no link or image
    elsewhere may trigger it."""
    session.clear()
    return redirect(url_for("catalogue.home"))


@bp.get("/healthz")
def healthz():
    checks = {}
    healthy = True
    for name, check in current_state().health.items():
        try:
            ok, detail = check()
        except Exception as exc:  # a broken check is a failed check, not a crashed endpoint
            ok, detail = False, {"error": type(exc).__name__}
        checks[name] = {"ok": bool(ok), **detail}
        healthy = healthy and bool(ok)
    body = {"status": "ok" if healthy else "degraded", "terminal": current_app.config["TERMINAL_ID"],
            "checks": checks}
    return jsonify(body), 200 if healthy else 503


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(current_state().metrics),
                    mimetype=CONTENT_TYPE_LATEST)
