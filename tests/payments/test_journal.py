import sqlite3
import threading

import pytest

from payments.journal import Journal, JournalError, read_records


@pytest.fixture
def journal(tmp_path):
    j = Journal(str(tmp_path / "journal.sqlite")).start()
    yield j
    j.close()


def test_append_is_durable_and_readable_elsewhere(journal):
    event_id = journal.append("p1", "created", {"total_kop": 7400, "name": "Шевченко"})
    other = sqlite3.connect(journal.path)
    row = other.execute("SELECT payment_id, kind, data FROM events WHERE id=?", (event_id,)).fetchone()
    assert row[0] == "p1" and row[1] == "created" and "Шевченко" in row[2]
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()


@pytest.mark.parametrize("sql", ["UPDATE events SET kind='x'", "DELETE FROM events"])
def test_journal_is_append_only(journal, sql):
    journal.append("p1", "created", {})
    db = sqlite3.connect(journal.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute(sql)
    db.close()


def test_many_writers_one_writer_thread_with_group_commit(journal):
    def worker(n):
        for i in range(50):
            journal.append(f"p{n}", "tick", {"i": i})
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = read_records(journal.path)
    assert len(records) == 400 and len({r.id for r in records}) == 400
    for n in range(8):  # each caller's events keep their order
        assert [r.data["i"] for r in records if r.payment_id == f"p{n}"] == list(range(50))
    assert journal.commits < journal.events_written  # batches formed while a commit ran
    assert [t.name for t in threading.enumerate()].count("journal-writer") == 1


def test_boot_number_increments_and_closed_journal_refuses(tmp_path):
    path = str(tmp_path / "j.sqlite")
    first = Journal(path).start()
    first.append("p", "a", {})
    first.close()
    second = Journal(path).start()
    second.append("p", "b", {})
    second.close()
    assert [r.boot for r in read_records(path)] == [1, 2]
    with pytest.raises(JournalError):
        second.append("p", "c", {})


def test_schema_version_is_user_version_and_a_newer_journal_is_refused(tmp_path):
    from payments.journal import SCHEMA_VERSION
    path = str(tmp_path / "journal.sqlite")
    Journal(path).start().close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match="newer than this program"):
        Journal(path)


def test_close_leaves_no_connection_open(tmp_path):
    import os
    path = str(tmp_path / "journal.sqlite")
    j = Journal(path).start()
    j.append("p1", "created", {})
    seen = []
    reader = threading.Thread(target=lambda: seen.append(len(j.records())))
    reader.start()
    reader.join()
    assert seen == [1] and len(j.records()) == 1
    j.close()
    targets = {os.path.realpath(path), os.path.realpath(path + "-wal")}
    still_open = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") in targets:
                still_open.append(fd)
        except OSError:
            pass
    assert still_open == []
