"""The catalogue in SQLite, and the read-only snapshot the kiosk reads from.

One file in the instance folder. The kiosk never edits the catalogue record by record: an import
replaces everything in one transaction (``CatalogueStore.replace_all``), and readers take a
snapshot (``CatalogueStore.load``) that they keep in memory. Each record is one row with a few
columns worth querying (id, position, category, fee) plus a JSON column holding the rest in the
same shape as the YAML format (``convert.py``, ``docs/catalogue.md``): one ``json.loads`` per
row keeps a 5,000-service catalogue loading in a fraction of a second.

The schema version is SQLite's ``user_version`` (``common.storage.migrate``); files written
before it was used carry it in a ``schema_version`` table.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import sqlite3
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Iterator

from common import storage
from common.storage import SchemaTooNew

from .convert import (branch_from_plain, branch_to_plain, category_from_plain,
                      category_to_plain, news_from_plain, news_to_plain, package_from_plain,
                      package_to_plain, service_from_plain, service_to_plain)
from .model import Branch, Category, NewsItem, Package, Service

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS categories (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS services (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    category TEXT NOT NULL REFERENCES categories(id),
    fee_kop INTEGER,              -- NULL: free
    sample INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS services_by_category ON services(category, position);
CREATE TABLE IF NOT EXISTS packages (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS package_services (
    package TEXT NOT NULL REFERENCES packages(id),
    position INTEGER NOT NULL,
    service TEXT NOT NULL REFERENCES services(id),
    PRIMARY KEY (package, position)
);
CREATE TABLE IF NOT EXISTS branches (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    central INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS news (
    id TEXT PRIMARY KEY,
    published TEXT NOT NULL,      -- ISO date
    data TEXT NOT NULL
);
"""
MIGRATIONS = (_SCHEMA,)
SCHEMA_VERSION = len(MIGRATIONS)


