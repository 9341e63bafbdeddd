"""From the hub's tables to the alert machine's events: pure, no I/O, never raises.

Ingest stores the latest validated payload of each entity (monitoring/topics.py models as JSON) in
``entities`` and each site's last-will status in ``sites``. This module turns one such row into
what ``monitoring/alerts.py`` reads: ``Observation``s carrying exactly the metric names of
``alerts.default_rules`` and ``site_status`` events.

    entities row                          Observation(entity, kind): values
    power            (PowerState)         power, ups: on_battery, battery_pct
    air              (AirQualityState)    air/<sensor>, co2: co2_ppm (one per sensor)
    uplink/<name>    (UplinkState)        uplink/<name>, uplink: up
    device/printer   (PrinterState)       device/printer, printer: paper_out
    device/bill_validator                 device/bill_validator, bill_validator: cassette_fill_pct
    ventilation, device/card_terminal     nothing (no rule reads them)

The entity names stay those of the rows (one sensor of ``air`` each), so the web app can link an
alert's device to its row. The rows were validated by ingest, but this module trusts nothing: a
field that is missing or of the wrong type is simply absent from the values (the rule stays
undecided), a row that is not even a mapping gives no observation.
"""
from __future__ import annotations

from typing import Any, Mapping

from facility.power.policy import FSD, LOW_BATTERY, ON_BATTERY, ONLINE
from monitoring import alerts
from monitoring.alerts import Event, Observation, finite_number

# UPS status words (facility/power/policy.py states as the agent publishes them).
UPS_ON_BATTERY = frozenset({ON_BATTERY, LOW_BATTERY, FSD})
UPS_ON_LINE = frozenset({ONLINE})
PAPER_OUT, PAPER_PRESENT = "out", frozenset({"ok", "near_end"})
MAX_SENSORS = 16            # AirQualityState allows 16; a bigger list is not from our agent

SITE_ONLINE, SITE_OFFLINE = "online", "offline"


def observations(site: Any, entity: Any, kind: Any, payload: Any, sent_at: Any, received_at: Any,
                 *, replayed: bool = False) -> list[Observation]:
    """The observations one ``entities`` row gives (possibly none). ``sent_at`` (agent clock)
    orders the entity's readings; without it the row is taken as ``replayed`` at ``received_at``,
    so that a missing agent time can neither order wrongly nor fake a clock skew."""
    received = finite_number(received_at)
    if received is None or not isinstance(site, str) or not isinstance(entity, str) \
            or not isinstance(payload, Mapping):
        return []
    measured = finite_number(sent_at)
    if measured is None:
        measured, replayed = received, True
    try:
        found = _values(entity, kind, payload)
    except Exception:   # a shape nobody foresaw: no reading rather than a dead evaluator
        return []
    return [Observation(site=site, entity=name, kind=rule_kind, values=values, measured_at=measured,
                        received_at=received, replayed=replayed)
            for name, rule_kind, values in found if values and _fits(name)]


def _fits(name: str) -> bool:
    """A device label the machine takes (it would count anything else as invalid)."""
    return len(name) <= alerts.MAX_NAME and name.isprintable()


def site_status_event(site: Any, status: Any, at: Any) -> Event | None:
    """The ``site_status`` event of a ``sites`` row: online / offline (the last will); None for
    'unknown' or anything else (the site_offline rule then stays undecided)."""
    when = finite_number(at)
    if not isinstance(site, str) or status not in (SITE_ONLINE, SITE_OFFLINE) or when is None:
        return None
    return Event("site_status", {"site": site, "online": status == SITE_ONLINE, "at": when})


def _values(entity: str, kind: Any, payload: Mapping) -> list[tuple[str, str, dict[str, Any]]]:
    if kind == "power" and entity == "power":
        return [(entity, "ups", _ups(payload))]
    if kind == "air" and entity == "air":
        return _air(payload)
    if kind == "uplink" and entity.startswith("uplink/"):
        up = payload.get("up")
        return [(entity, "uplink", {"up": up} if isinstance(up, bool) and _available(payload) else {})]
    if kind == "device" and entity == "device/printer":
        paper = payload.get("paper")
        values = {"paper_out": True} if paper == PAPER_OUT else (
            {"paper_out": False} if paper in PAPER_PRESENT else {})
        return [(entity, "printer", values)]
    if kind == "device" and entity == "device/bill_validator":
        bills = finite_number(payload.get("cassette_bills"))
        capacity = finite_number(payload.get("cassette_capacity"))
        if bills is None or capacity is None or capacity <= 0 or bills < 0:
            return [(entity, "bill_validator", {})]
        return [(entity, "bill_validator", {"cassette_fill_pct": min(100.0, 100.0 * bills / capacity)})]
    return []


def _available(payload: Mapping) -> bool:
    """A controller that says it cannot see its hardware reports nothing worth judging."""
    return payload.get("available", True) is not False


def _ups(payload: Mapping) -> dict[str, Any]:
    if not _available(payload):
        return {}
    ups = payload.get("ups")
    ups = ups if isinstance(ups, Mapping) else {}
    # The UPS's own word first; an ATS-only site has no ups block, its state word says it.
    word = ups.get("status") if isinstance(ups.get("status"), str) else payload.get("state")
    values: dict[str, Any] = {}
    if word in UPS_ON_BATTERY:
        values["on_battery"] = True
    elif word in UPS_ON_LINE:
        values["on_battery"] = False
    charge = finite_number(ups.get("charge_pct"))
    if charge is not None:
        values["battery_pct"] = charge
    return values


def _air(payload: Mapping) -> list[tuple[str, str, dict[str, Any]]]:
    sensors = payload.get("sensors")
    if not _available(payload) or not isinstance(sensors, list):
        return []
    found = []
    for sensor in sensors[:MAX_SENSORS]:
        if not isinstance(sensor, Mapping) or not isinstance(sensor.get("name"), str):
            continue
        name = "air/" + sensor["name"]
        co2 = finite_number(sensor.get("co2_ppm"))
        online = sensor.get("online") is not False
        found.append((name, "co2", {"co2_ppm": co2} if co2 is not None and online else {}))
    return found
