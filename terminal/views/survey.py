"""Tablet quality surveys on the web: the tablet app (/tablet/…), its sync API (/api/survey/…)
and the service-mode pages (/service/surveys/…: tablets, administrators, definitions, media,
reports, review of flagged bursts)."""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import re
from datetime import datetime
from urllib.parse import urlsplit

import qrcode
import qrcode.image.svg
from flask import (Blueprint, Flask, Response, abort, current_app, flash, g, jsonify, redirect,
                   render_template, request, send_from_directory, stream_with_context, url_for)
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from payments import csvsafe
from terminal import i18n
from terminal.state import current_state, state
from terminal.limits import ascii_int, attachment, body_limit, json_body
from terminal.surveys import charts, reports
from terminal.surveys.antigaming import Rules, clean_text
from terminal.surveys.clock import SteadyClock
from terminal.surveys.definitions import DefinitionError, client_view
from terminal.views import core
from terminal.surveys.store import (MAX_BATCH, BurstReviewError, Rejected, SurveyInputError, SurveyStore,
                                    Tablet)
from terminal.views.service import audit, register_section, require_role

bp = Blueprint("survey", __name__)
log = logging.getLogger("cnap.surveys")

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "static", "survey")
MEDIA_TYPES = {".png": ("image", "image/png"), ".jpg": ("image", "image/jpeg"), ".jpeg": ("image", "image/jpeg"),
               ".webp": ("image", "image/webp"), ".mp4": ("video", "video/mp4"), ".webm": ("video", "video/webm")}
MAX_MEDIA_BYTES = 50 * 1024 * 1024
MAX_DEFINITION_BYTES = 200 * 1024
MAX_API_BYTES = 2 * 1024 * 1024
ATTRACT_AFTER_S = 30      # idle seconds on the first question before the attract loop starts
STEP_TIMEOUT_S = 45       # a visitor who walks away mid-survey: what they answered is kept

# Interface strings looked up under names built at run time (in templates or from variables),
# listed so that pybabel extracts them; their texts are in terminal/translations/.
RUNTIME_KEYS = (
    i18n.N_("survey.admins.activate"),
    i18n.N_("survey.admins.deactivate"),
    i18n.N_("survey.bursts.decided.excluded"),
    i18n.N_("survey.bursts.decided.genuine"),
    i18n.N_("survey.bursts.error.already_reviewed"),
    i18n.N_("survey.bursts.error.bad_decision"),
    i18n.N_("survey.bursts.error.burst_changed"),
    i18n.N_("survey.bursts.error.unknown_burst"),
    i18n.N_("survey.bursts.excluded"),
    i18n.N_("survey.bursts.genuine"),
    i18n.N_("survey.error.bad_request"),
    i18n.N_("survey.media.kind"),
    i18n.N_("survey.media.preview"),
    i18n.N_("survey.report.bucket.day"),
    i18n.N_("survey.report.bucket.month"),
    i18n.N_("survey.report.bucket.week"),
    i18n.N_("survey.report.group.admin"),
    i18n.N_("survey.report.group.branch"),
    i18n.N_("survey.report.group.desk"),
    i18n.N_("survey.tablets.registered"),
    i18n.N_("tablet.next"),
)


def init_app(app: Flask) -> None:
    path = os.path.join(app.instance_path, app.config["SURVEYS_DB"])
    rules = Rules(repeat_window_s=app.config["SURVEY_REPEAT_WINDOW_S"], burst_size=app.config["SURVEY_BURST_SIZE"],
                  burst_window_s=app.config["SURVEY_BURST_WINDOW_S"], late_after_s=app.config["SURVEY_LATE_AFTER_S"],
                  max_offline_s=app.config["SURVEY_MAX_OFFLINE_S"],
                  requests_per_minute=app.config["SURVEY_API_REQUESTS_PER_MIN"])
    store = SurveyStore(path, rules, app.config["TIMEZONE"], SteadyClock(quiet_s=app.config["SURVEY_CLOCK_QUIET_S"]))
    store.ensure_default_survey()
    kiosk_state = state(app)
    kiosk_state.surveys = store
    core.version_static(app, "survey.tablet_static", STATIC_DIR)   # ?v=<hash>, cached for good
    kiosk_state.static_versions["survey.tablet_catalogue"] = i18n.js_catalogue_versions()
    kiosk_state.closers.append(store.close)
    os.makedirs(media_dir(app), exist_ok=True)
    kiosk_state.health["surveys"] = lambda: (
        True, {"answers_pending_forwarding": store.count_pending_forwarding()})
    roles = ("manager",)
    register_section(app, "survey.tablets", "survey.section.tablets", roles=roles, order=300)
    register_section(app, "survey.administrators", "survey.section.admins", roles=roles, order=310)
    register_section(app, "survey.definitions", "survey.section.definitions", roles=roles, order=320)
    register_section(app, "survey.media_list", "survey.section.media", roles=roles, order=330)
    register_section(app, "survey.report_page", "survey.section.reports", roles=roles, order=340)
    register_section(app, "survey.bursts_page", "survey.section.bursts", roles=roles, order=345)


