"""The issue's "done when", run for real: `cnap demo` starts a broker, the hub and the agent; a
technician logs in to the hub, sees the demo site, runs the printer out of paper in the simulator,
watches the alert fire, acknowledges it, puts paper back and sees it resolve."""
from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.facility.fakes import wait_until
from tests.helpers import descendants, interrupt_and_wait, kill_all, start_headless_demo
from tests.terminal.kiosk_http import StaffBrowser

pytestmark = pytest.mark.timeout(300)
_STAFF = re.compile(r'name="staff_id" value="(\d+)"[^>]*>\s*([^<]+?)\s*<')
_ALERT = re.compile(r'name="key" value="([^"]+)"[^>]*>\s*<input[^>]*name="serial" value="(\d+)"')


class HubBrowser(StaffBrowser):
    def log_in_as(self, name: str, pin: str) -> None:
        _, page = self.get("/login")
        staff_id = next(i for i, n in _STAFF.findall(page) if n == name)
        status, _ = self.post("/login", {"staff_id": staff_id, "pin": pin}, "/login")
        assert status == 200 and not self.last_url.endswith("/login"), self.last_url


def control(api: str, device: str, action: str, **kwargs) -> None:
    request = urllib.request.Request(f"{api}/{device}/{action}", data=json.dumps(kwargs).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_a_printer_fault_fires_an_alert_on_the_hub_that_staff_acknowledge(tmp_path):
    from terminal.cli import DEMO_TECHNICIAN, DEMO_TECHNICIAN_PIN

    demo, out = start_headless_demo(tmp_path, {"CNAP_FACILITY_CONTROLLERS": "tests.facility.fakeplant.ventilation",
                                          "CNAP_MQTT_KIOSK_POLL_S": "1", "CNAP_HUB_ALERT_KEEP_FIRING_FOR_S": "1"})
    below: list[int] = []
    try:
        def printed(pattern: str):
            return re.search(pattern, out.read_text())
        assert wait_until(lambda: printed(r"no display; open http://") or demo.poll() is not None, timeout=120, step=0.2), \
            out.read_text()[-3000:]
        hub = printed(r"monitoring hub \(pid \d+\) at (http://127\.0\.0\.1:\d+)/")
        api = printed(r"simulator control API at (http://127\.0\.0\.1:\d+)")
        assert hub and api, out.read_text()[-3000:]
        below = descendants(demo.pid)
        staff = HubBrowser(hub.group(1))
        staff.log_in_as(DEMO_TECHNICIAN, DEMO_TECHNICIAN_PIN)

        # The demo site reports, the kiosk's printer among its devices.
        def site_page() -> str:
            status, page = staff.get("/site/demo")
            return page if status == 200 else ""
        assert wait_until(lambda: "Принтер чеків" in site_page(), timeout=60, step=0.5), \
            out.read_text()[-3000:]

        control(api.group(1), "printer", "set_paper", paper="out")

        def firing_alert():
            status, page = staff.get("/alerts")
            return _ALERT.search(page) if status == 200 and "printer_paper_out" in page else None
        assert wait_until(firing_alert, timeout=90, step=0.5), staff.get("/alerts")[1][-3000:]
        key, serial = firing_alert().groups()
        status, _ = staff.post("/alerts/ack", {"key": key, "serial": serial, "comment": "Папір везуть"}, "/alerts")
        assert status == 200

        def acked() -> bool:
            page = staff.get("/alerts")[1]
            return "Папір везуть" in page and DEMO_TECHNICIAN in page
        assert wait_until(acked, timeout=30, step=0.5)

        control(api.group(1), "printer", "set_paper", paper="ok")

        def resolved() -> bool:
            status, page = staff.get("/alerts")
            return status == 200 and not _ALERT.search(page)
        assert wait_until(resolved, timeout=90, step=0.5), staff.get("/alerts")[1][-3000:]
    finally:
        below = below or descendants(demo.pid)
        interrupt_and_wait(demo)
        kill_all(below)   # whatever the demo left behind (it should leave nothing)
    assert demo.returncode == 0, out.read_text()[-3000:]
