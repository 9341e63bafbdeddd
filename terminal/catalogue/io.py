"""The catalogue's YAML folder format: read with validation, write, import into the database.

The format is documented in ``docs/catalogue.md``. Reading checks everything and collects every
problem before giving up, each named by file, record and field, e.g.::

    services/passports.yaml: service "id-card": fee.details.iban: checksum fails (mod-97)

so a person fixing a catalogue sees the whole list at once. Nothing reaches the database unless
the whole folder is valid, and the database write itself is one transaction.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from datetime import date, time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml
from stdnum import iban as stdnum_iban
from stdnum.exceptions import InvalidChecksum, ValidationError
from stdnum.ua import edrpou as stdnum_edrpou

from .model import (LANGUAGES, Branch, Category, Commission, Fee, Interval, NewsItem, Package,
                    PaymentDetails, Service, Stage)
from .convert import (WEEKDAYS, branch_to_plain, category_to_plain, news_to_plain,
                      package_to_plain, service_to_plain)
from .store import Catalogue, CatalogueStore

FORMAT_VERSION = 1
SAMPLE_FOLDER = Path(__file__).with_name("sample")

# Files a catalogue folder may hold; services may also be split over services/*.yaml.
CATALOGUE_FILE = "catalogue.yaml"
CATEGORIES_FILE = "categories.yaml"
SERVICES_FILE = "services.yaml"
SERVICES_DIR = "services"
PACKAGES_FILE = "packages.yaml"
BRANCHES_FILE = "branches.yaml"
NEWS_FILE = "news.yaml"
KNOWN_FILES = (CATALOGUE_FILE, CATEGORIES_FILE, SERVICES_FILE, PACKAGES_FILE, BRANCHES_FILE,
               NEWS_FILE)

ID_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
ID_MAX = 64
ICON_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
TIME_PATTERN = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
COMMISSION_KINDS = ("none", "fixed", "percent")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- errors ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One thing wrong with a catalogue folder."""
    file: str           # path inside the folder, with forward slashes
    record: str         # e.g. 'service "id-card"'; empty for file-level problems
    field: str          # dotted path inside the record, e.g. "fee.details.iban"
    message: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.file, self.record, self.field, self.message)
                         if part)


class CatalogueError(ValueError):
    """The folder is not a valid catalogue; ``problems`` lists everything found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the catalogue:\n"
                         + "\n".join(str(p) for p in self.problems))


# --- check digits ----------------------------------------------------------------------------
# The algorithms are python-stdnum's (ISO 7064 mod 97-10 for the IBAN, the State Statistics
# Service's weights for the ЄДРПОУ); the rules around them and the messages are the catalogue's.
# stdnum cleans what it is given (drops spaces, folds full-width digits to ASCII, upper-cases);
# the catalogue refuses instead, so a code is stored and printed exactly as it was checked.

UA_IBAN_LENGTH = 29  # UA, 2 check digits, 6-digit bank code (МФО), 19-digit account


def _ascii_digits(text: str) -> bool:
    # str.isdigit() is also true for Arabic-Indic, full-width and superscript digits
    return text.isascii() and text.isdigit()


def edrpou_problem(code: str) -> str | None:
    """What is wrong with an ЄДРПОУ code, or None when it is 8 digits with a valid check digit."""
    if not _ascii_digits(code):
        return f"{code!r} must be exactly 8 digits"
    try:
        stdnum_edrpou.validate(code)
    except InvalidChecksum:
        return (f"{code!r}: check digit fails (expected {stdnum_edrpou.calc_check_digit(code)} "
                "at the end)")
    except ValidationError:  # InvalidLength
        return f"{code!r} must be exactly 8 digits"
    return None


def iban_problem(iban: str) -> str | None:
    """What is wrong with a payee's IBAN, or None when it is a valid Ukrainian one."""
    if " " in iban:
        return f"{iban!r}: write the IBAN without spaces"
    if not iban.startswith("UA"):
        return f"{iban!r}: must start with UA (a Ukrainian account)"
    # stdnum tests mod-97 before the length; a wrong length is the plainer fault to report
    if len(iban) != UA_IBAN_LENGTH:
        return f"{iban!r}: must be {UA_IBAN_LENGTH} characters (UA + 27), got {len(iban)}"
    # The IBAN registry allows letters in a UA account number (19!c); Ukrainian banks use digits.
    if not _ascii_digits(iban[2:]):
        return f"{iban!r}: after UA only digits are allowed"
    try:
        stdnum_iban.validate(iban)
    except InvalidChecksum:
        return "checksum fails (mod-97)"
    except ValidationError as exc:  # not expected for UA + 27 digits; say what stdnum found
        return f"{iban!r}: not a valid IBAN ({exc})"
    return None