def store() -> SurveyStore:
    return current_state().surveys


def media_dir(app: Flask | None = None) -> str:
    return os.path.join((app or current_app).instance_path, "survey_media")


def branches() -> list:
    catalogue = current_state().catalogue
    return list(catalogue.branches) if catalogue else []


def branch_names(lang: str) -> dict[str, str]:
    return {b.id: (b.name.get(lang) or b.name["uk"]) for b in branches()}


# --- the tablet app ----------------------------------------------------------------------------
def _asset_version() -> str:
    """Changes whenever a file of the tablet app changes, so the Service Worker re-caches."""
    digest = hashlib.sha256()
    folder = os.path.dirname(STATIC_DIR)
    for name in ("survey/tablet.js", "survey/tablet.css", "kiosk.css", "kiosk.js", "i18n.js"):
        with open(os.path.join(folder, name), "rb") as fh:
            digest.update(fh.read())
    for lang in i18n.LANGUAGES:
        digest.update(i18n.js_catalogue(lang))
    template = os.path.join(os.path.dirname(folder), "templates", "survey", "tablet.html")
    with open(template, "rb") as fh:
        digest.update(fh.read())
    return digest.hexdigest()[:12]


@bp.get("/tablet/")
def tablet_app():
    response = Response(render_template("survey/tablet.html"))
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/tablet/sw.js")
def service_worker():
    body = render_template("survey/sw.js", version=_asset_version())
    response = Response(body, mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Service-Worker-Allowed"] = "/tablet/"
    return response


@bp.get("/tablet/manifest.webmanifest")
def manifest():
    return jsonify({"name": "ЦНАП — оцінка обслуговування", "short_name": "ЦНАП опитування",
                    "start_url": "/tablet/", "scope": "/tablet/", "display": "fullscreen",
                    "orientation": "any", "background_color": "#f4f6f9", "theme_color": "#0a4a85"}), 200, \
        {"Content-Type": "application/manifest+json"}


@bp.get("/tablet/static/<path:filename>")
def tablet_static(filename: str):
    return send_from_directory(STATIC_DIR, filename, max_age=0)


@bp.get("/tablet/i18n/<filename>")
def tablet_catalogue(filename: str):
    """The interface strings for tablet.js (``uk.json``, ``en.json``) under the tablet area."""
    return i18n.catalogue_response(filename)


@bp.get("/tablet/media/<filename>")
def tablet_media(filename: str):
    # Content-addressed names: a file never changes, so it may be cached for good.
    return send_from_directory(media_dir(), filename, max_age=365 * 86400, conditional=True)


# --- the sync API ------------------------------------------------------------------------------
def _api_error(status: int, code: str, message: str):
    return jsonify(error=code, message=message), status


def _tablet_from_request() -> Tablet | tuple:
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.startswith("Bearer ") else ""
    tablet = store().tablet_by_token(token) if token else None
    if tablet is None or not tablet.active:
        code = "revoked_token" if tablet is not None else "unknown_token"
        log.warning("survey API refused: %s from %s (tablet=%s)", code, request.remote_addr,
                    tablet.id if tablet else None)
        return _api_error(401, code, i18n.gettext("survey.error.token", "en"))
    return tablet


@bp.get("/api/survey/config")
def api_config():
    tablet = _tablet_from_request()
    if not isinstance(tablet, Tablet):
        return tablet
    current = store().current(tablet.survey_id)
    version, definition = current
    shift = store().current_shift(tablet.id)
    names = {lang: branch_names(lang).get(tablet.branch_id, tablet.branch_id) for lang in ("uk", "en")}
    return jsonify({
        "tablet": {"id": tablet.id, "label": tablet.label, "branch_id": tablet.branch_id, "branch": names,
                   "desk": tablet.desk},
        "survey": client_view(definition, version),
        "shift": {"id": shift.id, "admin_name": shift.admin_name} if shift else None,
        "settings": {"thanks_s": current_app.config["SURVEY_THANKS_S"], "attract_after_s": ATTRACT_AFTER_S,
                     "step_timeout_s": STEP_TIMEOUT_S, "max_batch": MAX_BATCH},
        "media": [{"url": url_for("survey.tablet_media", filename=m["filename"]), "kind": m["kind"],
                   "alt": m["alt"], "duration_s": m["duration_s"]} for m in store().media()],
    })


@bp.post("/api/survey/answers")
@body_limit(MAX_API_BYTES)
def api_answers():
    tablet = _tablet_from_request()
    if not isinstance(tablet, Tablet):
        return tablet
    wait = store().request_wait(tablet.id)
    if wait:
        log.warning("survey API: tablet %s is sending too fast (SURVEY_API_REQUESTS_PER_MIN)", tablet.id)
        response, status = _api_error(429, "rate_limited", "too many requests from this tablet; retry later")
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response, status
    try:
        body = json_body()
    except BadRequest:
        log.warning("survey API: malformed batch from tablet %s", tablet.id)
        return _api_error(400, "bad_batch", "send a JSON object {sent_at, answers: [...]}")
    try:
        results = store().ingest(tablet, body.get("answers"), body.get("sent_at"))
    except Rejected as exc:
        log.warning("survey API: batch from tablet %s refused: %s", tablet.id, exc.code)
        return _api_error(400, exc.code, exc.message)
    return jsonify(results=results)


@bp.post("/api/survey/shift")
def api_shift_start():
    tablet = _tablet_from_request()
    if not isinstance(tablet, Tablet):
        return tablet
    body = json_body(default={})
    pin = body.get("pin") if isinstance(body.get("pin"), str) else ""
    if store().pin_locked_for(tablet.id):
        return _api_error(429, "locked", "too many wrong PINs; try again later")
    shift = store().start_shift(tablet, pin)
    if shift is None:
        log.warning("survey shift: wrong PIN on tablet %s", tablet.id)
        locked = store().pin_locked_for(tablet.id)
        return _api_error(429 if locked else 403, "locked" if locked else "wrong_pin", "wrong PIN")
    log.info("survey shift: administrator %s started on tablet %s", shift.admin_id, tablet.id)
    return jsonify(shift={"id": shift.id, "admin_name": shift.admin_name})


@bp.post("/api/survey/shift/end")
def api_shift_end():
    tablet = _tablet_from_request()
    if not isinstance(tablet, Tablet):
        return tablet
    store().end_shift(tablet)
    return jsonify(shift=None)


# --- service mode: tablets -------------------------------------------------------------------
def _qr_data_uri(text: str) -> str:
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=12, border=2)
    return "data:image/svg+xml;base64," + base64.b64encode(image.to_string()).decode()


