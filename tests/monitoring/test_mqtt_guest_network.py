"""The agent publishes the guest Wi-Fi controller's status (facility/guestnet, with a recording
gateway instead of nftables and dnsmasq) as the retained cnap/<site>/guest_network topic, through a
real broker whose site ACL (firmware_configs/mosquitto/acl) lets the site write it; admitting a
guest by a hub command shows up in the counters; the hub's ingest stores what arrived."""
from __future__ import annotations

import pytest

from facility.guestnet import GuestNetworkController
from facility.runner import Runner
from monitoring import topics
from monitoring.hub.db import open_store
from monitoring.hub.ingest import Ingest
from terminal import settings as settings_module
from tests.monitoring.test_mqtt_agent import (SITE, broker, clients, command, latest_by_topic,  # noqa: F401
                                              reporter_settings, reporters)

pytestmark = pytest.mark.timeout(180)
TOPIC = f"cnap/{SITE}/guest_network"


class RecordingGateway:
    """facility.guestnet.io.Gateway's interface without touching the machine: admissions kept in a
    dict, counters as nftables would give them."""

    def __init__(self):
        self.clients: dict[str, int] = {}
        self.nft_counters = {"bytes_up": {"packets": 900, "bytes": 1_200_000},
                             "bytes_down": {"packets": 2000, "bytes": 25_000_000},
                             "blocked": {"packets": 14, "bytes": 840}, "redirected": {"packets": 6, "bytes": 360}}

    def setup(self, admitted=None):
        self.clients.update(admitted or {})

    def start_dnsmasq(self):
        pass

    def dnsmasq_running(self):
        return True

    def dnsmasq_failure(self):
        return ""

    def stop_dnsmasq(self):
        pass

    def admit(self, address, seconds):
        self.clients[address] = seconds

    def expel(self, address):
        self.clients.pop(address, None)

    def admitted(self):
        return dict(self.clients)

    def counters(self):
        return {name: dict(value) for name, value in self.nft_counters.items()}


def guest_controller(gateway):
    values = settings_module.defaults()
    values.update(GUEST_INTERFACE="wlan1", GUEST_CLIENT_RATE_KBIT=1000)
    controller = GuestNetworkController(values, gateway=gateway)
    controller.interval_s = 0.2
    return controller


def test_guest_counters_reach_the_hub_and_follow_admissions(broker, tmp_path, reporters, clients):  # noqa: F811
    hub = clients(broker.local_port, "hub.central")
    assert hub.subscribe(TOPIC) == 1
    gateway = RecordingGateway()
    runner = Runner([guest_controller(gateway)])
    reporters(reporter_settings(tmp_path, broker.local_port), SITE, runner, None)
    runner.start()
    try:
        first = topics.parse(TOPIC, latest_by_topic(hub, [TOPIC])[TOPIC])
        while first.payload.state != "ok":   # the first poll sets the gateway up
            first = topics.parse(TOPIC, latest_by_topic(hub, [TOPIC])[TOPIC])
        guest = first.payload
        assert isinstance(guest, topics.GuestNetworkState) and guest.available and guest.dhcp
        assert (guest.interface, guest.clients_now, guest.admitted_today) == ("wlan1", 0, 0)
        assert (guest.bytes_up, guest.bytes_down, guest.blocked, guest.redirected) == (1_200_000, 25_000_000, 14, 6)
        assert (guest.total_rate_kbit, guest.client_rate_kbit, guest.admit_minutes) == (5000, 1000, 60)

        # The hub admits a phone (as the portal would), the counters say so.
        assert hub.publish(f"cnap/{SITE}/cmd/guestnet", command("admit", {"ip": "10.99.0.57", "minutes": 5})) < 128
        gateway.nft_counters["bytes_down"]["bytes"] += 4096
        while True:
            message = hub.next_message()
            if message.topic != TOPIC:
                continue
            guest = topics.parse(TOPIC, message.payload).payload
            if guest.clients_now == 1 and guest.bytes_down == 25_004_096:
                break
        assert guest.admitted_today == 1 and "10.99.0.57" not in message.payload.decode()   # counts, no address

        store = open_store(f"sqlite:///{tmp_path}/hub.db")
        result = Ingest(store).handle_batch([(TOPIC, message.payload, message.retain)])
        assert result.stored == 1
        assert dict(store.query("SELECT metric, value FROM samples WHERE entity = 'guest_network'"))["clients_now"] == 1
        store.close()
    finally:
        runner.stop()