def _legacy_version(conn: sqlite3.Connection) -> int:
    """The version of a file written before ``user_version`` was used (0: a new file)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='schema_version'").fetchone():
        return 0
    return conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0


class CatalogueStoreError(RuntimeError):
    """The database cannot be used (newer schema, unreadable file)."""


# --- the snapshot --------------------------------------------------------------------------------

class Catalogue:
    """An immutable, in-memory view of the whole catalogue.

    Order is canonical, whatever order the records came in: categories by ``order`` (then as
    given), services grouped by their category's order and otherwise as given, branches central
    first, news newest first, packages as given.
    """

    __slots__ = ("services", "categories", "packages", "branches", "news", "note",
                 "_by_category", "_paid", "_packages_by_service", "_categories_by_id",
                 "_branches_by_id")

    def __init__(self, services: Iterable[Service] = (), categories: Iterable[Category] = (),
                 packages: Iterable[Package] = (), branches: Iterable[Branch] = (),
                 news: Iterable[NewsItem] = (), note: str = "") -> None:
        ordered_categories = sorted(categories, key=lambda c: c.order)  # stable: ties keep order
        rank = {c.id: i for i, c in enumerate(ordered_categories)}
        unknown_rank = len(rank)
        ordered_services = sorted(services, key=lambda s: rank.get(s.category, unknown_rank))
        set_ = object.__setattr__
        set_(self, "categories", tuple(ordered_categories))
        set_(self, "services", MappingProxyType({s.id: s for s in ordered_services}))
        set_(self, "packages", MappingProxyType({p.id: p for p in packages}))
        set_(self, "branches", tuple(sorted(branches, key=lambda b: not b.central)))
        set_(self, "news", tuple(sorted(news, key=lambda n: n.published, reverse=True)))
        set_(self, "note", note)
        by_category: dict[str, list[Service]] = {}
        for service in self.services.values():
            by_category.setdefault(service.category, []).append(service)
        set_(self, "_by_category", {k: tuple(v) for k, v in by_category.items()})
        set_(self, "_paid", tuple(s for s in self.services.values() if s.fee is not None))
        by_service: dict[str, list[Package]] = {}
        for package in self.packages.values():
            for service_id in dict.fromkeys(package.services):
                by_service.setdefault(service_id, []).append(package)
        set_(self, "_packages_by_service", {k: tuple(v) for k, v in by_service.items()})
        set_(self, "_categories_by_id", {c.id: c for c in self.categories})
        set_(self, "_branches_by_id", {b.id: b for b in self.branches})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Catalogue snapshot is read-only")

    def service(self, service_id: str) -> Service | None:
        return self.services.get(service_id)

    def package(self, package_id: str) -> Package | None:
        return self.packages.get(package_id)

    def category(self, category_id: str) -> Category | None:
        return self._categories_by_id.get(category_id)

    def branch(self, branch_id: str) -> Branch | None:
        return self._branches_by_id.get(branch_id)

    @property
    def central_branch(self) -> Branch | None:
        return self.branches[0] if self.branches and self.branches[0].central else None

    def services_in(self, category_id: str) -> tuple[Service, ...]:
        return self._by_category.get(category_id, ())

    def paid_services(self) -> tuple[Service, ...]:
        return self._paid

    def packages_with(self, service_id: str) -> tuple[Package, ...]:
        return self._packages_by_service.get(service_id, ())

    def package_services(self, package: Package) -> tuple[Service, ...]:
        """The package's services that exist, in the package's order."""
        return tuple(s for s in (self.services.get(i) for i in package.services) if s)

    def __len__(self) -> int:
        return len(self.services)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Catalogue):
            return NotImplemented
        return (list(self.services.items()) == list(other.services.items())
                and self.categories == other.categories
                and list(self.packages.items()) == list(other.packages.items())
                and self.branches == other.branches and self.news == other.news
                and self.note == other.note)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"<Catalogue {len(self.services)} services, {len(self.categories)} categories, "
                f"{len(self.packages)} packages, {len(self.branches)} branches, "
                f"{len(self.news)} news>")


# --- the database ------------------------------------------------------------------------------

class _SharingDecoder(json.JSONDecoder):
    """Decodes service rows so that equal texts are one object in memory.

    Services of one ЦНАП repeat the same documents, providers, legal acts and stages many
    times; sharing them keeps a 5,000-service catalogue within the kiosk's memory budget.
    Texts are never mutated after loading (the snapshot is read-only)."""

    def __init__(self) -> None:
        self._texts: dict[tuple, dict] = {}
        self._strings: dict[str, str] = {}
        super().__init__(object_hook=self._share)

    def _share(self, obj: dict) -> dict:
        if obj.keys() <= {"uk", "en"}:
            key = tuple(obj.items())
            shared = self._texts.get(key)
            if shared is None:
                shared = self._texts[key] = {k: self._strings.setdefault(v, v) for k, v in obj.items()}
            return shared
        return obj


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class CatalogueStore:
    """The catalogue database file. Opens a short-lived connection per call, so one store object
    can be shared by the web server's threads."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with self._connect() as conn:
            self._ensure_schema(conn)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one call, closed when it ends."""
        try:
            conn = storage.connect(self.path, busy_timeout_s=10)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise CatalogueStoreError(f"{self.path}: cannot open the catalogue database: {exc}") from exc
            raise CatalogueStoreError(f"{self.path}: not a catalogue database: {exc}") from exc
        except sqlite3.Error as exc:
            raise CatalogueStoreError(f"{self.path}: cannot open the catalogue database: {exc}") from exc
        try:
            yield conn
        finally:
            conn.close()

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        try:
            storage.migrate(conn, MIGRATIONS, name=f"{self.path}: catalogue", legacy_version=_legacy_version)
        except SchemaTooNew as exc:
            raise CatalogueStoreError(str(exc)) from exc
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise
            raise CatalogueStoreError(f"{self.path}: not a catalogue database: {exc}") from exc

    def is_empty(self) -> bool:
        with self._connect() as conn:
            return conn.execute("SELECT count(*) FROM services").fetchone()[0] == 0

    def replace_all(self, catalogue: Catalogue) -> None:
        """Write ``catalogue`` in place of everything stored: all of it or, on any error, nothing."""
        with self._connect() as conn, storage.transaction(conn):
            for table in ("package_services", "packages", "services", "categories",
                          "branches", "news", "meta"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("INSERT INTO meta (key, value) VALUES ('note', ?)",
                         (catalogue.note,))
            conn.executemany(
                "INSERT INTO categories (id, position, data) VALUES (?, ?, ?)",
                [(c.id, i, _dumps(category_to_plain(c)))
                 for i, c in enumerate(catalogue.categories)])
            conn.executemany(
                "INSERT INTO services (id, position, category, fee_kop, sample, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(s.id, i, s.category, s.fee.amount_kop if s.fee else None, int(s.sample),
                  _dumps(service_to_plain(s)))
                 for i, s in enumerate(catalogue.services.values())])
            conn.executemany(
                "INSERT INTO packages (id, position, data) VALUES (?, ?, ?)",
                [(p.id, i, _dumps(package_to_plain(p)))
                 for i, p in enumerate(catalogue.packages.values())])
            conn.executemany(
                "INSERT INTO package_services (package, position, service) VALUES (?, ?, ?)",
                [(p.id, i, service_id) for p in catalogue.packages.values()
                 for i, service_id in enumerate(p.services)])
            conn.executemany(
                "INSERT INTO branches (id, position, central, data) VALUES (?, ?, ?, ?)",
                [(b.id, i, int(b.central), _dumps(branch_to_plain(b)))
                 for i, b in enumerate(catalogue.branches)])
            conn.executemany(
                "INSERT INTO news (id, published, data) VALUES (?, ?, ?)",
                [(n.id, n.published.isoformat(), _dumps(news_to_plain(n)))
                 for n in catalogue.news])

    def load(self) -> Catalogue:
        """A snapshot of everything stored."""
        # Building ~10^5 small objects would trigger many cyclic-GC passes over them; none of
        # them form cycles, so collection is paused for the duration.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._load()
        finally:
            if gc_was_enabled:
                gc.enable()

    def _load(self) -> Catalogue:
        # one consistent read even while an import commits
        with self._connect() as conn, storage.transaction(conn, "DEFERRED"):
            categories = [category_from_plain(json.loads(d)) for (d,) in
                          conn.execute("SELECT data FROM categories ORDER BY position")]
            decode = _SharingDecoder().decode
            services = [service_from_plain(decode(d)) for (d,) in
                        conn.execute("SELECT data FROM services ORDER BY position")]
            packages = [package_from_plain(json.loads(d)) for (d,) in
                        conn.execute("SELECT data FROM packages ORDER BY position")]
            branches = [branch_from_plain(json.loads(d)) for (d,) in
                        conn.execute("SELECT data FROM branches ORDER BY position")]
            news = [news_from_plain(json.loads(d)) for (d,) in
                    conn.execute("SELECT data FROM news ORDER BY rowid")]
            row = conn.execute("SELECT value FROM meta WHERE key = 'note'").fetchone()
        return Catalogue(services=services, categories=categories, packages=packages,
                         branches=branches, news=news, note=row[0] if row else "")
