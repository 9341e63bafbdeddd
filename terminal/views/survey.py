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
from terminal.limits import ascii_int, body_limit, json_body
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

# Strings the tablet shows; sent to it in its configuration so it works offline in both languages.
TABLET_STRINGS = {
    "tablet.title": ("Оцінка обслуговування", "Service rating"),
    "tablet.unpaired.title": ("Планшет не зареєстровано", "This tablet is not registered"),
    "tablet.unpaired.body": ("Відкрийте на цьому планшеті посилання з сервісного режиму (розділ «Планшети опитувань»).",
                             "Open the link from service mode (section “Survey tablets”) on this tablet."),
    "tablet.revoked.body": ("Доступ цього планшета відкликано. Зверніться до керівника ЦНАП.",
                            "This tablet's access was revoked. Please ask the ЦНАП manager."),
    "tablet.loading": ("Завантаження…", "Loading…"),
    "tablet.skip": ("Пропустити", "Skip"),
    "tablet.send": ("Надіслати", "Send"),
    "tablet.next": ("Далі", "Next"),
    "tablet.nps.low": ("0 — зовсім ні", "0 — not at all"),
    "tablet.nps.high": ("10 — обов’язково", "10 — certainly"),
    "tablet.comment.hint": ("До {max} символів. Не залишайте тут номер телефону чи інші особисті дані.",
                            "Up to {max} characters. Please do not leave your phone number or other personal data."),
    "tablet.attract.prompt": ("Торкніться екрана, щоб оцінити наше обслуговування",
                              "Touch the screen to rate our service"),
    "tablet.lang": ("English", "Українська"),
    "tablet.contrast": ("Контраст", "Contrast"),
    "tablet.text_size": ("Розмір тексту: {pct} %", "Text size: {pct} %"),
    "tablet.staff": ("Адміністратор", "Administrator"),
    "tablet.staff.title": ("Зміна адміністратора", "Administrator shift"),
    "tablet.staff.on_duty": ("Зараз працює: {name}", "On duty: {name}"),
    "tablet.staff.nobody": ("Зміну не розпочато.", "No shift started."),
    "tablet.staff.pin": ("PIN-код адміністратора", "Administrator PIN"),
    "tablet.staff.start": ("Почати зміну", "Start shift"),
    "tablet.staff.end": ("Завершити зміну", "End shift"),
    "tablet.staff.back": ("Повернутися до опитування", "Back to the survey"),
    "tablet.staff.wrong": ("Неправильний PIN-код.", "Wrong PIN."),
    "tablet.staff.locked": ("Забагато спроб. Спробуйте пізніше.", "Too many attempts. Try again later."),
    "tablet.staff.offline": ("Немає зв’язку із сервером. Зміну можна почати, коли зв’язок відновиться.",
                             "No connection to the server. The shift can be started once it is back."),
    "tablet.staff.started": ("Зміну розпочато: {name}", "Shift started: {name}"),
    "tablet.staff.desk": ("Планшет: {label}, {desk}, {branch}", "Tablet: {label}, {desk}, {branch}"),
    "tablet.staff.fullscreen": ("На весь екран", "Full screen"),
    "tablet.status.queued": ("Очікують надсилання: {n}", "Waiting to be sent: {n}"),
    "tablet.status.synced": ("Усі відповіді надіслано", "All answers sent"),
    "tablet.status.offline": ("Немає зв’язку — відповіді збережено на планшеті", "Offline — answers are kept on the tablet"),
    "tablet.status.rejected": ("Відхилено сервером: {n}", "Rejected by the server: {n}"),
    "tablet.faces": ("Оцінки", "Ratings"),
}

