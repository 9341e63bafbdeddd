"""Records to and from their plain form: the mappings of the YAML format (``docs/catalogue.md``).

The same shape serves the YAML files (io.py) and the JSON columns of the database (store.py);
both take it from here, so the database code does not depend on the file format. These
converters trust their input: io.py validates files before anything reaches them.
"""
from __future__ import annotations

from datetime import date, time
from typing import Any, Mapping

from .model import (Branch, Category, Commission, Fee, Interval, NewsItem, Package,
                    PaymentDetails, Service, Stage)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _text(value: Mapping[str, str]) -> dict[str, str]:
    # Fresh dicts come from json/yaml already; copying 150,000 of them costs a tenth of a second
    # on a 5,000-service catalogue, so only foreign mappings are copied.
    return value if type(value) is dict else dict(value)  # type: ignore[return-value]


def format_time(value: time) -> str:
    return value.strftime("%H:%M")


def format_interval(interval: Interval) -> str:
    return f"{format_time(interval.start)}-{format_time(interval.end)}"


def parse_interval(value: str) -> Interval:
    start, end = value.split("-")
    return Interval(time.fromisoformat(start.strip()), time.fromisoformat(end.strip()))


def commission_to_plain(commission: Commission) -> dict[str, Any]:
    plain: dict[str, Any] = {"kind": commission.kind}
    if commission.kind == "fixed":
        plain["fixed_kop"] = commission.fixed_kop
    if commission.kind == "percent":
        plain["percent_bp"] = commission.percent_bp
    if commission.kind != "none":
        if commission.min_kop:
            plain["min_kop"] = commission.min_kop
        if commission.max_kop:
            plain["max_kop"] = commission.max_kop
    return plain


def fee_to_plain(fee: Fee) -> dict[str, Any]:
    details = fee.details
    plain: dict[str, Any] = {
        "amount_kop": fee.amount_kop,
        "legal_basis": _text(fee.legal_basis),
        "details": {
            "recipient": details.recipient,
            "edrpou": details.edrpou,
            "iban": details.iban,
            "purpose_code": details.purpose_code,
            "purpose": _text(details.purpose),
        },
    }
    if fee.commission != Commission():
        plain["commission"] = commission_to_plain(fee.commission)
    return plain


def fee_from_plain(plain: Mapping[str, Any]) -> Fee:
    details = plain["details"]
    commission = plain.get("commission") or {}
    return Fee(
        amount_kop=plain["amount_kop"],
        legal_basis=_text(plain["legal_basis"]),
        details=PaymentDetails(
            recipient=details["recipient"], edrpou=details["edrpou"], iban=details["iban"],
            purpose_code=details["purpose_code"], purpose=_text(details["purpose"])),
        commission=Commission(
            kind=commission.get("kind", "none"), fixed_kop=commission.get("fixed_kop", 0),
            percent_bp=commission.get("percent_bp", 0), min_kop=commission.get("min_kop", 0),
            max_kop=commission.get("max_kop", 0)),
    )


def service_to_plain(service: Service) -> dict[str, Any]:
    """A service as a YAML/JSON mapping, keys in the order a person reads an information card."""
    plain: dict[str, Any] = {
        "id": service.id,
        "name": _text(service.name),
        "short": _text(service.short),
        "category": service.category,
        "provider": _text(service.provider),
        "documents": [_text(t) for t in service.documents],
        "fee": fee_to_plain(service.fee) if service.fee else None,
        "term": _text(service.term),
        "result": _text(service.result),
        "receive_ways": [_text(t) for t in service.receive_ways],
        "legal_acts": [_text(t) for t in service.legal_acts],
        "refusal_grounds": [_text(t) for t in service.refusal_grounds],
        "stages": [{"step": _text(s.step), "responsible": _text(s.responsible),
                    "term": _text(s.term)} for s in service.stages],
        "synonyms": list(service.synonyms),
    }
    if service.sample:
        plain["sample"] = True
    return plain


def service_from_plain(plain: Mapping[str, Any]) -> Service:
    fee = plain.get("fee")
    return Service(
        id=plain["id"],
        name=_text(plain["name"]),
        short=_text(plain["short"]),
        category=plain["category"],
        provider=_text(plain["provider"]),
        documents=tuple(_text(t) for t in plain["documents"]),
        term=_text(plain["term"]),
        result=_text(plain["result"]),
        receive_ways=tuple(_text(t) for t in plain["receive_ways"]),
        legal_acts=tuple(_text(t) for t in plain["legal_acts"]),
        fee=fee_from_plain(fee) if fee else None,
        refusal_grounds=tuple(_text(t) for t in plain.get("refusal_grounds") or ()),
        stages=tuple(Stage(step=_text(s["step"]), responsible=_text(s["responsible"]),
                           term=_text(s["term"])) for s in plain.get("stages") or ()),
        synonyms=tuple(plain.get("synonyms") or ()),
        sample=bool(plain.get("sample", False)),
    )


def category_to_plain(category: Category) -> dict[str, Any]:
    return {"id": category.id, "name": _text(category.name), "icon": category.icon,
            "order": category.order}


def category_from_plain(plain: Mapping[str, Any]) -> Category:
    return Category(id=plain["id"], name=_text(plain["name"]), icon=plain.get("icon") or "",
                    order=plain.get("order", 0))


def package_to_plain(package: Package) -> dict[str, Any]:
    return {"id": package.id, "name": _text(package.name),
            "description": _text(package.description), "services": list(package.services),
            "term": _text(package.term), "synonyms": list(package.synonyms)}


def package_from_plain(plain: Mapping[str, Any]) -> Package:
    return Package(id=plain["id"], name=_text(plain["name"]),
                   description=_text(plain["description"]), services=tuple(plain["services"]),
                   term=_text(plain["term"]), synonyms=tuple(plain.get("synonyms") or ()))


def branch_to_plain(branch: Branch) -> dict[str, Any]:
    return {
        "id": branch.id,
        "name": _text(branch.name),
        "central": branch.central,
        "address": _text(branch.address),
        "phone": branch.phone,
        "week": {WEEKDAYS[day]: [format_interval(i) for i in branch.week[day]]
                 for day in sorted(branch.week)},
        "special_days": {day.isoformat(): [format_interval(i) for i in branch.special_days[day]]
                         for day in sorted(branch.special_days)},
    }


def branch_from_plain(plain: Mapping[str, Any]) -> Branch:
    return Branch(
        id=plain["id"], name=_text(plain["name"]), address=_text(plain["address"]),
        phone=plain.get("phone") or "",
        week={WEEKDAYS.index(day): tuple(parse_interval(i) for i in intervals)
              for day, intervals in (plain.get("week") or {}).items()},
        special_days={(day if isinstance(day, date) else date.fromisoformat(day)):
                      tuple(parse_interval(i) for i in intervals)
                      for day, intervals in (plain.get("special_days") or {}).items()},
        central=bool(plain.get("central", False)),
    )


def news_to_plain(item: NewsItem) -> dict[str, Any]:
    return {"id": item.id, "published": item.published.isoformat(), "title": _text(item.title),
            "body": _text(item.body)}


def news_from_plain(plain: Mapping[str, Any]) -> NewsItem:
    published = plain["published"]
    if not isinstance(published, date):
        published = date.fromisoformat(published)
    return NewsItem(id=plain["id"], published=published, title=_text(plain["title"]),
                    body=_text(plain["body"]))
