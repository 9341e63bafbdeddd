"""Interface strings in Ukrainian (first) and English.

Each area registers its own messages with ``register({...})``; templates call ``_("key")``.
An empty English text (or an unknown language) falls back to Ukrainian. A key nobody registered
raises ``KeyError`` always, in production too (there is no lenient mode): the visitor gets the
error page (500) instead of a raw key, and tests that render a page catch the typo.
"""
from __future__ import annotations

from flask import g, session

LANGUAGES = ("uk", "en")

_MESSAGES: dict[str, dict[str, str]] = {}


def register(messages: dict[str, tuple[str, str]]) -> None:
    """Add ``{"key": ("українською", "in English")}``; a key registered twice must agree."""
    for key, (uk, en) in messages.items():
        existing = _MESSAGES.get(key)
        if existing and existing != {"uk": uk, "en": en}:
            raise ValueError(f"message {key!r} registered twice with different texts")
        _MESSAGES[key] = {"uk": uk, "en": en}


def current_language() -> str:
    lang = getattr(g, "lang", None)
    if lang:
        return lang
    return session.get("lang") or "uk"


def known(key: str) -> bool:
    """Whether ``key`` is registered: for words that come from outside (a controller's state),
    shown translated when a text exists and as they are otherwise."""
    return key in _MESSAGES


def gettext(key: str, lang: str | None = None, **params) -> str:
    lang = lang or current_language()
    entry = _MESSAGES.get(key)
    if entry is None:
        raise KeyError(f"no interface message {key!r}")
    text = entry.get(lang) or entry["uk"]
    return text.format(**params) if params else text


register({
    "app.title": ("ЦНАП — термінал самообслуговування", "ЦНАП — self-service terminal"),
    "nav.home": ("На головну", "Home"),
    "nav.back": ("Назад", "Back"),
    "nav.skip": ("Перейти до змісту", "Skip to content"),
    "nav.main": ("Основна навігація", "Main navigation"),
    "prefs.language": ("Мова", "Language"),
    "prefs.switch_to": ("English", "Українська"),
    "prefs.text_size": ("Розмір тексту", "Text size"),
    "prefs.text_size_value": ("Розмір тексту: {pct} %", "Text size: {pct} %"),
    "prefs.larger": ("Більший текст", "Larger text"),
    "prefs.smaller": ("Менший текст", "Smaller text"),
    "prefs.contrast": ("Висока контрастність", "High contrast"),
    "prefs.contrast_on": ("Контраст: увімкнено", "Contrast: on"),
    "prefs.contrast_off": ("Контраст: вимкнено", "Contrast: off"),
    "prefs.settings": ("Налаштування екрана", "Display settings"),
    "idle.title": ("Ви ще тут?", "Are you still here?"),
    "idle.body": ("Через {seconds} с термінал повернеться на головний екран і забуде все, що ви ввели.",
                  "In {seconds} s the terminal will return to the home screen and forget everything you entered."),
    "idle.continue": ("Продовжити", "Continue"),
    "osk.label": ("Екранна клавіатура", "On-screen keyboard"),
    "osk.show": ("Клавіатура", "Keyboard"),
    "osk.hide": ("Сховати клавіатуру", "Hide keyboard"),
    "osk.backspace": ("Стерти", "Backspace"),
    "osk.space": ("Пробіл", "Space"),
    "osk.clear": ("Очистити", "Clear"),
    "osk.layout": ("Розкладка", "Layout"),
    "osk.shift": ("Великі літери", "Shift"),
    "osk.digits": ("Цифри", "Digits"),
    "error.not_found.title": ("Сторінку не знайдено", "Page not found"),
    "error.not_found.body": ("Такої послуги чи сторінки немає. Можливо, її вилучили з каталогу.",
                             "There is no such service or page. It may have been removed from the catalogue."),
    "error.server.title": ("Щось пішло не так", "Something went wrong"),
    "error.server.body": ("Термінал не зміг виконати дію. Спробуйте ще раз або зверніться до адміністратора ЦНАП.",
                          "The terminal could not complete the action. Please try again or ask a ЦНАП administrator."),
    "error.bad_request.title": ("Неправильний запит", "Bad request"),
    "error.bad_request.body": ("Термінал отримав дані, яких не очікував. Почніть спочатку.",
                               "The terminal received data it did not expect. Please start again."),
    "sample.notice": ("Демонстраційні дані: суми та реквізити — зразки, не для оплати.",
                      "Sample data: amounts and payment details are examples, not for real payments."),
})
