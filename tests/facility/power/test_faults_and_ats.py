"""upsd answering nonsense, dropping the connection or staying silent is "unavailable", never a
crash or a hang; the ATS over Modbus (pymodbus server) and over two GPIO contact files; the
embedded simulator `cnap demo` uses."""
from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from facility.base import Controller
from facility.power import build, start_simulator
from facility.power.io import ContactsAts, ModbusAts, NutTarget, PowerIOError, decode_ats_registers, read_ups
from facility.power.simulator import AtsSimulator, NutSimulator
from terminal.settings import defaults


@pytest.fixture
def nut():
    sim = NutSimulator(ups="sim")
    yield sim
    sim.stop()


def settings_for(sim, **extra):
    return {**defaults(), **sim.settings, "NUT_TIMEOUT_S": 0.5, **extra}


@pytest.mark.parametrize("fault", ["drop", "garbage", "silent"])
def test_upsd_faults_are_unavailable_and_recover(nut, fault):
    controller = build(settings_for(nut))
    assert isinstance(controller, Controller)
    controller.poll(time.time())
    assert controller.status()["state"] == "online"
    nut.fault = fault
    controller.poll(time.time())
    s = controller.status()
    assert s["state"] == "unavailable" and not s["available"] and s["alerts"] == ["comms_lost"]
    nut.fault = ""
    controller.poll(time.time())
    assert controller.status()["state"] == "online"


class Canned(socketserver.BaseRequestHandler):
    answer = b""

    def handle(self):
        self.request.recv(200)
        self.request.sendall(self.answer)


@pytest.mark.parametrize("answer", [
    b"BEGIN LIST VAR sim\nVAR sim ups.status \"OL\"\n",           # cut before END
    b"BEGIN LIST VAR other\nEND LIST VAR other\n",                # another UPS's list
    b"BEGIN LIST VAR sim\nEND LIST VAR sim\n",                    # no variables at all
    b"OK\n",
    b"ERR DATA-STALE\n",
    b"BEGIN LIST VAR sim\n" + b"VAR sim x \"" + b"9" * 70000 + b"\"\n",  # one endless line
    "BEGIN LIST VAR sim\nVAR sim ups.status \"ОЛ\"\nEND LIST VAR sim\n".encode(),  # not ASCII
])
def test_nonsense_from_upsd_is_an_error_not_a_crash(answer):
    handler = type("H", (Canned,), {"answer": answer})
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(PowerIOError):
            read_ups(NutTarget("127.0.0.1", server.server_address[1], "sim", timeout_s=0.5))
        assert time.monotonic() - started < 5  # a bound, not a speed target: it must not hang
        server.shutdown()


def test_no_upsd_listening_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = build({**defaults(), "NUT_HOST": "127.0.0.1", "NUT_PORT": port, "NUT_TIMEOUT_S": 0.5})
    controller.poll(time.time())
    assert controller.status()["state"] == "unavailable"


def test_credentials_are_sent_and_a_wrong_password_is_unavailable():
    sim = NutSimulator(ups="sim", username="kiosk", password="s3cret word")
    try:
        assert read_ups(NutTarget(sim.host, sim.port, "sim", "kiosk", "s3cret word")).status == {"OL"}
        with pytest.raises(PowerIOError) as caught:
            read_ups(NutTarget(sim.host, sim.port, "sim", "kiosk", "wrong"))
        assert "wrong" not in str(caught.value)  # the password never reaches a log line
    finally:
        sim.stop()


def test_not_configured_is_disabled():
    controller = build(defaults())
    controller.poll(time.time())
    assert controller.status() == {"available": False, "state": "disabled", "alerts": [], "events": []}
    assert controller.command("refresh", {})["ok"] is False


def test_commands_never_raise(nut):
    controller = build(settings_for(nut))
    assert controller.command("refresh", {}) == {"ok": True, "message": "online"}
    answer = controller.command("blow_fuse", {"x": object()})
    assert answer["ok"] is False and "unknown action" in answer["message"]


# ------------------------------------------------------------------------- ATS
@pytest.fixture
def ats():
    sim = AtsSimulator()
    yield sim
    sim.stop()


