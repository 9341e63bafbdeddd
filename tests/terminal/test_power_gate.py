"""The kiosk's power gate: it reads upsd itself (a real upsd with dummy-ups here, the NUT
simulator for the shutdown cases), refuses to start a new payment when the UPS runtime is short
while the payment in flight finishes and prints, shows why in Ukrainian and English, reports
"power" in /healthz, and stops the kiosk through its stop path on low battery or FSD."""
from __future__ import annotations

from pathlib import Path

import pytest

from facility.power.simulator import NutSimulator
from tests.facility.power.conftest import upsd  # noqa: F401  (the real upsd fixture, shared)
from tests.payments.helpers import Kiosk, make_app, wait_until
from terminal.state import state

MARGIN = {"POWER_RUNTIME_MARGIN_S": 300, "POWER_POLL_S": 0.1, "NUT_TIMEOUT_S": 1.0}


@pytest.fixture
def nut():
    sim = NutSimulator(ups="sim")
    yield sim
    sim.stop()


def kiosk_on(tmp_path, **settings):
    return Kiosk(make_app(tmp_path / "instance", **{**MARGIN, **settings}))


def gate(kiosk):
    return state(kiosk.app).power_gate


def test_without_nut_the_gate_is_open_and_health_says_not_configured(tmp_path):
    kiosk = Kiosk(make_app(tmp_path / "instance"))
    try:
        assert gate(kiosk) is None
        assert kiosk.client.get("/healthz").get_json()["checks"]["power"] == {"ok": True, "configured": False}
        assert kiosk.payer().status_code == 302
    finally:
        kiosk.close()


def test_short_runtime_refuses_new_payments_and_the_one_in_flight_finishes(tmp_path, upsd):
    kiosk = kiosk_on(tmp_path, NUT_HOST="127.0.0.1", NUT_PORT=upsd.port, NUT_UPS="kiosk")
    try:
        wait_until(lambda: gate(kiosk).assessment and gate(kiosk).assessment.state == "online", what="online")
        assert kiosk.client.get("/healthz").get_json()["checks"]["power"]["ok"] is True
        # visitor 1 starts paying cash; visitor 2 (another session) has filled in the form only
        kiosk.payer()
        kiosk.begin("cash")
        kiosk.pay_bills(5000)
        second = kiosk.app.test_client()
        assert kiosk.payer(client=second).status_code == 302
        draft_page = second.get("/pay/confirm")
        assert draft_page.status_code == 200

        upsd.write("OB_SHORT")  # on battery, 200 s left, margin 300 s
        wait_until(lambda: gate(kiosk).assessment.stop_new_payments, what="the gate to close")

        # the payment in flight takes the rest of the money, settles and prints
        kiosk.pay_bills(2000)
        kiosk.insert(2000)
        kiosk.settle()
        paid = kiosk.payment()
        assert paid.status == "paid" and paid.receipt == "printed"
        assert paid.receipt_no in kiosk.printer.received_text()
        payments_before = list(kiosk.till.order)

        # no new payment: not from the list, not from the payer form, not from a ready draft
        kiosk.client.post("/pay/finish")
        page = kiosk.client.get("/pay").get_data(as_text=True)
        assert "Нові оплати тимчасово не приймаються" in page and "приблизно на 3 хв" in page
        refused = kiosk.payer()
        assert refused.status_code == 503 and "Нові оплати тимчасово не приймаються" in refused.get_data(as_text=True)
        draft = kiosk.draft(second)
        refused = second.post("/pay/confirm", data={"draft": draft, "method": "cash"})
        assert refused.status_code == 503
        assert kiosk.till.order == payments_before
        second.post("/lang/en", data={"next": "/pay"})
        english = second.get("/pay").get_data(as_text=True)
        assert "New payments are paused" in english and "about 3 min left" in english

        health = kiosk.client.get("/healthz")
        power = health.get_json()["checks"]["power"]
        assert health.status_code == 503 and power["ok"] is False
        assert power["state"] == "on_battery" and power["new_payments"] == "refused" and power["runtime_s"] == 200

        upsd.write("OL")  # mains back: the gate opens again
        wait_until(lambda: not gate(kiosk).assessment.stop_new_payments, what="the gate to open")
        assert kiosk.payer().status_code == 302
        assert second.post("/pay/confirm", data={"draft": kiosk.draft(second), "method": "cash"}).status_code == 302
    finally:
        kiosk.close()


