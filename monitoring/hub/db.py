"""The hub's store: one SQLite file for a few sites, PostgreSQL (psycopg 3) for a region or the
country, behind the same small interface.

    db = open_store("sqlite:///var/lib/cnap/hub.db")        # or a path
    db = open_store("postgresql://hub@db.example/cnap")
    db.ensure_schema("ingest", [MIGRATION_1, MIGRATION_2])  # each component owns its tables
    with db.transaction() as tx:
        tx.execute("INSERT INTO t(a) VALUES (?) ON CONFLICT (a) DO NOTHING", (1,))
    rows = db.query("SELECT a FROM t WHERE a > ?", (0,))

SQL is written once, in the subset both engines read the same way: ``?`` placeholders (turned
into ``%s`` for psycopg), ``INSERT … ON CONFLICT … DO UPDATE SET x = excluded.x``, ``TEXT``,
``BIGINT``, ``DOUBLE PRECISION`` and the two markers below in DDL:

    {id}     an auto-numbered primary key column ("id INTEGER PRIMARY KEY AUTOINCREMENT" in SQLite,
             "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY" in PostgreSQL)
    {json}   a JSON document stored as text (TEXT in both: the hub never queries inside it)

Schema versions are kept per component in ``schema_versions`` (not SQLite's single
``user_version``): ingest, alerting and the web app each list their migrations, and
``ensure_schema`` applies the missing ones in one transaction under a lock, so two workers
starting together do not both apply them. A store newer than the code is refused.

Connections: SQLite through ``common.storage`` (WAL, busy timeout, 0600 file); one connection per
thread for reads, and writes in ``BEGIN IMMEDIATE`` transactions. PostgreSQL: one connection per
thread, autocommit outside ``transaction()``. Neither engine's objects leak out: callers get rows
as tuples.
"""
from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

from common import storage

SCHEMA_TABLE = ("CREATE TABLE IF NOT EXISTS schema_versions ("
                "component TEXT PRIMARY KEY, version BIGINT NOT NULL)")
_PG_LOCK_KEY = 0x636E6170   # "cnap": the advisory lock held while a component's schema changes

