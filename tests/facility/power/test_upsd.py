"""Against a real upsd and dummy-ups: the reader, the monitor and the agent's controller follow
OL → OB → OB LB → OL and FSD; upsd going away or answering nonsense is "unavailable", never a
crash."""
from __future__ import annotations

import time

from facility.power import PowerMonitor, build
from facility.power.io import read_ups
from tests.payments.helpers import wait_until


def settings_for(upsd, **extra):
    from terminal.settings import defaults

    return {**defaults(), "NUT_HOST": "127.0.0.1", "NUT_PORT": upsd.port, "NUT_UPS": "kiosk",
            "NUT_TIMEOUT_S": 2.0, **extra}


def test_reader_sees_the_dummy_ups_variables(upsd):
    reading = read_ups(upsd.target)
    assert reading.status == {"OL"} and reading.runtime_s == 1800 and reading.charge_pct == 100
    assert reading.input_voltage == 230


def test_outage_sequence_through_the_controller(upsd):
    controller = build(settings_for(upsd, POWER_RUNTIME_MARGIN_S=300))
    seen = []
    for name, status in (("OL", "OL"), ("OB", "OB DISCHRG"), ("OB_SHORT", "OB DISCHRG"),
                         ("OB LB", "OB DISCHRG LB"), ("OL", "OL")):
        upsd.write(name)
        upsd.wait_status(status)
        if name == "OB_SHORT":
            wait_until(lambda: read_ups(upsd.target).runtime_s == 200, what="runtime 200")
        controller.poll(time.time())
        s = controller.status()
        seen.append((s["state"], s["stop_new_payments"], s["shutdown"]))
    assert seen == [("online", False, False), ("on_battery", False, False), ("on_battery", True, False),
                    ("low_battery", True, True), ("online", False, False)]
    s = controller.status()
    assert s["available"] and s["alerts"] == [] and s["runtime_s"] == 1800
    kinds = [e["kind"] for e in reversed(s["events"])]
    assert kinds == ["online", "on_battery", "runtime_short", "low_battery", "online"]
    assert all(e["text_uk"] and e["text_en"] and e["at"].endswith("+00:00") for e in s["events"])
    controller.close()


def test_fsd_shuts_down(upsd):
    monitor = PowerMonitor.from_settings(settings_for(upsd))
    upsd.write("FSD")
    upsd.wait_status("FSD OB DISCHRG LB")
    a = monitor.poll(time.time())
    assert a.state == "fsd" and a.shutdown and a.stop_new_payments and a.why == "fsd"


def test_upsd_gone_is_unavailable_and_comes_back(upsd):
    controller = build(settings_for(upsd))
    controller.poll(time.time())
    assert controller.status()["state"] == "online"
    upsd.stop_upsd()
    controller.poll(time.time())
    s = controller.status()
    assert s["state"] == "unavailable" and not s["available"] and "comms_lost" in s["alerts"]
    assert not s["stop_new_payments"]  # last seen on mains: payments go on
    assert "127.0.0.1" in s["error"]
    upsd.start_upsd()
    controller.poll(time.time())
    assert controller.status()["state"] == "online"


def test_upsd_gone_while_on_battery_stops_payments_then_shuts_down_after_deadtime(upsd):
    monitor = PowerMonitor.from_settings(settings_for(upsd, POWER_DEADTIME_S=15))
    upsd.write("OB")
    upsd.wait_status("OB DISCHRG")
    now = time.time()
    assert monitor.poll(now).state == "on_battery"
    upsd.stop_upsd()
    a = monitor.poll(now + 5)
    assert a.state == "unavailable" and a.stop_new_payments and not a.shutdown
    assert monitor.poll(now + 16).shutdown


def test_unknown_ups_name_is_unavailable(upsd):
    controller = build(settings_for(upsd, NUT_UPS="nosuchups"))
    controller.poll(time.time())
    s = controller.status()
    assert s["state"] == "unavailable" and "UNKNOWN-UPS" in s["error"]


def test_a_looping_seq_file_is_followed_in_order(upsd_factory):
    seq = ("ups.status: OL\nbattery.runtime: 1800\nTIMER 2\n"
           "ups.status: OB DISCHRG\nbattery.runtime: 900\nTIMER 2\n"
           "ups.status: OB DISCHRG LB\nbattery.runtime: 60\nTIMER 2\n")
    upsd = upsd_factory(seq=seq)
    monitor = PowerMonitor.from_settings(settings_for(upsd))
    states = []

    def reaches(state):
        a = monitor.poll(time.time())
        if not states or states[-1] != a.state:
            states.append(a.state)
        return a.state == state

    for state in ("low_battery", "online", "on_battery", "low_battery"):
        wait_until(lambda: reaches(state), timeout=15, what=state)
    # after the first LB, the loop goes back to OL then OB: never straight from OB LB to OB
    first_lb = states.index("low_battery")
    assert states[first_lb:] == ["low_battery", "online", "on_battery", "low_battery"]


def test_fsd_set_by_the_primary_upsmon_reaches_the_monitor(upsd):
    """What upsmon's primary does when it decides to shut everything down: USERNAME/PASSWORD,
    LOGIN, then FSD; upsd adds FSD to ups.status for every client."""
    import socket

    upsd.write("OB")
    upsd.wait_status("OB DISCHRG")
    with socket.create_connection(("127.0.0.1", upsd.port), timeout=5) as conn:
        stream = conn.makefile("rwb")
        for line in ("USERNAME monitor", "PASSWORD watch", "LOGIN kiosk", "FSD kiosk"):
            stream.write(line.encode() + b"\n")
            stream.flush()
            answer = stream.readline()
            assert answer.startswith(b"OK"), (line, answer)
        monitor = PowerMonitor.from_settings(settings_for(upsd))
        a = monitor.poll(time.time())
        assert a.state == "fsd" and a.shutdown and "on_battery" in a.alerts