def _tablets_base() -> str:
    """Where tablets reach this kiosk: its tablets' listener when one runs (TABLET_URL, set by cnap
    kiosk). A listener on every address (0.0.0.0) is offered under the name this page was opened
    with, on the tablets' port. Staff may type another address on the page."""
    tablet_url = current_app.config.get("TABLET_URL")
    if not tablet_url:
        return request.host_url
    parts = urlsplit(tablet_url)
    if parts.hostname in ("0.0.0.0", "::", ""):
        host = urlsplit(request.host_url).hostname or "localhost"
        return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{parts.port}/"
    return tablet_url


def _tablet_link(token: str, base: str) -> str:
    base = base.strip() or _tablets_base()
    if not re.match(r"^https?://[^\s/]+/?$", base):
        base = _tablets_base()
    return base.rstrip("/") + url_for("survey.tablet_app") + "#token=" + token


def _tablets_page(link=None, link_label=None, status=200, error=None):
    lang = g.get("lang", "uk")
    return render_template("survey/service_tablets.html", tablets=store().tablets(), surveys=store().surveys(),
                           branches=branches(), names=branch_names(lang), link=link, link_label=link_label,
                           qr=_qr_data_uri(link) if link else None, base=_tablets_base(), error=error,
                           rejections=store().rejections(20)), status


