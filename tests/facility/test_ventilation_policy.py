"""The ventilation policy on its own: every mode, every fault, hysteresis and dwell, and properties
over arbitrary input sequences (levels always inside the limits, bounded changes per hour)."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facility.ventilation import policy
from facility.ventilation.policy import Config, Reading, State, changes_per_hour, decide

KYIV = ZoneInfo("Europe/Kyiv")
MONDAY = datetime(2026, 12, 7, 0, 0, tzinfo=KYIV)     # a Monday
T0 = MONDAY.timestamp()


def hours_on(day: datetime, start: int = 8, end: int = 17) -> policy.Hours:
    base = day.replace(hour=0, minute=0)
    return tuple((base + timedelta(days=d, hours=start), base + timedelta(days=d, hours=end))
                 for d in (-1, 0, 1))


def at(hour: float) -> tuple[float, datetime]:
    local = MONDAY + timedelta(hours=hour)
    return local.timestamp(), local


class Run:
    """Feeds readings one poll at a time and remembers every level change."""

    def __init__(self, config: Config | None = None, mode: str = "demand", hours=True) -> None:
        self.config = config or Config()
        self.state = State(mode=mode)
        self.hours = hours
        self.changes: list[float] = []
        self.decision: policy.Decision | None = None

    def step(self, hour: float, **values) -> policy.Decision:
        now, local = at(hour)
        values.setdefault("co2_ppm", 600.0 + (hour * 7919) % 3)   # a live sensor wanders a little
        reading = Reading(at=now, **values)
        hours = hours_on(local) if self.hours is True else self.hours
        before = self.state.level
        self.decision = decide(self.config, self.state, reading, local, hours)
        self.state = self.decision.state
        if before is not None and self.decision.level is not None and self.decision.level != before:
            self.changes.append(now)
        return self.decision

    def hold(self, start: float, end: float, step_min: float = 1.0, **values) -> policy.Decision:
        hour = start
        while hour < end:
            decision = self.step(hour, **values)
            hour += step_min / 60
        return decision


# --- modes -------------------------------------------------------------------------------------

def test_off_mode_stops_the_fans_at_once_whatever_the_co2():
    run = Run(mode="schedule")
    run.hold(10, 10.5)
    assert run.state.level == 2
    run.state = policy.set_mode(run.state, "off").state
    assert run.step(10.51, co2_ppm=2000).level == 0


def test_off_mode_gives_the_lowest_level_on_a_unit_that_may_not_be_stopped():
    run = Run(Config(allow_off=False), mode="off")
    assert run.step(10).level == 1


@pytest.mark.parametrize("hour, phase, level", [
    (7.5, "pre_purge", 2), (10, "open", 2), (17.2, "post_purge", 2), (20, "closed", 0), (3, "closed", 0),
])
def test_schedule_mode_follows_the_opening_hours_with_purges(hour, phase, level):
    run = Run(Config(purge_level=2, open_level=2, closed_level=0), mode="schedule")
    decision = run.step(hour)
    assert (decision.phase, decision.level) == (phase, level)


def test_schedule_without_known_hours_keeps_ventilating_and_says_so():
    run = Run(mode="schedule", hours=None)
    decision = run.step(3)
    assert decision.level == Config().open_level
    assert "hours_unknown" in decision.alerts


@pytest.mark.parametrize("co2, level", [(600, 1), (850, 2), (1100, 3), (1500, 4)])
def test_demand_mode_maps_co2_bands_to_levels(co2, level):
    run = Run()
    assert run.step(10, co2_ppm=co2).level == level


def test_demand_mode_when_closed_stays_off_unless_the_air_is_bad():
    run = Run()
    assert run.step(22, co2_ppm=600).level == 0
    run = Run()
    assert run.step(22, co2_ppm=1200).level == 3


def test_demand_mode_keeps_the_purge_level_as_a_floor():
    run = Run(Config(purge_level=3))
    assert run.step(7.5, co2_ppm=500).level == 3


def test_override_is_time_limited_and_then_the_mode_resumes():
    run = Run(mode="schedule")
    run.hold(10, 10.5)
    now, _ = at(10.5)
    result = policy.start_override(run.state, run.config, 4, 30, now)
    assert result.ok
    run.state = result.state
    assert run.step(10.5).level == 4
    assert run.hold(10.5, 10.99).level == 4
    decision = run.step(11.01)
    assert decision.level == 2 and decision.reason == "open"


@pytest.mark.parametrize("level, minutes", [(-1, 10), (5, 10), ("3", 10), (True, 10), (2, 0),
                                            (2, 241), (2, float("nan")), (2, "10"), (None, None)])
def test_override_refuses_bad_arguments(level, minutes):
    result = policy.start_override(State(), Config(), level, minutes, T0)
    assert not result.ok and result.state == State()


def test_override_is_brought_inside_the_site_limits():
    config = Config(max_level=3)
    result = policy.start_override(State(), Config(max_level=4), 4, 10, T0)
    assert result.ok
    assert decide(config, result.state, Reading(at=T0, co2_ppm=500), MONDAY, hours_on(MONDAY)).level == 3


def test_unknown_mode_is_refused():
    result = policy.set_mode(State(), "turbo")
    assert not result.ok and result.state.mode == "demand"


# --- no hunting --------------------------------------------------------------------------------

def test_co2_wandering_around_a_threshold_changes_the_level_once():
    run = Run()
    run.step(9, co2_ppm=700)
    for minute in range(240):
        wobble = 40 if minute % 2 else -40            # 760 / 840 around the 800 threshold
        run.step(9 + minute / 60, co2_ppm=800 + wobble)
    assert len(run.changes) == 1


def test_a_rise_waits_the_dwell_time_after_the_previous_change():
    run = Run(Config(dwell_s=300))
    run.step(9, co2_ppm=700)
    run.step(9 + 1 / 60, co2_ppm=850)                 # wants 2, but 9:00 set the level a minute ago
    first = run.state.level
    run.step(9 + 2 / 60, co2_ppm=1100)
    assert run.state.level == first                    # still within the dwell
    run.step(9 + 7 / 60, co2_ppm=1100)
    assert run.state.level == 3


def test_a_lowering_waits_the_longer_down_dwell():
    run = Run(Config(dwell_s=300, down_dwell_s=900))
    run.step(9, co2_ppm=1100)
    assert run.state.level == 3
    run.step(9 + 5 / 60, co2_ppm=600)
    assert run.state.level == 3
    run.step(9 + 16 / 60, co2_ppm=600)
    assert run.state.level == 1


# --- comfort and frost -------------------------------------------------------------------------

def test_high_humidity_raises_the_level():
    decision = Run().step(10, co2_ppm=600, rh_pct=80)
    assert decision.level == Config().comfort_level and "humidity_high" in decision.alerts


def test_warm_room_is_cooled_only_when_it_is_cooler_outside():
    assert Run().step(10, co2_ppm=600, room_c=28, outdoor_c=18).level == 3
    decision = Run().step(10, co2_ppm=600, room_c=28, outdoor_c=30)
    assert decision.level == 1 and "temperature_high" in decision.alerts


def test_frost_caps_the_level_at_once_even_over_an_override():
    run = Run()
    run.step(10, co2_ppm=1500)
    assert run.state.level == 4
    decision = run.step(10.01, co2_ppm=1500, outdoor_c=-20)
    assert decision.level == 1 and "frost_protection" in decision.alerts
    run.state = policy.start_override(run.state, run.config, 4, 30, at(10.02)[0]).state
    assert run.step(10.02, co2_ppm=1500, outdoor_c=-20).level == 1


def test_frost_protection_has_hysteresis_on_the_supply_temperature():
    run = Run()
    run.step(10, co2_ppm=1500, supply_c=7)
    assert run.state.frost
    run.step(10.2, co2_ppm=1500, supply_c=9)          # above 8 but below 8 + 2
    assert run.state.frost and run.state.level == 1
    run.step(10.4, co2_ppm=1500, supply_c=10.5)
    assert not run.state.frost and run.state.level == 4


# --- faults ------------------------------------------------------------------------------------

def test_unit_unavailable_means_no_command_at_all():
    run = Run()
    run.step(10)
    decision = run.step(10.1, unit_ok=False)
    assert decision.level is None and "unit_unavailable" in decision.alerts
    assert decision.state == run.state


def test_filter_fan_and_unit_alarms_become_alerts():
    run = Run()
    run.step(10)
    decision = run.step(10.1, filter_dp_pa=220, supply_rpm=0, extract_rpm=1500,
                        unit_alarms=frozenset({"frost"}), bad_registers=frozenset({"rh_pct"}))
    assert {"filter_dirty", "supply_fan_fault", "unit_alarm_frost",
            "register_implausible_rh_pct"} <= decision.alerts
    assert "extract_fan_fault" not in decision.alerts


def test_a_stopped_fan_gets_its_spin_up_time_first():
    run = Run()
    run.step(10)                                      # level set now
    assert "supply_fan_fault" not in run.step(10.01, supply_rpm=0).alerts
    assert "supply_fan_fault" in run.step(10.05, supply_rpm=0).alerts


@pytest.mark.parametrize("co2", [50.0, 9000.0, float("nan"), float("inf")])
def test_an_impossible_co2_value_is_not_believed(co2):
    run = Run()
    decision = run.step(10, co2_ppm=co2)
    assert "co2_implausible" in decision.alerts and "co2_unavailable" in decision.alerts
    assert decision.level == Config().open_level


def test_a_stale_co2_value_is_not_believed():
    now, _ = at(10)
    decision = Run().step(10, co2_ppm=1500, co2_at=now - 600)
    assert "co2_stale" in decision.alerts and decision.level == Config().open_level


def test_a_co2_sensor_stuck_at_one_value_falls_back_to_the_schedule_not_off():
    run = Run()
    run.hold(10, 10.4, co2_ppm=1500.0)
    assert run.state.level == 4
    decision = run.hold(10.4, 11, co2_ppm=1500.0)
    assert "co2_stuck" in decision.alerts
    run.hold(11, 11.5, co2_ppm=1500.0)
    assert run.state.level == Config().open_level


def test_implausible_temperatures_are_reported_and_ignored_for_frost():
    decision = Run().step(10, co2_ppm=600, outdoor_c=-300, supply_c=900)
    assert {"outdoor_temp_implausible", "supply_temp_implausible"} <= decision.alerts
    assert not decision.state.frost


def test_config_validation():
    with pytest.raises(ValueError):
        Config(bands_ppm=(800, 1000), band_levels=(1, 2)).validate()
    with pytest.raises(ValueError):
        Config(bands_ppm=(1000, 800)).validate()
    Config().validate()


# --- properties --------------------------------------------------------------------------------

maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731
steps = st.lists(st.fixed_dictionaries({
    "dt": st.floats(1, 900),
    "co2_ppm": maybe(st.one_of(st.floats(-100, 6000), st.just(float("nan")))),
    "co2_age": st.floats(0, 1000),
    "room_c": maybe(st.floats(-60, 80)),
    "rh_pct": maybe(st.floats(-5, 110)),
    "outdoor_c": maybe(st.floats(-40, 40)),
    "supply_c": maybe(st.floats(-20, 40)),
    "filter_dp_pa": maybe(st.floats(0, 400)),
    "supply_rpm": maybe(st.floats(0, 3000)),
    "unit_ok": st.booleans(),
    "command": st.one_of(st.none(), st.tuples(st.integers(-2, 7), st.integers(-5, 300)),
                         st.sampled_from(policy.MODES)),
}), min_size=1, max_size=120)
configs = st.builds(
    Config,
    min_level=st.integers(1, 2), max_level=st.integers(2, 4), allow_off=st.booleans(),
    dwell_s=st.sampled_from([120.0, 300.0, 600.0]), down_dwell_s=st.sampled_from([300.0, 900.0]),
    hysteresis_ppm=st.integers(0, 200), frost_max_level=st.integers(1, 2),
    open_level=st.integers(0, 4), closed_level=st.integers(0, 2),
)


def _simulate(config: Config, sequence, mode: str, with_commands: bool):
    state, now = State(mode=mode), T0 + 6 * 3600
    levels, changes, command_times = [], [], []
    for item in sequence:
        now += item["dt"]
        local = datetime.fromtimestamp(now, KYIV)
        command = item["command"] if with_commands else None
        if isinstance(command, tuple):
            state = policy.start_override(state, config, command[0], command[1], now).state
            command_times.append(now)
        elif isinstance(command, str):
            state = policy.set_mode(state, command).state
            command_times.append(now)
        reading = Reading(at=now, unit_ok=item["unit_ok"], co2_ppm=item["co2_ppm"],
                          co2_at=now - item["co2_age"], room_c=item["room_c"], rh_pct=item["rh_pct"],
                          outdoor_c=item["outdoor_c"], supply_c=item["supply_c"],
                          filter_dp_pa=item["filter_dp_pa"], supply_rpm=item["supply_rpm"])
        before = state.level
        decision = decide(config, state, reading, local, hours_on(local))
        state = decision.state
        if decision.level is not None:
            levels.append(decision.level)
            if before is not None and decision.level != before:
                changes.append(now)
    return levels, changes, command_times


@settings(max_examples=150, deadline=None)
@given(config=configs, sequence=steps, mode=st.sampled_from(policy.MODES))
def test_any_inputs_and_commands_give_levels_inside_the_limits(config, sequence, mode):
    levels, _, _ = _simulate(config, sequence, mode, with_commands=True)
    allowed = set(range(config.min_level, config.max_level + 1)) | ({0} if config.allow_off else set())
    assert set(levels) <= allowed


@settings(max_examples=150, deadline=None)
@given(config=configs, sequence=steps, mode=st.sampled_from(policy.MODES))
def test_without_commands_the_changes_per_hour_are_bounded_by_the_dwell(config, sequence, mode):
    _, changes, _ = _simulate(config, sequence, mode, with_commands=False)
    # a rise always waits the dwell; a lowering either waits too or is frost's one step down
    bound = 2 * (int(3600 // config.dwell_s) + 1) + 1
    assert changes_per_hour(changes) <= bound


def test_changes_per_hour_counts_the_busiest_hour():
    assert changes_per_hour([]) == 0
    assert changes_per_hour([0, 100, 3599, 3600, 7300]) == 3


# --- the pure parts of io.py ---------------------------------------------------------------------

from facility.ventilation.io import MAX_READ, Point, Profile, parse_url, read_plan  # noqa: E402


@given(raw=st.integers(0, 0xFFFF), signed=st.booleans(), scale=st.sampled_from([1.0, 0.1, 0.5, 10.0]),
       low=st.floats(-5000, 5000), span=st.floats(0, 10000))
def test_a_decoded_register_is_inside_the_profile_range_or_nothing(raw, signed, scale, low, span):
    point = Point("x", "input", 0, signed, scale, low, low + span)
    value = point.decode(raw)
    assert value is None or low <= value <= low + span


@given(addresses=st.lists(st.tuples(st.sampled_from(["holding", "input"]), st.integers(0, 3000)),
                          min_size=1, max_size=60, unique=True),
       gap=st.integers(0, 10))
def test_the_read_plan_covers_every_register_in_legal_requests(addresses, gap):
    points = {f"p{i}": Point(f"p{i}", table, address) for i, (table, address) in enumerate(addresses)}
    profile = Profile("t", "", "", (0, 1), True, points, {}, "p0", (), gap)
    plan = read_plan(profile)
    covered = {(table, a) for table, start, count in plan for a in range(start, start + count)}
    assert set(addresses) <= covered
    assert all(1 <= count <= MAX_READ for _, _, count in plan)


@given(st.text(max_size=200))
def test_any_unit_url_text_parses_or_gives_a_value_error(text):
    try:
        parse_url(text)
    except ValueError:
        pass
