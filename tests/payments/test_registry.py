import csv
import io
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from payments import cli as payments_cli
from payments.registry import build, to_csv, to_json
from terminal.cli import settings_for_instance
from tests.payments.helpers import Kiosk, make_app


@pytest.fixture
def kiosk(tmp_path):
    k = Kiosk(make_app(tmp_path / "instance"))
    yield k
    k.close()


def pay(kiosk, service, method, bills=()):
    kiosk.client.post("/pay/finish")
    kiosk.payer(service=service)
    kiosk.begin(method)
    if method == "cash":
        for amount in bills:
            kiosk.insert(amount)
            before = len(kiosk.payment().bills)
            from tests.payments.helpers import wait_until
            wait_until(lambda: len(kiosk.payment().bills) > before, what="bill credited")
        if kiosk.payment().status == "cash":
            kiosk.client.post(f"/pay/p/{kiosk.payment_id()}/cancel")
    kiosk.settle()
    return kiosk.payment()


def test_registry_groups_by_account_and_reconciles_with_journal(kiosk, tmp_path):
    a = pay(kiosk, "residence-registration", "cash", [5000, 5000])   # 74 paid by 100 (voucher 26)
    b = pay(kiosk, "id-card-lost", "card")                            # 624 + 10 commission
    c = pay(kiosk, "residence-registration", "cash", [2000])          # cancelled: voucher, not paid
    assert (a.status, b.status, c.status) == ("paid", "paid", "voucher")
    today = datetime.now(ZoneInfo("Europe/Kyiv")).date()
    data = build(kiosk.till.journal.path, today, "KIOSK-01")
    assert data["totals"] == {"count": 2, "amount_kop": 7400 + 62400, "commission_kop": 1000,
                              "total_kop": 7400 + 63400}
    assert sum(acc["amount_kop"] for acc in data["accounts"]) == data["totals"]["amount_kop"]
    ibans = {acc["iban"] for acc in data["accounts"]}
    assert a.details["iban"] in ibans and b.details["iban"] in ibans
    # reconciles with the shift report computed from the live state
    report = kiosk.till.x_report()
    assert report["total_kop"] == data["totals"]["total_kop"] and report["paid_count"] == 2
    rows = list(csv.DictReader(io.StringIO(to_csv(data))))
    payments = [r for r in rows if r["record"] == "payment"]
    assert {r["receipt_no"] for r in payments} == {a.receipt_no, b.receipt_no}
    assert payments[0]["payer_code"] == "3652504575" and payments[0]["payer_surname"] == "Шевченко"
    day_total = [r for r in rows if r["record"] == "day_total"][0]
    assert day_total["total"] == "708.00" and day_total["count"] == "2"
    parsed = json.loads(to_json(data))
    assert parsed["totals"]["amount"] == "698.00" and parsed["version"] == 1
    # another day: empty
    assert build(kiosk.till.journal.path, today.replace(year=today.year - 1), "K")["totals"]["count"] == 0


def test_cli_export(kiosk, tmp_path, capsys):
    pay(kiosk, "id-card-lost", "card")
    import argparse
    parser = argparse.ArgumentParser()
    payments_cli.add_commands(parser.add_subparsers(), load_settings=settings_for_instance)
    today = datetime.now(ZoneInfo("Europe/Kyiv")).date().isoformat()
    out = tmp_path / "reg.json"
    args = parser.parse_args(["payments", "export", "--date", today, "--format", "json", "--out", str(out),
                              "--instance", str(kiosk.app.instance_path)])
    assert args.func(args) == 0
    data = json.loads(out.read_text())
    assert data["totals"]["total"] == "634.00" and data["date"] == today
    bad = parser.parse_args(["payments", "export", "--date", "2024-13-01", "--instance", str(kiosk.app.instance_path)])
    assert bad.func(bad) == 2
    assert "not YYYY-MM-DD" in capsys.readouterr().err
