"""Personal data in the payment journal is kept only as long as the bank registry needs it.

After PERSONAL_DATA_RETENTION_DAYS (counted from the payment's settlement) the payer's surname and
tax number are replaced by their masked form by an append-only ``redaction`` event; the old bytes
must be gone from the SQLite files themselves (main file, -wal, -shm), not just from the rows."""
import csv
import io
import json
import os
import sqlite3
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from stdnum.ua import rntrc

from payments import registry, retention
from payments.journal import Journal, read_records
from payments.taxid import mask_id, mask_surname
from payments.till import Till, TillConfig
from terminal import cli
from tests.payments.helpers import RNOKPP, Kiosk, make_app

DAY = 86400.0
NOW = time.time()


def rnokpp(first9: str) -> str:
    return first9 + rntrc.calc_check_digit(first9)


OLD_RNOKPP = rnokpp("298765432")
NEW_RNOKPP = rnokpp("311223344")
PENDING_RNOKPP = rnokpp("287654321")


def file_bytes(path: str) -> bytes:
    """Every byte SQLite keeps for this journal: the main file, the WAL and the shared index."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            with open(path + suffix, "rb") as fh:
                data += fh.read()
    return data


def created(pid: str, seq: int, surname: str, tax: str, at: float) -> dict:
    return {"payment_id": pid, "service_id": "residence-registration", "service_name": {"uk": "Реєстрація"},
            "details": {"recipient": "ГУК", "edrpou": "37993783", "iban": "UA213223130000026007233566001",
                        "purpose_code": "101", "purpose": "Адмінзбір"},
            "quote": {"amount_kop": 7400, "commission_kop": 0, "total_kop": 7400},
            "payer": {"surname": surname, "id_kind": "rnokpp", "id_value": tax}, "receipt_seq": seq,
            "receipt_no": f"KIOSK-01-{seq:06d}", "voucher_code": f"ABCD-EF{seq:02d}", "at": at}


def add_payment(journal: Journal, pid: str, seq: int, surname: str, tax: str, created_at: float,
                settled_at: float | None) -> None:
    """A payment as the till journals it: created, then (optionally) cancelled, i.e. settled."""
    journal.clock = lambda: created_at
    journal.append(pid, "created", created(pid, seq, surname, tax, created_at))
    # filler events from other streams between them, as a real day has
    for i in range(20):
        journal.append("device", "validator_idle", {"i": i, "pad": "x" * 200})
    if settled_at is not None:
        journal.clock = lambda: settled_at
        journal.append(pid, "cancel", {})


def build_journal(path: str) -> Journal:
    j = Journal(path).start()
    # settled 100 days ago: due; created 100 days ago but settled 10 days ago: not due;
    # created 100 days ago and never settled: not due; recent: not due.
    add_payment(j, "old", 1, "Шевченко", OLD_RNOKPP, NOW - 101 * DAY, NOW - 100 * DAY)
    add_payment(j, "late", 2, "Франко", RNOKPP, NOW - 100 * DAY, NOW - 10 * DAY)
    add_payment(j, "open", 3, "Українка", PENDING_RNOKPP, NOW - 100 * DAY, None)
    add_payment(j, "new", 4, "Коваленко", NEW_RNOKPP, NOW - 1 * DAY, NOW - 1 * DAY)
    j.clock = time.time
    return j


@pytest.fixture
def journal(tmp_path):
    j = build_journal(str(tmp_path / "journal.sqlite"))
    yield j
    j.close()


def payer_of(path: str, pid: str) -> dict:
    return next(r.data["payer"] for r in read_records(path) if r.payment_id == pid and r.kind == "created")


def test_redaction_masks_only_payments_settled_before_the_retention(journal):
    result = retention.redact(journal, days=90, now=NOW, by="test")
    assert result.payments == ["old"]
    assert payer_of(journal.path, "old") == {"surname": mask_surname("Шевченко"), "id_kind": "rnokpp",
                                             "id_value": mask_id(OLD_RNOKPP), "redacted": True}
    assert payer_of(journal.path, "late")["id_value"] == RNOKPP
    assert payer_of(journal.path, "open")["id_value"] == PENDING_RNOKPP
    assert payer_of(journal.path, "new")["surname"] == "Коваленко"
    # the redaction itself is an event: what, whose, when, why
    events = [r for r in read_records(journal.path) if r.payment_id == retention.STREAM]
    assert len(events) == 1 and events[0].kind == "redaction"
    data = events[0].data
    assert data["payments"] == ["old"] and data["by"] == "test" and data["retention_days"] == 90
    assert data["fields"] == ["payer.surname", "payer.id_value"] and len(data["events"]) == 1
    # running again finds nothing more and writes nothing
    again = retention.redact(journal, days=90, now=NOW, by="test")
    assert again.payments == [] and len([r for r in read_records(journal.path)
                                         if r.payment_id == retention.STREAM]) == 1


def test_redacted_data_is_gone_from_the_files_themselves(journal):
    before = file_bytes(journal.path)
    assert "Шевченко".encode() in before and OLD_RNOKPP.encode() in before  # the test can see it
    retention.redact(journal, days=90, now=NOW, by="test")
    journal.append("device", "after", {})  # the kiosk keeps writing
    raw = file_bytes(journal.path)
    assert "Шевченко".encode() not in raw and OLD_RNOKPP.encode() not in raw
    assert "Шевченко".encode("utf-16-le") not in raw
    assert "Коваленко".encode() in raw and NEW_RNOKPP.encode() in raw  # within retention: kept


@pytest.fixture
def sqlite_without_secure_delete(monkeypatch):
    """SQLite as built elsewhere: Debian turns SECURE_DELETE on by default, most builds do not,
    and then a rewritten or moved row leaves its old bytes in the page's free space."""
    plain_connect = sqlite3.connect

    def connect(*args, **kwargs):
        db = plain_connect(*args, **kwargs)
        db.execute("PRAGMA secure_delete=OFF")
        return db

    monkeypatch.setattr(sqlite3, "connect", connect)