@bp.route("/service/surveys/tablets", methods=["GET", "POST"])
@require_role("manager")
def tablets():
    if request.method == "GET":
        return _tablets_page()
    form = request.form
    branch_id = form.get("branch", "")
    if branch_id not in branch_names("uk"):
        return _tablets_page(status=400, error=i18n.gettext("survey.tablets.branch"))
    try:
        tablet, token = store().register_tablet(form.get("label", ""), branch_id, form.get("desk", ""),
                                                form.get("survey", ""))
    except SurveyInputError as exc:
        return _tablets_page(status=400, error=str(exc))
    audit("survey.tablet.register", tablet=tablet.id, branch=branch_id, desk=tablet.desk)
    return _tablets_page(link=_tablet_link(token, form.get("base", "")), link_label=tablet.label)


@bp.post("/service/surveys/tablets/<int:tablet_id>/revoke")
@require_role("manager")
def revoke_tablet(tablet_id: int):
    store().revoke_tablet(tablet_id)
    audit("survey.tablet.revoke", tablet=tablet_id)
    flash(i18n.gettext("survey.tablets.revoked_done"))
    return redirect(url_for("survey.tablets"))


@bp.post("/service/surveys/tablets/<int:tablet_id>/reissue")
@require_role("manager")
def reissue_tablet(tablet_id: int):
    tablet = store().tablet(tablet_id)
    if tablet is None:
        abort(404)
    token = store().reissue_token(tablet_id)
    audit("survey.tablet.reissue", tablet=tablet_id)
    return _tablets_page(link=_tablet_link(token, request.form.get("base", "")), link_label=tablet.label)


# --- service mode: desk administrators ----------------------------------------------------------
@bp.route("/service/surveys/administrators", methods=["GET", "POST"])
@require_role("manager")
def administrators():
    error, status = None, 200
    if request.method == "POST":
        branch_id = request.form.get("branch", "")
        if branch_id and branch_id not in branch_names("uk"):
            error, status = i18n.gettext("survey.tablets.branch"), 400
        else:
            try:
                admin = store().add_administrator(request.form.get("name", ""), branch_id,
                                                  request.form.get("pin", "").strip())
                audit("survey.admin.add", admin=admin.id, branch=branch_id)
                flash(i18n.gettext("survey.admins.added"))
                return redirect(url_for("survey.administrators"))
            except SurveyInputError as exc:
                error, status = str(exc), 400
    return render_template("survey/service_admins.html", admins=store().administrators(), branches=branches(),
                           names=branch_names(g.get("lang", "uk")), error=error), status


@bp.post("/service/surveys/administrators/<int:admin_id>/active")
@require_role("manager")
def administrator_active(admin_id: int):
    active = request.form.get("active") == "1"
    store().set_administrator_active(admin_id, active)
    audit("survey.admin.activate" if active else "survey.admin.deactivate", admin=admin_id)
    return redirect(url_for("survey.administrators"))


# --- service mode: definitions -------------------------------------------------------------------
def _definitions_page(problems=None, source=None, status=200):
    surveys = store().surveys()
    return render_template("survey/service_definitions.html", surveys=surveys,
                           versions={s["id"]: store().versions(s["id"]) for s in surveys},
                           problems=problems, source=source), status


def _save_definition(text: str, how: str):
    try:
        survey_id, version = store().save_definition(text, created_by=g.staff.name)
    except DefinitionError as exc:
        return None, exc.problems
    audit(how, survey=survey_id, version=version)
    flash(i18n.gettext("survey.defs.saved", id=survey_id, version=version))
    return (survey_id, version), None


@bp.get("/service/surveys/definitions")
@require_role("manager")
def definitions():
    return _definitions_page()