_DDL = {
    "sqlite": {"id": "id INTEGER PRIMARY KEY AUTOINCREMENT", "json": "TEXT"},
    "postgresql": {"id": "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "json": "TEXT"},
}
_QMARK = re.compile(r"\?")


class StoreError(RuntimeError):
    """A store that cannot be opened or used (bad URL, schema from a newer release)."""


class Transaction:
    """What a caller may do inside ``HubStore.transaction()``: statements with ``?`` placeholders."""

    def __init__(self, store: "HubStore", cursor: Any) -> None:
        self._store = store
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> "Transaction":
        self._cursor.execute(self._store.sql(sql), tuple(params))
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> "Transaction":
        rows = [tuple(r) for r in rows]
        if rows:
            self._cursor.executemany(self._store.sql(sql), rows)
        return self

    def fetchone(self) -> tuple | None:
        row = self._cursor.fetchone()
        return tuple(row) if row is not None else None

    def fetchall(self) -> list[tuple]:
        return [tuple(r) for r in self._cursor.fetchall()]

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class HubStore:
    """Base of the two engines; see the module's docstring."""

    engine = ""

    def __init__(self) -> None:
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    # --- engine specifics -----------------------------------------------------------------------
    def _open(self) -> Any:
        raise NotImplementedError

    def _begin(self, db: Any, write: bool) -> contextlib.AbstractContextManager:
        raise NotImplementedError

    def _lock_schema(self, tx: Transaction) -> None:
        pass

    def sql(self, text: str) -> str:
        return text

    def ddl(self, text: str) -> str:
        return text.format(**_DDL[self.engine])

    # --- shared ---------------------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._closed:
            raise StoreError("the hub store is closed")
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._open()
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Transaction]:
        """One transaction: committed when the block ends, rolled back when it raises. A read-only
        one (``write=False``) does not take SQLite's write lock, so pages never wait for ingest."""
        db = self._connection()
        with self._begin(db, write) as cursor:
            yield Transaction(self, cursor)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.transaction(write=False) as tx:
            return tx.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        with self.transaction(write=False) as tx:
            return tx.execute(sql, params).fetchone()

    def ensure_schema(self, component: str, migrations: Sequence[str | Sequence[str]]) -> int:
        """Applies ``component``'s migrations it has not had yet; each is one DDL statement or a
        list of them, with the ``{id}``/``{json}`` markers. Returns the component's version."""
        with self.transaction() as tx:
            self._lock_schema(tx)   # before CREATE … IF NOT EXISTS, which races in PostgreSQL
            tx.execute(SCHEMA_TABLE)
            row = tx.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
            have = row[0] if row else 0
            if have > len(migrations):
                raise StoreError(f"the hub store's {component} schema is version {have}; this release knows "
                                 f"{len(migrations)}: use the newer release or another store")
            for step in migrations[have:]:
                for statement in ([step] if isinstance(step, str) else step):
                    tx.execute(self.ddl(statement))
            if have < len(migrations):
                tx.execute("INSERT INTO schema_versions(component, version) VALUES (?, ?) "
                           "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                           (component, len(migrations)))
            return len(migrations)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            with contextlib.suppress(Exception):
                db.close()

    def __enter__(self) -> "HubStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SqliteStore(HubStore):
    engine = "sqlite"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        storage.prepare_file(self.path)

    def _open(self) -> sqlite3.Connection:
        # NORMAL in WAL mode loses at most the last transactions on a power cut, never consistency;
        # the sites re-send their retained state at every reconnect, so that is all it costs.
        # Switching a new file to WAL takes a lock SQLite's busy timeout does not wait for, so
        # workers starting together on a fresh file can get "database is locked": wait and retry.
        deadline = time.monotonic() + storage.BUSY_TIMEOUT_S
        while True:
            try:
                return storage.connect(self.path, synchronous="NORMAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextlib.contextmanager
    def _begin(self, db: sqlite3.Connection, write: bool):
        with storage.transaction(db, "IMMEDIATE" if write else "DEFERRED") as conn:
            cursor = conn.cursor()
            try:
                yield cursor
            finally:
                cursor.close()


class PostgresStore(HubStore):
    engine = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        import psycopg   # only a hub on PostgreSQL needs it loaded
        self._psycopg = psycopg

    def _open(self) -> Any:
        try:
            return self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except self._psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {str(exc).strip().splitlines()[0]}") from exc

    @contextlib.contextmanager
    def _begin(self, db: Any, write: bool):
        if db.closed or db.broken:
            # A server restart or a dropped connection: open a fresh one for this thread.
            with self._lock:
                if db in self._connections:
                    self._connections.remove(db)
            self._local.db = None
            db = self._connection()
        with db.transaction():
            with db.cursor() as cursor:
                yield cursor

    def _lock_schema(self, tx: Transaction) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_PG_LOCK_KEY,))

    def sql(self, text: str) -> str:
        # psycopg's placeholder is %s; a literal % in the SQL must be doubled first.
        return _QMARK.sub("%s", text.replace("%", "%%"))


def open_store(url: str | Path) -> HubStore:
    """``sqlite:///path``, a bare path (SQLite), or ``postgresql://…`` / ``postgres://…``."""
    text = str(url).strip()
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(text)
    if scheme == "sqlite":
        path = text[len("sqlite://"):]
        if not path or path == "/":
            raise StoreError("sqlite:// needs a file path, e.g. sqlite:///var/lib/cnap/hub.db")
        return SqliteStore(path)
    if scheme:
        raise StoreError(f"unknown hub store {scheme}://; use sqlite:///path or postgresql://…")
    if not text:
        raise StoreError("no hub store given")
    return SqliteStore(text)
