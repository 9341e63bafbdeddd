"""The sample catalogue shipped with the kiosk: valid, large enough, realistic, marked sample."""
from __future__ import annotations

import re
from datetime import date, datetime

import pytest
import yaml

from terminal.catalogue.io import SAMPLE_FOLDER, check_folder, edrpou_problem, iban_problem
from terminal.catalogue.model import Service


@pytest.fixture(scope="module")
def sample():
    catalogue, problems = check_folder(SAMPLE_FOLDER)
    assert problems == []
    return catalogue


def all_texts(service: Service):
    yield service.name
    yield service.short
    yield service.provider
    yield service.term
    yield service.result
    yield from service.documents
    yield from service.receive_ways
    yield from service.legal_acts
    yield from service.refusal_grounds
    for stage in service.stages:
        yield from (stage.step, stage.responsible, stage.term)
    if service.fee:
        yield service.fee.legal_basis
        yield service.fee.details.purpose


def test_sample_is_large_enough(sample):
    assert len(sample.services) >= 80
    assert len(sample.packages) >= 8
    assert len(sample.paid_services()) >= 30
    assert 8 <= len(sample.categories) <= 12
    assert 3 <= len(sample.branches) <= 4
    assert 4 <= len(sample.news) <= 6


def test_every_record_is_marked_sample(sample):
    assert all(s.sample for s in sample.services.values())
    assert "SAMPLE DATA" in sample.note and "ЗРАЗКОВІ ДАНІ" in sample.note
    for path in sorted(SAMPLE_FOLDER.rglob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert document["note"] == sample.note, path


def test_every_text_is_in_ukrainian_and_english(sample):
    for service in sample.services.values():
        for text in all_texts(service):
            assert text.get("uk") and text.get("en"), (service.id, text)
        assert service.stages and service.documents and service.legal_acts
        assert service.legal_acts[0]["uk"].startswith("Закон України «Про адміністративні послуги»")
    for package in sample.packages.values():
        for text in (package.name, package.description, package.term):
            assert text.get("uk") and text.get("en"), package.id


def test_every_payment_detail_is_valid(sample):
    for service in sample.paid_services():
        details = service.fee.details
        assert re.fullmatch(r"UA\d{27}", details.iban), service.id
        assert iban_problem(details.iban) is None, service.id
        assert details.iban[4:10] == "899998", service.id  # the Treasury's MFO
        assert edrpou_problem(details.edrpou) is None, service.id
        assert details.purpose_code == "101"
        assert isinstance(service.fee.amount_kop, int) and service.fee.amount_kop > 0
        assert "зразкова сума" in service.fee.legal_basis["uk"]


def test_commission_rules_exercise_every_kind(sample):
    kinds = [s.fee.commission for s in sample.paid_services()]
    assert sum(c.kind == "none" for c in kinds) > len(kinds) // 2  # mostly none
    assert any(c.kind == "fixed" for c in kinds)
    assert any(c.kind == "percent" and c.min_kop and c.max_kop for c in kinds)
    assert any(c.kind == "percent" and c.min_kop and not c.max_kop for c in kinds)


def test_every_package_references_existing_services(sample):
    for package in sample.packages.values():
        assert package.services
        for service_id in package.services:
            assert sample.service(service_id) is not None, (package.id, service_id)


def test_the_services_and_packages_the_issue_names(sample):
    for service_id in ("residence-registration", "id-card", "passport-abroad",
                       "land-cadastre-extract", "fop-registration", "edr-extract",
                       "driver-licence-exchange", "vehicle-registration", "birth-registration",
                       "death-registration", "housing-subsidy", "property-registration",
                       "construction-permit", "combatant-status"):
        assert sample.service(service_id) is not None, service_id
    names = {p.name["uk"] for p in sample.packages.values()}
    for name in ("«Малятко»", "«Вітаємо в громаді»", "«Я-Ветеран»", "«Втрата близької людини»",
                 "«Зміна імені»"):
        assert name in names
    assert sample.service("id-card").fee.amount_kop == 27900 + 34500


def test_colloquial_synonyms_are_present(sample):
    synonyms = {s.lower() for service in sample.services.values() for s in service.synonyms}
    for word in ("прописка", "іпн", "загранпаспорт", "права", "техпаспорт", "propyska",
                 "zagranpasport", "prava", "tekhpasport"):
        assert word in synonyms, word


def test_categories_have_icons(sample):
    icons = {c.icon for c in sample.categories}
    assert all(icons)
    assert icons <= {"passport", "home", "car", "business", "family", "land", "social", "veteran",
                     "construction", "certificate"}
    assert all(sample.services_in(c.id) for c in sample.categories)


def test_branch_schedules(sample):
    central = sample.central_branch
    assert central is not None and central.id == "central"
    with_break = [b for b in sample.branches if any(len(v) > 1 for v in b.week.values())]
    assert with_break
    assert any(i.end.hour == 20 for b in sample.branches for v in b.week.values() for i in v)
    assert any(5 in b.week for b in sample.branches)  # a Saturday
    assert any(d.year == 2027 for b in sample.branches for d in b.special_days)
    # Tuesday 19:00 at the central office: open until 20:00
    status = central.status_at(datetime(2026, 3, 3, 19, 0))
    assert status.open and status.closes_at == datetime(2026, 3, 3, 20, 0)
    # Independence Day is closed everywhere; the next opening is the following morning
    status = central.status_at(datetime(2026, 8, 24, 10, 0))
    assert not status.open and status.opens_at == datetime(2026, 8, 25, 8, 0)
    branch = sample.branch("dniprovskyi")
    lunch = branch.status_at(datetime(2026, 3, 2, 12, 15))  # Monday lunch break
    assert not lunch.open and lunch.opens_at == datetime(2026, 3, 2, 12, 45)
    assert central.hours_on(date(2026, 12, 31))[0].end.hour == 15