# --- reading and validating ------------------------------------------------------------------

class _Checker:
    """Collects problems for one record and builds its values when they are sound."""

    def __init__(self, problems: list[Problem], file: str, record: str) -> None:
        self.problems = problems
        self.file = file
        self.record = record
        self.failed = False

    def error(self, field: str, message: str) -> None:
        self.failed = True
        self.problems.append(Problem(self.file, self.record, field, message))

    def mapping(self, raw: Any, field: str, allowed: Iterable[str],
                required: Iterable[str] = ()) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.error(field, f"must be a mapping (key: value lines), got {_kind(raw)}")
            return None
        allowed = tuple(allowed)
        for key in raw:
            if key not in allowed:
                self.error(_join(field, str(key)),
                           f"unknown field (expected one of: {', '.join(allowed)})")
        for key in required:
            if raw.get(key) is None:
                self.error(_join(field, key), "missing")
        return raw

    def text(self, raw: Any, field: str, need_en: bool = False,
             required: bool = True) -> dict[str, str] | None:
        if raw is None:
            if required:
                self.error(field, "missing")
            return None
        if not isinstance(raw, dict):
            self.error(field, "must be a mapping of languages, e.g. {uk: ..., en: ...}, "
                              f"got {_kind(raw)}")
            return None
        ok = True
        for lang, value in raw.items():
            if lang not in LANGUAGES:
                self.error(_join(field, str(lang)),
                           f"unknown language (expected {' or '.join(LANGUAGES)})")
                ok = False
            elif not isinstance(value, str) or not value.strip():
                self.error(_join(field, lang), "must be non-empty text")
                ok = False
        if "uk" not in raw:
            self.error(_join(field, "uk"), "missing (Ukrainian text is required)")
            ok = False
        if need_en and "en" not in raw:
            self.error(_join(field, "en"), "missing (English is required for names and titles)")
            ok = False
        return dict(raw) if ok else None

    def texts(self, raw: Any, field: str, non_empty: bool) -> tuple[dict[str, str], ...] | None:
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            self.error(field, f"must be a list, got {_kind(raw)}")
            return None
        if non_empty and not raw:
            self.error(field, "must list at least one item")
            return None
        values = [self.text(item, f"{field}[{i}]") for i, item in enumerate(raw)]
        return None if any(v is None for v in values) else tuple(values)  # type: ignore[misc]

    def string(self, raw: Any, field: str, required: bool = True,
               pattern: re.Pattern[str] | None = None, hint: str = "") -> str | None:
        if raw is None:
            if required:
                self.error(field, "missing")
            return None if required else ""
        if not isinstance(raw, str):
            self.error(field, f"must be text, got {_kind(raw)}"
                              + (" (put it in quotes)" if isinstance(raw, (int, float)) else ""))
            return None
        if required and not raw.strip():
            self.error(field, "must not be empty")
            return None
        if pattern and raw and not pattern.match(raw):
            self.error(field, f"{raw!r} {hint}")
            return None
        return raw

    def integer(self, raw: Any, field: str, minimum: int, what: str) -> int | None:
        if isinstance(raw, bool) or not isinstance(raw, int):
            self.error(field, f"must be {what}, got {raw!r}")
            return None
        if raw < minimum:
            self.error(field, f"must be {what}, got {raw}")
            return None
        return raw

    def boolean(self, raw: Any, field: str, default: bool = False) -> bool | None:
        if raw is None:
            return default
        if not isinstance(raw, bool):
            self.error(field, f"must be true or false, got {raw!r}")
            return None
        return raw

    def identifier(self, raw: Any, field: str = "id") -> str | None:
        value = self.string(raw, field)
        if value is None:
            return None
        if len(value) > ID_MAX or not ID_PATTERN.match(value):
            self.error(field, f"{value!r} is not a valid id (lower-case latin letters, digits and "
                              f"single hyphens, at most {ID_MAX} characters, e.g. \"id-card\")")
            return None
        return value

    def strings(self, raw: Any, field: str) -> tuple[str, ...] | None:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.error(field, f"must be a list, got {_kind(raw)}")
            return None
        values = [self.string(item, f"{field}[{i}]") for i, item in enumerate(raw)]
        if any(v is None for v in values):
            return None
        seen: set[str] = set()
        for i, value in enumerate(values):
            if value in seen:
                self.error(f"{field}[{i}]", f"{value!r} is listed twice")
                return None
            seen.add(value)  # type: ignore[arg-type]
        return tuple(values)  # type: ignore[arg-type]


