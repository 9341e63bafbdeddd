"""The YAML folder format: exact round trip, precise and complete error reports, no half import."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from stdnum import iban as stdnum_iban

from terminal.catalogue.io import (SAMPLE_FOLDER, CatalogueError, check_folder, edrpou_problem,
                                   iban_problem, import_folder, read_folder, write_folder)
from terminal.catalogue.store import Catalogue, CatalogueStore


@pytest.fixture(scope="module")
def sample():
    return read_folder(SAMPLE_FOLDER)


SMALL_CATEGORIES = ("passports", "civil", "transport", "land")


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory, sample) -> Path:
    """A valid catalogue a third of the sample's size (keeps the many broken-input cases fast)."""
    services = [s for s in sample.services.values() if s.category in SMALL_CATEGORIES]
    ids = {s.id for s in services}
    small = Catalogue(services=services, categories=sample.categories,
                      packages=[p for p in sample.packages.values()
                                if all(i in ids for i in p.services)],
                      branches=sample.branches, news=sample.news, note=sample.note)
    assert small.package("name-change") and small.package("lost-documents")
    target = tmp_path_factory.mktemp("small") / "catalogue"
    write_folder(small, target)
    return target


@pytest.fixture
def folder(tmp_path, small_folder) -> Path:
    target = tmp_path / "catalogue"
    shutil.copytree(small_folder, target)
    return target


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def edit(folder: Path, name: str, change: Callable[[Any], None]) -> None:
    """Load a YAML file, let ``change`` mutate it, write it back."""
    path = folder / name
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    change(document)
    path.write_text(yaml.dump(document, Dumper=_Dumper, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")


def record(document: dict, key: str, record_id: str) -> dict:
    return next(r for r in document[key] if r["id"] == record_id)


def service(folder: Path, file: str, service_id: str, change: Callable[[dict], None]) -> None:
    edit(folder, file, lambda doc: change(record(doc, "services", service_id)))


def problems_of(folder: Path) -> list[str]:
    catalogue, problems = check_folder(folder)
    assert catalogue is None
    return [str(p) for p in problems]


# --- round trip --------------------------------------------------------------------------------

def test_export_then_import_is_exact(tmp_path, sample):
    write_folder(sample, tmp_path / "out")
    again = read_folder(tmp_path / "out")
    assert again == sample
    # and a second export writes the very same bytes
    write_folder(again, tmp_path / "out2")
    for path in sorted((tmp_path / "out").rglob("*.yaml")):
        twin = tmp_path / "out2" / path.relative_to(tmp_path / "out")
        assert twin.read_bytes() == path.read_bytes(), path


def test_database_export_import_round_trip(tmp_path, sample):
    db = tmp_path / "c.sqlite"
    CatalogueStore(db).replace_all(sample)
    write_folder(CatalogueStore(db).load(), tmp_path / "out")
    db2 = tmp_path / "c2.sqlite"
    import_folder(tmp_path / "out", db2)
    assert CatalogueStore(db2).load() == sample


def test_services_may_live_in_one_services_yaml(tmp_path, small_folder):
    small = read_folder(small_folder)
    shutil.copytree(small_folder, tmp_path / "out")
    merged: list = []
    for path in sorted((tmp_path / "out" / "services").glob("*.yaml")):
        merged += yaml.safe_load(path.read_text(encoding="utf-8"))["services"]
        path.unlink()
    (tmp_path / "out" / "services.yaml").write_text(
        yaml.safe_dump({"services": merged}, allow_unicode=True, sort_keys=False),
        encoding="utf-8")
    assert read_folder(tmp_path / "out") == small


def test_export_refuses_to_mix_with_an_existing_catalogue(tmp_path, small_folder):
    sample = read_folder(small_folder)
    write_folder(sample, tmp_path / "out")
    with pytest.raises(FileExistsError):
        write_folder(sample, tmp_path / "out")
    (tmp_path / "out" / "services" / "stale.yaml").write_text("services: []\n")
    (tmp_path / "out" / "README.txt").write_text("kept")
    write_folder(sample, tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "services" / "stale.yaml").exists()
    assert (tmp_path / "out" / "README.txt").read_text() == "kept"
    assert read_folder(tmp_path / "out") == sample


# --- check digits ------------------------------------------------------------------------------

@pytest.mark.parametrize("code", ["00032129", "14360506", "65432176", "31451932", "37026684",
                                  "21133352", "37988155"])
def test_edrpou_check_digit_accepts_valid_codes(code):
    assert edrpou_problem(code) is None


@pytest.mark.parametrize("code", ["00032128", "14360507", "31451933", "3798815", "3798815a"])
def test_edrpou_check_digit_rejects_invalid_codes(code):
    assert edrpou_problem(code) is not None


def test_iban_checksum():
    assert iban_problem("UA583808050000026009702978805") is None
    assert iban_problem("UA583808050000026009702978806") == "checksum fails (mod-97)"
    bban = "8999980333220125000000401"  # how docs/catalogue.md makes the check digits
    iban = "UA" + stdnum_iban.calc_check_digits("UA00" + bban) + bban
    assert len(iban) == 29 and iban_problem(iban) is None


# --- every error names file, record and field --------------------------------------------------

PASSPORTS = "services/passports.yaml"


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def change(rec: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            rec = rec[key]
        rec[last] = value
    return change


def _drop(path: str) -> Callable[[dict], None]:
    def change(rec: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            rec = rec[key]
        del rec[last]
    return change


_ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
ARABIC_EDRPOU = "37988155".translate(_ARABIC)  # valid check digit, Arabic-Indic digits
ARABIC_IBAN = "UA" + "168999980333220125000000411".translate(_ARABIC)  # valid mod-97, likewise

BROKEN_SERVICES = [
    ("fee.details.iban", "UA168999980333220125000000412",
     'services/passports.yaml: service "id-card": fee.details.iban: checksum fails (mod-97)'),
    ("fee.details.iban", "UA16899998033322012500000041",
     'services/passports.yaml: service "id-card": fee.details.iban: '
     "'UA16899998033322012500000041': must be 29 characters (UA + 27), got 28"),
    ("fee.details.edrpou", "3798815",
     'services/passports.yaml: service "id-card": fee.details.edrpou: \'3798815\' must be exactly '
     "8 digits"),
    ("fee.details.edrpou", "37988156",
     'services/passports.yaml: service "id-card": fee.details.edrpou: \'37988156\': check digit '
     "fails (expected 5 at the end)"),
    ("fee.details.edrpou", 37988155,
     'services/passports.yaml: service "id-card": fee.details.edrpou: must be text, got a number '
     "(put it in quotes)"),
    # Only ASCII digits: the hand-written checks took str.isdigit()'s word for it, so an ЄДРПОУ
    # or IBAN in Arabic-Indic digits passed and a superscript digit crashed the import.
    ("fee.details.edrpou", ARABIC_EDRPOU,
     f'services/passports.yaml: service "id-card": fee.details.edrpou: {ARABIC_EDRPOU!r} must be '
     "exactly 8 digits"),
    ("fee.details.edrpou", "3798815\u00b2",
     'services/passports.yaml: service "id-card": fee.details.edrpou: \'3798815\u00b2\' must be '
     "exactly 8 digits"),
    ("fee.details.iban", ARABIC_IBAN,
     f'services/passports.yaml: service "id-card": fee.details.iban: {ARABIC_IBAN!r}: after UA only '
     "digits are allowed"),
    ("fee.amount_kop", 279.5,
     'services/passports.yaml: service "id-card": fee.amount_kop: must be a whole number of '
     "kopiykas greater than 0 (279 UAH = 27900), got 279.5"),
    ("fee.amount_kop", 0,
     'services/passports.yaml: service "id-card": fee.amount_kop: must be a whole number of '
     "kopiykas greater than 0 (279 UAH = 27900), got 0"),
    ("fee.details.purpose_code", "11",
     'services/passports.yaml: service "id-card": fee.details.purpose_code: \'11\' must be the '
     '3-digit Treasury payment type code, e.g. "101"'),
    ("fee.commission", {"kind": "percent", "min_kop": 100},
     'services/passports.yaml: service "id-card": fee.commission.percent_bp: missing (required '
     "for kind percent)"),
    ("fee.commission", {"kind": "fixed", "fixed_kop": 100, "percent_bp": 5},
     'services/passports.yaml: service "id-card": fee.commission.percent_bp: does not apply to '
     "kind 'fixed'"),
    ("fee.commission", {"kind": "percent", "percent_bp": 150, "min_kop": 900, "max_kop": 500},
     'services/passports.yaml: service "id-card": fee.commission.max_kop: must not be below '
     "min_kop (900)"),
    ("name", {"uk": "Паспорт"},
     'services/passports.yaml: service "id-card": name.en: missing (English is required for '
     "names and titles)"),
    ("short", {"en": "Only English"},
     'services/passports.yaml: service "id-card": short.uk: missing (Ukrainian text is '
     "required)"),
    ("short", {"uk": "Текст", "de": "Text"},
     'services/passports.yaml: service "id-card": short.de: unknown language (expected uk or '
     "en)"),
    ("documents", [],
     'services/passports.yaml: service "id-card": documents: must list at least one item'),
    ("category", "no-such-category",
     'services/passports.yaml: service "id-card": category: unknown category '
     "'no-such-category' (not in categories.yaml)"),
    ("synonym", ["прописка"],
     'services/passports.yaml: service "id-card": synonym: unknown field (expected one of: '),
    ("sample", "yes",
     'services/passports.yaml: service "id-card": sample: must be true or false, got \'yes\''),
    ("stages", [{"step": {"uk": "Крок"}, "responsible": {"uk": "Хтось"}}],
     'services/passports.yaml: service "id-card": stages[0].term: missing'),
]


@pytest.mark.parametrize("field, value, expected", BROKEN_SERVICES,
                         ids=[f"{c[0]}={c[1]!r}"[:60] for c in BROKEN_SERVICES])
def test_service_error_names_file_record_and_field(folder, field, value, expected):
    service(folder, PASSPORTS, "id-card", _set(field, value))
    problems = problems_of(folder)
    assert any(p.startswith(expected) for p in problems), problems


def test_missing_required_field(folder):
    service(folder, PASSPORTS, "id-card", _drop("term"))
    assert problems_of(folder) == ['services/passports.yaml: service "id-card": term: missing']


def test_invalid_id_is_named_by_position(folder):
    def change(doc):
        doc["services"][0]["id"] = "ID Card"
    edit(folder, PASSPORTS, change)
    problems = problems_of(folder)
    assert any(p.startswith('services/passports.yaml: service "ID Card": id: \'ID Card\' is not a '
                            "valid id") for p in problems), problems
    # a package that listed the old id now points at nothing, and says so
    assert any(p.startswith('packages.yaml: package "name-change": services[1]: unknown service '
                            "'id-card'") for p in problems), problems


def test_duplicate_id_across_files(folder):
    def copy_id_card(doc):
        doc["services"].append(dict(record(yaml.safe_load(
            (folder / PASSPORTS).read_text(encoding="utf-8")), "services", "id-card")))
    edit(folder, "services/transport.yaml", copy_id_card)
    assert problems_of(folder) == ['services/transport.yaml: service "id-card": id: duplicate '
                                   "id, first defined in services/passports.yaml"]


def test_package_with_unknown_service(folder):
    edit(folder, "packages.yaml",
         lambda doc: record(doc, "packages", "name-change")["services"].insert(1, "baby-bonus"))
    assert problems_of(folder) == ['packages.yaml: package "name-change": services[1]: unknown '
                                   "service 'baby-bonus'"]


def _branch(change: Callable[[dict], None]) -> Callable[[Any], None]:
    return lambda doc: change(record(doc, "branches", "dniprovskyi"))


BROKEN_BRANCHES = [
    (_set("week.monday", ["8:00-17:00"]),
     'branches.yaml: branch "dniprovskyi": week.monday[0]: \'8:00\' is not a time HH:MM'),
    (_set("week.monday", ["17:00-08:00"]),
     'branches.yaml: branch "dniprovskyi": week.monday[0]: \'17:00-08:00\': start must be before '
     "end"),
    (_set("week.monday", ["08:00-13:00", "12:00-17:00"]),
     'branches.yaml: branch "dniprovskyi": week.monday[1]: \'12:00-17:00\' must start after the '
     "previous interval ends (13:00)"),
    (_set("week.mon", ["08:00-13:00"]),
     'branches.yaml: branch "dniprovskyi": week.mon: unknown weekday (use monday, tuesday'),
    (_set("week.friday", ["08:00-24:00"]),
     'branches.yaml: branch "dniprovskyi": week.friday[0]: \'24:00\' is not a time HH:MM'),
    (_set("special_days", {"2026-13-01": []}),
     'branches.yaml: branch "dniprovskyi": special_days.2026-13-01: is not a date YYYY-MM-DD'),
    (_set("central", True),
     "branches.yaml: central: more than one branch is marked central: true: central, "
     "dniprovskyi"),
    (_set("name", {"uk": "Філія"}),
     'branches.yaml: branch "dniprovskyi": name.en: missing (English is required'),
]


@pytest.mark.parametrize("change, expected", BROKEN_BRANCHES,
                         ids=[e.split(": ")[2] for _, e in BROKEN_BRANCHES])
def test_branch_error_names_file_record_and_field(folder, change, expected):
    edit(folder, "branches.yaml", _branch(change))
    problems = problems_of(folder)
    assert any(p.startswith(expected) for p in problems), problems


def test_news_and_category_errors(folder):
    edit(folder, "news.yaml", lambda doc: record(doc, "news", "wifi").update(published="вчора"))
    edit(folder, "categories.yaml",
         lambda doc: record(doc, "categories", "land").update(icon="Land Icon"))
    assert problems_of(folder) == [
        "categories.yaml: category \"land\": icon: 'Land Icon' is not a valid icon name "
        "(lower-case latin letters, digits, hyphens)",
        'news.yaml: news item "wifi": published: \'вчора\' is not a date YYYY-MM-DD',
    ]


def test_yaml_syntax_error_gives_the_line(folder):
    (folder / "news.yaml").write_text("news:\n  - id: x\n    title: {uk: [unclosed\n",
                                      encoding="utf-8")
    problems = problems_of(folder)
    assert len(problems) == 1
    assert problems[0].startswith("news.yaml: YAML syntax error: line ")


def test_unknown_and_missing_files(folder):
    (folder / "branch.yaml").write_text("branches: []\n", encoding="utf-8")
    (folder / "categories.yaml").unlink()
    problems = problems_of(folder)
    assert "categories.yaml: file missing" in problems
    assert any(p.startswith("branch.yaml: unknown file") for p in problems)


def test_all_problems_are_collected_not_just_the_first(folder):
    service(folder, PASSPORTS, "id-card", _set("fee.details.iban", "UA168999980333220125000000412"))
    service(folder, PASSPORTS, "ipn", _set("name", {"uk": "ІПН"}))
    service(folder, "services/land.yaml", "land-cadastre-extract", _set("fee.amount_kop", -5))
    edit(folder, "branches.yaml", _branch(_set("week.sunday", ["10:00-09:00"])))
    problems = problems_of(folder)
    assert len(problems) == 4, problems
    assert {p.split(": ")[0] for p in problems} == {PASSPORTS, "services/land.yaml",
                                                    "branches.yaml"}


def test_failed_import_leaves_the_database_unchanged(tmp_path, folder, sample):
    db = tmp_path / "c.sqlite"
    CatalogueStore(db).replace_all(sample)
    before = (CatalogueStore(db).load(), _dump_tables(db))
    service(folder, PASSPORTS, "id-card", _set("fee.details.iban", "UA168999980333220125000000412"))
    service(folder, "services/transport.yaml", "vehicle-certificate",
            _set("name", {"uk": "Техпаспорт", "en": "Tech passport"}))  # a valid change too
    with pytest.raises(CatalogueError) as raised:
        import_folder(folder, db)
    assert len(raised.value.problems) == 1
    assert "fee.details.iban: checksum fails (mod-97)" in str(raised.value)
    assert (CatalogueStore(db).load(), _dump_tables(db)) == before
    assert before[0] == sample


def _dump_tables(db: Path) -> list:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return [conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("categories", "services", "packages", "package_services", "branches",
                          "news", "meta")]
    finally:
        conn.close()


# --- the command line ----------------------------------------------------------------------------

def cnap(*args: str, cwd: Path) -> "subprocess.CompletedProcess[str]":
    import os
    import subprocess
    import sys

    env = {**os.environ, "CNAP_INSTANCE_PATH": str(cwd / "instance")}
    root = Path(__file__).resolve().parents[3]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "terminal.cli", "catalogue", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_cli_validate_import_export(tmp_path, folder):
    valid = cnap("validate", str(folder), cwd=tmp_path)
    assert valid.returncode == 0, valid.stderr
    assert "valid (" in valid.stdout

    db = tmp_path / "c.sqlite"
    imported = cnap("import", str(folder), "--db", str(db), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    before = CatalogueStore(db).load()
    assert before == read_folder(folder)

    service(folder, PASSPORTS, "id-card", _set("fee.details.iban", "UA168999980333220125000000412"))
    service(folder, PASSPORTS, "ipn", _set("name", {"uk": "ІПН"}))
    for command in (("validate", str(folder)), ("import", str(folder), "--db", str(db))):
        broken = cnap(*command, cwd=tmp_path)
        assert broken.returncode == 1
        lines = broken.stderr.splitlines()
        assert 'services/passports.yaml: service "id-card": fee.details.iban: checksum fails ' \
               "(mod-97)" in lines
        assert any(line.startswith('services/passports.yaml: service "ipn": name.en: missing')
                   for line in lines)
    assert CatalogueStore(db).load() == before  # nothing half-imported

    out = tmp_path / "exported"
    exported = cnap("export", str(out), "--db", str(db), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert read_folder(out) == before
    refused = cnap("export", str(out), "--db", str(db), cwd=tmp_path)
    assert refused.returncode == 2 and "--force" in refused.stderr
    forced = cnap("export", str(out), "--db", str(db), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    missing = cnap("export", str(tmp_path / "x"), "--db", str(tmp_path / "none.sqlite"),
                   cwd=tmp_path)
    assert missing.returncode == 2 and "no such catalogue database" in missing.stderr
    assert not (tmp_path / "none.sqlite").exists()


def test_cli_default_database_is_in_the_instance_folder(tmp_path, small_folder):
    result = cnap("import", str(small_folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert CatalogueStore(tmp_path / "instance" / "catalogue.sqlite").load() == \
        read_folder(small_folder)