i18n.register(TABLET_STRINGS)
i18n.register({
    "survey.section.tablets": ("Планшети опитувань", "Survey tablets"),
    "survey.section.admins": ("Адміністратори на місцях", "Desk administrators"),
    "survey.section.definitions": ("Анкети опитувань", "Survey definitions"),
    "survey.section.media": ("Заставка між опитуваннями", "Attract loop media"),
    "survey.section.reports": ("Звіти опитувань", "Survey reports"),
    "survey.tablets.register": ("Зареєструвати планшет", "Register a tablet"),
    "survey.tablets.label": ("Назва планшета", "Tablet name"),
    "survey.tablets.branch": ("Відділ (філія)", "Branch"),
    "survey.tablets.desk": ("Робоче місце (вікно)", "Desk"),
    "survey.tablets.survey": ("Анкета", "Survey"),
    "survey.tablets.base": ("Адреса сервера для планшетів", "Server address for tablets"),
    "survey.tablets.base_hint": ("Адреса, за якою планшети в мережі ЦНАП бачать цей термінал.",
                                 "The address at which tablets on the ЦНАП network reach this terminal."),
    "survey.tablets.link_title": ("Посилання для планшета «{label}»", "Link for tablet “{label}”"),
    "survey.tablets.link_body": ("Відкрийте це посилання на планшеті або відскануйте QR-код. Посилання показано лише зараз.",
                                 "Open this link on the tablet or scan the QR code. The link is shown only now."),
    "survey.tablets.qr_alt": ("QR-код посилання для планшета", "QR code of the tablet link"),
    "survey.tablets.none": ("Планшетів ще немає.", "No tablets yet."),
    "survey.tablets.status": ("Стан", "Status"),
    "survey.tablets.active": ("активний", "active"),
    "survey.tablets.revoked": ("відкликано", "revoked"),
    "survey.tablets.last_seen": ("Останній зв’язок", "Last seen"),
    "survey.tablets.never": ("ще не було", "never"),
    "survey.tablets.revoke": ("Відкликати", "Revoke"),
    "survey.tablets.reissue": ("Нове посилання", "New link"),
    "survey.tablets.registered": ("Планшет зареєстровано.", "Tablet registered."),
    "survey.tablets.revoked_done": ("Доступ планшета відкликано.", "Tablet access revoked."),
    "survey.tablets.actions": ("Дії", "Actions"),
    "survey.tablets.rejections": ("Останні відхилені відповіді", "Recently rejected answers"),
    "survey.tablets.reason": ("Причина", "Reason"),
    "survey.admins.add": ("Додати адміністратора", "Add an administrator"),
    "survey.admins.name": ("Ім’я та ініціал прізвища", "First name and initial"),
    "survey.admins.name_hint": ("Наприклад: Олена К. (повне прізвище не потрібне).", "For example: Olena K. (no full surname needed)."),
    "survey.admins.branch_any": ("будь-який відділ", "any branch"),
    "survey.admins.pin": ("PIN-код (6–12 цифр)", "PIN (6–12 digits)"),
    "survey.admins.added": ("Адміністратора додано.", "Administrator added."),
    "survey.admins.deactivate": ("Вимкнути", "Deactivate"),
    "survey.admins.activate": ("Увімкнути", "Activate"),
    "survey.admins.none": ("Адміністраторів ще немає.", "No administrators yet."),
    "survey.admins.inactive": ("вимкнено", "inactive"),
    "survey.defs.current": ("Поточна версія", "Current version"),
    "survey.defs.versions": ("Версії", "Versions"),
    "survey.defs.version": ("Версія", "Version"),
    "survey.defs.created": ("Створено", "Created"),
    "survey.defs.by": ("Ким", "By"),
    "survey.defs.answers": ("Відповідей", "Answers"),
    "survey.defs.edit": ("Редагувати", "Edit"),
    "survey.defs.export": ("Завантажити файл", "Download file"),
    "survey.defs.activate": ("Зробити поточною", "Make current"),
    "survey.defs.source": ("Текст анкети (YAML або JSON)", "Survey text (YAML or JSON)"),
    "survey.defs.save": ("Зберегти як нову версію", "Save as a new version"),
    "survey.defs.saved": ("Збережено: анкета {id}, версія {version}.", "Saved: survey {id}, version {version}."),
    "survey.defs.import": ("Імпортувати файл анкети", "Import a survey file"),
    "survey.defs.file": ("Файл (.yaml, .yml або .json)", "File (.yaml, .yml or .json)"),
    "survey.defs.import_submit": ("Імпортувати", "Import"),
    "survey.defs.problems": ("Анкету не збережено. Виправте:", "The survey was not saved. Please fix:"),
    "survey.defs.help": ("Кожне збереження створює нову версію; старі відповіді залишаються прив’язаними до своєї версії.",
                         "Each save creates a new version; old answers stay linked to the version they answered."),
    "survey.defs.new": ("Нова анкета", "New survey"),
    "survey.media.upload": ("Додати зображення або відео", "Add an image or video"),
    "survey.media.file": ("Файл (PNG, JPEG, WebP, MP4, WebM; до 50 МБ)", "File (PNG, JPEG, WebP, MP4, WebM; up to 50 MB)"),
    "survey.media.alt_uk": ("Опис українською", "Description in Ukrainian"),
    "survey.media.alt_en": ("Опис англійською", "Description in English"),
    "survey.media.duration": ("Тривалість показу зображення, с", "How long an image is shown, s"),
    "survey.media.none": ("Заставок ще немає: між опитуваннями планшет показує запрошення.",
                          "No media yet: between surveys the tablet shows an invitation."),
    "survey.media.remove": ("Видалити", "Remove"),
    "survey.media.added": ("Файл додано.", "File added."),
    "survey.media.bad_type": ("Цей тип файлу не підтримується.", "This file type is not supported."),
    "survey.media.too_big": ("Файл завеликий (до 50 МБ).", "The file is too large (up to 50 MB)."),
    "survey.media.alt_missing": ("Опишіть зміст обома мовами (для людей, які не бачать екрана).",
                                 "Describe the content in both languages (for people who cannot see the screen)."),
    "survey.media.kind": ("Тип", "Kind"),
    "survey.media.preview": ("Перегляд", "Preview"),
    "survey.report.filters": ("Фільтри", "Filters"),
    "survey.report.from": ("З дати", "From"),
    "survey.report.to": ("По дату", "To"),
    "survey.report.all": ("усі", "all"),
    "survey.report.admin": ("Адміністратор", "Administrator"),
    "survey.report.group": ("Розбивка за", "Break down by"),
    "survey.report.group.branch": ("відділами", "branch"),
    "survey.report.group.desk": ("робочими місцями", "desk"),
    "survey.report.group.admin": ("адміністраторами", "administrator"),
    "survey.report.flagged_include": ("Враховувати позначені для перевірки серії", "Include bursts flagged for review"),
    "survey.report.show": ("Показати", "Show"),
    "survey.report.csv": ("Експорт відповідей (CSV)", "Export answers (CSV)"),
    "survey.report.csv_summary": ("Експорт розбивки (CSV)", "Export breakdown (CSV)"),
    "survey.report.count": ("Відповідей", "Answers"),
    "survey.report.csat": ("Задоволені (CSAT)", "Satisfied (CSAT)"),
    "survey.report.mean": ("Середня оцінка (з 5)", "Mean score (of 5)"),
    # U+2060 (word joiner): the range is one word; a narrow column must not split it after "…".
    "survey.report.loyalty": ("Індекс лояльності (−100…\u2060100)", "Loyalty index (−100…\u2060100)"),
    "survey.report.loyalty_n": ("відповіли на питання про рекомендацію: {n}", "answered the recommendation question: {n}"),
    "survey.report.repeats": ("Повторні натискання (не враховано): {n}", "Repeated presses (not counted): {n}"),
    "survey.report.late": ("Надіслані із запізненням, коли планшет був на зв’язку (не враховано): {n}",
                           "Sent late although the tablet was online (not counted): {n}"),
    "survey.report.flagged": ("Позначено для перевірки (серії однакових відповідей): {n}",
                              "Flagged for review (bursts of identical answers): {n}"),
    "survey.report.trend": ("Динаміка задоволеності", "Satisfaction trend"),
    "survey.report.trend_desc": ("Частка задоволених відвідувачів (%) за кожен {bucket} обраного періоду.",
                                 "Share of satisfied visitors (%) for each {bucket} of the chosen period."),
    "survey.report.bucket.day": ("день", "day"),
    "survey.report.bucket.week": ("тиждень", "week"),
    "survey.report.bucket.month": ("місяць", "month"),
    "survey.report.period": ("Період", "Period"),
    "survey.report.distribution": ("Розподіл оцінок", "Distribution of ratings"),
    "survey.report.distribution_desc": ("Кількість відповідей з кожною оцінкою, від найгіршої до найкращої.",
                                        "Number of answers with each rating, worst to best."),
    "survey.report.mark": ("Оцінка {n}", "Rating {n}"),
    "survey.report.reasons": ("Причини (відповіді на уточнювальні питання)", "Reasons (follow-up answers)"),
    "survey.report.question": ("Питання", "Question"),
    "survey.report.answer": ("Відповідь", "Answer"),
    "survey.report.share": ("Частка", "Share"),
    "survey.report.comments": ("Коментарі", "Comments"),
    "survey.report.comments_note": ("Номери телефонів та адреси e-mail приховано.", "Phone numbers and e-mail addresses are masked."),
    "survey.report.no_data": ("За цей період відповідей немає.", "No answers in this period."),
    "survey.report.when": ("Коли", "When"),
    "survey.report.where": ("Де", "Where"),
    "survey.report.rating": ("Оцінка", "Rating"),
    "survey.report.text": ("Текст", "Text"),
    "survey.report.nobody": ("без зміни", "no shift"),
    "survey.report.summary": ("Підсумок", "Summary"),
    "survey.report.trend_table": ("Дані графіка", "Chart data"),
    "survey.report.reviewed": ("Перевірено керівником: зараховано як справжні — {genuine}, залишено поза звітами — {excluded}.",
                               "Reviewed by a manager: counted as genuine — {genuine}, kept excluded — {excluded}."),
    "survey.report.review_link": ("Перевірити позначені серії", "Review flagged bursts"),
    "survey.section.bursts": ("Перевірка серій однакових відповідей", "Review flagged bursts"),
    "survey.bursts.intro": ("Серія — це {size} або більше однакових відповідей поспіль на одному планшеті протягом {window} с. "
                            "Такі відповіді нічого не втрачають: вони чекають на ваше рішення.",
                            "A burst is {size} or more identical answers in a row on one tablet within {window} s. "
                            "Nothing in them is lost: they wait for your decision."),
    "survey.bursts.genuine_help": ("«Справжні — зарахувати»: відповіді враховуються в усіх звітах як звичайні.",
                                   "“Genuine — count them”: the answers are counted in every report like any other."),
    "survey.bursts.excluded_help": ("«Залишити поза звітами»: відповіді не враховуються ніколи, навіть якщо у звіті позначено "
                                    "«Враховувати позначені для перевірки серії». Вони залишаються збереженими (і в експорті CSV).",
                                    "“Keep excluded”: the answers are never counted, even when “Include bursts flagged for review” "
                                    "is ticked in a report. They stay stored (and in the CSV export)."),
    "survey.bursts.pending_help": ("Серії, що чекають на перевірку, звіти показують згідно з цим прапорцем. Рішення остаточне "
                                   "і записується до журналу дій.",
                                   "Bursts waiting for review follow that tick box in the reports. A decision is final and "
                                   "is written to the audit log."),
    "survey.bursts.pending": ("Чекають на перевірку", "Waiting for review"),
    "survey.bursts.count": ("Серій, що чекають на перевірку: {total}. Показано {first}–{last}.",
                            "Bursts waiting for review: {total}. Showing {first}–{last}."),
    "survey.bursts.none": ("Немає серій, що чекають на перевірку.", "No bursts are waiting for review."),
    "survey.bursts.tablet": ("Планшет", "Tablet"),
    "survey.bursts.span": ("Час (перша — остання)", "Time (first — last)"),
    "survey.bursts.answer": ("Повторена відповідь", "Repeated answer"),
    "survey.bursts.answers": ("Відповідей", "Answers"),
    "survey.bursts.decision": ("Рішення", "Decision"),
    "survey.bursts.genuine": ("Справжні — зарахувати", "Genuine — count them"),
    "survey.bursts.excluded": ("Залишити поза звітами", "Keep excluded"),
    "survey.bursts.decided.genuine": ("зараховано як справжні", "counted as genuine"),
    "survey.bursts.decided.excluded": ("залишено поза звітами", "kept excluded"),
    "survey.bursts.done.genuine": ("Серію зараховано: {n} відповідей тепер враховуються у звітах.",
                                   "Burst counted: {n} answers now count in the reports."),
    "survey.bursts.done.excluded": ("Серію залишено поза звітами: {n} відповідей не враховуються.",
                                    "Burst kept excluded: {n} answers are not counted."),
    "survey.bursts.recent": ("Нещодавно перевірені", "Recently reviewed"),
    "survey.bursts.reviewed_by": ("Хто і коли", "Who and when"),
    "survey.bursts.previous": ("Попередня сторінка", "Previous page"),
    "survey.bursts.next": ("Наступна сторінка", "Next page"),
    "survey.bursts.pages": ("Сторінки", "Pages"),
    "survey.bursts.error.unknown_burst": ("Такої серії немає. Нічого не змінено.", "There is no such burst. Nothing was changed."),
    "survey.bursts.error.already_reviewed": ("Цю серію вже перевірено раніше. Нічого не змінено.",
                                             "This burst was already reviewed. Nothing was changed."),
    "survey.bursts.error.burst_changed": ("Поки сторінка була відкрита, до серії додалися відповіді. Нічого не змінено — "
                                          "перегляньте серію ще раз.",
                                          "Answers joined this burst while the page was open. Nothing was changed — "
                                          "please look at it again."),
    "survey.bursts.error.bad_decision": ("Невідоме рішення. Нічого не змінено.", "Unknown decision. Nothing was changed."),
    "survey.error.token": ("Невідомий або відкликаний ключ планшета.", "Unknown or revoked tablet key."),
    "survey.error.bad_request": ("Запит має неправильний формат.", "The request is malformed."),
})


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
    for name in ("survey/tablet.js", "survey/tablet.css", "kiosk.css", "kiosk.js"):
        with open(os.path.join(folder, name), "rb") as fh:
            digest.update(fh.read())
    template = os.path.join(os.path.dirname(folder), "templates", "survey", "tablet.html")
    with open(template, "rb") as fh:
        digest.update(fh.read())
    return digest.hexdigest()[:12]


