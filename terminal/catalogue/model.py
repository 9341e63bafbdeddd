"""The catalogue's records: what a ЦНАП offers, as the kiosk shows it.

Plain dataclasses, no I/O. The YAML format (``docs/catalogue.md``) mirrors these fields one to
one; ``store.py`` keeps them in SQLite. Every visitor-facing text is a ``Text``: a mapping of
language code to string with Ukrainian always present and English expected.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

Text = dict[str, str]  # {"uk": "...", "en": "..."}

LANGUAGES = ("uk", "en")


def tr(text: Text | None, lang: str) -> str:
    """The text in ``lang``, falling back to Ukrainian (the official language) then to anything."""
    if not text:
        return ""
    return text.get(lang) or text.get("uk") or next(iter(text.values()), "")


@dataclass(frozen=True)
class Commission:
    """What the terminal adds on top of the fee (the bank's or operator's charge).

    kind: "none" | "fixed" | "percent". ``percent_bp`` is in basis points (1.5 % = 150).
    """
    kind: str = "none"
    fixed_kop: int = 0
    percent_bp: int = 0
    min_kop: int = 0
    max_kop: int = 0  # 0: no ceiling


@dataclass(frozen=True)
class PaymentDetails:
    """Where the money goes (Law 5203-VI art. 8: "реквізити для оплати")."""
    recipient: str          # e.g. "ГУК у Дніпропетровській обл./м.Кам'янське/22012500"
    edrpou: str             # 8-digit ЄДРПОУ of the recipient
    iban: str               # UA + 27 characters, mod-97 == 1
    purpose_code: str       # Treasury payment type code, e.g. "101"
    purpose: Text           # purpose text printed after the code


@dataclass(frozen=True)
class Fee:
    amount_kop: int                 # integer kopiykas, never floats
    legal_basis: Text               # the act that sets the fee
    details: PaymentDetails
    commission: Commission = Commission()


@dataclass(frozen=True)
class Stage:
    """One step of the technological card (технологічна картка)."""
    step: Text
    responsible: Text
    term: Text


@dataclass(frozen=True)
class Service:
    id: str
    name: Text
    short: Text                     # one-sentence description
    category: str                   # Category.id
    provider: Text                  # суб'єкт надання
    documents: tuple[Text, ...]     # documents required and requirements to them
    term: Text                      # term of provision
    result: Text
    receive_ways: tuple[Text, ...]  # ways to receive the result
    legal_acts: tuple[Text, ...]
    fee: Fee | None = None          # None: the service is free
    refusal_grounds: tuple[Text, ...] = ()
    stages: tuple[Stage, ...] = ()
    synonyms: tuple[str, ...] = ()  # colloquial names visitors type, any language
    sample: bool = False            # sample data, not a real ЦНАП's figures

    @property
    def paid(self) -> bool:
        return self.fee is not None


@dataclass(frozen=True)
class Category:
    id: str
    name: Text
    icon: str = ""                  # name of an SVG in terminal/static/icons, optional
    order: int = 0


@dataclass(frozen=True)
class Package:
    """A life-situation package: several services applied for at once ("одним пакетом")."""
    id: str
    name: Text
    description: Text
    services: tuple[str, ...]       # Service.id, in the order they are done
    term: Text                      # total term of the whole package
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Interval:
    start: time
    end: time


@dataclass(frozen=True)
class Branch:
    id: str
    name: Text
    address: Text
    phone: str = ""
    # weekday (0 = Monday … 6 = Sunday) -> working intervals; a break is the gap between two.
    week: dict[int, tuple[Interval, ...]] = field(default_factory=dict)
    # dates with their own hours (a shortened pre-holiday day); an empty tuple means closed.
    special_days: dict[date, tuple[Interval, ...]] = field(default_factory=dict)
    central: bool = False

    def hours_on(self, day: date) -> tuple[Interval, ...]:
        if day in self.special_days:
            return self.special_days[day]
        return self.week.get(day.weekday(), ())

    def status_at(self, moment: datetime) -> "BranchStatus":
        """Open now and until when, or closed and when it opens next (looks two weeks ahead)."""
        now = moment.time()
        today = self.hours_on(moment.date())
        for interval in today:
            if interval.start <= now < interval.end:
                return BranchStatus(True, datetime.combine(moment.date(), interval.end), None)
        for offset in range(0, 15):
            day = moment.date() + timedelta(days=offset)
            for interval in self.hours_on(day):
                if offset > 0 or interval.start > now:
                    return BranchStatus(False, None, datetime.combine(day, interval.start))
        return BranchStatus(False, None, None)


@dataclass(frozen=True)
class BranchStatus:
    open: bool
    closes_at: datetime | None
    opens_at: datetime | None


@dataclass(frozen=True)
class NewsItem:
    id: str
    published: date
    title: Text
    body: Text
