"""Controller snapshots → payload models (monitoring/mqtt_map.py): real shapes map field by field,
and any odd snapshot maps to a valid payload (unavailable when it must), never an exception."""
from __future__ import annotations

import time

from hypothesis import given, settings, strategies as st

from monitoring import mqtt_map, topics

NOW = time.time()
POLLED = "2026-12-05T12:00:00+00:00"

VENTILATION = {"available": True, "state": "override", "alerts": ["filter_dirty"], "events": [], "mode": "auto",
               "level": 70, "max_level": 90, "override": {"level": 70, "until": "2026-12-05T13:00:00+00:00"},
               "readings": {"co2_ppm": 812.0, "room_temp_c": 21.5, "rh_pct": 40.2}, "polled_at": POLLED}
POWER = {"available": True, "state": "on_battery", "alerts": ["on_battery", "input_a_lost"], "events": [],
         "source": "ups", "runtime_s": 1800, "charge_pct": 87.0, "ups_status": "OB DISCHRG",
         "input_voltage": 0.0, "polled_at": POLLED}
UPLINKS = {"available": True, "state": "degraded", "alerts": ["uplink_down"], "active": "fibre",
           "uplinks": [{"name": "fibre", "state": "up", "loss_pct": 0.0, "rtt_ms": 12.5},
                       {"name": "lte", "state": "down", "loss_pct": 100.0, "rtt_ms": None}],
           "polled_at": POLLED}
# facility/guestnet GuestNetworkController.status() of a running guest network
GUESTNET = {"events": [], "available": True, "state": "ok", "alerts": [], "interface": "wlan0",
            "network": "10.99.0.0/22", "dhcp": True, "clients_now": 3, "admitted_today": 17,
            "bytes_up": 12_345_678, "bytes_down": 987_654_321, "blocked": 42, "redirected": 9,
            "total_rate_kbit": 5000, "client_rate_kbit": 0, "admit_minutes": 60, "error": None, "polled_at": POLLED}


def test_real_shapes_map_field_by_field():
    vent = mqtt_map.ventilation(VENTILATION, NOW)
    assert (vent.available, vent.state, vent.level, vent.max_level) == (True, "override", 70, 90)
    assert vent.override_until.isoformat() == "2026-12-05T13:00:00+00:00" and vent.alerts == ["filter_dirty"]
    air = mqtt_map.air(VENTILATION, NOW)
    assert air.sensors[0].co2_ppm == 812.0 and air.sensors[0].temperature_c == 21.5 and air.sensors[0].online
    power = mqtt_map.power(POWER, NOW)
    assert power.ups.status == "on_battery" and power.ups.charge_pct == 87.0 and power.ups.runtime_s == 1800
    assert [(i.name, i.live) for i in power.inputs] == [("input_a", False), ("input_b", True)]
    links = mqtt_map.uplinks(UPLINKS, NOW)
    assert links["fibre"].up and links["fibre"].active and links["fibre"].latency_ms == 12.5
    assert not links["lte"].up and not links["lte"].active and links["lte"].alerts == ["uplink_down"]
    out = mqtt_map.status_outgoing("kyiv-1", {"controllers": {"ventilation": VENTILATION, "power": POWER,
                                                              "uplinks": UPLINKS}}, NOW)
    assert [m.topic for m in out] == ["cnap/kyiv-1/ventilation", "cnap/kyiv-1/air", "cnap/kyiv-1/power",
                                      "cnap/kyiv-1/uplink/fibre", "cnap/kyiv-1/uplink/lte"]
    for message in out:   # what the hub will read back
        assert isinstance(topics.parse(message.topic, message.payload, now=NOW), topics.Message)


def test_an_unavailable_or_broken_controller_is_unavailable_not_a_crash():
    runner_fault = {"available": False, "state": "unavailable", "alerts": ["poll_failed"], "fault": "boom"}
    for name in ("ventilation", "power", "uplinks"):
        for message in mqtt_map.controller_outgoing("kyiv-1", name, runner_fault, NOW):
            parsed = topics.parse(message.topic, message.payload)
            assert parsed and parsed.payload.available is False
    bad = mqtt_map.ventilation({"available": True, "state": "auto", "level": 95, "max_level": 90}, NOW)
    assert bad.level is None and bad.max_level == 90     # a level above max is not believed


def test_the_guest_network_maps_field_by_field():
    [message] = mqtt_map.controller_outgoing("kyiv-1", "guestnet", GUESTNET, NOW)
    assert (message.topic, message.qos, message.retain) == ("cnap/kyiv-1/guest_network", 1, True)
    guest = topics.parse(message.topic, message.payload, now=NOW).payload
    assert isinstance(guest, topics.GuestNetworkState)
    assert (guest.available, guest.state, guest.interface, guest.dhcp) == (True, "ok", "wlan0", True)
    assert (guest.clients_now, guest.admitted_today, guest.bytes_up, guest.bytes_down, guest.blocked,
            guest.redirected) == (3, 17, 12_345_678, 987_654_321, 42, 9)
    assert (guest.total_rate_kbit, guest.client_rate_kbit, guest.admit_minutes) == (5000, None, 60)   # 0: no cap
    assert "network" not in message.payload.decode() and "events" not in message.payload.decode()


