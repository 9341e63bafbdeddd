"""`cnap sim` pieces end to end: every driver against start_all(), the HTTP control API, probe."""
import json
import urllib.request

import pytest

from devices.bill_validator.driver import BillValidator
from devices.card_terminal.driver import CardTerminal
from devices.cli import main, probe
from devices.printer.driver import ReceiptPrinter
from devices.sim import start_all


@pytest.fixture
def sims():
    sims = start_all(bill_validator={"accept_time_s": 0.03, "stack_time_s": 0.05, "init_time_s": 0.03},
                     card_terminal={"processing_s": 0.05})
    yield sims
    sims.stop()


def post(sims, path, body=None):
    request = urllib.request.Request(sims.http_url + path, data=json.dumps(body or {}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def get(sims, path):
    with urllib.request.urlopen(sims.http_url + path, timeout=5) as response:
        return response.read()


def test_urls_are_loopback(sims):
    assert set(sims.urls) == {"bill_validator", "card_terminal", "printer"}
    assert all(url.startswith("socket://127.0.0.1:") for url in sims.urls.values())
    assert sims.http_url.startswith("http://127.0.0.1:")


def test_whole_payment_flow_through_http_control(sims, events):
    bv = BillValidator(sims.urls["bill_validator"], poll_interval_s=0.02)
    bv.subscribe(events)
    bv.start()
    try:
        bv.enable({20000})
        events.wait_for("idle")
        assert post(sims, "/bill_validator/insert_bill", {"amount_kop": 20000})["result"] is True
        events.wait_for("escrow", amount_kop=20000)
        bv.stack()
        events.wait_for("stacked", amount_kop=20000)
    finally:
        bv.stop()
    post(sims, "/card_terminal/set_behaviour", {"behaviour": "decline"})
    assert CardTerminal(sims.urls["card_terminal"]).purchase(1000).status == "declined"
    assert ReceiptPrinter(sims.urls["printer"]).print_job([("text", "Дякуємо, ґречно!"), ("cut",)]).ok
    assert "Дякуємо, ґречно!" in get(sims, "/printer/text").decode()
    assert get(sims, "/printer/preview.png")[:8] == b"\x89PNG\r\n\x1a\n"
    status = json.loads(get(sims, "/status"))
    assert status["bill_validator"]["cassette_kop"] == [20000]


def test_http_control_rejects_unknown_and_bad_requests(sims):
    with pytest.raises(urllib.error.HTTPError) as missing:
        post(sims, "/bill_validator/stop")  # not a scripting action
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as bad:
        post(sims, "/card_terminal/set_behaviour", {"behaviour": "explode"})
    assert bad.value.code == 400


@pytest.mark.parametrize("kind", ["bill_validator", "card_terminal", "printer"])
def test_probe_identifies_each_simulator(sims, kind):
    info = probe(sims.urls[kind])
    assert info["kind"] == kind
    if kind == "bill_validator":
        assert info["part_number"] == "SM-UA1015" and "1000 UAH" in info["bill_table"]
    if kind == "card_terminal":
        assert info["online"] and info["terminal_id"] == "S1KV0001"
    if kind == "printer":
        assert info["paper"] == "ok"


def test_cli_probe_and_ctl(sims, capsys):
    assert main(["sim", "ctl", "--http", sims.http_url, "printer", "set_paper", "paper=near_end"]) == 0
    assert main(["devices", "probe", sims.urls["printer"], "--kind", "printer"]) == 0
    out = capsys.readouterr().out
    assert "printer (ESC/POS)" in out and "paper: near_end" in out
    assert main(["devices", "probe", "socket://127.0.0.1:9", "--kind", "printer"]) == 1
