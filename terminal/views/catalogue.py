"""The visitor's catalogue: home, categories, service cards, life-situation packages, branches,
search (HTML for no-JS, JSON for instant results as the visitor types)."""
from __future__ import annotations

import os
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, abort, current_app, g, jsonify, render_template, request, url_for

from payments.money import format_uah
from terminal import i18n
from terminal.state import current_state, state
from terminal.catalogue.model import tr
from terminal.catalogue.search import SearchIndex
from terminal.catalogue.io import ensure_catalogue

bp = Blueprint("catalogue", __name__)

MAX_QUERY_CHARS = 200
WEEKDAYS = {"uk": ("Понеділок", "Вівторок", "Середа", "Четвер", "Пʼятниця", "Субота", "Неділя"),
            "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")}
WEEKDAYS_SHORT = {"uk": ("пн", "вт", "ср", "чт", "пт", "сб", "нд"),
                  "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}

# Interface strings looked up under names built at run time (in templates or from variables),
# listed so that pybabel extracts them; their texts are in terminal/translations/.
RUNTIME_KEYS = (
    i18n.N_("card.category"),
    i18n.N_("card.commission_fixed"),
    i18n.N_("category.services"),
    i18n.N_("search.kind.package"),
    i18n.N_("search.kind.service"),
)


def init_app(app: Flask) -> None:
    db_path = os.path.join(app.instance_path, app.config["CATALOGUE_DB"])
    source = app.config["CATALOGUE_SOURCE"] or None
    load_catalogue(app, ensure_catalogue(db_path, source))
    kiosk_state = state(app)
    kiosk_state.clock = lambda: datetime.now(ZoneInfo(app.config["TIMEZONE"]))
    kiosk_state.health["catalogue"] = lambda: (
        len(kiosk_state.catalogue) > 0, {"services": len(kiosk_state.catalogue)})
    app.add_template_filter(lambda kop: format_uah(kop, g.get("lang", "uk")), "money")
    app.add_template_global(tr, "tr")


def load_catalogue(app: Flask, catalogue) -> None:
    """Swap in a new catalogue snapshot and its search index (after an import)."""
    index = SearchIndex.build(catalogue.services.values(), catalogue.packages.values())
    kiosk_state = state(app)
    kiosk_state.catalogue = catalogue
    kiosk_state.search = index


def catalogue():
    return current_state().catalogue


def branch_status_text(branch, now: datetime, lang: str) -> tuple[bool, str]:
    status = branch.status_at(now.replace(tzinfo=None))
    if status.open:
        return True, i18n.gettext("branch.open_until", lang, time=status.closes_at.strftime("%H:%M"))
    if status.opens_at is None:
        return False, i18n.gettext("branch.closed", lang)
    if status.opens_at.date() == now.date():
        return False, i18n.gettext("branch.closed_opens_today", lang, time=status.opens_at.strftime("%H:%M"))
    day = WEEKDAYS_SHORT[lang][status.opens_at.weekday()]
    if (status.opens_at.date() - now.date()).days >= 7:
        day = status.opens_at.strftime("%d.%m")
    return False, i18n.gettext("branch.closed_opens", lang, day=day, time=status.opens_at.strftime("%H:%M"))


def week_rows(branch, lang: str) -> list[tuple[str, str]]:
    """Monday…Sunday with hours and breaks, as the branch page shows them."""
    rows = []
    for day in range(7):
        intervals = branch.week.get(day, ())
        if not intervals:
            rows.append((WEEKDAYS[lang][day], i18n.gettext("branch.day_off", lang)))
            continue
        text = f"{intervals[0].start:%H:%M}–{intervals[-1].end:%H:%M}"
        breaks = [i18n.gettext("branch.break", lang, start=f"{a.end:%H:%M}", end=f"{b.start:%H:%M}")
                  for a, b in zip(intervals, intervals[1:])]
        rows.append((WEEKDAYS[lang][day], ", ".join([text] + breaks)))
    return rows


def commission_text(commission, lang: str) -> str:
    if commission.kind == "fixed":
        return format_uah(commission.fixed_kop, lang)
    if commission.kind == "percent":
        bounds = ""
        if commission.min_kop:
            bounds += i18n.gettext("card.commission_min", lang, amount=format_uah(commission.min_kop, lang))
        if commission.max_kop:
            bounds += i18n.gettext("card.commission_max", lang, amount=format_uah(commission.max_kop, lang))
        percent = f"{commission.percent_bp / 100:g}".replace(".", "," if lang == "uk" else ".")
        return i18n.gettext("card.commission_percent", lang, percent=percent, bounds=bounds)
    return i18n.gettext("card.commission_none", lang)


def pay_url(service_id: str) -> str | None:
    """Where the Pay button leads, once the payment blueprint is installed."""
    if "pay.start" in current_app.view_functions:
        return url_for("pay.start", service_id=service_id)
    return None


def run_search(query: str, limit: int = 20):
    query = (query or "")[:MAX_QUERY_CHARS]
    hits = current_state().search.search(query, lang=g.lang, limit=limit)
    cat = catalogue()
    results = []
    for hit in hits:
        record = cat.service(hit.id) if hit.kind == "service" else cat.package(hit.id)
        if record is None:
            continue
        endpoint = "catalogue.service" if hit.kind == "service" else "catalogue.package"
        results.append({
            "kind": hit.kind, "id": hit.id, "segments": hit.name_segments,
            "url": url_for(endpoint, **{f"{hit.kind}_id": hit.id}),
            "hint": tr(record.short if hit.kind == "service" else record.description, g.lang),
            "paid": hit.kind == "service" and record.paid,
        })
    return results


@bp.get("/")
def home():
    cat = catalogue()
    now = current_state().clock()
    branches = [(b, *branch_status_text(b, now, g.lang)) for b in cat.branches]
    counts = {c.id: len(cat.services_in(c.id)) for c in cat.categories}
    return render_template("catalogue/home.html", cat=cat, branches=branches, counts=counts,
                           pay_index=url_for("pay.index") if "pay.index" in current_app.view_functions else None)


@bp.get("/search")
def search():
    query = request.args.get("q", "")
    results = run_search(query) if query.strip() else []
    return render_template("catalogue/search.html", query=query[:MAX_QUERY_CHARS], results=results)


@bp.get("/api/search")
def search_api():
    query = request.args.get("q", "")
    results = run_search(query) if query.strip() else []
    # Texts around the results come from the page's catalogue (static/i18n.js), not from here.
    return jsonify(query=query[:MAX_QUERY_CHARS], results=results)


@bp.get("/category/<category_id>")
def category(category_id: str):
    cat = catalogue()
    found = cat.category(category_id)
    if found is None:
        abort(404)
    return render_template("catalogue/category.html", cat=cat, category=found,
                           services=cat.services_in(category_id))


@bp.get("/service/<service_id>")
def service(service_id: str):
    cat = catalogue()
    found = cat.service(service_id)
    if found is None:
        abort(404)
    return render_template("catalogue/service.html", cat=cat, s=found, category=cat.category(found.category),
                           packages=cat.packages_with(found.id), pay_url=pay_url(found.id) if found.paid else None,
                           commission=commission_text(found.fee.commission, g.lang) if found.fee else None)


@bp.get("/package/<package_id>")
def package(package_id: str):
    cat = catalogue()
    found = cat.package(package_id)
    if found is None:
        abort(404)
    return render_template("catalogue/package.html", cat=cat, p=found, services=cat.package_services(found),
                           pay_url=pay_url)


@bp.get("/branches")
def branches():
    cat = catalogue()
    now = current_state().clock()
    rows = [(b, *branch_status_text(b, now, g.lang), week_rows(b, g.lang),
             sorted((d, i) for d, i in b.special_days.items() if d >= now.date())[:6])
            for b in cat.branches]
    return render_template("catalogue/branches.html", rows=rows)
