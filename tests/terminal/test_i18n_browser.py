"""The browser's side of the catalogues (static/i18n.js) in real Chromium: the same plural forms
as Python, the Plural-Forms parser against gettext's own, and the screens that use it."""
from __future__ import annotations

import gettext
import re

import pytest
from babel.messages.plurals import PLURALS
from playwright.sync_api import expect

from terminal import i18n
from terminal.state import state

pytestmark = pytest.mark.browser

COUNTS = list(range(0, 130)) + [1001, 1011, 1021, 1112, 10**6 + 2]


def test_plural_forms_in_the_browser_match_python(live_server, page):
    page.goto(live_server.url + "/")
    assert page.evaluate("cnapI18n.ready.then(() => cnapI18n.gettext('prefs.text_size_value', {pct: 125}))") \
        == "Розмір тексту: 125 %"
    for lang in i18n.LANGUAGES:
        if lang == "en":   # a kiosk page links the catalogue of its own language only
            page.get_by_role("button", name="English").tap()
            expect(page.locator("html")).to_have_attribute("lang", "en")
        shown = page.evaluate("""async ([lang, counts]) => {
            await cnapI18n.load(lang);
            return counts.map(n => cnapI18n.ngettext('category.count', 'category.count.plural', n, null, lang));
        }""", [lang, COUNTS])
        assert shown == [i18n.ngettext("category.count", "category.count.plural", n, lang) for n in COUNTS]


def test_the_plural_forms_parser_agrees_with_gettext_for_every_language_babel_knows(live_server, page):
    # Without eval (the CSP forbids it), i18n.js parses the Plural-Forms expression itself; the
    # stdlib's gettext.c2py is the reference for every rule in Babel's table.
    page.goto(live_server.url + "/")
    rules = {lang: f"nplurals={n}; plural={expr};" for lang, (n, expr) in PLURALS.items()}
    indices = page.evaluate("""([rules, counts]) => {
        const out = {};
        for (const [lang, rule] of Object.entries(rules)) {
            const index = cnapI18n.compilePlural(rule);
            out[lang] = counts.map(index);
        }
        return out;
    }""", [rules, COUNTS])
    for lang, (_n, expr) in PLURALS.items():
        reference = gettext.c2py(expr)
        assert indices[lang] == [reference(n) for n in COUNTS], lang


def test_instant_search_counts_with_the_right_plural_form(live_server, page):
    page.goto(live_server.url + "/")
    page.locator("#q").fill("паспорт")
    count = page.locator("#result-count")
    expect(count).to_have_text(re.compile(r"Знайдено \d+ результат"))
    n = int(re.search(r"\d+", count.text_content()).group())
    assert count.text_content() == i18n.ngettext("search.count", "search.count.plural", n, "uk")
    page.locator("#q").fill("zzzzzzzzzz")
    expect(count).to_have_text(i18n.gettext("search.none", "uk"))


def test_the_tablet_switches_language_from_its_catalogues(app, live_server, page):
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    _tablet, token = store.register_tablet("Планшет 1", branch, "Вікно 1", "desk")
    page.goto(f"{live_server.url}/tablet/#token={token}")
    expect(page.locator("#main-question")).to_have_text("Як вас обслужили сьогодні?")
    page.locator("#lang-toggle").tap()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#lang-toggle")).to_have_text("Українська")
    page.locator("#staff-open").tap()
    expect(page.get_by_role("button", name="Start shift")).to_be_visible()
    expect(page.locator("#sync-status")).to_have_text("All answers sent")
    expect(page.locator("#size-label")).to_have_text("Text size: 100 %")
