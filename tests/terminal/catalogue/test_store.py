"""The catalogue database: round trip, the snapshot's helpers, all-or-nothing writes."""
from __future__ import annotations

import ast
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from terminal.catalogue.io import SAMPLE_FOLDER, ensure_catalogue, multiply, read_folder
from terminal.catalogue import store as catalogue_store
from terminal.catalogue.model import Package
from terminal.catalogue.store import SCHEMA_VERSION, Catalogue, CatalogueStore, CatalogueStoreError


@pytest.fixture(scope="module")
def sample() -> Catalogue:
    return read_folder(SAMPLE_FOLDER)


def test_round_trip_through_a_real_file(tmp_path, sample):
    path = tmp_path / "catalogue.sqlite"
    CatalogueStore(path).replace_all(sample)
    loaded = CatalogueStore(path).load()  # a fresh store object on the same file
    assert loaded == sample
    assert list(loaded.services) == list(sample.services)
    assert loaded.note == sample.note and "SAMPLE DATA" in loaded.note
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_replace_all_replaces_everything(tmp_path, sample):
    store = CatalogueStore(tmp_path / "c.sqlite")
    store.replace_all(sample)
    smaller = Catalogue(services=[sample.service("id-card")], categories=sample.categories,
                        branches=sample.branches[:1])
    store.replace_all(smaller)
    loaded = store.load()
    assert list(loaded.services) == ["id-card"]
    assert loaded.packages == {} and loaded.news == () and len(loaded.branches) == 1


def test_snapshot_helpers(sample):
    assert sample.service("no-such-service") is None
    assert sample.package("no-such-package") is None
    assert sample.service("id-card").id == "id-card"
    in_passports = sample.services_in("passports")
    assert in_passports and all(s.category == "passports" for s in in_passports)
    assert sample.services_in("no-such-category") == ()
    paid = sample.paid_services()
    assert paid and all(s.fee is not None for s in paid)
    assert len(paid) == sum(1 for s in sample.services.values() if s.paid)
    with_birth = sample.packages_with("birth-registration")
    assert [p.id for p in with_birth] == ["maliatko"]
    assert sample.packages_with("no-such-service") == ()
    assert sample.branches[0].central and sample.central_branch is sample.branches[0]
    dates = [n.published for n in sample.news]
    assert dates == sorted(dates, reverse=True)


def test_services_follow_category_order(sample):
    ranks = {c.id: i for i, c in enumerate(sample.categories)}
    order = [ranks[s.category] for s in sample.services.values()]
    assert order == sorted(order)
    assert [c.order for c in sample.categories] == sorted(c.order for c in sample.categories)


def test_snapshot_is_read_only(sample):
    with pytest.raises(AttributeError):
        sample.services = {}
    with pytest.raises(TypeError):
        sample.services["x"] = sample.service("id-card")
    with pytest.raises(TypeError):
        sample.packages["x"] = sample.package("maliatko")


def test_failed_write_leaves_database_unchanged(tmp_path, sample):
    store = CatalogueStore(tmp_path / "c.sqlite")
    store.replace_all(sample)
    # Validation is bypassed on purpose: the package's unknown service is only caught by the
    # foreign key, after every other table has already been emptied and refilled.
    broken_package = Package(id="broken", name={"uk": "Зламаний", "en": "Broken"},
                             description={"uk": "—"}, services=("id-card", "no-such-service"),
                             term={"uk": "—"})
    broken = Catalogue(services=[replace(s, name={"uk": "змінено", "en": "changed"})
                                 for s in sample.services.values()],
                       categories=sample.categories, packages=[broken_package])
    with pytest.raises(sqlite3.IntegrityError):
        store.replace_all(broken)
    assert store.load() == sample


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    CatalogueStore(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(CatalogueStoreError, match="newer"):
        CatalogueStore(path)


def test_a_file_from_before_user_version_keeps_working_or_is_refused_when_newer(tmp_path, sample):
    """Older releases kept the version in a schema_version table (user_version 0)."""
    path = tmp_path / "c.sqlite"
    CatalogueStore(path).replace_all(sample)
    conn = sqlite3.connect(path)
    conn.executescript("PRAGMA user_version = 0; CREATE TABLE schema_version (version INTEGER NOT NULL);"
                       "INSERT INTO schema_version VALUES (1);")
    conn.close()
    assert CatalogueStore(path).load() == sample
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.executescript("PRAGMA user_version = 0; INSERT INTO schema_version VALUES (2);")
    conn.close()
    with pytest.raises(CatalogueStoreError, match="newer"):
        CatalogueStore(path)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogueStoreError, match="not a catalogue database"):
        CatalogueStore(path)


def test_ensure_catalogue_imports_the_sample_once(tmp_path, sample):
    path = tmp_path / "instance" / "catalogue.sqlite"
    assert ensure_catalogue(path) == sample
    # Once the database holds a catalogue, it is what ensure_catalogue returns.
    own = Catalogue(services=[sample.service("ipn")], categories=sample.categories)
    CatalogueStore(path).replace_all(own)
    assert list(ensure_catalogue(path).services) == ["ipn"]


def test_ensure_catalogue_uses_the_given_folder(tmp_path, sample):
    from terminal.catalogue.io import write_folder

    own = Catalogue(services=[sample.service("ipn"), sample.service("id-card")],
                    categories=sample.categories)
    write_folder(own, tmp_path / "own")
    loaded = ensure_catalogue(tmp_path / "c.sqlite", tmp_path / "own")
    assert list(loaded.services) == ["ipn", "id-card"]  # display order: as given, per category


def test_multiply_makes_a_storable_catalogue_of_n_services(tmp_path, sample):
    big = multiply(sample, 5000)
    assert len(big.services) == 5000
    assert len(set(s.name["uk"] for s in big.services.values())) == 5000
    assert big.packages == sample.packages  # the originals keep their ids
    store = CatalogueStore(tmp_path / "big.sqlite")
    store.replace_all(big)
    assert store.load() == big



def test_the_database_module_does_not_import_the_yaml_module():
    # store.py (SQLite) and io.py (YAML files) share the record conversion in convert.py; the
    # database must not depend on the file format, not even inside a function (it used to, for
    # ensure_catalogue, which made an import circle).
    tree = ast.parse(Path(catalogue_store.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module or ''}.{a.name}".lstrip(".") for a in node.names}
            imported.add(node.module or "")
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert not {name for name in imported if name == "io" or name.endswith("catalogue.io")
                or name.startswith("io.") or name == "yaml"}, imported
