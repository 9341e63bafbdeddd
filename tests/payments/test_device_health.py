"""One verdict per device: /healthz, the confirm screen and the self-test judge by the same rule
(payments/health.py), on the real simulators."""
import pytest

from payments import health
from tests.payments.helpers import Kiosk, make_app, wait_until


@pytest.fixture
def kiosk(tmp_path):
    k = Kiosk(make_app(tmp_path / "instance"))
    yield k
    k.close()


def verdicts(kiosk):
    """What each of the three readers says about each device."""
    checks = kiosk.app.test_client().get("/healthz").get_json()["checks"]
    selftest = {r["device"]: r["ok"] for r in kiosk.till.self_test()}
    avail = kiosk.till.availability()
    screen = {"bill_validator": avail["cash"], "card_terminal": avail["card"], "printer": avail["printer_ok"]}
    return {name: (checks[name]["ok"], selftest[name], screen[name]) for name in screen}


@pytest.mark.parametrize("fault, device", [
    (lambda k: k.printer.set_cover_open(True), "printer"),
    (lambda k: k.printer.set_paper("out"), "printer"),
    (lambda k: k.printer.set_silent(True), "printer"),
    (lambda k: k.card.set_silent(True), "card_terminal"),
    (lambda k: k.validator.set_cassette_full(True), "bill_validator"),
])
def test_every_reader_agrees_on_a_faulty_device(kiosk, fault, device):
    assert all(v == (True, True, True) for v in verdicts(kiosk).values()), verdicts(kiosk)
    fault(kiosk)
    wait_until(lambda: verdicts(kiosk)[device] == (False, False, False), timeout=40,
               what=f"{device} judged faulty by /healthz, the self-test and the screen alike")
    others = {name: v for name, v in verdicts(kiosk).items() if name != device}
    assert all(v == (True, True, True) for v in others.values()), others


def test_a_printer_with_its_cover_open_warns_on_the_confirm_screen(kiosk):
    kiosk.printer.set_cover_open(True)
    kiosk.payer()
    page = kiosk.client.get("/pay/confirm").get_data(as_text=True)
    assert "Принтер не друкує" in page


def test_rules_by_hand():
    class Status:
        def __init__(self, online, state="idle"):
            self.online, self.state, self.last_error = online, state, None

    assert health.validator_health(Status(True), [2000], None).ok
    assert not health.validator_health(Status(True), [], None).ok                 # no bill table
    assert health.validator_health(Status(True), [2000], "jammed").state == "jammed"
    assert not health.card_health(Status(True), pinged=False).ok                  # the fresh answer decides
    assert health.printer_health({"online": True, "paper": "near_end", "cover_open": False}).ok
    assert health.not_configured("printer").as_check()[0]                         # not a failure
