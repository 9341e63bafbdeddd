"""The ventilation controller against the pymodbus simulator on loopback: both profiles, every
mode, every fault, and no hunting around a threshold. Time is simulated (the room model advances
by the same step as the controller's clock), so a day takes seconds."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from facility.base import Controller
from facility.ventilation import BranchHours, VentilationController, build
from facility.ventilation.io import ModbusUnit, ProfileError, load_profile, parse_url, read_plan
from facility.ventilation.policy import changes_per_hour
from facility.ventilation.simulator import start
from terminal import settings as settings_module

KYIV = ZoneInfo("Europe/Kyiv")
MONDAY_9 = datetime(2026, 12, 7, 9, 0, tzinfo=KYIV)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim():
    simulator = start({}, realtime=False)
    yield simulator
    simulator.stop()


@pytest.fixture
def systemair_sim():
    simulator = start({"VENT_PROFILE": "systemair-save"}, realtime=False)
    yield simulator
    simulator.stop()


def week_cache(path: Path, start: str = "08:00", end: str = "17:00") -> Path:
    path.write_text(json.dumps({"week": {str(d): [[start, end]] for d in range(7)}, "special": {}}))
    return path


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now


def controller_for(simulator, tmp_path, clock: Clock, **overrides) -> VentilationController:
    values = settings_module.defaults()
    values.update(simulator.settings)
    values.update({"INSTANCE_PATH": str(tmp_path), "VENT_TIMEOUT_S": 0.5})
    values.update(overrides)
    hours = BranchHours(None, "central", "Europe/Kyiv", week_cache(tmp_path / "hours.json"))
    return VentilationController(values, hours=hours, clock=clock)


def run(controller, simulator, clock: Clock, minutes: float, step_s: float = 60.0) -> list[float]:
    """Advance room and controller together; the times at which the room's level changed."""
    changes, level = [], simulator.room.level
    for _ in range(int(minutes * 60 / step_s)):
        simulator.advance(step_s)
        clock.now += step_s
        controller.poll(clock.now)
        if simulator.room.level != level:
            changes.append(clock.now)
            level = simulator.room.level
    return changes


# --- profiles and the client -------------------------------------------------------------------

def test_profiles_load_and_the_systemair_map_uses_wire_addresses():
    generic = load_profile("generic")
    assert generic.points["co2_ppm"].address == 1 and generic.allow_off
    save = load_profile("systemair-save")
    assert save.points["level_command"].address == 1130          # REG 1131, 1-based in the list
    assert save.levels == (0, 2, 3, 4) and not save.allow_off
    assert ("input", 12400, 2) in read_plan(save)                 # the two fan RPM registers together


@pytest.mark.parametrize("name", ["../etc/passwd", "nope", "a b"])
def test_bad_profile_names_are_refused(name):
    with pytest.raises(ProfileError):
        load_profile(name)


@pytest.mark.parametrize("url, kind", [("tcp://10.0.0.5:502", "tcp"), ("rtu+tcp://gw:4001?device_id=3", "rtu-over-tcp"),
                                       ("rtu:///dev/ttyUSB0?baudrate=19200&parity=E", "rtu")])
def test_unit_urls(url, kind):
    assert parse_url(url).kind == kind


@pytest.mark.parametrize("url", ["http://x", "tcp://", "rtu://", "tcp://h:1?device_id=999", "rtu:///dev/x?parity=Q"])
def test_bad_unit_urls_are_refused(url):
    with pytest.raises(ValueError):
        parse_url(url)


def test_reads_the_generic_map_and_commands_a_level(sim):
    sim.room.co2_ppm, sim.room.outdoor_c = 900.0, -3.5
    unit = ModbusUnit(sim.url, load_profile("generic"), timeout_s=0.5)
    try:
        reading = unit.read()
        assert reading.ok
        assert abs(reading.values["co2_ppm"] - 900) <= 10
        assert reading.values["outdoor_temp_c"] == pytest.approx(-3.5)
        assert unit.write_level(3, reading) == ""
        assert sim.room.level == 3
        assert unit.write_level(9, reading) != "" and sim.room.level == 3
    finally:
        unit.close()


def test_rtu_framing_through_a_gateway():
    simulator = start({}, realtime=False, framer="rtu")
    unit = ModbusUnit(simulator.url, load_profile("generic"), timeout_s=0.5)
    try:
        assert simulator.url.startswith("rtu+tcp://")
        assert unit.read().ok and unit.write_level(2) == "" and simulator.room.level == 2
    finally:
        unit.close()
        simulator.stop()


