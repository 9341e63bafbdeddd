"""Only a deliberate stop ends the kiosk: service mode's "Stop the kiosk" (technician or admin,
POST with CSRF, audited) or SIGTERM/SIGINT to `cnap kiosk`. The window side (crashes and closes
reopen) is in test_shell.py."""
from __future__ import annotations

import signal

import pytest

from tests.helpers import service_login
from tests.terminal.kiosk_http import StaffBrowser, kiosk_url, start_kiosk
from terminal.state import state


@pytest.fixture
def stops(app):
    """Stands in for `cnap kiosk`'s stop callback and records each request."""
    requested: list[str] = []
    state(app).kiosk_stop = requested.append
    return requested


def test_stop_needs_a_technician_or_an_admin(client, stops):
    assert client.get("/service/stop").status_code == 302  # log in first
    assert client.post("/service/stop").status_code in (302, 400)
    service_login(client, "111111")  # cashier
    assert client.get("/service/stop").status_code == 403
    assert client.post("/service/stop").status_code == 403
    assert stops == []
    for pin in ("222222", "000000"):  # technician, admin
        fresh = client.application.test_client()
        service_login(fresh, pin)
        page = fresh.get("/service/stop")
        assert page.status_code == 200 and 'method="post"' in page.text
        assert "Зупинити кіоск" in fresh.get("/service/").text  # offered in the sections list
    assert stops == []  # looking is not stopping


def test_stop_without_a_csrf_token_does_nothing(client, stops):
    service_login(client, "222222")
    assert client.post("/service/stop", csrf=False).status_code == 400
    assert stops == []


def test_stop_is_requested_after_the_answer_and_audited(app, client, stops):
    service_login(client, "222222")
    response = client.post("/service/stop")
    assert response.status_code == 200
    assert "Кіоск зупиняється." in response.text
    response.close()
    assert stops == ["service mode"]
    entry = state(app).staff.audit_log()[0]
    assert entry["action"] == "kiosk.stop"


def test_stop_outside_cnap_kiosk_says_it_cannot(app, client):
    state(app).kiosk_stop = None
    service_login(client, "000000")
    response = client.post("/service/stop")
    assert response.status_code == 409
    assert "cnap kiosk" in response.text


def test_cnap_kiosk_without_a_window_stops_cleanly_on_sigterm(tmp_path):
    kiosk, out = start_kiosk(tmp_path, "--no-window")
    try:
        url = kiosk_url(kiosk, out, "open ")
        assert StaffBrowser(url).get("/")[0] == 200
        kiosk.send_signal(signal.SIGTERM)
        assert kiosk.wait(20) == 0, out.read_text()
        assert "cnap kiosk: stopped" in out.read_text()
    finally:
        if kiosk.poll() is None:
            kiosk.kill()
            kiosk.wait()


def test_service_mode_stops_cnap_kiosk_without_a_window(tmp_path):
    kiosk, out = start_kiosk(tmp_path, "--no-window")
    try:
        url = kiosk_url(kiosk, out, "open ")
        staff = StaffBrowser(url)
        staff.log_in("222222")
        status, page = staff.post("/service/stop", {}, "/service/stop")
        assert status == 200 and "Кіоск зупиняється." in page
        assert kiosk.wait(20) == 0, out.read_text()
        assert "stop requested (service mode)" in out.read_text()
    finally:
        if kiosk.poll() is None:
            kiosk.kill()
            kiosk.wait()