def test_a_guest_network_that_is_off_or_odd_still_publishes_a_valid_state():
    from facility.guestnet import GuestNetworkController
    off = mqtt_map.guest_network(GuestNetworkController({}).status(), NOW)   # GUEST_INTERFACE empty
    assert (off.available, off.state, off.clients_now, off.interface) == (False, "disabled", 0, None)
    odd = mqtt_map.guest_network({**GUESTNET, "clients_now": -1, "bytes_up": 2 ** 70, "blocked": "7", "dhcp": "yes",
                                  "interface": "wlan0; rm", "admit_minutes": True, "state": "OK now"}, NOW)
    assert (odd.clients_now, odd.bytes_up, odd.blocked, odd.dhcp, odd.interface, odd.admit_minutes) == (
        0, 0, 0, None, None, None)
    assert odd.state == "ok_now" and odd.bytes_down == 987_654_321


def test_content_key_ignores_only_the_timestamp():
    first = mqtt_map.controller_outgoing("kyiv-1", "power", POWER, NOW)[0]
    later = mqtt_map.controller_outgoing("kyiv-1", "power", {**POWER, "polled_at": None}, NOW + 60)[0]
    changed = mqtt_map.controller_outgoing("kyiv-1", "power", {**POWER, "charge_pct": 86.0}, NOW)[0]
    assert first.payload != later.payload and mqtt_map.content_key(first) == mqtt_map.content_key(later)
    assert mqtt_map.content_key(first) != mqtt_map.content_key(changed)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30)
known_keys = st.sampled_from(["available", "state", "alerts", "level", "max_level", "override", "readings",
                              "source", "runtime_s", "charge_pct", "ups_status", "input_voltage", "uplinks",
                              "active", "polled_at", "name", "rtt_ms", "loss_pct", "until", "co2_ppm",
                              "interface", "dhcp", "clients_now", "admitted_today", "bytes_up", "bytes_down",
                              "blocked", "redirected", "total_rate_kbit", "client_rate_kbit", "admit_minutes"])
snapshots = st.recursive(
    st.dictionaries(known_keys, json_values, max_size=12),
    lambda inner: st.dictionaries(known_keys, inner | json_values | st.lists(inner, max_size=4), max_size=12),
    max_leaves=20) | json_values


@settings(deadline=None, max_examples=300)
@given(name=st.sampled_from(["ventilation", "power", "uplinks", "guestnet", "other"]), snapshot=snapshots)
def test_any_snapshot_maps_to_valid_payloads(name, snapshot):
    for message in mqtt_map.controller_outgoing("kyiv-1", name, snapshot, NOW):
        parsed = topics.parse(message.topic, message.payload, now=NOW)
        assert isinstance(parsed, topics.Message), parsed
        if not (isinstance(snapshot, dict) and snapshot.get("available") is True):
            assert parsed.payload.available is False


@settings(deadline=None, max_examples=200)
@given(name=st.sampled_from(topics.DEVICES), fields=st.dictionaries(
    st.sampled_from(["online", "state", "alerts", "paper", "cover_open", "cassette_bills", "cassette_capacity",
                     "ts", "v"]), json_values, max_size=8))
def test_any_device_fields_give_a_valid_payload_or_none(name, fields):
    state = mqtt_map.device(name, fields, NOW)
    if state is not None:
        message = topics.outgoing("kyiv-1", state)
        assert isinstance(topics.parse(message.topic, message.payload, now=NOW), topics.Message)


# --- commands: any bytes on the command topic ------------------------------------------------------
class _Commands:
    def __init__(self):
        self.listeners, self.run = [], []

    def status(self):
        return {"controllers": {}}

    def names(self):
        return ["ventilation"]

    def command(self, name, action, args):
        self.run.append((name, action, args))
        return {"ok": True, "message": "done"}


@settings(deadline=None, max_examples=150)
@given(controller=st.sampled_from(["ventilation", "kiosk", "boiler"]),
       payload=st.binary(max_size=300) | json_values.map(lambda v: __import__("json").dumps(v).encode())
       | st.fixed_dictionaries({"v": st.just(1), "ts": st.just("2026-12-05T12:00:00+00:00"),
                                "id": st.uuids().map(str), "action": st.sampled_from(["override", "out_of_service"]),
                                "args": st.dictionaries(st.sampled_from(["on", "reason", "level"]), json_values,
                                                        max_size=3),
                                "by": st.just("hub.central"), "ttl_s": st.integers(-5, 5000)}
                               ).map(lambda v: __import__("json").dumps(v).encode()))
def test_any_command_bytes_are_handled_without_raising(tmp_path_factory, controller, payload):
    from monitoring.mqtt_agent import MqttReporter
    from terminal import settings as settings_module

    folder = tmp_path_factory.mktemp("cmd")
    reporter = MqttReporter(settings_module.load({"INSTANCE_PATH": str(folder), "MQTT_HOST": "127.0.0.1",
                                                  "MQTT_SITE": "kyiv-1"}, environ={}),
                            "kyiv-1", _Commands(), None, clock=lambda: 1796472000.0)   # 2026-12-05T12:00Z
    answered = reporter.commands
    reporter.handle_command(f"cnap/kyiv-1/cmd/{controller}", payload)
    assert reporter.commands in (answered, answered + 1)
    if reporter.source.run:   # only a valid, current command of a known controller runs
        parsed = topics.parse(f"cnap/kyiv-1/cmd/{controller}", payload, now=1796472000.0)
        assert isinstance(parsed, topics.Message) and controller == "ventilation"
        assert reporter.source.run == [("ventilation", parsed.payload.action, parsed.payload.args)]
