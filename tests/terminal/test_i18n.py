"""Interface strings at run time: a missing translation falls back to Ukrainian and is logged
once, an unknown key shows the key (never an error page), Ukrainian plurals have three forms."""
import logging

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from flask import render_template_string
from hypothesis import given, strategies as st

from terminal import i18n


def _compile(folder, lang, entries):
    catalog = Catalog(locale=lang, domain=i18n.DOMAIN)
    for key, text in entries.items():
        catalog.add(key, text)
    target = folder / lang / "LC_MESSAGES"
    target.mkdir(parents=True)
    with open(target / "messages.mo", "wb") as fh:
        write_mo(fh, catalog)


def _warnings(caplog, key):
    return [r for r in caplog.records if r.name == "cnap.i18n" and key in r.getMessage()]


def test_a_missing_english_text_falls_back_to_ukrainian_and_is_logged_once(tmp_path, caplog):
    _compile(tmp_path, "uk", {"test.fallback.only_uk": "Лише українською", "test.fallback.both": "Обидві"})
    _compile(tmp_path, "en", {"test.fallback.both": "Both"})
    english = i18n.load_chain(tmp_path, "en")
    with caplog.at_level(logging.WARNING, logger="cnap.i18n"):
        assert english.gettext("test.fallback.both") == "Both"
        assert english.gettext("test.fallback.only_uk") == "Лише українською"
        assert english.gettext("test.fallback.only_uk") == "Лише українською"
    assert len(_warnings(caplog, "test.fallback.only_uk")) == 1
    assert _warnings(caplog, "test.fallback.both") == []


def test_an_unknown_language_gets_ukrainian():
    assert i18n.gettext("nav.home", "de") == i18n.gettext("nav.home", "uk") == "На головну"
    assert i18n.gettext("nav.home", "en") == "Home"


def test_an_unknown_key_shows_the_key_logged_once_never_an_error(caplog):
    with caplog.at_level(logging.WARNING, logger="cnap.i18n"):
        assert i18n.gettext("test.i18n.no_such_key", "en") == "test.i18n.no_such_key"
        assert i18n.gettext("test.i18n.no_such_key", "en") == "test.i18n.no_such_key"
        assert i18n.ngettext("test.i18n.no_such_plural", "test.i18n.no_such_plural.plural", 5, "uk") \
            == "test.i18n.no_such_plural"
    assert len(_warnings(caplog, "test.i18n.no_such_key")) == 2   # not in English, not in Ukrainian
    assert len(_warnings(caplog, "test.i18n.no_such_plural")) == 1


def test_a_page_with_an_unknown_key_renders_not_a_500(app, caplog):
    app.add_url_rule("/test-i18n-missing", "test_i18n_missing",
                     lambda: render_template_string("<p>{{ _('test.i18n.missing_on_page') }}</p>"))
    with caplog.at_level(logging.WARNING, logger="cnap.i18n"):
        for _ in range(3):
            page = app.test_client().get("/test-i18n-missing")
            assert page.status_code == 200
            assert "<p>test.i18n.missing_on_page</p>" in page.text
    assert len(_warnings(caplog, "test.i18n.missing_on_page")) == 1


def test_placeholders_that_do_not_match_the_call_never_raise(caplog):
    # "pay.step" wants n; a call without it shows the text unformatted rather than failing.
    with caplog.at_level(logging.WARNING, logger="cnap.i18n"):
        assert i18n.gettext("pay.step", "uk") == "Крок %(n)s з 4"
    assert i18n.gettext("pay.step", "uk", n=2) == "Крок 2 з 4"
    assert i18n.gettext("prefs.text_size_value", "en", pct=150) == "Text size: 150 %"   # %% is a percent sign


def test_the_template_globals_take_the_visitors_language(app):
    app.add_url_rule("/test-i18n-lang", "test_i18n_lang", lambda: render_template_string(
        "{{ _('nav.home') }}|{{ ngettext('category.count', 'category.count.plural', 3) }}"))
    client = app.test_client()
    assert client.get("/test-i18n-lang").text == "На головну|3 послуги"
    client.post("/lang/en", data={"next": "/"})
    assert client.get("/test-i18n-lang").text == "Home|3 services"


def test_flask_babel_answers_from_the_same_catalogues(app):
    import flask_babel
    with app.test_request_context():
        assert str(flask_babel.get_locale()) == "uk"
        assert flask_babel.gettext("nav.home") == "На головну"
        assert flask_babel.ngettext("category.count", "category.count.plural", 21) == "21 послуга"


def ukrainian_form(n: int) -> str:
    """The grammar, written out independently of the catalogue's Plural-Forms expression."""
    if n % 10 == 1 and n % 100 != 11:
        return "послуга"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return "послуги"
    return "послуг"


def test_ukrainian_plurals_by_example():
    shown = {n: i18n.ngettext("category.count", "category.count.plural", n, "uk") for n in (1, 2, 5, 11, 21, 0, 14, 22, 111)}
    assert shown == {1: "1 послуга", 2: "2 послуги", 5: "5 послуг", 11: "11 послуг", 21: "21 послуга",
                     0: "0 послуг", 14: "14 послуг", 22: "22 послуги", 111: "111 послуг"}
    assert i18n.ngettext("category.count", "category.count.plural", 1, "en") == "1 service"
    assert i18n.ngettext("category.count", "category.count.plural", 21, "en") == "21 services"


@given(st.integers(min_value=0, max_value=10**9))
def test_ukrainian_plurals_follow_the_grammar_for_every_count(n):
    assert i18n.ngettext("category.count", "category.count.plural", n, "uk") == f"{n} {ukrainian_form(n)}"