def _kind(raw: Any) -> str:
    if raw is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "a number",
            float: "a number"}.get(type(raw), type(raw).__name__)


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _label(kind: str, raw: Any, index: int) -> str:
    """How a record is named in messages: by its id when it has a usable one."""
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"].strip():
        return f'{kind} "{raw["id"]}"'
    return f"{kind} #{index + 1}"


SERVICE_FIELDS = ("id", "name", "short", "category", "provider", "documents", "fee", "term",
                  "result", "receive_ways", "legal_acts", "refusal_grounds", "stages", "synonyms",
                  "sample")


def _check_service(raw: Any, c: _Checker) -> Service | None:
    if c.mapping(raw, "", SERVICE_FIELDS) is None:
        return None
    service_id = c.identifier(raw.get("id"))
    name = c.text(raw.get("name"), "name", need_en=True)
    short = c.text(raw.get("short"), "short")
    category = c.identifier(raw.get("category"), "category")
    provider = c.text(raw.get("provider"), "provider")
    documents = c.texts(raw.get("documents"), "documents", non_empty=True)
    term = c.text(raw.get("term"), "term")
    result = c.text(raw.get("result"), "result")
    receive_ways = c.texts(raw.get("receive_ways"), "receive_ways", non_empty=True)
    legal_acts = c.texts(raw.get("legal_acts"), "legal_acts", non_empty=True)
    refusal = c.texts(raw.get("refusal_grounds"), "refusal_grounds", non_empty=False)
    fee = _check_fee(raw["fee"], c) if raw.get("fee") is not None else None
    stages = _check_stages(raw.get("stages"), c)
    synonyms = c.strings(raw.get("synonyms"), "synonyms")
    sample = c.boolean(raw.get("sample"), "sample")
    if c.failed:
        return None
    return Service(id=service_id, name=name, short=short, category=category, provider=provider,
                   documents=documents, term=term, result=result, receive_ways=receive_ways,
                   legal_acts=legal_acts, fee=fee, refusal_grounds=refusal, stages=stages,
                   synonyms=synonyms, sample=sample)  # type: ignore[arg-type]


