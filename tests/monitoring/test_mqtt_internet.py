"""The agent publishes the kiosk's visitor browsing counters (KioskClient.internet(), from
/internal/internet) as the retained cnap/<site>/internet topic, through a real broker whose site
ACL (firmware_configs/mosquitto/acl) lets the site write it; a kiosk without browsing publishes
nothing there."""
from __future__ import annotations

import pytest

from facility.runner import Runner
from monitoring import topics
from tests.facility.fakes import FakeController
from tests.monitoring.test_mqtt_agent import (SITE, FakeKiosk, broker, clients, latest_by_topic,  # noqa: F401
                                              reporter_settings, reporters)

pytestmark = pytest.mark.timeout(180)


class BrowsingKiosk(FakeKiosk):
    def __init__(self):
        super().__init__()
        self.counters = {"enabled": True, "available": True, "state": "ok", "session_open": False,
                         "day": "2026-03-02", "sessions": 4, "ended": {"user": 3, "idle": 1}, "minutes": 31.5,
                         "blocked_hook": 7, "blocked_proxy": 2,
                         "top_blocked": [{"host": "facebook.com", "attempts": 5}, {"host": "other", "attempts": 4}]}

    def internet(self):
        self._check()
        return dict(self.counters)


def test_internet_counters_reach_the_hub(broker, tmp_path, reporters, clients):  # noqa: F811
    hub = clients(broker.local_port, "hub.central")
    assert hub.subscribe(topics.site_filter(SITE)) == 1
    runner = Runner([FakeController("power", interval_s=0.2, state="online")])
    kiosk = BrowsingKiosk()
    reporters(reporter_settings(tmp_path, broker.local_port), SITE, runner, kiosk)
    runner.start()
    try:
        seen = latest_by_topic(hub, [f"cnap/{SITE}/internet"])
        message = topics.parse(f"cnap/{SITE}/internet", seen[f"cnap/{SITE}/internet"])
        assert message.kind == "internet"
        assert (message.payload.sessions, message.payload.minutes, message.payload.blocked_hook) == (4, 31.5, 7)
        assert [(b.host, b.attempts) for b in message.payload.top_blocked] == [("facebook.com", 5), ("other", 4)]
        kiosk.counters["sessions"] = 5                    # a change is published again
        while True:
            seen = latest_by_topic(hub, [f"cnap/{SITE}/internet"])
            if topics.parse(f"cnap/{SITE}/internet", seen[f"cnap/{SITE}/internet"]).payload.sessions == 5:
                break
    finally:
        runner.stop()
