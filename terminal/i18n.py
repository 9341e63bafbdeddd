"""Interface strings: gettext catalogues, one per language, for Python, Jinja and the browser.

The catalogues are ``terminal/translations/<lang>/LC_MESSAGES/messages.po`` (compiled to
``messages.mo`` beside them; docs/translations.md has the workflow). Msgids are symbolic keys
(``"pay.step"``), msgstrs are the texts with ``%(name)s`` placeholders and ``%%`` for a literal
percent sign; a text shown with a count is a plural entry (``ngettext``; Ukrainian has 3 forms).

Flask-Babel selects the request's language (the visitor's session, else ``DEFAULT_LANGUAGE``)
and hands out the translations through our domain, so ``flask_babel.gettext`` and the helpers
below give the same answers. A key missing from a language's catalogue falls back to the
Ukrainian text, and a key missing from the Ukrainian one shows the key itself: never an error
page. Either is logged once per process. Tests keep both catalogues complete, so neither happens
in a release (tests/terminal/test_translations.py).

The browser gets the same catalogue as JSON (``js_catalogue``), served at a versioned URL.
"""
from __future__ import annotations

import functools
import gettext as gettext_module
import hashlib
import json
import logging
import threading
from pathlib import Path

import flask_babel
from babel.support import Translations
from flask import Flask, Response, current_app, g, has_request_context, request, session

LANGUAGES = ("uk", "en")
SOURCE_LANGUAGE = "uk"
DOMAIN = "messages"
TRANSLATIONS_DIR = Path(__file__).with_name("translations")

log = logging.getLogger("cnap.i18n")
_reported: set[tuple[str, str]] = set()
_reported_lock = threading.Lock()
MAX_REPORTED = 10_000   # keys are ours, but a bound keeps a bug from growing memory or the log


def _report_once(lang: str, key: str, what: str) -> None:
    with _reported_lock:
        if (lang, key) in _reported or len(_reported) >= MAX_REPORTED:
            return
        _reported.add((lang, key))
    log.warning("interface message %r: %s", key, what)


def register(messages) -> None:
    """Gone: the strings live in the catalogues. Says so plainly to code written before them."""
    raise RuntimeError("i18n.register() is gone: interface strings live in terminal/translations/*/LC_MESSAGES/"
                       "messages.po; move this table with `python -m terminal.i18n_import FILE` "
                       "(docs/translations.md)")


def N_(key: str) -> str:
    """Marks a key that is looked up under a name built at run time, so pybabel extracts it."""
    return key


class _MissingEverywhere(gettext_module.NullTranslations):
    """End of every chain: not even Ukrainian has the key. Shows the key and says so once."""

    def gettext(self, message: str) -> str:
        _report_once(SOURCE_LANGUAGE, message, "not in the Ukrainian catalogue; the key is shown")
        return message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        _report_once(SOURCE_LANGUAGE, singular, "not in the Ukrainian catalogue; the key is shown")
        return singular


class _FallBackToUkrainian(gettext_module.NullTranslations):
    """After a non-Ukrainian catalogue: the Ukrainian text, reported once per key."""

    def __init__(self, lang: str, ukrainian: gettext_module.NullTranslations):
        super().__init__()
        self.lang = lang
        self.ukrainian = ukrainian

    def gettext(self, message: str) -> str:
        _report_once(self.lang, message, f"no {self.lang} translation; showing Ukrainian")
        return self.ukrainian.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        _report_once(self.lang, singular, f"no {self.lang} translation; showing Ukrainian")
        return self.ukrainian.ngettext(singular, plural, n)


def load_chain(directory: Path, lang: str) -> gettext_module.NullTranslations:
    """The catalogue chain of ``lang`` from ``directory``: its own entries, then Ukrainian, then
    the key itself. An unknown language gets the Ukrainian chain."""
    ukrainian = Translations.load(str(directory), [SOURCE_LANGUAGE], DOMAIN)
    ukrainian.add_fallback(_MissingEverywhere())
    if lang not in LANGUAGES or lang == SOURCE_LANGUAGE:
        return ukrainian
    chain = Translations.load(str(directory), [lang], DOMAIN)
    chain.add_fallback(_FallBackToUkrainian(lang, ukrainian))
    return chain