@pytest.mark.parametrize("ups_state,reason", [("LB", "power: low_battery"), ("FSD", "power: fsd")])
def test_low_battery_or_fsd_stops_the_kiosk_once(tmp_path, nut, ups_state, reason):
    kiosk = kiosk_on(tmp_path, **nut.settings)
    stops: list[str] = []
    state(kiosk.app).kiosk_stop = stops.append   # stands in for `cnap kiosk`'s request_stop
    try:
        wait_until(lambda: gate(kiosk).assessment and gate(kiosk).assessment.state == "online", what="online")
        nut.set_state(ups_state)
        wait_until(lambda: stops, what="a stop request")
        polls = nut.requests
        wait_until(lambda: nut.requests >= polls + 3, what="more polls")
        assert stops == [reason]  # asked once, not on every poll
        assert kiosk.payer().status_code == 503
    finally:
        kiosk.close()


def test_silent_upsd_is_reported_and_leaves_the_gate_open_on_mains(tmp_path, nut):
    kiosk = kiosk_on(tmp_path, **nut.settings, NUT_TIMEOUT_S=0.2)
    try:
        wait_until(lambda: gate(kiosk).assessment and gate(kiosk).assessment.state == "online", what="online")
        nut.fault = "garbage"
        wait_until(lambda: gate(kiosk).assessment.state == "unavailable", what="unavailable")
        power = kiosk.client.get("/healthz").get_json()["checks"]["power"]
        assert power["ok"] is False and power["alerts"] == ["comms_lost"] and power["new_payments"] == "allowed"
        assert kiosk.payer().status_code == 302
    finally:
        kiosk.close()


@pytest.mark.parametrize("already_low", [False, True])
def test_cnap_kiosk_stops_itself_in_order_on_low_battery(tmp_path, nut, monkeypatch, already_low):
    """The real `cnap kiosk` process: upsd says OB LB → the kiosk stops through its own stop path,
    closes the journal (SQLite removes the WAL file when the last connection closes) and exits 0.
    Also when LB is there before the kiosk has its stop path (the first poll runs in create_app)."""
    from tests.terminal.kiosk_http import StaffBrowser, kiosk_url, start_kiosk

    for name, value in {**nut.settings, "POWER_POLL_S": "0.2"}.items():
        monkeypatch.setenv(f"CNAP_{name}", str(value))
    # the child runs from tmp_path: let it import this checkout, whatever the venv points at
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    if already_low:
        nut.set_state("LB")
    kiosk, out = start_kiosk(tmp_path, "--no-window")
    try:
        if not already_low:
            url = kiosk_url(kiosk, out, "open ")
            assert StaffBrowser(url).get("/healthz")[0] == 200
            assert (tmp_path / "instance" / "journal.sqlite").exists()
            nut.set_state("LB")
        assert kiosk.wait(30) == 0, out.read_text()
        text = out.read_text()
        assert "stop requested (power: low_battery)" in text and "cnap kiosk: stopped" in text
        assert not (tmp_path / "instance" / "journal.sqlite-wal").exists()
    finally:
        if kiosk.poll() is None:
            kiosk.kill()
            kiosk.wait()


def test_cnap_demo_runs_on_the_power_simulator_and_is_switched_by_cnap_power_sim(tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY") and
           not k.startswith("CNAP_NUT")}
    env.update({"CNAP_SECRET_KEY": "demo-test", "CNAP_POWER_POLL_S": "0.2",
                "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    proc = subprocess.Popen([sys.executable, "-m", "terminal.cli", "demo", "--port", "0", "--no-window",
                             "--instance", str(tmp_path / "instance")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, switch, seen = None, None, []
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            switch = switch or re.search(r"switch it with (CNAP_NUT_HOST=\S+ CNAP_NUT_PORT=\d+ CNAP_NUT_UPS=\S+)", line)
            match = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
            url = match.group(1) if match else None
        assert url and switch, "".join(seen)
        env.update(dict(pair.split("=", 1) for pair in switch.group(1).split()))
        subprocess.run([sys.executable, "-m", "terminal.cli", "power", "sim", "OB_SHORT"], env=env, cwd=tmp_path,
                       check=True, capture_output=True, timeout=30)

        def paused():
            try:
                urllib.request.urlopen(url + "healthz", timeout=10)
                return False
            except urllib.error.HTTPError as error:
                return b'"new_payments":"refused"' in error.read()

        wait_until(paused, what="the demo kiosk to refuse new payments")
        page = urllib.request.urlopen(url + "pay", timeout=10).read().decode()
        assert "Нові оплати тимчасово не приймаються" in page
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("cnap demo did not stop on Ctrl+C")
