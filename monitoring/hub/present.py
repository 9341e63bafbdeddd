"""What the hub's pages show, computed from table rows without Flask: a site's health badge, "5 хв
тому", Kyiv time, readable rows from any entity payload, CSAT from survey answers.

Everything here takes what the store holds (written by other components, possibly by an older or
newer release) and must never raise on it: a payload is any JSON, or not JSON at all."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

from terminal.surveys.scoring import is_top, score5
from monitoring.alerts import finite_number

KYIV = ZoneInfo("Europe/Kyiv")

# Worst first: the order of "sort by problem" and of the badge's precedence.
HEALTH_ORDER = ("offline", "critical", "warning", "pending", "unknown", "ok")
HEALTH_RANK = {name: rank for rank, name in enumerate(HEALTH_ORDER)}

MAX_ROWS = 120          # rows one entity shows; a larger payload is cut, and says so
MAX_DEPTH = 4           # nesting shown; deeper values are summarised
MAX_TEXT = 160          # characters of one shown value
SKIPPED_FIELDS = frozenset({"v"})   # the schema version is no news to staff
LIST_TAGS = ("name", "host")          # a list item is labelled by its name (a sensor) or host (a blocked site)
DATA_SIZE_FIELDS = frozenset({"bytes_up", "bytes_down"})
DATA_UNITS = ("unit.bytes", "unit.kb", "unit.mb", "unit.gb", "unit.tb")


def health(status: Any, firing_critical: int, firing_warning: int, pending: int) -> str:
    """The badge of one site: offline by its last will beats any alert; unknown is a site never
    heard from (or whose status ingest could not tell)."""
    if status == "offline":
        return "offline"
    if firing_critical:
        return "critical"
    if firing_warning:
        return "warning"
    if pending:
        return "pending"
    return "ok" if status == "online" else "unknown"


finite = finite_number   # the alert machine's check: no bools, NaN, infinities or ints too big for a float


def kyiv_time(at: Any, with_seconds: bool = False) -> str:
    """``2026-12-06 04:05`` in Kyiv time; an empty string for no or an absurd time."""
    at = finite(at)
    if at is None:
        return ""
    try:
        moment = datetime.fromtimestamp(at, timezone.utc).astimezone(KYIV)
    except (OverflowError, OSError, ValueError):
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S" if with_seconds else "%Y-%m-%d %H:%M")


def ago(at: Any, now: float, gettext: Callable[..., str]) -> str:
    """"2 хв тому": abbreviated units, so no plural forms are needed in either language."""
    at = finite(at)
    if at is None:
        return gettext("time.never")
    seconds = now - at
    if seconds < -60:
        return gettext("time.future")
    if seconds < 60:
        return gettext("time.just_now")
    if seconds < 3600:
        return gettext("time.minutes_ago", n=int(seconds // 60))
    if seconds < 2 * 86400:
        return gettext("time.hours_ago", n=int(seconds // 3600))
    return gettext("time.days_ago", n=int(seconds // 86400))


def load_json(text: Any) -> Any:
    """A stored JSON document, or the text itself when it is not JSON (never raises)."""
    if not isinstance(text, (str, bytes, bytearray)):
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text if isinstance(text, str) else text.decode("utf-8", "replace")


# --- entity payloads -------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    label: str
    value: str
    level: str = ""     # "", "bad" or "warn": shown with a word and a colour, never colour alone


def _short(text: str) -> str:
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) and abs(value) < 1e15 else f"{value:.2f}".rstrip("0")


def data_size(value: float, gettext: Callable[..., str]) -> str:
    """12345678 → "12.3 МБ" (decimal units, as operators' and providers' traffic figures are)."""
    index = 0
    while abs(value) >= 999.5 and index < len(DATA_UNITS) - 1:   # never "1000 kB"
        value /= 1000
        index += 1
    shown = f"{value:.0f}" if index == 0 or abs(value) >= 100 else f"{value:.1f}"
    return gettext(DATA_UNITS[index], n=shown)


def entity_rows(payload: Any, gettext: Callable[..., str], known: Callable[[str], bool]) -> list[Row]:
    """Readable rows from any JSON value: known fields get their names in the staff's language,
    lists of named things (sensors, inputs) are labelled by name, deeper structure is summarised.
    Never raises, whatever the value; at most MAX_ROWS rows."""
    rows: list[Row] = []
    truncated = False

    def label_of(path: list[str]) -> str:
        words = []
        for part in path:
            key = f"field.{part}"
            words.append(gettext(key) if known(key) else part)
        return " · ".join(words)

    def walk(value: Any, path: list[str], depth: int) -> None:
        nonlocal truncated
        if len(rows) >= MAX_ROWS:
            truncated = True
            return
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                rows.append(Row(label_of(path), gettext("value.fields", n=len(value))))
                return
            for key, item in value.items():
                key = _short(str(key))
                if depth == 0 and key in SKIPPED_FIELDS:
                    continue
                walk(item, path + [key], depth + 1)
            return
        if isinstance(value, list):
            if not value:
                rows.append(Row(label_of(path), "—"))
                return
            if depth >= MAX_DEPTH:
                rows.append(Row(label_of(path), gettext("value.items", n=len(value))))
                return
            if all(not isinstance(item, (dict, list)) for item in value):
                rows.append(Row(label_of(path), _short(", ".join(scalar(path[-1] if path else "", item)
                                                                 for item in value[:50]))))
                return
            for index, item in enumerate(value):
                key = next((k for k in LIST_TAGS if isinstance(item, dict) and isinstance(item.get(k), str)
                            and item[k]), None)
                tag = _short(item[key]) if key else str(index + 1)
                shown = {k: v for k, v in item.items() if k != key} if isinstance(item, dict) else item
                walk(shown, path + [tag], depth + 1)
            return
        key = path[-1] if path else ""
        rows.append(Row(label_of(path) if path else gettext("value.value"), scalar(key, value), level_of(key, value)))

    def scalar(key: str, value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, bool):
            return gettext("value.yes") if value else gettext("value.no")
        if isinstance(value, (int, float)):
            number = finite(value)
            if number is None:
                return _short(str(value))
            if key in ("ts", "override_until", "at", "sent_at"):
                return kyiv_time(number, with_seconds=True) or _number(number)
            if key in DATA_SIZE_FIELDS:
                return data_size(number, gettext)
            return _number(number)
        text = _short(str(value))
        word = f"word.{text}"
        return gettext(word) if known(word) else text

    def level_of(key: str, value: Any) -> str:
        if key in ("online", "available", "up", "live", "dhcp") and value is False:
            return "bad"
        if key == "paper" and value == "out":
            return "bad"
        if key == "paper" and value == "near_end":
            return "warn"
        return ""

    try:
        walk(payload, [], 0)
        if isinstance(payload, dict):
            fill = cassette_fill(payload)
            if fill is not None:
                rows.append(Row(gettext("field.cassette_fill"), f"{fill:.0f} %", "warn" if fill >= 90 else ""))
    except RecursionError:   # a document nested past Python's stack: summarise, do not fail
        rows = [Row(gettext("value.value"), gettext("value.too_deep"))]
    if truncated:
        rows = rows[:MAX_ROWS] + [Row("…", gettext("value.truncated"))]
    return rows


def cassette_fill(payload: dict) -> float | None:
    bills, capacity = finite(payload.get("cassette_bills")), finite(payload.get("cassette_capacity"))
    if bills is None or capacity is None or capacity <= 0:
        return None
    return max(0.0, min(100.0, 100 * bills / capacity))


def entity_title(entity: Any, gettext: Callable[..., str], known: Callable[[str], bool]) -> str:
    """'uplink/lte' → "Канал зв'язку: lte"; 'device/printer' → "Принтер"."""
    entity = _short(str(entity))
    kind, _, name = entity.partition("/")
    if name:
        key = f"entity.{kind}.{name}"
        if known(key):
            return gettext(key)
        key = f"entity.{kind}"
        return gettext("entity.named", kind=gettext(key) if known(key) else kind, name=name)
    key = f"entity.{kind}"
    return gettext(key) if known(key) else entity


# --- surveys -------------------------------------------------------------------------------------
@dataclass
class Csat:
    answers: int = 0
    top: int = 0
    sum_score5: float = 0.0

    @property
    def csat(self) -> float | None:
        return 100 * self.top / self.answers if self.answers else None

    @property
    def mean(self) -> float | None:
        return self.sum_score5 / self.answers if self.answers else None

    def add(self, payload: Any) -> None:
        """Counts one answer's payload (SurveyAnswer in monitoring/topics.py) when it is a counted
        answer with a sane score; anything else is skipped."""
        if not isinstance(payload, dict) or payload.get("counted", True) is not True:
            return
        score, scale = payload.get("score"), payload.get("scale")
        if (not isinstance(score, int) or not isinstance(scale, int) or isinstance(score, bool)
                or isinstance(scale, bool) or not 2 <= scale <= 10 or not 1 <= score <= scale):
            return
        self.answers += 1
        self.top += is_top(score, scale)
        self.sum_score5 += score5(score, scale)


def csat_by_site(rows: Iterable[tuple[Any, Any]]) -> dict[str, Csat]:
    """(site, payload JSON) rows → figures per site."""
    figures: dict[str, Csat] = {}
    for site, payload in rows:
        figures.setdefault(str(site), Csat()).add(load_json(payload))
    return figures
