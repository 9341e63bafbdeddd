"""monitoring/hub/observe.py: entity and site rows → the alert machine's events, with the metric
names the rules read; any payload at all gives valid observations or none, never an exception."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from monitoring import alerts, topics
from monitoring.hub import observe
from tests.monitoring import strategies as s

T0 = 1_800_000_000.0
TS = datetime.fromtimestamp(T0, timezone.utc)


def stored(model: topics.Payload) -> dict:
    """The payload as ingest stores it: the JSON of the validated model."""
    return json.loads(topics.encode(model))


def one(entity, kind, model, sent_at=T0 - 1, received_at=T0):
    return observe.observations("kyiv-1", entity, kind, stored(model), sent_at, received_at)


def test_ups_on_battery_and_charge():
    power = topics.PowerState(ts=TS, available=True, state="on_battery",
                              ups=topics.Ups(status="on_battery", charge_pct=25.5, runtime_s=600))
    (obs,) = one("power", "power", power)
    assert (obs.site, obs.entity, obs.kind) == ("kyiv-1", "power", "ups")
    assert obs.values == {"on_battery": True, "battery_pct": 25.5}
    assert (obs.measured_at, obs.received_at, obs.replayed) == (T0 - 1, T0, False)
    for word, expected in (("low_battery", True), ("fsd", True), ("online", False)):
        (obs,) = one("power", "power", topics.PowerState(ts=TS, available=True, state=word,
                                                         ups=topics.Ups(status=word)))
        assert obs.values == {"on_battery": expected}
    assert one("power", "power", topics.PowerState(ts=TS, available=True, state="unavailable",
                                                   ups=topics.Ups(status="unavailable"))) == []
    # an ATS-only site: no ups block, the controller's state word says it
    (obs,) = one("power", "power", topics.PowerState(ts=TS, available=True, state="on_battery"))
    assert obs.values == {"on_battery": True}
    assert one("power", "power", topics.PowerState(ts=TS, available=False, state="online",
                                                   ups=topics.Ups(status="online"))) == []


def test_one_co2_observation_per_sensor():
    air = topics.AirQualityState(ts=TS, available=True, state="ok", sensors=[
        topics.AirSensor(name="hall", online=True, co2_ppm=1500),
        topics.AirSensor(name="office", online=False, co2_ppm=900),
        topics.AirSensor(name="lobby", online=True, temperature_c=21.0)])
    (hall,) = one("air", "air", air)
    assert (hall.entity, hall.kind, hall.values) == ("air/hall", "co2", {"co2_ppm": 1500.0})


def test_uplink_printer_and_cassette():
    (up,) = one("uplink/lte", "uplink", topics.UplinkState(ts=TS, available=True, state="down", up=False,
                                                             active=False))
    assert (up.entity, up.kind, up.values) == ("uplink/lte", "uplink", {"up": False})
    for paper, values in (("out", {"paper_out": True}), ("near_end", {"paper_out": False}),
                          ("ok", {"paper_out": False})):
        (printer,) = one("device/printer", "device", topics.PrinterState(ts=TS, online=True, state="x", paper=paper))
        assert (printer.entity, printer.kind, printer.values) == ("device/printer", "printer", values)
    assert one("device/printer", "device", topics.PrinterState(ts=TS, online=True, state="x", paper="unknown")) == []
    (bv,) = one("device/bill_validator", "device",
                topics.BillValidatorState(ts=TS, online=True, state="ok", cassette_bills=450, cassette_capacity=500))
    assert (bv.kind, bv.values) == ("bill_validator", {"cassette_fill_pct": 90.0})
    assert one("device/card_terminal", "device", topics.CardTerminalState(ts=TS, online=True, state="ok")) == []
    assert one("ventilation", "ventilation", topics.VentilationState(ts=TS, available=True, state="auto")) == []


def test_the_metric_names_are_the_rules_ones():
    """Every entity rule's kind and metrics are produced, and nothing else is."""
    produced: dict[str, set[str]] = {}
    rows = [("power", "power", {"available": True, "ups": {"status": "on_battery", "charge_pct": 10}}),
            ("air", "air", {"available": True, "sensors": [{"name": "hall", "online": True, "co2_ppm": 2000}]}),
            ("uplink/lte", "uplink", {"available": True, "up": False}),
            ("device/printer", "device", {"paper": "out"}),
            ("device/bill_validator", "device", {"cassette_bills": 1, "cassette_capacity": 2})]
    for entity, kind, payload in rows:
        for obs in observe.observations("kyiv-1", entity, kind, payload, T0, T0):
            produced.setdefault(obs.kind, set()).update(obs.values)
    wanted: dict[str, set[str]] = {}
    for rule in alerts.default_rules():
        if rule.scope == "entity":
            wanted.setdefault(rule.kind, set()).update(m for m, _, _ in rule.fire + rule.resolve)
    assert produced == wanted


def test_site_status_and_times():
    assert observe.site_status_event("kyiv-1", "offline", T0).data == {"site": "kyiv-1", "online": False, "at": T0}
    assert observe.site_status_event("kyiv-1", "online", T0).data["online"] is True
    assert observe.site_status_event("kyiv-1", "unknown", T0) is None
    assert observe.site_status_event("kyiv-1", "online", None) is None
    # no agent time: replayed at the hub's time (orders nothing wrongly, measures no skew)
    (obs,) = observe.observations("kyiv-1", "device/printer", "device", {"paper": "out"}, None, T0)
    assert (obs.measured_at, obs.replayed) == (T0, True)
    assert observe.observations("kyiv-1", "device/printer", "device", {"paper": "out"}, T0, float("nan")) == []


def _accepted(obs: alerts.Observation) -> bool:
    state, _ = alerts.handle(alerts.new_state(), alerts.Event("observe", {"observation": obs}))
    return not state.counters.get("invalid_ignored")


KINDS = st.sampled_from(["power", "air", "uplink", "device", "ventilation", "nonsense", None, 3])
ENTITIES = st.sampled_from(["power", "air", "uplink/lte", "device/printer", "device/bill_validator",
                            "device/card_terminal", "ventilation", "", "x" * 100])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entity=st.one_of(ENTITIES, st.text(max_size=80), st.text(max_size=80).map("uplink/".__add__), st.none()),
       kind=KINDS,
       payload=st.one_of(s.json_values, st.dictionaries(st.sampled_from(
           ["available", "ups", "state", "sensors", "up", "paper", "cassette_bills", "cassette_capacity"]),
           s.json_values, max_size=6)),
       sent_at=st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=3)),
       received_at=st.one_of(st.floats(), st.integers(-2 ** 70, 2 ** 70), st.booleans()))
def test_any_payload_gives_valid_observations_or_none(entity, kind, payload, sent_at, received_at):
    found = observe.observations("kyiv-1", entity, kind, payload, sent_at, received_at)
    for obs in found:
        assert obs.values and _accepted(obs)
    assert observe.site_status_event(entity, kind, received_at) is None or kind in ("online", "offline")


VALID = st.one_of(*(st.tuples(st.just(entity), st.just(kind), strategy) for entity, kind, strategy in (
    ("power", "power", s.power), ("air", "air", s.air), ("uplink/lte", "uplink", s.uplink),
    ("device/printer", "device", s.printer), ("device/bill_validator", "device", s.bill_validator))))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=VALID)
def test_every_valid_payload_maps_onto_accepted_observations(row):
    entity, kind, payload = row
    for obs in observe.observations("kyiv-1", entity, kind, payload, T0 - 2, T0):
        assert _accepted(obs)
        assert obs.kind in {r.kind for r in alerts.default_rules()}