@bp.get("/tablet/")
def tablet_app():
    response = Response(render_template("survey/tablet.html", strings=TABLET_STRINGS))
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
        "ui": {lang: {key: texts[i] for key, texts in TABLET_STRINGS.items()} for i, lang in enumerate(("uk", "en"))},
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
    return Response(source, mimetype="application/yaml", headers={
        "Content-Disposition": f"attachment; filename={survey_id}-v{version}.yaml"})


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
    bucket = i18n.gettext("survey.report.bucket." + data["bucket"])
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


@bp.get("/service/surveys/reports.csv")
@require_role("manager")
def report_csv():
    filters = reports.Filters.from_args(request.args, _today())
    admin_names = _admin_names()
    kind = request.args.get("kind", "answers")
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
                    headers={"Content-Disposition": f"attachment; filename={name}"})


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
        return _bursts_page(error=i18n.gettext("survey.bursts.error." + exc.code),
                            status=BURST_ERROR_STATUS.get(exc.code, 400))
    audit("survey.burst.review", burst=burst_id, decision=decision, answers=burst["answers"],
          tablet=burst["tablet_id"], branch=burst["branch_id"], desk=burst["desk"])
    flash(i18n.gettext("survey.bursts.done." + decision, n=burst["answers"]))
    return redirect(url_for("survey.bursts_page"))
