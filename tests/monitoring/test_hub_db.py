"""The hub store speaks the same SQL on SQLite and on a real PostgreSQL server."""
from __future__ import annotations

import threading

import pytest

from monitoring.hub.db import PostgresStore, SqliteStore, StoreError, open_store

MIGRATIONS = [
    ["CREATE TABLE things ({id}, name TEXT NOT NULL UNIQUE, doc {json}, value DOUBLE PRECISION)"],
    "CREATE INDEX things_value ON things(value)",
]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        db = open_store(f"sqlite:///{tmp_path}/hub.db")
    else:
        db = open_store(request.getfixturevalue("pg_url"))
    yield db
    db.close()


def test_open_store_reads_urls_and_paths(tmp_path):
    assert isinstance(open_store(tmp_path / "a.db"), SqliteStore)
    assert isinstance(open_store(f"sqlite:///{tmp_path}/b.db"), SqliteStore)
    assert isinstance(open_store("postgresql://u@127.0.0.1:1/x"), PostgresStore)
    for bad in ("", "sqlite://", "mysql://x/y"):
        with pytest.raises(StoreError):
            open_store(bad)


def test_same_sql_on_both_engines(store):
    assert store.ensure_schema("t", MIGRATIONS) == 2
    assert store.ensure_schema("t", MIGRATIONS) == 2      # nothing applied twice
    with store.transaction() as tx:
        tx.executemany("INSERT INTO things(name, doc, value) VALUES (?, ?, ?)",
                       [("a", '{"x": "50%"}', 1.5), ("b", None, 2.0)])
        tx.execute("INSERT INTO things(name, value) VALUES (?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET value = excluded.value", ("a", 9.0))
    assert store.query("SELECT name, doc, value FROM things ORDER BY name") == [
        ("a", '{"x": "50%"}', 9.0), ("b", None, 2.0)]
    assert store.query_one("SELECT count(*) FROM things WHERE doc LIKE '%50%%'")[0] == 1


def test_a_failed_transaction_leaves_nothing(store):
    store.ensure_schema("t", MIGRATIONS)
    with pytest.raises(Exception):
        with store.transaction() as tx:
            tx.execute("INSERT INTO things(name) VALUES (?)", ("x",))
            tx.execute("INSERT INTO things(name) VALUES (?)", ("x",))   # unique violation
    assert store.query("SELECT name FROM things") == []
    with store.transaction() as tx:   # the connection is still usable
        tx.execute("INSERT INTO things(name) VALUES (?)", ("y",))
    assert store.query("SELECT name FROM things") == [("y",)]


def test_a_newer_schema_is_refused(store):
    store.ensure_schema("t", MIGRATIONS)
    with pytest.raises(StoreError, match="version 2"):
        store.ensure_schema("t", MIGRATIONS[:1])


def test_two_starters_apply_migrations_once(store):
    errors = []

    def start():
        try:
            store.ensure_schema("t", MIGRATIONS)
        except Exception as exc:   # noqa: BLE001 - collected for the assert
            errors.append(exc)
    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.query("SELECT version FROM schema_versions WHERE component = 't'") == [(2,)]
