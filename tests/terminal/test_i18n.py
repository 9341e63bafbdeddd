"""Interface strings: fallback to Ukrainian, and what a key nobody registered does."""
import pytest
from flask import render_template_string

from terminal import i18n


def test_english_falls_back_to_ukrainian():
    i18n.register({"test.i18n.only_uk": ("Лише українською", "")})
    assert i18n.gettext("test.i18n.only_uk", "en") == "Лише українською"
    assert i18n.gettext("test.i18n.only_uk", "de") == "Лише українською"


def test_an_unregistered_key_always_raises():
    with pytest.raises(KeyError, match="no interface message"):
        i18n.gettext("test.i18n.no_such_key", "uk")


def test_a_page_with_an_unregistered_key_is_an_error_page_not_a_raw_key(app):
    # There is no lenient mode outside tests: the visitor gets the error page (500).
    app.add_url_rule("/test-i18n-missing", "test_i18n_missing",
                     lambda: render_template_string("{{ _('test.i18n.no_such_key') }}"))
    page = app.test_client().get("/test-i18n-missing")
    assert page.status_code == 500
    assert "test.i18n.no_such_key" not in page.text
    assert i18n.gettext("error.server.title", "uk") in page.text