@bp.route("/service/surveys/definitions/<survey_id>/edit", methods=["GET", "POST"])
@require_role("manager")
def edit_definition(survey_id: str):
    current = store().current(survey_id)
    if current is None and survey_id != "new":
        abort(404)
    if request.method == "POST":
        text = request.form.get("source", "")
        if len(text.encode()) > MAX_DEFINITION_BYTES:
            problems = [f"the text is larger than {MAX_DEFINITION_BYTES // 1024} KB"]
        else:
            saved, problems = _save_definition(text, "survey.definition.save")
            if saved:
                return redirect(url_for("survey.definitions"))
        return render_template("survey/service_edit.html", survey_id=survey_id, source=text,
                               problems=problems), 400
    source = store().source(survey_id, current[0]) if current else ""
    return render_template("survey/service_edit.html", survey_id=survey_id, source=source, problems=None)


@bp.post("/service/surveys/definitions/import")
@require_role("manager")
def import_definition():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _definitions_page(problems=["choose a file"], status=400)
    data = upload.stream.read(MAX_DEFINITION_BYTES + 1)
    if len(data) > MAX_DEFINITION_BYTES:
        return _definitions_page(problems=[f"the file is larger than {MAX_DEFINITION_BYTES // 1024} KB"], status=400)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _definitions_page(problems=["the file is not UTF-8 text"], status=400)
    saved, problems = _save_definition(text, "survey.definition.import")
    if problems:
        return _definitions_page(problems=problems, status=400)
    return redirect(url_for("survey.definitions"))


@bp.get("/service/surveys/definitions/<survey_id>/<int:version>.yaml")
@require_role("manager")
def export_definition(survey_id: str, version: int):
    source = store().source(survey_id, version)
    if source is None:
        abort(404)
    return Response(source, mimetype="application/yaml", headers=attachment(f"{survey_id}-v{version}.yaml"))


@bp.post("/service/surveys/definitions/<survey_id>/activate")
@require_role("manager")
def activate_definition(survey_id: str):
    version = request.form.get("version", "")
    try:
        store().activate_version(survey_id, ascii_int(version, 1, 2**31, default=-1, name="version"))
    except SurveyInputError as exc:
        return _definitions_page(problems=[str(exc)], status=400)
    audit("survey.definition.activate", survey=survey_id, version=version)
    return redirect(url_for("survey.definitions"))


# --- service mode: attract-loop media ------------------------------------------------------------
def _media_page(error=None, status=200):
    return render_template("survey/service_media.html", media=store().media(), error=error), status


@bp.get("/service/surveys/media")
@require_role("manager")
def media_list():
    return _media_page()


@bp.post("/service/surveys/media")
@body_limit(MAX_MEDIA_BYTES + 1024 * 1024)  # the file plus its form fields
@require_role("manager")
def media_upload():
    try:
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        return _media_page(i18n.gettext("survey.media.too_big"), 413)
    if upload is None or not upload.filename:
        return _media_page(i18n.gettext("survey.media.bad_type"), 400)
    ext = os.path.splitext(upload.filename)[1].lower()
    if ext not in MEDIA_TYPES:
        return _media_page(i18n.gettext("survey.media.bad_type"), 400)
    alt_uk = clean_text(request.form.get("alt_uk", ""), multiline=False)
    alt_en = clean_text(request.form.get("alt_en", ""), multiline=False)
    if not alt_uk or not alt_en or len(alt_uk) > 300 or len(alt_en) > 300:
        return _media_page(i18n.gettext("survey.media.alt_missing"), 400)
    duration = request.form.get("duration", "8")
    duration_s = min(120, max(3, ascii_int(duration, 0, 10**6, default=8, name="duration")))
    data = upload.stream.read(MAX_MEDIA_BYTES + 1)
    if len(data) > MAX_MEDIA_BYTES:
        return _media_page(i18n.gettext("survey.media.too_big"), 413)
    if not _looks_like(ext, data):
        return _media_page(i18n.gettext("survey.media.bad_type"), 400)
    filename = hashlib.sha256(data).hexdigest()[:24] + ext
    path = os.path.join(media_dir(), filename)
    if not os.path.exists(path):
        with open(path + ".part", "wb") as fh:
            fh.write(data)
        os.replace(path + ".part", path)
    if any(m["filename"] == filename for m in store().media()):
        return redirect(url_for("survey.media_list"))
    media_id = store().add_media(filename, MEDIA_TYPES[ext][0], alt_uk, alt_en, duration_s, len(data))
    audit("survey.media.add", media=media_id, filename=filename)
    flash(i18n.gettext("survey.media.added"))
    return redirect(url_for("survey.media_list"))


