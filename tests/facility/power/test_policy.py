"""The pure power policy: the decision table, and properties over any readings (hypothesis)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from facility.power import policy
from facility.power.policy import AtsReading, UpsReading, assess

TOKENS = ["OL", "OB", "LB", "HB", "RB", "CHRG", "DISCHRG", "BYPASS", "CAL", "OFF", "OVER", "TRIM", "BOOST", "FSD",
          "WAIT", "ALARM"]
numbers = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6).map(float))
readings = st.builds(UpsReading, status=st.frozensets(st.sampled_from(TOKENS)), charge_pct=numbers,
                     runtime_s=numbers, input_voltage=numbers)
ats_readings = st.one_of(st.none(), st.builds(AtsReading, input_a_live=st.one_of(st.none(), st.booleans()),
                                              input_b_live=st.one_of(st.none(), st.booleans()),
                                              feeding=st.sampled_from([None, "input_a", "input_b", "none"])))
margins = st.floats(0, 7200)


def ups(status, runtime=1800.0, charge=100.0):
    return UpsReading(frozenset(status.split()), charge_pct=charge, runtime_s=runtime)


@pytest.mark.parametrize("status,runtime,state,stop,shutdown,why", [
    ("OL", 1800, "online", False, False, ""),
    ("OL CHRG", 100, "online", False, False, ""),          # recharging after an outage: open
    ("OL LB", 60, "online", False, False, ""),             # low but on mains: a warning only
    ("OB DISCHRG", 1200, "on_battery", False, False, ""),
    ("OB DISCHRG", 299, "on_battery", True, False, "runtime_short"),
    ("OB DISCHRG", None, "on_battery", False, False, ""),   # no runtime reported: wait for LB
    ("OB DISCHRG LB", 1200, "low_battery", True, True, "low_battery"),
    ("FSD OB LB", 60, "fsd", True, True, "fsd"),
    ("FSD OL", 1800, "fsd", True, True, "fsd"),
    ("OFF", 1800, "unavailable", False, False, ""),
])
def test_decision_table(status, runtime, state, stop, shutdown, why):
    a = assess(ups(status, runtime), margin_s=300)
    assert (a.state, a.stop_new_payments, a.shutdown, a.why) == (state, stop, shutdown, why)


def test_alerts_name_what_is_wrong():
    assert assess(ups("OB DISCHRG", 100), margin_s=300).alerts == ("on_battery", "runtime_short")
    assert assess(ups("OB LB RB"), margin_s=300).alerts == ("on_battery", "low_battery", "replace_battery")
    assert assess(None, margin_s=300).alerts == ("comms_lost",)
    assert assess(ups("OL LB"), margin_s=300).alerts == ("low_battery",)


def test_silent_ups_closes_the_gate_only_when_last_seen_on_battery():
    quiet = assess(None, margin_s=300, last_on_battery=False, silent_s=3600)
    assert quiet.state == "unavailable" and not quiet.stop_new_payments and not quiet.shutdown
    on_battery = assess(None, margin_s=300, last_on_battery=True, silent_s=5, deadtime_s=15)
    assert on_battery.stop_new_payments and not on_battery.shutdown and on_battery.why == "power_unknown"
    too_long = assess(None, margin_s=300, last_on_battery=True, silent_s=16, deadtime_s=15)
    assert too_long.shutdown and "comms_lost" in too_long.alerts


def test_transfer_switch_gives_the_source_and_catches_a_silent_ups_on_battery():
    both = AtsReading(True, True, "input_b")
    assert assess(ups("OL"), margin_s=300, ats=both).source == "input_b"
    a_lost = assess(ups("OL"), margin_s=300, ats=AtsReading(False, True, "input_b"))
    assert a_lost.state == "online" and a_lost.alerts == ("input_a_lost",)
    dead = AtsReading(False, False, "none")
    silent = assess(None, margin_s=300, ats=dead)
    assert silent.stop_new_payments and silent.source == "ups"
    disagree = assess(ups("OL", runtime=100), margin_s=300, ats=dead)
    assert disagree.state == "on_battery" and disagree.stop_new_payments and "sources_disagree" in disagree.alerts
    assert "ats_unavailable" in assess(ups("OL"), margin_s=300, ats=None, ats_configured=True).alerts


@hsettings(max_examples=400, deadline=None)
@given(readings, margins, ats_readings, st.booleans(), st.floats(0, 10**6), st.floats(0, 600))
def test_any_reading_gives_a_known_state_and_consistent_decisions(reading, margin, ats, last_ob, silent, dead):
    for r in (reading, None):
        a = assess(r, margin_s=margin, ats=ats, last_on_battery=last_ob, silent_s=silent, deadtime_s=dead)
        assert a.state in policy.STATES
        assert not a.shutdown or a.stop_new_payments            # shutting down never takes new money
        assert bool(a.why) == a.stop_new_payments                # a closed gate always says why
        assert len(set(a.alerts)) == len(a.alerts)
        if a.stop_new_payments:
            assert a.state != "online"


@hsettings(max_examples=300, deadline=None)
@given(readings, margins, ats_readings)
def test_fsd_and_low_battery_on_battery_always_shut_down(reading, margin, ats):
    a = assess(reading, margin_s=margin, ats=ats)
    if "FSD" in reading.status:
        assert a.state == "fsd" and a.shutdown
    elif {"OB", "LB"} <= reading.status:
        assert a.state == "low_battery" and a.shutdown
    if "OL" in reading.status and not reading.status & {"OB", "FSD"} and (ats is None or ats.feeding != "none"):
        assert not a.stop_new_payments and not a.shutdown


@hsettings(max_examples=300, deadline=None)
@given(st.frozensets(st.sampled_from(TOKENS)), st.floats(0, 10**5), st.floats(0, 10**5), margins, margins)
def test_less_runtime_or_a_larger_margin_never_reopens_the_gate(status, runtime, less, margin, more):
    status = status | {"OB"}
    low, high = sorted((runtime, less))
    small_margin, big_margin = sorted((margin, more))
    closed_high = assess(UpsReading(status, runtime_s=high), margin_s=small_margin).stop_new_payments
    assert not closed_high or assess(UpsReading(status, runtime_s=low), margin_s=small_margin).stop_new_payments
    assert not closed_high or assess(UpsReading(status, runtime_s=high), margin_s=big_margin).stop_new_payments


@given(st.dictionaries(st.sampled_from(["ups.status", "battery.charge", "battery.runtime", "input.voltage", "x"]),
                       st.text(max_size=30)))
def test_any_upsd_variables_parse_without_raising(values):
    reading = UpsReading.from_vars(values)
    for number in (reading.charge_pct, reading.runtime_s, reading.input_voltage):
        assert number is None or number == number  # never NaN
