"""The home screen's "Інтернет / Internet" tile asks a real `cnap agent` endpoint over loopback
(fake controllers behind it, as tests/terminal/test_facility_screen.py does): shown with an uplink
up or without an uplink watch, hidden with every uplink down or the agent unreachable; the agent
is asked in the background, so a hung agent never holds the home page."""
from __future__ import annotations

import socket

import pytest

from terminal.state import state
from tests.facility.fakes import FakeController, wait_until
from tests.terminal.internet_fakes import make_ready
from tests.terminal.test_facility_screen import closed_port, start_agent


def uplinks_controller(*states: str) -> FakeController:
    return FakeController("uplinks", state="ok", extra={"uplinks": [{"name": f"isp{i}", "state": s}
                                                                    for i, s in enumerate(states)]})


def with_real_agent(app):
    """make_ready, but the uplink question goes to the agent at app.config AGENT_PORT."""
    browsing = state(app).internet
    ask = browsing.uplinks._ask
    make_ready(app)
    browsing.uplinks._ask = ask
    return browsing


def tile_shown(client) -> bool:
    return 'id="internet-tile"' in client.get("/").text


@pytest.mark.parametrize("controllers, shown", [
    ([uplinks_controller("down", "up")], True),
    ([uplinks_controller("down", "down")], False),
    ([FakeController("power", state="online")], True),                      # no uplink watch at all
    ([FakeController("uplinks", state="disabled")], True),                  # watch present, nothing configured
], ids=["one_up", "all_down", "no_watch", "watch_disabled"])
def test_the_tile_follows_the_agents_uplinks(app, client, controllers, shown):
    agent = start_agent(app, controllers)
    try:
        assert wait_until(lambda: all(c.polls for c in controllers))
        browsing = with_real_agent(app)
        assert wait_until(lambda: browsing.uplinks.verdict() is not None)
        assert tile_shown(client) is shown
        reason = browsing.unavailable_reason()
        assert reason is None if shown else reason == "no_uplink"
    finally:
        agent.stop()


def test_an_unreachable_agent_hides_the_tile_and_service_mode_says_why(app, client):
    app.config["AGENT_PORT"] = closed_port()
    browsing = with_real_agent(app)
    assert not tile_shown(client)
    assert browsing.unavailable_reason() == "no_agent"
    from tests.helpers import service_login
    service_login(client, "222222")
    page = client.get("/service/internet").text
    assert "Не вдалося перевірити зʼєднання" in page and "Агент моніторингу" in page


def test_a_hung_agent_never_holds_the_home_page(app, client):
    # A listener that accepts and never answers: the agent client would wait AGENT_TIMEOUT_S.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    app.config["AGENT_PORT"] = hung.getsockname()[1]
    app.config["AGENT_TIMEOUT_S"] = 5.0
    try:
        browsing = with_real_agent(app)
        from monitoring.agent import ensure_token, token_path
        ensure_token(token_path(app.config))
        assert not tile_shown(client)
        assert not tile_shown(client)
        # Both pages were served while the one question to the agent is still waiting for it.
        assert browsing.uplinks._refreshing.is_alive()
        assert browsing.unavailable_reason() == "no_agent"
    finally:
        hung.close()


def test_the_answer_is_cached_between_checks(app):
    browsing = state(app).internet
    make_ready(app)
    calls = []
    browsing.uplinks._ask = lambda: calls.append(1) or {"controllers": {}}
    browsing.uplinks._at = None
    for _ in range(20):
        browsing.uplinks.verdict()
    assert wait_until(lambda: len(calls) == 1) and len(calls) == 1