def _looks_like(ext: str, data: bytes) -> bool:
    """The file's first bytes must match its extension (no HTML or scripts under a picture's name)."""
    if ext == ".png":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    if ext in (".jpg", ".jpeg"):
        return data.startswith(b"\xff\xd8\xff")
    if ext == ".webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if ext == ".mp4":
        return data[4:8] == b"ftyp"
    if ext == ".webm":
        return data.startswith(b"\x1a\x45\xdf\xa3")
    return False


@bp.post("/service/surveys/media/<int:media_id>/remove")
@require_role("manager")
def media_remove(media_id: int):
    filename = store().remove_media(media_id)
    if filename:
        try:
            os.remove(os.path.join(media_dir(), filename))
        except OSError:
            pass
        audit("survey.media.remove", media=media_id)
    return redirect(url_for("survey.media_list"))


# --- service mode: reports -----------------------------------------------------------------------
def _today():
    return datetime.now(store().zone).date()


def _admin_names() -> dict[int, str]:
    return {a.id: a.name for a in store().administrators()}


@bp.get("/service/surveys/reports")
@require_role("manager")
def report_page():
    lang = g.get("lang", "uk")
    filters = reports.Filters.from_args(request.args, _today())
    group = request.args.get("group", "desk")
    group = group if group in reports.GROUPS else "desk"
    data = reports.report(store(), filters, group)
    names = branch_names(lang)
    admin_names = _admin_names()
    bucket_key = "survey.report.bucket." + data["bucket"]   # keys listed under RUNTIME_KEYS
    bucket = i18n.gettext(bucket_key)
    trend_chart = charts.trend_svg(
        [(t["bucket"], t["figures"].csat, t["figures"].n) for t in data["trend"]],
        i18n.gettext("survey.report.trend"), i18n.gettext("survey.report.trend_desc", bucket=bucket), "CSAT, %")
    marks = [i18n.gettext("survey.report.mark", n=i) for i in range(1, 6)]
    dist_chart = charts.distribution_svg(data["totals"].distribution, marks, i18n.gettext("survey.report.distribution"),
                                         i18n.gettext("survey.report.distribution_desc"))
    return render_template("survey/service_reports.html", data=data, filters=filters, group=group,
                           branches=branches(), names=names, desks=store().desks(), admins=store().administrators(),
                           admin_names=admin_names, trend_chart=trend_chart, dist_chart=dist_chart, marks=marks,
                           query=filters.query_args())


REPORT_KINDS = ("answers", "summary")   # raw answers, or the figures per group


@bp.get("/service/surveys/reports.csv")
@require_role("manager")
def report_csv():
    filters = reports.Filters.from_args(request.args, _today())
    admin_names = _admin_names()
    kind = request.args.get("kind", "answers")
    if kind not in REPORT_KINDS:
        abort(400, description=f"kind must be one of: {', '.join(REPORT_KINDS)}")
    group = request.args.get("group", "desk")
    group = group if group in reports.GROUPS else "desk"
    audit("survey.report.export", kind=kind, **filters.query_args())

    def generate():
        buffer = io.StringIO()
        writer = csvsafe.writer(buffer)   # no cell a spreadsheet would run as a formula
        buffer.write("\ufeff")  # Excel opens UTF-8 Ukrainian text correctly only with a BOM
        if kind == "summary":
            data = reports.report(store(), filters, group, comments_limit=0)
            writer.writerow([group, "answers", "csat_pct", "mean_1_5", "loyalty_index", "nps_answers"])
            for row in data["breakdown"]:
                f = row["figures"]
                key = admin_names.get(row["key"][0], "") if group == "admin" else "/".join(map(str, row["key"]))
                writer.writerow([key, f.n, _fmt(f.csat), _fmt(f.mean, 2), _fmt(f.loyalty), f.nps_n])
            yield buffer.getvalue()
            return
        writer.writerow(reports.CSV_COLUMNS)
        for i, row in enumerate(reports.csv_rows(store(), filters, admin_names)):
            writer.writerow(row)
            if i % 1000 == 999:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    name = f"survey-{kind}-{filters.date_from}-{filters.date_to}.csv"
    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers=attachment(name))