class Catalogues:
    """One set of catalogues (``<directory>/<lang>/LC_MESSAGES/messages.mo``) with the fallback
    chain above: the kiosk's (``KIOSK``) and the monitoring hub's are two of these, so both look
    texts up, format them, fall back and plug into Flask-Babel the same way."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._chains: dict[str, gettext_module.NullTranslations] = {}
        self._lock = threading.Lock()

    def translations(self, lang: str) -> gettext_module.NullTranslations:
        """The shipped chain of ``lang``, loaded once per process (the .mo files ship with the
        package and do not change while it runs)."""
        lang = lang if lang in LANGUAGES else SOURCE_LANGUAGE
        chain = self._chains.get(lang)
        if chain is None:
            with self._lock:
                chain = self._chains.get(lang) or load_chain(self.directory, lang)
                self._chains[lang] = chain
        return chain

    @functools.cached_property
    def _ukrainian_alone(self) -> gettext_module.NullTranslations:
        return Translations.load(str(self.directory), [SOURCE_LANGUAGE], DOMAIN)

    def known(self, key: str) -> bool:
        """Whether the Ukrainian catalogue has ``key``: for words that come from outside (a
        controller's state, a payload's field), shown translated when a text exists and as they
        are otherwise. Without a fallback, gettext hands back the very key object when it has no
        entry."""
        return self._ukrainian_alone.gettext(key) is not key

    def gettext(self, key: str, lang: str | None = None, **params) -> str:
        """The text of ``key`` in ``lang`` (default: the request's language), ``%(name)s`` filled."""
        lang = lang or current_language()
        return _format(self.translations(lang).gettext(key), key, lang, params)

    def ngettext(self, singular: str, plural: str, n: int, lang: str | None = None, **params) -> str:
        """The plural form of ``singular`` for ``n`` (``%(num)d`` is ``n``), as gettext chooses it."""
        lang = lang or current_language()
        params.setdefault("num", n)
        return _format(self.translations(lang).ngettext(singular, plural, n), singular, lang, params)

    def init_app(self, app: Flask, **babel_options) -> None:
        """Flask-Babel for ``app`` with these catalogues and their fallback chains (its own loader
        has none); ``_``/``gettext``/``ngettext`` in its templates."""
        catalogues = self

        class Domain(flask_babel.Domain):
            def get_translations(self):
                locale = flask_babel.get_locale()
                return catalogues.translations(str(locale) if locale else SOURCE_LANGUAGE)

        babel = flask_babel.Babel(configure_jinja=False)
        babel.init_app(app, default_locale=SOURCE_LANGUAGE, default_domain=DOMAIN,
                       default_translation_directories=str(self.directory), locale_selector=current_language,
                       **babel_options)
        babel.domain_instance = Domain(translation_directories=[str(self.directory)], domain=DOMAIN)
        # Our own callables rather than Jinja's i18n extension: they return plain text that
        # autoescaping escapes (the extension marks translations safe), and they take the language.
        app.jinja_env.globals.update(_=self.gettext, gettext=self.gettext, ngettext=self.ngettext)


def current_language() -> str:
    if not has_request_context():
        return SOURCE_LANGUAGE
    lang = getattr(g, "lang", None)
    if lang:
        return lang
    lang = session.get("lang")
    return lang if lang in LANGUAGES else current_app.config.get("DEFAULT_LANGUAGE", SOURCE_LANGUAGE)


def _format(text: str, key: str, lang: str, params: dict) -> str:
    # Always %-formatted, as Jinja's newstyle gettext does, so "%%" means "%" everywhere.
    try:
        return text % params
    except (KeyError, ValueError, TypeError):
        _report_once(lang, key, "placeholders do not match the call; text shown unformatted")
        return text


KIOSK = Catalogues(TRANSLATIONS_DIR)
translations = KIOSK.translations
known = KIOSK.known
gettext = KIOSK.gettext
ngettext = KIOSK.ngettext


# --- the browser's catalogue ------------------------------------------------------------------
def _entries(chain: gettext_module.NullTranslations) -> dict:
    messages: dict = {}
    catalog = getattr(chain, "_catalog", {})
    for key, text in catalog.items():
        if isinstance(key, tuple):
            messages.setdefault(key[0], {})[key[1]] = text
        elif key:
            messages[key] = text
    return {k: ([v[i] for i in sorted(v)] if isinstance(v, dict) else v) for k, v in messages.items()}


@functools.cache
def js_catalogue(lang: str) -> bytes:
    """``{"lang", "plural_forms", "messages": {key: text or [forms]}}`` for the browser's
    i18n.js. Every Ukrainian key is present: a missing translation carries the Ukrainian text
    (logged once, like on the server), so the browser needs only its own language's file."""
    if lang not in LANGUAGES:
        raise ValueError(f"no catalogue for {lang!r}")
    chain = translations(lang)
    own = _entries(chain)
    ukrainian = _entries(translations(SOURCE_LANGUAGE))
    messages = {}
    for key, text in ukrainian.items():
        if key in own:
            messages[key] = own[key]
        else:
            _report_once(lang, key, f"no {lang} translation; showing Ukrainian")
            messages[key] = text
    body = {"lang": lang, "messages": messages,
            "plural_forms": getattr(chain, "_info", {}).get("plural-forms", "nplurals=2; plural=(n != 1);")}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def js_catalogue_versions() -> dict[str, str]:
    """``{"uk.json": <hash>, "en.json": <hash>}`` for the versioned static URLs (core.version_static)."""
    return {f"{lang}.json": hashlib.sha256(js_catalogue(lang)).hexdigest()[:12] for lang in LANGUAGES}


def catalogue_response(filename: str) -> Response:
    """The JSON catalogue ``<lang>.json``; 404 for any other name. Versioned like a static file:
    ``?v=<hash>`` is cached for good (core's after_request), otherwise revalidated by ETag."""
    lang = filename.removesuffix(".json")
    if not filename.endswith(".json") or lang not in LANGUAGES:
        return Response("not found", 404, mimetype="text/plain")
    response = Response(js_catalogue(lang), mimetype="application/json")
    response.headers["Cache-Control"] = "no-cache"
    response.set_etag(js_catalogue_versions()[filename])
    return response.make_conditional(request)


# --- Flask ---------------------------------------------------------------------------------
def init_app(app: Flask) -> None:
    KIOSK.init_app(app)
