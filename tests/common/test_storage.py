"""common/storage.py: connections, file modes, migrations by user_version, the single writer."""
from __future__ import annotations

import os
import sqlite3
import stat
import threading

import pytest
from hypothesis import given, settings, strategies as st

from common import storage
from common.storage import SchemaTooNew, SingleWriter, StorageError


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- connections and files -------------------------------------------------------------------

def test_connection_settings(tmp_path):
    with storage.opened(tmp_path / "a.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2          # FULL
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert db.isolation_level is None                                    # explicit transactions
        db.execute("CREATE TABLE t (x)")
        assert not db.in_transaction                                         # autocommit: nothing left open


def test_new_files_and_folders_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "new" / "deeper" / "a.sqlite"
        with storage.opened(path) as db:
            db.execute("CREATE TABLE t (x)")
            db.execute("INSERT INTO t VALUES (1)")
            assert mode_of(path) == 0o600
            assert mode_of(str(path) + "-wal") == 0o600                      # SQLite copies the main file's mode
        assert mode_of(tmp_path / "new") == 0o700
        assert mode_of(tmp_path / "new" / "deeper") == 0o700
    finally:
        os.umask(old)


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "a.sqlite"
    path.touch(mode=0o640)
    os.chmod(path, 0o640)
    with storage.opened(path):
        pass
    assert mode_of(path) == 0o640   # tightening old files is privacy.make_private's job


def test_opened_closes_the_connection_even_on_error(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with storage.opened(tmp_path / "a.sqlite") as db:
            1 / 0
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        db.execute("SELECT 1")


def test_readonly_opens_nothing_new_and_refuses_writes(tmp_path):
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(sqlite3.OperationalError):
        storage.connect(missing, readonly=True)
    assert not missing.exists()
    path = tmp_path / "odd name #1?.sqlite"        # characters that mean something in a URI
    with storage.opened(path) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (7)")
    with storage.opened(path, readonly=True) as db:
        assert db.execute("SELECT x FROM t").fetchall() == [(7,)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.execute("INSERT INTO t VALUES (8)")


def test_query_only_connection_reads_but_never_writes(tmp_path):
    path = tmp_path / "a.sqlite"
    with storage.opened(path) as db:
        db.execute("CREATE TABLE t (x)")
    with storage.opened(path, query_only=True) as db:
        assert db.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
        with pytest.raises(sqlite3.OperationalError):
            db.execute("INSERT INTO t VALUES (1)")


def test_transaction_commits_or_rolls_back(tmp_path):
    with storage.opened(tmp_path / "a.sqlite") as db:
        db.execute("CREATE TABLE t (x)")
        with storage.transaction(db):
            db.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(RuntimeError):
            with storage.transaction(db):
                db.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError
        assert not db.in_transaction
        assert db.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_thread_connections_one_per_thread_all_closed(tmp_path):
    path = tmp_path / "a.sqlite"
    readers = storage.ThreadConnections(lambda: storage.connect(path, query_only=True))
    seen = []
    mine = readers.get()
    assert readers.get() is mine
    thread = threading.Thread(target=lambda: seen.append(readers.get()))
    thread.start()
    thread.join()
    assert seen[0] is not mine and len(readers) == 2
    readers.close()
    for db in (mine, seen[0]):
        with pytest.raises(sqlite3.ProgrammingError):
            db.execute("SELECT 1")
    assert readers.get() is not mine      # a fresh one after close


# --- statements and migrations ---------------------------------------------------------------

def test_statements_keep_triggers_strings_and_comments_whole():
    script = """
    CREATE TABLE t (x TEXT); -- a comment; with a semicolon
    CREATE TRIGGER t_no_delete BEFORE DELETE ON t BEGIN SELECT RAISE(ABORT, 'no; never'); END;
    INSERT INTO t VALUES ('a;b')
    """
    found = storage.statements(script)
    assert len(found) == 3
    assert found[1].rstrip().endswith("END;") and "'no; never'" in found[1]
    assert found[2].endswith("VALUES ('a;b')")
    db = sqlite3.connect(":memory:", isolation_level=None)
    storage.run_script(db, script)
    assert db.execute("SELECT x FROM t").fetchall() == [("a;b",)]


def _log_migration(number):
    def step(db):
        db.execute("INSERT INTO log(step) VALUES (?)", (number,))
    return step


MIGRATIONS = ["CREATE TABLE log (step INTEGER); CREATE TABLE things (id INTEGER PRIMARY KEY)",
              _log_migration(2),
              "ALTER TABLE things ADD COLUMN name TEXT; INSERT INTO log(step) VALUES (3)",
              _log_migration(4)]


def test_migrations_run_once_in_order_and_set_user_version(tmp_path):
    path = tmp_path / "a.sqlite"
    with storage.opened(path) as db:
        assert storage.migrate(db, MIGRATIONS[:2], name="test") == 0
        assert storage.user_version(db) == 2
    with storage.opened(path) as db:     # a newer release adds two
        assert storage.migrate(db, MIGRATIONS, name="test") == 2
        assert storage.migrate(db, MIGRATIONS, name="test") == 4   # again: nothing to do
        assert storage.user_version(db) == 4
        assert [r[0] for r in db.execute("SELECT step FROM log ORDER BY rowid")] == [2, 3, 4]
        assert "name" in {r[1] for r in db.execute("PRAGMA table_info(things)")}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=4))
def test_any_sequence_of_upgrades_gives_the_same_file(tmp_path_factory, releases):
    """Opening a file with releases that know 0…6 migrations, in any order: every step runs
    exactly once, in order, and the version never goes back."""
    steps = [f"CREATE TABLE IF NOT EXISTS log (step INTEGER); INSERT INTO log VALUES ({n})" for n in range(1, 7)]
    path = tmp_path_factory.mktemp("m") / "a.sqlite"
    highest = 0
    with storage.opened(path) as db:
        for known in releases:
            if known < highest:
                with pytest.raises(SchemaTooNew):
                    storage.migrate(db, steps[:known], name="test")
                continue
            storage.migrate(db, steps[:known], name="test")
            highest = known
        assert storage.user_version(db) == highest
        rows = [r[0] for r in db.execute("SELECT step FROM log ORDER BY rowid")] if highest else []
        assert rows == list(range(1, highest + 1))


def test_a_newer_schema_is_refused_with_a_clear_error_and_left_alone(tmp_path):
    path = tmp_path / "a.sqlite"
    with storage.opened(path) as db:
        storage.migrate(db, MIGRATIONS, name="test")
    with storage.opened(path) as db:
        with pytest.raises(SchemaTooNew, match=r"test: schema version 4 is newer than this program understands \(2\)"):
            storage.migrate(db, MIGRATIONS[:2], name="test")
        assert storage.user_version(db) == 4
        assert not db.in_transaction


def test_a_failing_migration_changes_nothing(tmp_path):
    def broken(db):
        db.execute("INSERT INTO log(step) VALUES (99)")
        raise ValueError("bad data")
    with storage.opened(tmp_path / "a.sqlite") as db:
        storage.migrate(db, MIGRATIONS[:2], name="test")
        with pytest.raises(ValueError):
            storage.migrate(db, [*MIGRATIONS[:2], broken], name="test")
        assert storage.user_version(db) == 2
        assert [r[0] for r in db.execute("SELECT step FROM log")] == [2]


def test_legacy_version_for_files_from_before_user_version(tmp_path):
    path = tmp_path / "a.sqlite"
    with storage.opened(path) as db:    # what an older release wrote: its own version table
        db.executescript("CREATE TABLE log (step INTEGER); CREATE TABLE things (id INTEGER PRIMARY KEY);"
                         "CREATE TABLE version (v INTEGER); INSERT INTO version VALUES (2);")
    legacy = lambda db: db.execute("SELECT v FROM version").fetchone()[0]  # noqa: E731
    with storage.opened(path) as db:
        assert storage.migrate(db, MIGRATIONS, name="test", legacy_version=legacy) == 2
        assert [r[0] for r in db.execute("SELECT step FROM log")] == [3, 4]


# --- the single writer -----------------------------------------------------------------------

@pytest.fixture
def writer(tmp_path):
    path = tmp_path / "w.sqlite"
    with storage.opened(path) as db:
        db.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
        db.execute("INSERT INTO counter VALUES (0)")
        db.execute("CREATE TABLE writes (thread INTEGER)")
    w = SingleWriter(lambda: storage.connect(path), name="test-writer").start()
    yield w, path
    w.close()


def test_single_writer_serialises_concurrent_read_modify_writes(writer):
    """Each write reads the counter and writes it back plus one, from 8 threads at once: with
    one writer none is lost, and every write ran on the writer's thread."""
    w, path = writer

    def increment(db):
        (n,) = db.execute("SELECT n FROM counter").fetchone()
        db.execute("UPDATE counter SET n=?", (n + 1,))
        db.execute("INSERT INTO writes VALUES (?)", (threading.get_ident(),))

    start = threading.Barrier(8)

    def worker():
        start.wait()
        for _ in range(25):
            w.write(increment)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with storage.opened(path, readonly=True) as db:
        assert db.execute("SELECT n FROM counter").fetchone() == (200,)
        assert db.execute("SELECT COUNT(DISTINCT thread) FROM writes").fetchone() == (1,)
        assert db.execute("SELECT thread FROM writes LIMIT 1").fetchone()[0] != threading.get_ident()


def test_single_writer_error_rolls_back_and_writer_carries_on(writer):
    w, path = writer

    def fail(db):
        db.execute("UPDATE counter SET n = 100")
        raise KeyError("caller's own error")
    with pytest.raises(KeyError):
        w.write(fail)
    with pytest.raises(sqlite3.OperationalError):
        w.write(lambda db: db.execute("INSERT INTO nowhere VALUES (1)"))
    assert w.write(lambda db: db.execute("UPDATE counter SET n = n + 1").rowcount) == 1
    assert w.call(lambda db: db.execute("SELECT n FROM counter").fetchone()[0]) == 1


def test_a_write_from_inside_a_write_runs_in_the_same_transaction(writer):
    w, _ = writer

    def outer(db):
        db.execute("UPDATE counter SET n = 5")
        return w.write(lambda inner: inner.execute("SELECT n FROM counter").fetchone()[0])
    assert w.write(outer) == 5


def test_single_writer_batches_items_queued_meanwhile(tmp_path):
    path = tmp_path / "b.sqlite"
    with storage.opened(path) as db:
        db.execute("CREATE TABLE items (x)")
    batches = []
    gate = threading.Event()

    def write_batch(db, items):
        with storage.transaction(db):
            db.executemany("INSERT INTO items VALUES (?)", [(x,) for x, _ in items])
        batches.append(len(items))
        for _, done in items:
            done.set()
        return True

    w = SingleWriter(lambda: storage.connect(path), write_batch=write_batch)
    w.start()
    try:
        holding = threading.Event()

        def hold(db):                         # the writer is busy while the items queue up
            holding.set()
            gate.wait(10)
        blocker = threading.Thread(target=lambda: w.call(hold))
        blocker.start()
        assert holding.wait(10)
        events = [threading.Event() for _ in range(20)]
        for i, done in enumerate(events):
            w.put((i, done))
        gate.set()
        blocker.join()
        for done in events:
            assert done.wait(10)
    finally:
        w.close()
    assert sum(batches) == 20 and batches[0] == 20   # all twenty in one transaction


def test_closed_writer_refuses_work_and_closes_its_connection(tmp_path):
    opened = []

    def open_connection():
        db = storage.connect(tmp_path / "c.sqlite")
        opened.append(db)
        return db
    w = SingleWriter(open_connection, label="test store").start()
    w.write(lambda db: db.execute("CREATE TABLE t (x)"))
    w.close()
    with pytest.raises(StorageError, match="test store is not running"):
        w.write(lambda db: None)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].execute("SELECT 1")


def test_writer_reopens_after_the_connection_cannot_be_opened(tmp_path):
    attempts = []

    def open_connection():
        attempts.append(1)
        if len(attempts) == 1:
            raise sqlite3.OperationalError("unable to open database file")
        return storage.connect(tmp_path / "d.sqlite")
    w = SingleWriter(open_connection, label="flaky").start()
    try:
        with pytest.raises(StorageError, match="flaky cannot be opened for writing"):
            w.write(lambda db: None)
        assert w.write(lambda db: db.execute("SELECT 1").fetchone()[0]) == 1
    finally:
        w.close()
