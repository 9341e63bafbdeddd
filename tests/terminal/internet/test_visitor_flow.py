"""The whole Part 1 chain as a visitor meets it, with nothing faked but the internet: `cnap kiosk`
with its real window under Xvfb, the kiosk's own pages (terms, POST /internet/start with its
CSRF token), BrowsingSessions, the window's control channel, the project's filtering proxy
(tinyproxy) in front of the fake internet, and a real `cnap agent` (no uplink watch) for the
tile's rule. A blocked attempt on the first page and the end of the session arrive back as the
kiosk's counters, which the agent reads over loopback."""
from __future__ import annotations

import argparse
import threading

import pytest

from facility.runner import Runner
from monitoring.agent import Agent
from terminal import settings as settings_module
from terminal.state import state
from tests.terminal.internet.fakenet import FakeInternet
from tests.terminal.internet.window_harness import wait_for
from tests.terminal.test_shell import x_display  # noqa: F401 (the module-scoped X screen fixture)

pytestmark = pytest.mark.window

SITE = "www.allowed.test"
BLOCKED = "tracker.blocked.test"


@pytest.fixture
def net():
    with FakeInternet() as fake:
        yield fake


@pytest.fixture
def agent(tmp_path):
    """`cnap agent` without controllers: no uplink watch, so the internet counts as reachable."""
    values = settings_module.load({"INSTANCE_PATH": str(tmp_path / "instance")}, environ={})
    running = Agent(values, runner=Runner([]))
    running.start(port=0)
    yield running
    running.stop()


def test_a_visitor_opens_the_internet_from_the_kiosk_pages_and_the_counters_follow(
        x_display, net, agent, tmp_path, monkeypatch):  # noqa: F811
    from terminal.cli import run_kiosk
    from terminal.internet import proxy as proxy_module

    # The kiosk's proxy goes out to the fake internet instead of the real one (the only change).
    real_proxy = proxy_module.FilteringProxy
    monkeypatch.setattr(proxy_module, "FilteringProxy",
                        lambda *a, **kw: real_proxy(*a, upstream=net.url, **kw))
    net.page(SITE, "/start", f'<title>start</title><p>hello</p>'
                             f'<script>setTimeout(() => location = "http://{BLOCKED}/x?surname=Shevchenko", 300)'
                             f'</script>')
    monkeypatch.setenv("DISPLAY", x_display)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    apps, urls = [], []
    args = argparse.Namespace(instance=str(tmp_path / "instance"), port=0, tablet_port=None, no_window=False,
                              windowed=True)
    config = {"SECRET_KEY": "t", "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": "",
              "AGENT_PORT": agent.server.port, "INTERNET_ALLOWLIST": ["allowed.test"],
              "INTERNET_HOME_URL": f"http://{SITE}/start",
              "TABLET_HOST": ""}   # one listener: on_ready gets the kiosk's own URL
    kiosk = threading.Thread(target=run_kiosk, args=(args, config, lambda app, url: (urls.append(url), apps.append(app))),
                             daemon=True)
    kiosk.start()
    try:
        app = wait_for(lambda: apps and apps[0], 60, "the kiosk app")
        wait_for(lambda: state(app).internet_window, 30, "the window port")
        sessions = state(app).internet
        wait_for(lambda: sessions.proxy_running(), 30, "the filtering proxy")
        client = app.test_client()
        home = wait_for(lambda: (page := client.get("/")).status_code == 200 and "/internet" in page.text and page,
                        60, "the home screen to offer the internet tile")
        assert home
        terms = client.get("/internet")
        assert terms.status_code == 200 and "allowed.test" in terms.text
        started = wait_for(lambda: client.post("/internet/start").status_code in (200, 302), 60,
                           "the window to take the session")
        assert started
        wait_for(lambda: any(hit.host == SITE and hit.path == "/start" for hit in net.hits), 30,
                 "the home page through the proxy")
        day = lambda: sessions.store.day_counters(top=5)  # noqa: E731
        wait_for(lambda: day()["blocked"].get("hook", 0) >= 1, 30, "the blocked attempt to be counted")
        assert BLOCKED not in net.hosts()
        assert {row["host"] for row in day()["top_blocked"]} == {BLOCKED}
        assert sessions.status()["open"]
        state(app).internet_window.end("user")
        wait_for(lambda: not sessions.status()["open"], 30, "the session to end")
        counters = day()
        assert counters["sessions_started"] == 1 and counters["sessions_ended"].get("user") == 1
        # The agent's view of the same counters (the kiosk's loopback API): hosts only.
        from monitoring.kiosk_client import KioskClient

        kiosk_api = KioskClient(urls[0], agent.token)
        figures = kiosk_api.internet()
        assert BLOCKED in str(figures) and "Shevchenko" not in str(figures)
    finally:
        if apps:
            state(apps[0]).kiosk_stop("test over")
        kiosk.join(30)
    assert not kiosk.is_alive()