def long_surname(i: int) -> str:
    # long: the masked row is shorter than the one it replaces, so old bytes could stay behind
    return "Прізвищенко-" + "Довгопрізвищенко" * 3 + "абвгдежзик"[i % 10]


def test_old_bytes_are_zeroed_whatever_the_sqlite_build_defaults_to(tmp_path, sqlite_without_secure_delete):
    j = Journal(str(tmp_path / "journal.sqlite")).start()
    try:
        for i in range(40):
            add_payment(j, f"p{i}", i + 1, long_surname(i), OLD_RNOKPP, NOW - 101 * DAY, NOW - 100 * DAY)
        j.clock = time.time
        assert "Довгопрізвищенко".encode() in file_bytes(j.path)
        assert len(retention.redact(j, days=90, now=NOW).payments) == 40
        raw = file_bytes(j.path)
        assert "Довгопрізвищенко".encode() not in raw and OLD_RNOKPP.encode() not in raw
    finally:
        j.close()


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, boot INTEGER NOT NULL,
  payment_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX events_payment ON events(payment_id, id);
CREATE INDEX events_at ON events(at);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
  BEGIN SELECT RAISE(ABORT, 'the payment journal is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
  BEGIN SELECT RAISE(ABORT, 'the payment journal is append-only'); END;
INSERT INTO meta VALUES ('schema_version', '1'), ('boots', '7');
"""


def test_a_journal_written_by_the_previous_version_is_upgraded_and_redacted(tmp_path, sqlite_without_secure_delete):
    path = str(tmp_path / "journal.sqlite")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V1_SCHEMA)
    for i in range(40):  # one transaction per event, as the old writer did under light load
        pid = f"p{i}"
        for at, kind, data in ((NOW - 101 * DAY, "created", created(pid, i + 1, long_surname(i), OLD_RNOKPP,
                                                                        NOW - 101 * DAY)),
                               (NOW - 100 * DAY, "cancel", {})):
            db.execute("INSERT INTO events(at, boot, payment_id, kind, data) VALUES (?, 7, ?, ?, ?)",
                       (at, pid, kind, json.dumps(data, ensure_ascii=False)))
        db.execute("DELETE FROM meta WHERE key='x'")  # free space churn, as a live file has
    db.close()
    j = Journal(path).start()
    try:
        assert j.boot == 8
        assert len(retention.redact(j, days=90, now=NOW).payments) == 40
        raw = file_bytes(path)
        assert "Довгопрізвищенко".encode() not in raw and OLD_RNOKPP.encode() not in raw
        other = sqlite3.connect(path)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            other.execute("UPDATE events SET data='{}' WHERE payment_id='p1'")
        other.close()
        assert Till(j, TillConfig()).payments["p1"].payer["id_value"] == mask_id(OLD_RNOKPP)
    finally:
        j.close()


def test_journal_stays_append_only_for_everything_but_a_recorded_redaction(journal):
    retention.redact(journal, days=90, now=NOW, by="test")
    db = sqlite3.connect(journal.path)
    try:
        for sql in ("UPDATE events SET data='{}' WHERE payment_id='new'",
                    "UPDATE events SET data='{}' WHERE payment_id='old'",  # redacted once, not free to edit
                    "UPDATE events SET kind='x' WHERE payment_id='old'",
                    "DELETE FROM events WHERE payment_id='old'",
                    "DELETE FROM redactions",
                    "UPDATE redactions SET data='{}'"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(sql)
    finally:
        db.close()


def test_dry_run_changes_nothing(journal):
    before = [(r.id, r.data) for r in read_records(journal.path)]
    result = retention.redact(journal, days=90, now=NOW, by="test", dry_run=True)
    assert result.payments == ["old"] and result.dry_run
    assert [(r.id, r.data) for r in read_records(journal.path)] == before


def test_retention_days_must_be_positive(journal):
    with pytest.raises(ValueError):
        retention.redact(journal, days=0, now=NOW)


def test_till_replays_a_redacted_journal(journal):
    retention.redact(journal, days=90, now=NOW, by="test")
    till = Till(journal, TillConfig())
    assert till.payments["old"].status == "cancelled" and till.payments["old"].settled
    assert till.payments["old"].payer["surname"] == mask_surname("Шевченко")
    assert till.payments["new"].payer["surname"] == "Коваленко"
    assert till.active_id == "open" and till.order == ["old", "late", "open", "new"]


def test_cli_redact_dry_run_then_for_real(journal, tmp_path, capsys):
    journal.close()
    # the CLI counts from the real clock: "old" was settled 100 days ago
    assert cli.main(["payments", "redact", "--dry-run", "--instance", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 payment" in out and "dry run" in out
    assert payer_of(journal.path, "old")["surname"] == "Шевченко"
    assert cli.main(["payments", "redact", "--instance", str(tmp_path)]) == 0
    assert payer_of(journal.path, "old")["surname"] == mask_surname("Шевченко")
    assert "Шевченко".encode() not in file_bytes(journal.path)
    assert payer_of(journal.path, "new")["surname"] == "Коваленко"


# ---------------------------------------------------------------- end to end with the kiosk
def test_kiosk_redacts_at_start_and_registry_says_data_is_redacted(tmp_path):
    instance = tmp_path / "instance"
    kiosk = Kiosk(make_app(instance))
    try:
        zone = ZoneInfo("Europe/Kyiv")
        kiosk.till.journal.clock = lambda: time.time() - 100 * DAY  # a payment paid 100 days ago
        kiosk.payer(surname="Шевченко", value=OLD_RNOKPP)
        kiosk.begin("card")
        kiosk.settle()
        old = kiosk.payment()
        assert old.status == "paid"
        old_day = datetime.fromtimestamp(time.time() - 100 * DAY, zone).date()
        kiosk.till.journal.clock = time.time
        kiosk.client.post("/pay/finish")
        kiosk.payer(surname="Коваленко", value=NEW_RNOKPP)
        kiosk.begin("card")
        kiosk.settle()
        assert kiosk.payment().status == "paid"
        path = kiosk.till.journal.path
        full = registry.build(path, old_day, "KIOSK-01")
        assert full["accounts"][0]["payments"][0]["payer_surname"] == "Шевченко"
    finally:
        kiosk.close()
    kiosk = Kiosk(make_app(instance))  # the next start redacts what is past the retention
    try:
        raw = file_bytes(path)
        assert "Шевченко".encode() not in raw and OLD_RNOKPP.encode() not in raw
        assert "Коваленко".encode() in raw
        replayed = kiosk.till.payments[old.id]
        assert replayed.status == "paid" and replayed.payer["id_value"] == mask_id(OLD_RNOKPP)
        data = registry.build(path, old_day, "KIOSK-01")
        assert data["totals"]["count"] == 1 and data["totals"]["total_kop"] == old.total_kop
        row = data["accounts"][0]["payments"][0]
        # said plainly, not masked data passed off as the real thing
        assert row["payer_redacted"] is True and row["payer_surname"] == "" and row["payer_code"] == ""
        assert data["payer_data_redacted"] == 1
        rows = list(csv.DictReader(io.StringIO(registry.to_csv(data))))
        payment_row = next(r for r in rows if r["record"] == "payment")
        assert payment_row["payer_surname"] == "" and payment_row["payer_code"] == ""
        assert payment_row["payer_id_kind"] == "redacted"
        assert json.loads(registry.to_json(data))["payer_data_redacted"] == 1
    finally:
        kiosk.close()


def test_periodic_redaction_updates_the_running_till(tmp_path):
    kiosk = Kiosk(make_app(tmp_path / "instance"))
    try:
        kiosk.till.journal.clock = lambda: time.time() - 100 * DAY
        kiosk.payer(surname="Шевченко", value=OLD_RNOKPP)
        kiosk.begin("card")
        kiosk.settle()
        pid = kiosk.payment().id
        kiosk.till.journal.clock = time.time
        result = retention.run(kiosk.till, days=90)  # what the kiosk's daily timer calls
        assert result.payments == [pid]
        assert kiosk.till.payments[pid].payer["surname"] == mask_surname("Шевченко")
        assert "Шевченко".encode() not in file_bytes(kiosk.till.journal.path)
    finally:
        kiosk.close()