def _check_stages(raw: Any, c: _Checker) -> tuple[Stage, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        c.error("stages", f"must be a list, got {_kind(raw)}")
        return ()
    stages = []
    for i, item in enumerate(raw):
        field = f"stages[{i}]"
        if c.mapping(item, field, ("step", "responsible", "term")) is None:
            continue
        step = c.text(item.get("step"), f"{field}.step")
        responsible = c.text(item.get("responsible"), f"{field}.responsible")
        term = c.text(item.get("term"), f"{field}.term")
        if step and responsible and term:
            stages.append(Stage(step=step, responsible=responsible, term=term))
    return tuple(stages)


def _check_fee(raw: Any, c: _Checker) -> Fee | None:
    if c.mapping(raw, "fee", ("amount_kop", "legal_basis", "details", "commission"),
                 required=("amount_kop", "legal_basis", "details")) is None:
        return None
    amount = None
    if "amount_kop" in raw and raw["amount_kop"] is not None:
        amount = c.integer(raw["amount_kop"], "fee.amount_kop", 1,
                           "a whole number of kopiykas greater than 0 (279 UAH = 27900)")
    legal_basis = c.text(raw.get("legal_basis"), "fee.legal_basis") \
        if raw.get("legal_basis") is not None else None
    details = _check_details(raw["details"], c) if raw.get("details") is not None else None
    commission = _check_commission(raw.get("commission"), c)
    if amount is None or legal_basis is None or details is None or commission is None:
        return None
    return Fee(amount_kop=amount, legal_basis=legal_basis, details=details, commission=commission)


def _check_details(raw: Any, c: _Checker) -> PaymentDetails | None:
    field = "fee.details"
    if c.mapping(raw, field, ("recipient", "edrpou", "iban", "purpose_code", "purpose")) is None:
        return None
    recipient = c.string(raw.get("recipient"), f"{field}.recipient")
    edrpou = c.string(raw.get("edrpou"), f"{field}.edrpou")
    if edrpou is not None and (problem := edrpou_problem(edrpou)):
        c.error(f"{field}.edrpou", problem)
        edrpou = None
    iban = c.string(raw.get("iban"), f"{field}.iban")
    if iban is not None and (problem := iban_problem(iban)):
        c.error(f"{field}.iban", problem)
        iban = None
    purpose_code = c.string(raw.get("purpose_code"), f"{field}.purpose_code",
                            pattern=re.compile(r"^[0-9]{3}$"),
                            hint="must be the 3-digit Treasury payment type code, e.g. \"101\"")
    purpose = c.text(raw.get("purpose"), f"{field}.purpose")
    if None in (recipient, edrpou, iban, purpose_code, purpose):
        return None
    return PaymentDetails(recipient=recipient, edrpou=edrpou, iban=iban,  # type: ignore[arg-type]
                          purpose_code=purpose_code, purpose=purpose)  # type: ignore[arg-type]


def _check_commission(raw: Any, c: _Checker) -> Commission | None:
    field = "fee.commission"
    if raw is None:
        return Commission()
    if c.mapping(raw, field, ("kind", "fixed_kop", "percent_bp", "min_kop", "max_kop"),
                 required=("kind",)) is None:
        return None
    kind = raw.get("kind")
    if kind is None:
        return None
    if kind not in COMMISSION_KINDS:
        c.error(f"{field}.kind", f"{kind!r} is not one of: {', '.join(COMMISSION_KINDS)}")
        return None
    allowed = {"none": (), "fixed": ("fixed_kop", "min_kop", "max_kop"),
               "percent": ("percent_bp", "min_kop", "max_kop")}[kind]
    failed_before = c.failed
    c.failed = False
    for key in ("fixed_kop", "percent_bp", "min_kop", "max_kop"):
        if key in raw and key not in allowed:
            c.error(f"{field}.{key}", f"does not apply to kind {kind!r}")
    values = {}
    for key in allowed:
        if key in raw:
            minimum = 1 if key in ("fixed_kop", "percent_bp") else 0
            values[key] = c.integer(raw[key], f"{field}.{key}", minimum,
                                    "a whole number of basis points greater than 0 (1.5 % = 150)"
                                    if key == "percent_bp" else
                                    "a whole number of kopiykas"
                                    + (" greater than 0" if minimum else ""))
    if kind == "fixed" and "fixed_kop" not in raw:
        c.error(f"{field}.fixed_kop", "missing (required for kind fixed)")
    if kind == "percent" and "percent_bp" not in raw:
        c.error(f"{field}.percent_bp", "missing (required for kind percent)")
    if isinstance(values.get("percent_bp"), int) and values["percent_bp"] > 10000:
        c.error(f"{field}.percent_bp", f"{values['percent_bp']} is more than 100 % (10000)")
    low, high = values.get("min_kop") or 0, values.get("max_kop") or 0
    if isinstance(low, int) and isinstance(high, int) and high and low > high:
        c.error(f"{field}.max_kop", f"must not be below min_kop ({low})")
    failed_here = c.failed
    c.failed = failed_before or failed_here
    if failed_here:
        return None
    return Commission(kind=kind, **values)


def _check_category(raw: Any, c: _Checker) -> Category | None:
    if c.mapping(raw, "", ("id", "name", "icon", "order")) is None:
        return None
    category_id = c.identifier(raw.get("id"))
    name = c.text(raw.get("name"), "name", need_en=True)
    icon = c.string(raw.get("icon"), "icon", required=False, pattern=ICON_PATTERN,
                    hint="is not a valid icon name (lower-case latin letters, digits, hyphens)")
    order = raw.get("order", 0)
    if isinstance(order, bool) or not isinstance(order, int):
        c.error("order", f"must be a whole number, got {order!r}")
    if c.failed:
        return None
    return Category(id=category_id, name=name, icon=icon or "", order=order)  # type: ignore


def _check_package(raw: Any, c: _Checker) -> Package | None:
    if c.mapping(raw, "", ("id", "name", "description", "services", "term", "synonyms")) is None:
        return None
    if raw.get("services") is None:
        c.error("services", "missing")
    package_id = c.identifier(raw.get("id"))
    name = c.text(raw.get("name"), "name", need_en=True)
    description = c.text(raw.get("description"), "description")
    term = c.text(raw.get("term"), "term")
    services = c.strings(raw.get("services"), "services")
    if services is not None and not services and "services" in raw:
        c.error("services", "must list at least one service")
    synonyms = c.strings(raw.get("synonyms"), "synonyms")
    if c.failed:
        return None
    return Package(id=package_id, name=name, description=description,  # type: ignore[arg-type]
                   services=services, term=term, synonyms=synonyms)  # type: ignore[arg-type]


def _parse_time(value: str, field: str, c: _Checker) -> time | None:
    match = TIME_PATTERN.match(value.strip())
    if not match:
        c.error(field, f"{value.strip()!r} is not a time HH:MM (00:00-23:59)")
        return None
    return time(int(match.group(1)), int(match.group(2)))


def _check_intervals(raw: Any, field: str, c: _Checker) -> tuple[Interval, ...] | None:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        c.error(field, f"must be a list of \"HH:MM-HH:MM\" intervals, got {_kind(raw)}")
        return None
    intervals: list[Interval] = []
    ok = True
    for i, item in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(item, str) or item.count("-") != 1:
            c.error(where, f"{item!r} is not an interval \"HH:MM-HH:MM\"")
            ok = False
            continue
        start_text, end_text = item.split("-")
        start, end = _parse_time(start_text, where, c), _parse_time(end_text, where, c)
        if start is None or end is None:
            ok = False
            continue
        if start >= end:
            c.error(where, f"{item!r}: start must be before end")
            ok = False
            continue
        if intervals and start <= intervals[-1].end:
            c.error(where, f"{item!r} must start after the previous interval ends "
                           f"({intervals[-1].end:%H:%M}); list intervals in order")
            ok = False
            continue
        intervals.append(Interval(start, end))
    return tuple(intervals) if ok else None


def _check_branch(raw: Any, c: _Checker) -> Branch | None:
    if c.mapping(raw, "", ("id", "name", "central", "address", "phone", "week",
                           "special_days")) is None:
        return None
    branch_id = c.identifier(raw.get("id"))
    name = c.text(raw.get("name"), "name", need_en=True)
    address = c.text(raw.get("address"), "address")
    phone = c.string(raw.get("phone"), "phone", required=False)
    central = c.boolean(raw.get("central"), "central")
    week: dict[int, tuple[Interval, ...]] = {}
    raw_week = raw.get("week") or {}
    if not isinstance(raw_week, dict):
        c.error("week", f"must be a mapping of weekday: intervals, got {_kind(raw_week)}")
    else:
        for day, intervals in raw_week.items():
            if day not in WEEKDAYS:
                c.error(f"week.{day}", f"unknown weekday (use {', '.join(WEEKDAYS)})")
                continue
            checked = _check_intervals(intervals, f"week.{day}", c)
            if checked:
                week[WEEKDAYS.index(day)] = checked
    special: dict[date, tuple[Interval, ...]] = {}
    raw_special = raw.get("special_days") or {}
    if not isinstance(raw_special, dict):
        c.error("special_days", f"must be a mapping of date: intervals, got {_kind(raw_special)}")
    else:
        for key, intervals in raw_special.items():
            day = key if isinstance(key, date) else None
            if day is None:
                try:
                    day = date.fromisoformat(str(key))
                except ValueError:
                    c.error(f"special_days.{key}", "is not a date YYYY-MM-DD")
                    continue
            checked = _check_intervals(intervals, f"special_days.{day.isoformat()}", c)
            if checked is not None:
                special[day] = checked
    if c.failed:
        return None
    return Branch(id=branch_id, name=name, address=address, phone=phone or "",  # type: ignore
                  week=week, special_days=special, central=central)  # type: ignore[arg-type]


def _check_news(raw: Any, c: _Checker) -> NewsItem | None:
    if c.mapping(raw, "", ("id", "published", "title", "body")) is None:
        return None
    news_id = c.identifier(raw.get("id"))
    published = raw.get("published")
    if published is None:
        c.error("published", "missing")
    elif not isinstance(published, date):
        try:
            published = date.fromisoformat(str(published))
        except ValueError:
            c.error("published", f"{published!r} is not a date YYYY-MM-DD")
    title = c.text(raw.get("title"), "title", need_en=True)
    body = c.text(raw.get("body"), "body")
    if c.failed:
        return None
    return NewsItem(id=news_id, published=published, title=title, body=body)  # type: ignore


def _read_yaml(path: Path, name: str, problems: list[Problem]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(name, "", "", f"not UTF-8 text: {exc}"))
        return None
    except OSError as exc:
        problems.append(Problem(name, "", "", f"cannot read: {exc.strerror or exc}"))
        return None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problems.append(Problem(name, "", "", f"YAML syntax error: {where}{problem}"))
        return None


def _records(document: Any, name: str, key: str, problems: list[Problem]) -> list[Any]:
    """The list under ``key`` of a file's top-level mapping (``note`` is allowed beside it)."""
    if document is None:
        return []
    if not isinstance(document, dict):
        problems.append(Problem(name, "", "", f"must be a mapping with a '{key}:' list, "
                                              f"got {_kind(document)}"))
        return []
    for extra in document:
        if extra not in (key, "note"):
            problems.append(Problem(name, "", str(extra),
                                    f"unknown top-level field (expected '{key}' or 'note')"))
    records = document.get(key)
    if records is None:
        return []
    if not isinstance(records, list):
        problems.append(Problem(name, "", key, f"must be a list, got {_kind(records)}"))
        return []
    return records


def _read_kind(folder: Path, names: list[str], key: str, kind: str,
               check: Callable[[Any, _Checker], Any], problems: list[Problem],
               seen: dict[str, str]) -> list[tuple[str, Any]]:
    """Check every record of one kind; returns (file, record) pairs of the sound ones."""
    found = []
    for name in names:
        document = _read_yaml(folder / name, name, problems)
        for index, raw in enumerate(_records(document, name, key, problems)):
            checker = _Checker(problems, name, _label(kind, raw, index))
            record = check(raw, checker)
            record_id = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(record_id, str):
                if record_id in seen:
                    checker.error("id", f"duplicate id, first defined in {seen[record_id]}")
                    continue
                seen[record_id] = name
            if record is not None:
                found.append((name, record))
    return found


def check_folder(folder: str | os.PathLike) -> tuple[Catalogue | None, list[Problem]]:
    """Read and validate a catalogue folder: the catalogue (None if anything is wrong) and every
    problem found."""
    root = Path(folder)
    problems: list[Problem] = []
    if not root.is_dir():
        return None, [Problem(str(folder), "", "", "not a folder")]

    for entry in sorted(root.iterdir()):
        if entry.suffix in (".yaml", ".yml") and entry.name not in KNOWN_FILES:
            problems.append(Problem(entry.name, "", "", "unknown file (expected "
                                    + ", ".join(KNOWN_FILES) + f" or {SERVICES_DIR}/*.yaml)"))

    note = ""
    if (root / CATALOGUE_FILE).is_file():
        document = _read_yaml(root / CATALOGUE_FILE, CATALOGUE_FILE, problems)
        if document is not None:
            checker = _Checker(problems, CATALOGUE_FILE, "")
            if checker.mapping(document, "", ("format", "note")) is not None:
                if document.get("format", FORMAT_VERSION) != FORMAT_VERSION:
                    checker.error("format", f"{document.get('format')!r} is not a format this "
                                            f"program reads (expected {FORMAT_VERSION})")
                note = checker.string(document.get("note"), "note", required=False) or ""

    if not (root / CATEGORIES_FILE).is_file():
        problems.append(Problem(CATEGORIES_FILE, "", "", "file missing"))
    service_files = [f"{SERVICES_DIR}/{p.name}" for p in sorted((root / SERVICES_DIR).glob("*"))
                     if p.suffix in (".yaml", ".yml")] if (root / SERVICES_DIR).is_dir() else []
    if (root / SERVICES_FILE).is_file():
        service_files.insert(0, SERVICES_FILE)
    if not service_files:
        problems.append(Problem(SERVICES_DIR, "", "",
                                f"no services: add {SERVICES_FILE} or {SERVICES_DIR}/*.yaml"))

    def present(name: str) -> list[str]:
        return [name] if (root / name).is_file() else []

    # Ids seen, valid records or not: a record with a bad field still exists for references,
    # so one mistake is reported once rather than again at every record that names it.
    category_ids: dict[str, str] = {}
    service_ids: dict[str, str] = {}
    categories = _read_kind(root, present(CATEGORIES_FILE), "categories", "category",
                            _check_category, problems, category_ids)
    services = _read_kind(root, service_files, "services", "service", _check_service,
                          problems, service_ids)
    packages = _read_kind(root, present(PACKAGES_FILE), "packages", "package", _check_package,
                          problems, {})
    branches = _read_kind(root, present(BRANCHES_FILE), "branches", "branch", _check_branch,
                          problems, {})
    news = _read_kind(root, present(NEWS_FILE), "news", "news item", _check_news, problems, {})

    # References between records: only checkable once every file is read.
    for name, service in services:
        if service.category not in category_ids:
            problems.append(Problem(name, f'service "{service.id}"', "category",
                                    f"unknown category {service.category!r} "
                                    f"(not in {CATEGORIES_FILE})"))
    for name, package in packages:
        for i, service_id in enumerate(package.services):
            if service_id not in service_ids:
                problems.append(Problem(name, f'package "{package.id}"', f"services[{i}]",
                                        f"unknown service {service_id!r}"))
    centrals = [b for _, b in branches if b.central]
    if branches and len(centrals) != 1:
        message = ("no branch is marked central: true (mark the main office)" if not centrals
                   else "more than one branch is marked central: true: "
                        + ", ".join(b.id for b in centrals))
        problems.append(Problem(BRANCHES_FILE, "", "central", message))

    if problems:
        return None, problems
    return Catalogue(services=[s for _, s in services], categories=[c for _, c in categories],
                     packages=[p for _, p in packages], branches=[b for _, b in branches],
                     news=[n for _, n in news], note=note), []


def read_folder(folder: str | os.PathLike) -> Catalogue:
    """The catalogue in ``folder``; raises ``CatalogueError`` listing every problem."""
    catalogue, problems = check_folder(folder)
    if catalogue is None:
        raise CatalogueError(problems)
    return catalogue


# --- writing ---------------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    """Block style, Unicode as is, multi-line text as | blocks: a file people can edit."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)  # indent list items under their key


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _dump(document: Mapping[str, Any]) -> str:
    return yaml.dump(dict(document), Dumper=_Dumper, allow_unicode=True, sort_keys=False,
                     width=100, default_flow_style=False)


def _document(note: str, key: str, records: list[dict[str, Any]]) -> str:
    document: dict[str, Any] = {}
    if note:
        document["note"] = note
    document[key] = records
    return _dump(document)


def write_folder(catalogue: Catalogue, folder: str | os.PathLike, overwrite: bool = False) -> None:
    """Write ``catalogue`` as a catalogue folder; services go to services/<category>.yaml.

    An existing folder with catalogue files in it is refused unless ``overwrite``; then its
    catalogue files (and only those) are replaced.
    """
    root = Path(folder)
    existing = [p for p in _catalogue_files(root)] if root.is_dir() else []
    if existing and not overwrite:
        raise FileExistsError(f"{root}: already holds a catalogue "
                              f"({', '.join(str(p.relative_to(root)) for p in existing[:3])}"
                              f"{', …' if len(existing) > 3 else ''}); pass overwrite to replace it")
    for path in existing:
        path.unlink()
    (root / SERVICES_DIR).mkdir(parents=True, exist_ok=True)
    note = catalogue.note
    files: dict[str, str] = {
        CATALOGUE_FILE: _dump({"format": FORMAT_VERSION, **({"note": note} if note else {})}),
        CATEGORIES_FILE: _document(note, "categories",
                                   [category_to_plain(c) for c in catalogue.categories]),
        PACKAGES_FILE: _document(note, "packages",
                                 [package_to_plain(p) for p in catalogue.packages.values()]),
        BRANCHES_FILE: _document(note, "branches",
                                 [_dated_branch(b) for b in catalogue.branches]),
        NEWS_FILE: _document(note, "news", [{**news_to_plain(n), "published": n.published}
                                            for n in catalogue.news]),
    }
    for category in catalogue.categories:
        services = catalogue.services_in(category.id)
        if services:
            files[f"{SERVICES_DIR}/{category.id}.yaml"] = _document(
                note, "services", [service_to_plain(s) for s in services])
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")


def _dated_branch(branch: Branch) -> dict[str, Any]:
    """Dates as YAML dates (unquoted 2026-08-24), which read more naturally than strings."""
    plain = branch_to_plain(branch)
    plain["special_days"] = {date.fromisoformat(k): v for k, v in plain["special_days"].items()}
    return plain


def _catalogue_files(root: Path) -> list[Path]:
    found = [root / name for name in KNOWN_FILES if (root / name).is_file()]
    if (root / SERVICES_DIR).is_dir():
        found += sorted(p for p in (root / SERVICES_DIR).iterdir()
                        if p.suffix in (".yaml", ".yml"))
    return found


# --- database ----------------------------------------------------------------------------------

def import_folder(folder: str | os.PathLike, db_path: str | os.PathLike) -> Catalogue:
    """Validate ``folder`` and, only when it is entirely valid, replace the stored catalogue with
    it in one transaction. Raises ``CatalogueError`` (the database untouched) otherwise."""
    catalogue = read_folder(folder)
    CatalogueStore(db_path).replace_all(catalogue)
    return catalogue


def export_folder(db_path: str | os.PathLike, folder: str | os.PathLike,
                  overwrite: bool = False) -> Catalogue:
    catalogue = CatalogueStore(db_path).load()
    write_folder(catalogue, folder, overwrite=overwrite)
    return catalogue


def ensure_catalogue(db_path: str | os.PathLike,
                     source_folder: str | os.PathLike | None = None) -> Catalogue:
    """The stored catalogue; when the database holds no services yet, import ``source_folder``
    (default: the sample shipped in terminal/catalogue/sample) first."""
    store = CatalogueStore(db_path)
    if store.is_empty():
        store.replace_all(read_folder(Path(source_folder) if source_folder else SAMPLE_FOLDER))
    return store.load()


# --- benchmarks ------------------------------------------------------------------------------

def multiply(catalogue: Catalogue, n: int) -> Catalogue:
    """A catalogue of exactly ``n`` services made by repeating ``catalogue``'s services with
    numbered ids and names (``id-card``, ``id-card-x2``, …). Categories, packages, branches and
    news stay as they are. For benchmarks and load tests only."""
    originals = list(catalogue.services.values())
    if not originals:
        raise ValueError("cannot multiply an empty catalogue")
    services = []
    for i in range(n):
        base = originals[i % len(originals)]
        copy = i // len(originals) + 1
        if copy == 1:
            services.append(base)
            continue
        services.append(replace(
            base, id=f"{base.id}-x{copy}",
            name={lang: f"{text} ({copy})" for lang, text in base.name.items()}))
    kept = {s.id for s in services}
    packages = [p for p in catalogue.packages.values() if all(s in kept for s in p.services)]
    return Catalogue(services=services, categories=catalogue.categories, packages=packages,
                     branches=catalogue.branches, news=catalogue.news, note=catalogue.note)