def _fmt(value, digits=1):
    return "" if value is None else csvsafe.Number(f"{value:.{digits}f}")


# --- service mode: review of flagged bursts ------------------------------------------------------
BURSTS_PER_PAGE = 20
BURST_ERROR_STATUS = {"unknown_burst": 404, "already_reviewed": 409, "burst_changed": 409, "bad_decision": 400}


def _burst_view(burst: dict, lang: str, admin_names: dict[int, str]) -> dict:
    zone = store().zone
    first = datetime.fromtimestamp(burst["first_at"], zone)
    last = datetime.fromtimestamp(burst["last_at"], zone)
    definition = store().definition(burst["survey_id"], burst["version"])
    return {**burst,
            "span": first.strftime("%d.%m.%Y %H:%M:%S") + " — " + last.strftime(
                "%H:%M:%S" if last.date() == first.date() else "%d.%m.%Y %H:%M:%S"),
            "main_label": definition.label("main", burst["main"], lang) if definition else burst["main"],
            "admins": [admin_names.get(a) or i18n.gettext("survey.report.nobody") for a in burst["admin_ids"]]}


def _bursts_page(error=None, status=200):
    lang = g.get("lang", "uk")
    page = request.args.get("page", "1")
    page = max(1, ascii_int(page, 0, 10**6, default=1, name="page"))
    total, bursts = store().pending_bursts(BURSTS_PER_PAGE, (page - 1) * BURSTS_PER_PAGE)
    pages = max(1, -(-total // BURSTS_PER_PAGE))
    if page > pages:   # a stale page number after reviews emptied the last page
        page = pages
        total, bursts = store().pending_bursts(BURSTS_PER_PAGE, (page - 1) * BURSTS_PER_PAGE)
    admin_names = _admin_names()
    first = (page - 1) * BURSTS_PER_PAGE + 1
    return render_template(
        "survey/service_bursts.html", bursts=[_burst_view(b, lang, admin_names) for b in bursts],
        reviewed=[_burst_view(b, lang, admin_names) for b in store().reviewed_bursts(10)],
        total=total, page=page, pages=pages, first=first, last=first + len(bursts) - 1,
        names=branch_names(lang), rules=store().rules, error=error), status


@bp.get("/service/surveys/bursts")
@require_role("manager")
def bursts_page():
    return _bursts_page()


@bp.post("/service/surveys/bursts/<int:burst_id>/review")
@require_role("manager")
def review_burst(burst_id: int):
    decision = request.form.get("decision", "")
    seen = request.form.get("answers", "")
    try:
        # The number of answers the manager saw: a decision never covers answers they did not see.
        burst = store().review_burst(burst_id, decision, reviewer=g.staff.name, reviewer_id=g.staff.id,
                                     expected_answers=ascii_int(seen, 0, 10**9, default=-1, name="answers"))
    except BurstReviewError as exc:
        log.info("burst review refused: burst=%s decision=%r: %s", burst_id, decision[:20], exc.code)
        error_key = "survey.bursts.error." + exc.code   # keys listed under RUNTIME_KEYS
        return _bursts_page(error=i18n.gettext(error_key),
                            status=BURST_ERROR_STATUS.get(exc.code, 400))
    audit("survey.burst.review", burst=burst_id, decision=decision, answers=burst["answers"],
          tablet=burst["tablet_id"], branch=burst["branch_id"], desk=burst["desk"])
    if decision == "genuine":
        done = i18n.ngettext("survey.bursts.done.genuine", "survey.bursts.done.genuine.plural", burst["answers"])
    else:
        done = i18n.ngettext("survey.bursts.done.excluded", "survey.bursts.done.excluded.plural", burst["answers"])
    flash(done)
    return redirect(url_for("survey.bursts_page"))
