"""`cnap export payments|surveys --to DIR`: the staff's files on a USB stick instead of a download
in the kiosk window. New files only (0600, complete, fsync'ed); never over an existing one; a full
stick leaves nothing behind. Checked against the real journal, survey store and service mode's
own CSV, and on a real small file system (tmpfs) for the full-stick case."""
from __future__ import annotations

import errno
import stat
import subprocess
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from payments.registry import build, to_csv, to_json
from terminal import cli
from tests.helpers import service_login
from tests.payments.helpers import Kiosk, make_app
from tests.terminal.surveys.conftest import answer
from terminal.state import state

TODAY = datetime.now(ZoneInfo("Europe/Kyiv")).date()


@pytest.fixture
def paid_kiosk(tmp_path):
    kiosk = Kiosk(make_app(tmp_path / "instance"))
    kiosk.client.post("/pay/finish")
    kiosk.payer(service="id-card-lost")
    kiosk.begin("card")
    kiosk.settle()
    assert kiosk.payment().status == "paid"
    yield kiosk
    kiosk.close()


@pytest.fixture
def usb(tmp_path):
    folder = tmp_path / "usb"
    folder.mkdir()
    return folder


def export(*argv: str) -> int:
    return cli.main(["export", *argv])


def test_payments_export_writes_the_registry_as_a_new_private_file(paid_kiosk, usb, capsys):
    instance = paid_kiosk.app.instance_path
    assert export("payments", "--date", TODAY.isoformat(), "--to", str(usb), "--instance", instance) == 0
    files = list(usb.iterdir())
    assert len(files) == 1 and files[0].name.endswith(f"-{TODAY.isoformat()}.csv")
    data = build(paid_kiosk.till.journal.path, TODAY, paid_kiosk.app.config["TERMINAL_ID"])
    assert data["totals"]["count"] == 1
    assert files[0].read_bytes() == to_csv(data).encode("utf-8")
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert str(files[0]) in capsys.readouterr().out
    # JSON is another file next to it.
    assert export("payments", "--date", TODAY.isoformat(), "--format", "json", "--to", str(usb),
                  "--instance", instance) == 0
    assert (usb / files[0].name.replace(".csv", ".json")).read_text() == to_json(data)


def test_an_existing_file_is_never_overwritten(paid_kiosk, usb, capsys):
    args = ("payments", "--date", TODAY.isoformat(), "--to", str(usb), "--instance", paid_kiosk.app.instance_path)
    assert export(*args) == 0
    written = next(usb.iterdir())
    written.write_text("the accountant's edited copy")
    capsys.readouterr()
    assert export(*args) == 1
    assert "already exists" in capsys.readouterr().err
    assert written.read_text() == "the accountant's edited copy"
    # A symlink planted under the file's name is not followed either.
    written.unlink()
    target = usb / "elsewhere.txt"
    written.symlink_to(target)
    assert export(*args) == 1
    assert not target.exists()


def test_wrong_folder_date_or_instance_is_a_clear_error(paid_kiosk, usb, tmp_path, capsys):
    instance = paid_kiosk.app.instance_path
    assert export("payments", "--date", TODAY.isoformat(), "--to", str(usb / "not-mounted"), "--instance", instance) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert export("payments", "--date", "2026-13-01", "--to", str(usb), "--instance", instance) == 1
    assert "not YYYY-MM-DD" in capsys.readouterr().err
    assert export("payments", "--date", TODAY.isoformat(), "--to", str(usb), "--instance", str(tmp_path / "none")) == 1
    assert "no payment journal" in capsys.readouterr().err
    assert export("surveys", "--from", "2026-11-02", "--until", "2026-11-01", "--to", str(usb),
                  "--instance", instance) == 1
    assert "before --from" in capsys.readouterr().err
    assert list(usb.iterdir()) == []


@pytest.fixture
def small_stick(tmp_path):
    """A real, tiny file system (tmpfs, 64 KiB), filled to the last byte."""
    mount = tmp_path / "stick"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"this test mounts a tmpfs and needs root: {result.stderr.strip()}")
    try:
        with open(mount / "filler", "wb", buffering=0) as filler:
            for size in (4096, 1):
                try:
                    while True:
                        filler.write(b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_stick_leaves_no_partial_file(paid_kiosk, small_stick, capsys):
    assert export("payments", "--date", TODAY.isoformat(), "--to", str(small_stick),
                  "--instance", paid_kiosk.app.instance_path) == 1
    assert "full" in capsys.readouterr().err
    assert [p.name for p in small_stick.iterdir()] == ["filler"]
    (small_stick / "filler").unlink()  # room again: the same command now succeeds
    assert export("payments", "--date", TODAY.isoformat(), "--to", str(small_stick),
                  "--instance", paid_kiosk.app.instance_path) == 0
    assert len(list(small_stick.iterdir())) == 1


def test_surveys_export_matches_service_modes_csv(app, client, usb, capsys):
    store = state(app).surveys
    tablet, _ = store.register_tablet("Tablet 1", state(app).catalogue.branches[0].id, "Desk 3", "desk")
    now = datetime.now(ZoneInfo("Europe/Kyiv")).timestamp()
    store.ingest(tablet, [answer("good", at=now - 60, comment="дякую"), answer("bad", at=now - 30, nps=2),
                          answer("very_good", at=now - 86400 * 40)], now=now)
    day = TODAY.isoformat()
    assert export("surveys", "--from", day, "--to", str(usb), "--instance", app.instance_path) == 0
    written = next(usb.iterdir())
    assert written.name == f"survey-answers-{day}-{day}.csv"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    service_login(client, "000000")
    download = client.get(f"/service/surveys/reports.csv?from={day}&to={day}")
    assert download.status_code == 200
    assert written.read_bytes() == download.data
    assert len(written.read_text("utf-8-sig").strip().splitlines()) == 3  # header and today's two answers
