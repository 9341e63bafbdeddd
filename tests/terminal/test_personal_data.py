"""Personal data (surname, tax number, passport) appears only where the law needs it — the paper
receipt (surname) and the bank registry — and masked everywhere else, in one format: the tax number
keeps only its last 4 digits, never the birth-date prefix. Pages with personal data or voucher
codes are not stored by the browser; the instance files are readable by the kiosk's user only."""
import logging
import os
import stat

import pytest
from hypothesis import given, strategies as st
from stdnum.ua import rntrc

from payments.receipts import check_code
from payments.taxid import Payer, mask_id, mask_payer, mask_surname
from terminal import cli
from tests.helpers import service_login
from tests.payments.helpers import RNOKPP, Kiosk, make_app

SURNAME = "Шевченко"
MASKED_ID = "******4575"
BIRTH_PREFIX = RNOKPP[:5]  # days since 31.12.1899: the date of birth


# ---------------------------------------------------------------- one mask, one format
def test_one_format_for_every_identifier():
    assert mask_id("3652504575") == MASKED_ID
    assert mask_id("АК123456") == "****3456"   # passport booklet: series and first digits hidden
    assert mask_id("123456789") == "*****6789"  # ID card
    assert mask_id("") == "" and mask_id("12") == "**"
    assert mask_surname(SURNAME) == "Ш******о"
    payer = Payer.parse(SURNAME, "rnokpp", RNOKPP)
    assert payer.masked == mask_payer(payer.to_plain()) == f"Ш******о, {MASKED_ID}"
    assert mask_payer({}) == ""


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_a_masked_tax_number_never_shows_the_birth_date(first9):
    value = first9 + rntrc.calc_check_digit(first9)
    masked = mask_id(value)
    assert masked == "*" * 6 + value[6:]
    assert mask_id(masked) == masked  # masking what is already masked changes nothing


# ---------------------------------------------------------------- every place that shows a payer
@pytest.fixture
def kiosk(tmp_path):
    k = Kiosk(make_app(tmp_path / "instance"))
    yield k
    k.close()


def shows_no_tax_number(text: str) -> bool:
    return RNOKPP not in text and BIRTH_PREFIX not in text and "36*****575" not in text


def test_every_screen_masks_the_payer_and_the_receipt_keeps_only_what_the_law_needs(kiosk, caplog):
    caplog.set_level(logging.DEBUG)
    kiosk.payer()
    confirm = kiosk.client.get("/pay/confirm").get_data(as_text=True)
    assert f"Ш******о, {MASKED_ID}" in confirm and SURNAME not in confirm and shows_no_tax_number(confirm)
    kiosk.begin("card")
    kiosk.settle()
    payment = kiosk.payment()
    for url in (f"/pay/p/{payment.id}", f"/pay/p/{payment.id}/status"):
        text = kiosk.client.get(url).get_data(as_text=True)
        assert SURNAME not in text and shows_no_tax_number(text), url
    receipt = kiosk.client.get(f"/pay/p/{payment.id}/receipt").get_data(as_text=True)
    assert SURNAME in receipt and MASKED_ID in receipt and shows_no_tax_number(receipt)
    printed = kiosk.printer.received_text()
    assert SURNAME in printed and MASKED_ID in printed and shows_no_tax_number(printed)
    code = check_code(kiosk.till.config.receipt_key, payment)
    verify = kiosk.client.get(f"/receipt/{payment.receipt_no}?c={code}").get_data(as_text=True)
    assert f"Ш******о, {MASKED_ID}" in verify and SURNAME not in verify and shows_no_tax_number(verify)
    staff = kiosk.app.test_client()
    assert service_login(staff, "111111").status_code == 302
    listing = staff.get("/service/pay/payments").get_data(as_text=True)
    assert f"Ш******о, {MASKED_ID}" in listing and SURNAME not in listing and shows_no_tax_number(listing)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SURNAME not in logged and shows_no_tax_number(logged)


def test_passport_is_masked_the_same_way(kiosk):
    kiosk.payer(kind="passport", value="АК123456")
    confirm = kiosk.client.get("/pay/confirm").get_data(as_text=True)
    assert "Ш******о, ****3456" in confirm and "АК123" not in confirm


# ---------------------------------------------------------------- response headers
def test_pages_with_personal_data_or_voucher_codes_are_not_stored(kiosk):
    kiosk.payer()
    kiosk.begin("cash")
    kiosk.pay_bills(5000, 5000)
    kiosk.settle()
    payment = kiosk.payment()
    assert payment.voucher_out_kop  # the receipt screen shows a voucher code
    code = check_code(kiosk.till.config.receipt_key, payment)
    staff = kiosk.app.test_client()
    service_login(staff, "111111")
    responses = [kiosk.client.get(url) for url in (
        "/", "/pay", "/pay/service/residence-registration", "/pay/confirm", f"/pay/p/{payment.id}",
        f"/pay/p/{payment.id}/status", f"/pay/p/{payment.id}/receipt", f"/receipt/{payment.receipt_no}?c={code}",
        f"/receipt/{payment.receipt_no}?c=0", "/no-such-page", "/healthz")]
    responses += [staff.get(url) for url in ("/service/pay/payments", "/service/pay/vouchers",
                                             "/service/pay/recovered")]
    responses.append(kiosk.client.post("/pay/finish"))
    for response in responses:
        assert "no-store" in response.headers.get("Cache-Control", ""), response.request.path
        assert response.headers.get("Referrer-Policy") == "same-origin", response.request.path
    static = kiosk.client.get("/static/kiosk.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")
    assert static.headers.get("Referrer-Policy") == "same-origin"


# ---------------------------------------------------------------- file modes
def modes(folder):
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files + ([] if root != str(folder) else []):
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = stat.S_IMODE(os.stat(path).st_mode)
    found["."] = stat.S_IMODE(os.stat(folder).st_mode)
    return found


@pytest.fixture
def open_umask():
    old = os.umask(0o022)  # what a login shell usually has
    yield
    os.umask(old)


def test_instance_files_are_private(tmp_path, open_umask):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    (instance / "cnap.toml").write_text("idle_timeout_s = 90\n")  # left readable by an installer
    os.chmod(instance / "cnap.toml", 0o644)
    kiosk = Kiosk(make_app(instance))
    try:
        kiosk.payer()
        kiosk.begin("card")
        kiosk.settle()
        found = modes(instance)
        assert {"journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm", "receipt.key", "cnap.toml",
                "service.sqlite", "catalogue.sqlite"} <= set(found)
        loose = {name: oct(mode) for name, mode in found.items()
                 if mode & 0o077 or (stat.S_ISDIR(os.stat(instance / name).st_mode) and mode != 0o700)}
        assert loose == {}
    finally:
        kiosk.close()


def test_exports_written_by_the_cli_are_private(tmp_path, open_umask):
    instance = tmp_path / "instance"
    kiosk = Kiosk(make_app(instance))
    try:
        kiosk.payer()
        kiosk.begin("card")
        kiosk.settle()
    finally:
        kiosk.close()
    os.umask(0o022)  # create_app may have tightened it; the CLI must not rely on that
    out = tmp_path / "registry.csv"
    from datetime import datetime
    from zoneinfo import ZoneInfo
    today = datetime.now(ZoneInfo("Europe/Kyiv")).date().isoformat()
    assert cli.main(["payments", "export", "--date", today, "--instance", str(instance), "--out", str(out)]) == 0
    assert SURNAME in out.read_text(encoding="utf-8")  # the registry is where the law wants it in full
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
