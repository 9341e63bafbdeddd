"""`cnap demo`'s guest Wi-Fi as root, for real: the demo builds its namespaces
(facility/guestnet/lab.py), the agent's guestnet controller gives the guest phone a DHCP lease,
the phone's probe is redirected to the kiosk's portal, the hub shows the site's guest network
(cnap/demo/guest_network through the demo broker), and after Ctrl+C every namespace the demo made
is gone and no process of it (dnsmasq among them) is left."""
from __future__ import annotations

import re
import subprocess

import pytest

from facility.guestnet.lab import INTERNET, usable
from tests.facility.fakes import wait_until
from tests.helpers import descendants, interrupt_and_wait, kill_all, start_headless_demo
from tests.monitoring.test_demo_monitoring import HubBrowser

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(bool(usable()), reason=f"the guest Wi-Fi lab cannot run here: {usable()}")]


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def alive(pid: int) -> str:
    """A running (not zombie) process's command line, or ''."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                return ""
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return f"{pid}: " + cmdline.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return ""


def test_the_demos_guest_wifi_comes_up_and_goes_away_cleanly(tmp_path):
    from terminal.cli import DEMO_TECHNICIAN, DEMO_TECHNICIAN_PIN

    before = namespaces()
    demo, out = start_headless_demo(tmp_path, {"CNAP_FACILITY_CONTROLLERS": "facility.guestnet", "CNAP_MQTT_REFRESH_S": "2"})
    below: list[int] = []
    made: set[str] = set()
    try:
        def printed(pattern: str):
            return re.search(pattern, out.read_text())
        assert wait_until(lambda: printed(r"no display; open http://") or demo.poll() is not None, timeout=120,
                          step=0.2), out.read_text()[-3000:]
        lab = printed(r"gateway (cnap-gw-\S+)\); be the guest's phone with `ip netns exec (cnap-guest\S+) curl")
        hub = printed(r"monitoring hub \(pid \d+\) at (http://127\.0\.0\.1:\d+)/")
        assert lab and hub, out.read_text()[-3000:]
        made = namespaces() - before
        assert {lab.group(1), lab.group(2)} <= made
        below = descendants(demo.pid)
        assert wait_until(lambda: printed(r"the guest phone got 10\.99\.\d+\.\d+ by DHCP"), timeout=60, step=0.5), \
            out.read_text()[-3000:]

        # The phone is captive: its first page goes to the kiosk's portal on the gateway.
        probe = subprocess.run(["ip", "netns", "exec", lab.group(2), "curl", "-s", "-i", "-m", "10",
                                f"http://{INTERNET}/"], capture_output=True, text=True)
        assert probe.stdout.startswith("HTTP/1.1 302") and "Location: http://10.99.0.1:" in probe.stdout, probe
        terms = subprocess.run(["ip", "netns", "exec", lab.group(2), "curl", "-s", "-L", "-m", "10",
                                f"http://{INTERNET}/generate_204"], capture_output=True, text=True)
        assert "Погоджуюсь, підключити" in terms.stdout, terms.stdout[-2000:]

        # The hub shows the demo site's guest network as the agent reports it.
        staff = HubBrowser(hub.group(1))
        staff.log_in_as(DEMO_TECHNICIAN, DEMO_TECHNICIAN_PIN)

        def guest_network_shown() -> bool:
            status, page = staff.get("/site/demo")
            return status == 200 and "Гостьовий Wi-Fi" in page and "Гостей зараз" in page \
                and "DHCP для гостей працює</th><td>так" in page
        assert wait_until(guest_network_shown, timeout=60, step=0.5), staff.get("/site/demo")[1][-3000:]
    finally:
        below = below or descendants(demo.pid)
        interrupt_and_wait(demo)
        left = [running for running in map(alive, below) if running]
        left_namespaces = made & namespaces()
        kill_all(below)   # whatever the demo left behind (it should leave nothing), before asserting
        for ns in left_namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert demo.returncode == 0, out.read_text()[-3000:]
    assert not left, f"processes left by the demo: {left}"
    assert not left_namespaces, f"namespaces left by the demo: {left_namespaces}"
