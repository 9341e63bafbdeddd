"""The guest Wi-Fi for real, in namespaces this test makes (facility/guestnet/lab.py): dnsmasq
gives a guest its address, the agent's nftables table redirects its HTTP to the kiosk's portal
listener, the real portal POST (CSRF included) admits it through the real agent endpoint, and
then it reaches the fake internet but never the office, the kiosk's main listener or another
guest; admission expires; the rate is capped by tc."""
from __future__ import annotations

import time

import pytest

from facility.guestnet.lab import GATEWAY, INTERNET, INTERNET_PAGE, OFFICE, GuestLab, Site, usable

pytestmark = pytest.mark.skipif(bool(usable()), reason=usable() or "ok")

PORTAL_PORT = 8083
KIOSK_PORT = 8080


@pytest.fixture
def lab():
    lab = GuestLab(guests=2)
    yield lab
    lab.close()


@pytest.fixture
def site(lab, tmp_path):
    """The agent with the guestnet controller, and the kiosk with its portal listener; plus the
    kiosk's main listener on the gateway's guest address too (as HOST=0.0.0.0 would put it):
    the firewall, not the bind address, must keep guests out of it."""
    from terminal.server import BackgroundServer

    site = Site(lab, str(tmp_path / "instance"), GUEST_ADMIT_MINUTES=30)
    main_on_guest = BackgroundServer(site.app, "127.0.0.1", 0, threads=2, guest_host=GATEWAY,
                                     guest_port=KIOSK_PORT, guest_netns=lab.gateway)
    assert main_on_guest.guest_url, main_on_guest.guest_error
    yield site
    main_on_guest.stop()
    site.close()


def controller_status(site) -> dict:
    site.agent.runner.poll_now("guestnet")
    return site.status()


def test_a_guest_gets_an_address_is_captive_then_admitted_and_stays_fenced(lab, site):
    agent = site.agent
    lease = lab.dhcp(1)
    assert lease["router"] == GATEWAY and lease["dns"] == GATEWAY
    assert lease["ip"].startswith("10.99.")
    # RFC 8910: DHCP option 114 names the RFC 8908 API.
    assert bytes.fromhex(lease["opt114"]) == f"http://{GATEWAY}:{PORTAL_PORT}/captive-portal/api".encode()
    lab.dhcp(2)

    # Captive: any HTTP to the internet lands on the portal; phones' probes are redirected.
    for host, path in (("connectivitycheck.gstatic.com", "/generate_204"), ("captive.apple.com", "/hotspot-detect.html"),
                       ("www.msftconnecttest.com", "/connecttest.txt"), ("example.org", "/any/page?x=1")):
        status, headers, _ = lab.http(1, INTERNET, 80, path, headers={"Host": host})
        assert status == 302 and headers["location"] == f"http://{GATEWAY}:{PORTAL_PORT}/portal/", (path, status)
    status, headers, body = lab.http(1, GATEWAY, PORTAL_PORT, "/captive-portal/api")
    assert headers["content-type"].startswith("application/captive+json") and b'"captive":true' in body.replace(b" ", b"")
    assert not lab.reaches(1, INTERNET, 5001)          # not HTTP: dropped, not redirected
    # A forged Accept (no CSRF token) admits nobody.
    status, _, _ = lab.http(1, GATEWAY, PORTAL_PORT, "/portal/accept", method="POST",
                            headers={"Content-Type": "application/x-www-form-urlencoded"}, body=b"lang=en")
    assert status == 400
    assert not lab.reaches(1, INTERNET, 5001)

    status, page = site.accept(1)
    assert status == 200 and b"You are online" in page

    status, _, body = lab.http(1, INTERNET, 80, "/")
    assert status == 200 and body == INTERNET_PAGE
    assert lab.reaches(1, INTERNET, 5001)
    status, headers, body = lab.http(1, GATEWAY, PORTAL_PORT, "/captive-portal/api")
    assert b'"captive":false' in body.replace(b" ", b"") and b"seconds-remaining" in body
    # An admitted phone's probe gets what its system expects.
    status, _, body = lab.http(1, GATEWAY, PORTAL_PORT, "/generate_204", headers={"Host": "connectivitycheck.gstatic.com"})
    assert status == 204

    # Fenced: never the office, never the kiosk's main listener nor the appliance's other
    # addresses, never the other guest (isolation), who is still captive.
    assert not lab.reaches(1, OFFICE, 80)
    assert not lab.reaches(1, "192.168.50.1", 80)
    assert not lab.reaches(1, GATEWAY, KIOSK_PORT)
    status, _, _ = lab.http(1, GATEWAY, PORTAL_PORT, "/service/", headers={"Host": "10.99.0.1"})
    assert status == 302   # the portal listener has no service mode: it is a probe like any other
    guest2 = lab.addresses[lab.guests[1]]
    assert not lab.reaches(1, guest2, 22, timeout=1)
    assert not lab.reaches(2, INTERNET, 5001)

    status_now = controller_status(site)
    assert status_now["available"] and status_now["dhcp"]
    assert status_now["clients_now"] == 1 and status_now["admitted_today"] == 1
    assert status_now["bytes_up"] > 0 and status_now["bytes_down"] > 0 and status_now["blocked"] > 0
    assert status_now["redirected"] >= 4


def test_the_agent_refuses_addresses_outside_the_guest_network(lab, site):
    agent = site.agent
    for bad in ("192.168.50.2", GATEWAY, "10.99.3.255", "not an ip", 7, None):
        answer = agent.runner.command("guestnet", "admit", {"ip": bad})
        assert answer["ok"] is False, bad
    assert agent.runner.command("guestnet", "admit", {"ip": "10.99.0.50", "minutes": 31})["ok"] is False


def test_admission_expires(lab, site):
    agent = site.agent
    guest = lab.dhcp(1)["ip"]
    # One second instead of minutes: the same set element with a short timeout.
    gateway = agent.runner._slots["guestnet"].controller.gateway
    gateway.admit(guest, 2)
    assert lab.reaches(1, INTERNET, 5001)
    time.sleep(2.5)
    assert not lab.reaches(1, INTERNET, 5001)
    status, headers, _ = lab.http(1, INTERNET, 80, "/generate_204", headers={"Host": "connectivitycheck.gstatic.com"})
    assert status == 302


def test_the_guest_networks_rate_is_capped(lab, site):
    agent = site.agent
    guest = lab.dhcp(1)["ip"]
    assert agent.runner.command("guestnet", "admit", {"ip": guest})["ok"]
    cap = 5000
    up = lab.upload_rate_kbit(1, seconds=3)
    down = lab.download_rate_kbit(1, seconds=3)
    # A loose band: the precise ratio is bench/internet_guest.py's figure.
    assert 0.6 * cap <= up <= 1.15 * cap, up
    assert 0.6 * cap <= down <= 1.15 * cap, down
