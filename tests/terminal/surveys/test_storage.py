"""The survey file on common/storage: one writer thread, connections closed, versions refused
when newer, and reports that read through the public ``query`` only."""
from __future__ import annotations

import ast
import os
import sqlite3
import threading
from pathlib import Path

import pytest

import terminal.surveys.reports as reports_module
from common.storage import SchemaTooNew, StorageError
from terminal.surveys.antigaming import Rules
from terminal.surveys.schema import SCHEMA_VERSION
from terminal.surveys.store import SurveyStore
from tests.terminal.surveys.conftest import NOW, answer


def open_descriptors(path: str) -> int:
    """How many of this process's file descriptors point at the database or its WAL."""
    targets = {os.path.realpath(path), os.path.realpath(path + "-wal")}
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") in targets
        except OSError:
            pass
    return count


def test_concurrent_batches_from_many_tablets_all_land_through_one_writer(store):
    tablets = [store.register_tablet(f"T{i}", "central", f"Desk {i}", "desk")[0] for i in range(6)]
    start = threading.Barrier(len(tablets))
    results = {}

    def send(tablet):
        start.wait()
        batch = [answer("good", at=NOW - 3600 + 60 * k) for k in range(10)]
        results[tablet.id] = store.ingest(tablet, batch, now=NOW)

    threads = [threading.Thread(target=send, args=(t,)) for t in tablets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r["status"] == "stored" for batch in results.values() for r in batch)
    assert store.count_answers() == 60
    # the roll-ups moved exactly with the answers
    assert store.query("SELECT SUM(n) FROM stats").fetchone()[0] == 60


def test_close_closes_every_connection_of_every_thread(tmp_path):
    path = str(tmp_path / "surveys.sqlite")
    store = SurveyStore(path)
    store.ensure_default_survey()
    readers = [threading.Thread(target=store.surveys) for _ in range(3)]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    assert open_descriptors(path) >= 4          # the writer and four readers (this thread's too)
    store.close()
    assert open_descriptors(path) == 0
    with pytest.raises(StorageError, match="survey database is not running"):
        store.mark_forwarded(["00000000-0000-4000-8000-000000000000"])


def test_a_newer_file_is_refused_with_a_clear_error_and_left_alone(tmp_path):
    path = str(tmp_path / "surveys.sqlite")
    SurveyStore(path, Rules()).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1} is newer than this program"):
        SurveyStore(path, Rules())
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    db.close()


def test_reader_connections_cannot_write(store):
    with pytest.raises(sqlite3.OperationalError):
        store.query("DELETE FROM answers")


def test_reports_use_no_private_member_of_the_store():
    tree = ast.parse(Path(reports_module.__file__).read_text(encoding="utf-8"))
    private = [node.attr for node in ast.walk(tree)
               if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
               and node.value.id == "store" and node.attr.startswith("_")]
    assert private == []
