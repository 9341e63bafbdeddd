"""The hub web app's interface strings: its own gettext catalogues
(``monitoring/hub/translations/<lang>/LC_MESSAGES/messages.po``, compiled to ``.mo`` beside them),
looked up with the kiosk's fallback chain (terminal/i18n.py): a missing English text shows the
Ukrainian one, a missing Ukrainian one shows the key, never an error page."""
from __future__ import annotations

import functools
from pathlib import Path

import flask_babel
from flask import Flask, current_app, g, has_request_context, session

from terminal.i18n import LANGUAGES, SOURCE_LANGUAGE, DOMAIN, N_, load_chain  # noqa: F401 - N_ re-exported

TRANSLATIONS_DIR = Path(__file__).with_name("translations")


@functools.cache
def translations(lang: str):
    return load_chain(TRANSLATIONS_DIR, lang if lang in LANGUAGES else SOURCE_LANGUAGE)


def current_language() -> str:
    if not has_request_context():
        return SOURCE_LANGUAGE
    lang = getattr(g, "lang", None) or session.get("lang")
    return lang if lang in LANGUAGES else current_app.config.get("DEFAULT_LANGUAGE", SOURCE_LANGUAGE)


def gettext(key: str, lang: str | None = None, **params) -> str:
    lang = lang or current_language()
    text = translations(lang).gettext(key)
    try:
        return text % params if params else text.replace("%%", "%")
    except (KeyError, ValueError, TypeError):
        return text


@functools.cache
def _ukrainian_alone():
    from babel.support import Translations
    return Translations.load(str(TRANSLATIONS_DIR), [SOURCE_LANGUAGE], DOMAIN)


def known(key: str) -> bool:
    """Whether the catalogue has ``key`` (for words that come from outside: payload fields)."""
    return _ukrainian_alone().gettext(key) is not key


class _HubDomain(flask_babel.Domain):
    def get_translations(self):
        locale = flask_babel.get_locale()
        return translations(str(locale) if locale else SOURCE_LANGUAGE)


def init_app(app: Flask) -> None:
    babel = flask_babel.Babel(configure_jinja=False)
    babel.init_app(app, default_locale=SOURCE_LANGUAGE, default_domain=DOMAIN,
                   default_translation_directories=str(TRANSLATIONS_DIR), locale_selector=current_language,
                   default_timezone="Europe/Kyiv")
    babel.domain_instance = _HubDomain(translation_directories=[str(TRANSLATIONS_DIR)], domain=DOMAIN)
    app.jinja_env.globals.update(_=gettext, gettext=gettext)