@pytest.fixture
def serial_line(tmp_path):
    """Two ends of a serial line (a pty pair joined by socat): the unit's and the agent's."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail("socat is missing (make system-deps installs it)")
    unit_end, agent_end = tmp_path / "unit-tty", tmp_path / "agent-tty"
    process = subprocess.Popen([socat, f"pty,raw,echo=0,link={unit_end}", f"pty,raw,echo=0,link={agent_end}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if unit_end.exists() and agent_end.exists():
                break
            time.sleep(0.05)
        yield str(unit_end), str(agent_end)
    finally:
        process.terminate()
        process.wait(5)


def test_modbus_rtu_over_a_serial_line(serial_line):
    unit_end, agent_end = serial_line
    simulator = start({}, realtime=False, serial_port=unit_end)
    unit = ModbusUnit(f"rtu://{agent_end}?baudrate=9600&parity=N", load_profile("generic"), timeout_s=1.0)
    try:
        simulator.room.co2_ppm = 1234.0
        reading = unit.read()
        assert reading.ok, reading.error
        assert abs(reading.values["co2_ppm"] - 1234) <= 10
        assert unit.write_level(3, reading) == "" and simulator.room.level == 3
    finally:
        unit.close()
        simulator.stop()


def test_systemair_unit_is_switched_to_manual_before_the_level_is_written(systemair_sim):
    systemair_sim.room.user_mode = 0                             # Auto
    unit = ModbusUnit(systemair_sim.url, load_profile("systemair-save"), timeout_s=0.5)
    try:
        reading = unit.read()
        assert reading.ok and reading.values["user_mode"] == 0
        assert unit.write_level(2, reading) == ""
        assert systemair_sim.unit.writes == [("mode_request", 2), ("level_command", 3)]
        assert systemair_sim.room.user_mode == 1 and systemair_sim.room.level == 2
        assert unit.write_level(0, unit.read()) != ""             # off is not allowed on this unit
    finally:
        unit.close()


# --- the controller: contract and modes --------------------------------------------------------

def test_controller_follows_the_contract_and_is_disabled_without_a_unit(tmp_path):
    values = settings_module.defaults()
    values["INSTANCE_PATH"] = str(tmp_path)
    controller = build(values)
    assert isinstance(controller, Controller) and controller.name == "ventilation"
    controller.poll(1e9)
    status = controller.status()
    assert status["state"] == "disabled" and status["available"] is False
    assert controller.command("override", {"level": 2, "minutes": 5})["ok"] is False
    controller.close()


def test_a_bad_profile_setting_disables_with_an_event_instead_of_crashing(tmp_path):
    values = settings_module.defaults()
    values.update({"INSTANCE_PATH": str(tmp_path), "VENT_UNIT_URL": "tcp://127.0.0.1:1",
                   "VENT_PROFILE": "missing-profile"})
    controller = build(values)
    status = controller.status()
    assert status["state"] == "disabled" and status["events"][0]["kind"] == "config_error"


def test_demand_mode_raises_the_fans_as_people_arrive_and_keeps_co2_down(sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(sim, tmp_path, clock)
    controller.poll(clock.now)
    assert controller.status()["state"] == "demand" and sim.room.level == 1
    sim.room.occupancy = 60
    run(controller, sim, clock, 120)
    status = controller.status()
    assert sim.room.level >= 3 and status["level"] == sim.room.level
    assert sim.room.co2_ppm < 1400
    assert status["available"] and status["alerts"] == []


def test_schedule_mode_runs_purge_open_and_closed_levels(sim, tmp_path):
    clock = Clock(MONDAY_9.replace(hour=6, minute=30))
    controller = controller_for(sim, tmp_path, clock, VENT_MODE="schedule", VENT_PURGE_LEVEL=3,
                                VENT_OPEN_LEVEL=2, VENT_CLOSED_LEVEL=0)
    controller.poll(clock.now)
    assert sim.room.level == 0                                   # 06:30, before the pre-purge
    run(controller, sim, clock, 60)                              # 07:30: pre-purge
    assert sim.room.level == 3 and controller.status()["phase"] == "pre_purge"
    run(controller, sim, clock, 60)                              # 08:30: open
    assert sim.room.level == 2
    clock.now = MONDAY_9.replace(hour=17, minute=10).timestamp()
    controller.poll(clock.now)
    assert sim.room.level == 3                                   # post-purge
    run(controller, sim, clock, 40)
    assert sim.room.level == 0 and controller.status()["phase"] == "closed"


def test_off_mode_and_override_commands(sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(sim, tmp_path, clock)
    controller.poll(clock.now)
    answer = controller.command("override", {"level": 4, "minutes": 15})
    assert answer["ok"] and sim.room.level == 4
    assert controller.status()["state"] == "override"
    run(controller, sim, clock, 14)
    assert sim.room.level == 4
    run(controller, sim, clock, 2)
    assert sim.room.level == 1 and controller.status()["state"] == "demand"
    assert controller.command("mode", {"mode": "off"})["ok"] and sim.room.level == 0
    assert controller.status()["state"] == "off"
    for action, args in [("override", {"level": 99, "minutes": 5}), ("override", {"minutes": 5}),
                         ("override", {"level": 2, "minutes": 10**9}), ("mode", {"mode": "x" * 5000}),
                         ("launch", {}), ("mode", None)]:
        answer = controller.command(action, args)
        assert answer["ok"] is False and answer["message"]
    assert sim.room.level == 0
    kinds = [e["kind"] for e in controller.status()["events"]]
    assert "command_override" in kinds and "command_mode" in kinds


def test_no_hunting_with_co2_wobbling_around_a_threshold(sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(sim, tmp_path, clock)
    changes = []
    level = None
    for minute in range(180):
        clock.now += 60
        controller.feed_sensor(at=clock.now, co2_ppm=1000 + (45 if minute % 2 else -45))
        controller.poll(clock.now)
        if level is not None and sim.room.level != level:
            changes.append(clock.now)
        level = sim.room.level
    assert len(changes) <= 1 and changes_per_hour(changes) <= 1


def test_external_co2_sensor_drives_a_unit_without_one(systemair_sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(systemair_sim, tmp_path, clock)
    controller.poll(clock.now)
    assert "co2_unavailable" in controller.status()["alerts"]
    assert systemair_sim.room.level == 2                         # open level until CO2 is known
    for _ in range(20):
        clock.now += 60
        controller.feed_sensor(at=clock.now, co2_ppm=1200 + (clock.now % 7), temp_c=22.5, rh_pct=45)
        controller.poll(clock.now)
    assert systemair_sim.room.level == 3                         # capped: the SAVE map has 3 levels
    assert "co2_unavailable" not in controller.status()["alerts"]


# --- faults ------------------------------------------------------------------------------------

def test_modbus_exception_responses_make_the_unit_unavailable_without_commands(sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(sim, tmp_path, clock)
    controller.poll(clock.now)
    writes = len(sim.unit.writes)
    sim.faults.exception = 4                                     # slave device failure
    run(controller, sim, clock, 5)
    status = controller.status()
    assert status["state"] == "unavailable" and not status["available"]
    assert "unit_unavailable" in status["alerts"] and len(sim.unit.writes) == writes
    sim.faults.exception = None
    run(controller, sim, clock, 1)
    status = controller.status()
    assert status["available"] and "unit_unavailable_cleared" in [e["kind"] for e in status["events"]]


def test_a_unit_that_does_not_answer_in_time_is_unavailable(sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(sim, tmp_path, clock)
    controller.poll(clock.now)
    sim.faults.delay_s = 1.0
    clock.now += 60
    controller.poll(clock.now)
    assert controller.status()["state"] == "unavailable"
    sim.faults.delay_s = 0.0
    for _ in range(3):                                           # the late answer is flushed, then fine
        clock.now += 60
        controller.poll(clock.now)
    assert controller.status()["available"]


def test_a_unit_that_is_gone_is_unavailable(tmp_path):
    simulator = start({}, realtime=False)
    clock = Clock(MONDAY_9)
    controller = controller_for(simulator, tmp_path, clock)
    simulator.stop()
    controller.poll(clock.now)
    status = controller.status()
    assert status["state"] == "unavailable" and "unit_unavailable" in status["alerts"]
    controller.close()


def test_garbage_in_a_register_is_not_believed(sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(sim, tmp_path, clock)
    sim.faults.garbage = {"co2_ppm": 65535, "rh_pct": 4000}
    run(controller, sim, clock, 3)
    status = controller.status()
    assert {"register_implausible_co2_ppm", "register_implausible_rh_pct", "co2_unavailable"} <= set(status["alerts"])
    assert sim.room.level == 2                                   # the open level, not max, not off


def test_stuck_co2_sensor(sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(sim, tmp_path, clock)
    sim.faults.stuck_co2 = 1500.0
    run(controller, sim, clock, 25)
    assert sim.room.level == 4 and "co2_stuck" not in controller.status()["alerts"]
    run(controller, sim, clock, 30)
    assert "co2_stuck" in controller.status()["alerts"]
    run(controller, sim, clock, 20)
    assert sim.room.level == 2


def test_fan_failure_and_unit_alarm(sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(sim, tmp_path, clock)
    run(controller, sim, clock, 5)
    sim.faults.supply_fan_failed = True
    sim.faults.alarms = {"supply_fan"}
    run(controller, sim, clock, 3)
    alerts = controller.status()["alerts"]
    assert "supply_fan_fault" in alerts and "unit_alarm_supply_fan" in alerts
    assert "extract_fan_fault" not in alerts


def test_a_unit_that_does_not_keep_the_commanded_level(sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(sim, tmp_path, clock)
    run(controller, sim, clock, 5)
    assert sim.room.level == 1
    sim.faults.ignore_level_writes = True
    writes = len(sim.unit.writes)
    sim.room.occupancy = 80
    run(controller, sim, clock, 60)
    assert sim.room.level == 1 and "level_not_applied" in controller.status()["alerts"]
    # the command is repeated, but at most every five minutes
    assert 1 <= len(sim.unit.writes) - writes <= 60 // 5 + 3


def test_status_shows_what_the_decision_was_based_on(sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(sim, tmp_path, clock)
    sim.room.outdoor_c = -4.0
    controller.poll(clock.now)
    readings = controller.status()["readings"]
    assert readings["outdoor_temp_c"] == -4.0 and 400 < readings["co2_ppm"] < 500
    json.dumps(controller.status())


def test_the_filter_clogs_over_time_and_is_reported(sim, tmp_path):
    clock = Clock(MONDAY_9)
    sim.room.clog_pa_per_h = 60.0
    controller = controller_for(sim, tmp_path, clock, VENT_OPEN_LEVEL=4, VENT_MODE="schedule")
    run(controller, sim, clock, 60)
    assert "filter_dirty" not in controller.status()["alerts"]
    run(controller, sim, clock, 120, step_s=300)
    assert "filter_dirty" in controller.status()["alerts"]


def test_frost_protection_limits_the_airflow(sim, tmp_path):
    clock = Clock(MONDAY_9)
    controller = controller_for(sim, tmp_path, clock)
    sim.room.occupancy = 80
    run(controller, sim, clock, 60)
    assert sim.room.level >= 3
    sim.room.outdoor_c = -22
    run(controller, sim, clock, 2)
    assert sim.room.level == 1 and "frost_protection" in controller.status()["alerts"]


# --- opening hours from the catalogue ----------------------------------------------------------

def test_hours_come_from_the_catalogue_and_survive_it_going_away(tmp_path):
    from terminal.catalogue.io import SAMPLE_FOLDER, import_folder

    db = tmp_path / "catalogue.sqlite"
    import_folder(SAMPLE_FOLDER, db)
    cache = tmp_path / "hours.json"
    hours = BranchHours(db, "central", "Europe/Kyiv", cache)
    hours.refresh(0)
    tuesday = datetime(2026, 12, 8, 12, 0, tzinfo=KYIV)
    today = [(s.hour, e.hour) for s, e in hours.around(tuesday) if s.date() == tuesday.date()]
    assert today == [(8, 20)] and hours.error == ""
    db.write_bytes(b"not a database")
    hours.refresh(10_000)
    assert hours.error and hours.around(tuesday) is not None
    again = BranchHours(tmp_path / "gone.sqlite", "central", "Europe/Kyiv", cache)
    again.refresh(0)
    assert [(s.hour, e.hour) for s, e in again.around(tuesday) if s.date() == tuesday.date()] == [(8, 20)]


def test_a_damaged_hours_copy_means_unknown_hours_not_a_crash(tmp_path):
    cache = tmp_path / "hours.json"
    cache.write_text(json.dumps({"week": {"0": [["8 o'clock", "late"]]}, "special": {}}))
    hours = BranchHours(None, "central", "Europe/Kyiv", cache)
    assert hours.around(MONDAY_9) is None and hours.error


def test_bad_time_zone_and_mode_settings_are_reported_not_fatal(sim, tmp_path):
    clock = Clock(MONDAY_9)
    values = settings_module.defaults()
    values.update(sim.settings)
    values.update({"INSTANCE_PATH": str(tmp_path), "TIMEZONE": "Mars/Olympus", "VENT_MODE": "turbo"})
    controller = build(values)
    controller.poll(clock.now)
    status = controller.status()
    assert status["available"] and status["mode"] == "demand"
    assert [e["kind"] for e in status["events"]].count("config_error") == 2


# --- ESPHome sensor nodes ----------------------------------------------------------------------

ESPHOME = ROOT / ".venv-esphome" / "bin" / "esphome"


@pytest.mark.parametrize("node", ["co2-scd41.yaml", "co2-senseair-s8.yaml"])
def test_esphome_node_configs_are_valid(node, tmp_path):
    # Never skipped: `make test` builds this venv, and an unchecked config would pass silently.
    assert ESPHOME.exists(), "ESPHome is missing: run `make esphome-venv` (make test does)"
    source = ROOT / "firmware_configs" / "esphome"
    shutil.copy(source / node, tmp_path / node)
    shutil.copy(source / "secrets.example.yaml", tmp_path / "secrets.yaml")
    result = subprocess.run([str(ESPHOME), "config", node], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Configuration is valid!" in result.stdout + result.stderr
    assert "state_topic: cnap/sensors/" in result.stdout
