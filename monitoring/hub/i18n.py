"""The hub web app's interface strings: its own gettext catalogues
(``monitoring/hub/translations/<lang>/LC_MESSAGES/messages.po``, compiled to ``.mo`` beside them),
served by the kiosk's ``terminal.i18n.Catalogues``: the same lookup, formatting and fallback (a
missing English text shows the Ukrainian one, a missing Ukrainian one shows the key, never an
error page) and the same Flask-Babel wiring."""
from __future__ import annotations

from pathlib import Path

from flask import Flask

from terminal.i18n import (LANGUAGES, SOURCE_LANGUAGE, N_, Catalogues,  # noqa: F401 - re-exported for the views
                           current_language)

TRANSLATIONS_DIR = Path(__file__).with_name("translations")
HUB = Catalogues(TRANSLATIONS_DIR)
translations = HUB.translations
known = HUB.known
gettext = HUB.gettext


def init_app(app: Flask) -> None:
    HUB.init_app(app, default_timezone="Europe/Kyiv")