def test_ats_over_modbus_and_the_transfer_event(nut, ats):
    controller = build(settings_for(nut, **ats.settings))
    controller.poll(time.time())
    assert controller.status()["source"] == "input_a" and controller.status()["alerts"] == []
    ats.set(feeding="input_b", input_a_live=False, input_b_live=True)
    controller.poll(time.time())
    s = controller.status()
    assert s["state"] == "online" and s["source"] == "input_b" and s["alerts"] == ["input_a_lost"]
    assert [e["kind"] for e in s["events"][:2]] == ["transfer", "input_a_lost"]
    # both substations gone, and upsd silent too: the ATS alone says the UPS carries the load
    ats.set(feeding="none", input_a_live=False, input_b_live=False)
    nut.fault = "drop"
    controller.poll(time.time())
    s = controller.status()
    assert s["state"] == "unavailable" and s["stop_new_payments"] and s["source"] == "ups"
    ats.stop()
    nut.fault = ""
    controller.poll(time.time())
    s = controller.status()
    assert s["state"] == "online" and "ats_unavailable" in s["alerts"]
    controller.close()


def test_ats_with_a_wrong_unit_or_both_positions_is_an_error(ats):
    wrong_unit = ModbusAts(ats.settings["ATS_URL"].replace("unit=1", "unit=7"))
    with pytest.raises(PowerIOError):
        wrong_unit.read()
    ats.set_raw(0b1111)
    with pytest.raises(PowerIOError):
        ModbusAts(ats.settings["ATS_URL"]).read()


@pytest.mark.parametrize("word,feeding,a,b", [(0b00101, "input_a", True, False), (0b01010, "input_b", False, True),
                                              (0b00000, "none", False, False), (0b10111, "input_a", True, True)])
def test_ats_map_decoding(word, feeding, a, b):
    reading = decode_ats_registers([word, 0, 0])
    assert (reading.feeding, reading.input_a_live, reading.input_b_live) == (feeding, a, b)


def test_ats_contacts_as_gpio_value_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    reader = ContactsAts(f"contacts://{a},{b}")
    a.write_text("1\n"), b.write_text("0\n")
    assert reader.read().feeding == "input_a"
    a.write_text("0\n"), b.write_text("1\n")
    assert reader.read().feeding == "input_b"
    b.write_text("0\n")
    assert reader.read().feeding == "none"
    for bad in ("1", "x", ""):
        a.write_text(bad), b.write_text("1")
        with pytest.raises(PowerIOError):
            reader.read()
    b.unlink()
    with pytest.raises(PowerIOError):
        reader.read()


def test_demo_simulator_switches_states(tmp_path):
    sim = start_simulator(defaults())
    try:
        controller = build({**defaults(), **sim.settings, "POWER_RUNTIME_MARGIN_S": 300})
        for name, state, stop, shutdown in (("OL", "online", False, False), ("OB", "on_battery", False, False),
                                            ("OB_SHORT", "on_battery", True, False),
                                            ("LB", "low_battery", True, True), ("FSD", "fsd", True, True),
                                            ("OL", "online", False, False)):
            sim.set_state(name)
            controller.poll(time.time())
            s = controller.status()
            assert (s["state"], s["stop_new_payments"], s["shutdown"]) == (state, stop, shutdown), name
            assert s["source"] == ("input_a" if name == "OL" else "ups")
        controller.close()
    finally:
        sim.stop()


@pytest.mark.parametrize("url", ["", "nonsense", "modbus-tcp://127.0.0.1:99999", "modbus-tcp://h?unit=x",
                                 "contacts:///only-one"])
def test_a_misconfigured_ats_is_reported_not_raised(nut, url):
    source = "contacts" if url.startswith("contacts") else "modbus"
    controller = build(settings_for(nut, ATS_SOURCE=source, ATS_URL=url))
    controller.poll(time.time())
    s = controller.status()
    assert s["state"] == "online" and s["alerts"] == ["ats_unavailable"] and "ATS_URL" in s["error"]


def test_reading_from_inside_a_running_event_loop(nut):
    """An asyncio caller (or Playwright's sync API in the same process) must not break readings."""
    from facility.power.io import run_coroutine

    async def inside():
        return read_ups(NutTarget(nut.host, nut.port, "sim")).status

    # run_coroutine, not asyncio.run: the test process itself may be inside Playwright's loop
    assert run_coroutine(inside) == {"OL"}
