"""Pure power decisions: what the UPS (through NUT) and the transfer switch say → the state,
the alerts, and the two decisions the kiosk acts on. No I/O, no threads, no clock: the caller
passes how long the UPS has been silent.

Decision table (docs/facility-power.md has it with the reasons):

| inputs                                   | state        | new payments | shutdown |
|------------------------------------------|--------------|--------------|----------|
| FSD in ups.status                        | fsd          | refused      | yes      |
| OB and LB                                | low_battery  | refused      | yes      |
| OB, battery.runtime < margin             | on_battery   | refused      | no       |
| OB, runtime ≥ margin or not reported     | on_battery   | allowed      | no       |
| OL (with or without LB, CHRG, …)         | online       | allowed      | no       |
| UPS silent, last seen on line            | unavailable  | allowed      | no       |
| UPS silent, last seen on battery         | unavailable  | refused      | after deadtime |
| the ATS feeds nothing (both inputs dead) | on_battery at least, even when the UPS is silent or says OL |

Runtime is compared with the margin only on battery: on line the payment in flight is not at
risk, and a battery still recharging after an outage must not keep the kiosk closed.
A silent UPS on battery is upsmon's own critical case (on battery and not heard from for
DEADTIME seconds): the kiosk stops the same way rather than be cut mid-write.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

ONLINE, ON_BATTERY, LOW_BATTERY, FSD, UNAVAILABLE = "online", "on_battery", "low_battery", "fsd", "unavailable"
STATES = (ONLINE, ON_BATTERY, LOW_BATTERY, FSD, UNAVAILABLE)

# Where the building's power comes from, as the transfer switch reports it.
INPUT_A, INPUT_B, NO_INPUT = "input_a", "input_b", "none"

# Alert words (status "alerts"; also the i18n keys' last part).
ALERT_ON_BATTERY = "on_battery"
ALERT_RUNTIME_SHORT = "runtime_short"
ALERT_LOW_BATTERY = "low_battery"
ALERT_FSD = "fsd"
ALERT_COMMS_LOST = "comms_lost"
ALERT_STATUS_UNKNOWN = "status_unknown"
ALERT_INPUT_A_LOST = "input_a_lost"
ALERT_INPUT_B_LOST = "input_b_lost"
ALERT_ATS_UNAVAILABLE = "ats_unavailable"
ALERT_SOURCES_DISAGREE = "sources_disagree"
ALERT_REPLACE_BATTERY = "replace_battery"
ALERT_OVERLOAD = "overload"

# Why new payments are refused (the kiosk screen says it; i18n "power.why.<reason>").
WHY_RUNTIME_SHORT = "runtime_short"
WHY_LOW_BATTERY = "low_battery"
WHY_FSD = "fsd"
WHY_POWER_UNKNOWN = "power_unknown"


@dataclass(frozen=True)
class UpsReading:
    """One answer from upsd, already parsed: ``status`` holds the ups.status tokens."""
    status: frozenset[str]
    charge_pct: float | None = None
    runtime_s: float | None = None
    input_voltage: float | None = None

    @classmethod
    def from_vars(cls, values: dict[str, str]) -> "UpsReading":
        """From upsd's ``LIST VAR`` answer; missing or non-numeric numbers become None."""
        return cls(status=frozenset(str(values.get("ups.status", "")).split()),
                   charge_pct=_number(values.get("battery.charge")),
                   runtime_s=_number(values.get("battery.runtime")),
                   input_voltage=_number(values.get("input.voltage")))


@dataclass(frozen=True)
class AtsReading:
    """The automatic transfer switch: which substation input has voltage, and which one feeds."""
    input_a_live: bool | None
    input_b_live: bool | None
    feeding: str | None            # INPUT_A, INPUT_B, NO_INPUT (both dead: the UPS carries the load)


@dataclass(frozen=True)
class Assessment:
    state: str
    alerts: tuple[str, ...]
    stop_new_payments: bool
    shutdown: bool
    why: str = ""                        # WHY_* when stop_new_payments
    source: str = ""                     # INPUT_A / INPUT_B / "ups" / "" (no ATS, UPS says OL)
    runtime_s: float | None = None
    charge_pct: float | None = None


def _number(raw) -> float | None:
    try:
        value = float(str(raw).strip())
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def assess(ups: UpsReading | None, *, margin_s: float, ats: AtsReading | None = None, ats_configured: bool = False,
           last_on_battery: bool = False, silent_s: float = 0.0, deadtime_s: float = 15.0) -> Assessment:
    """Decide from the latest UPS reading (None: upsd did not answer) and the ATS reading.

    ``last_on_battery``: the last reading that did arrive said OB; ``silent_s``: seconds since
    that reading (the caller's clock)."""
    alerts: list[str] = []
    ats_says_no_input = ats is not None and ats.feeding == NO_INPUT
    if ats_configured and ats is None:
        alerts.append(ALERT_ATS_UNAVAILABLE)
    if ats is not None:
        if ats.input_a_live is False:
            alerts.append(ALERT_INPUT_A_LOST)
        if ats.input_b_live is False:
            alerts.append(ALERT_INPUT_B_LOST)

    if ups is None or not (ups.status & {"OL", "OB", "FSD"}):
        alerts.insert(0, ALERT_COMMS_LOST if ups is None else ALERT_STATUS_UNKNOWN)
        on_battery = last_on_battery or ats_says_no_input
        if on_battery:
            alerts.insert(0, ALERT_ON_BATTERY)
        shutdown = on_battery and silent_s > deadtime_s
        return Assessment(UNAVAILABLE, tuple(alerts), stop_new_payments=on_battery, shutdown=shutdown,
                          why=WHY_POWER_UNKNOWN if on_battery else "",
                          source="ups" if on_battery else _source(ats, False))

    status = ups.status
    on_battery = "OB" in status or ats_says_no_input
    if ats_says_no_input and "OB" not in status:
        alerts.append(ALERT_SOURCES_DISAGREE)
    if "RB" in status:
        alerts.append(ALERT_REPLACE_BATTERY)
    if "OVER" in status:
        alerts.append(ALERT_OVERLOAD)
    source = _source(ats, on_battery)
    common = dict(source=source, runtime_s=ups.runtime_s, charge_pct=ups.charge_pct)

    if "FSD" in status:
        head = [ALERT_FSD] + ([ALERT_ON_BATTERY] if on_battery else [])
        return Assessment(FSD, tuple(head + alerts), True, True, WHY_FSD, **common)
    if on_battery and "LB" in status:
        return Assessment(LOW_BATTERY, tuple([ALERT_ON_BATTERY, ALERT_LOW_BATTERY] + alerts), True, True,
                          WHY_LOW_BATTERY, **common)
    if on_battery:
        short = ups.runtime_s is not None and ups.runtime_s < margin_s
        head = [ALERT_ON_BATTERY] + ([ALERT_RUNTIME_SHORT] if short else [])
        return Assessment(ON_BATTERY, tuple(head + alerts), short, False, WHY_RUNTIME_SHORT if short else "",
                          **common)
    if "LB" in status:  # on line with a drained battery: a warning, not a reason to close
        alerts.insert(0, ALERT_LOW_BATTERY)
    return Assessment(ONLINE, tuple(alerts), False, False, **common)


def _source(ats: AtsReading | None, on_battery: bool) -> str:
    if on_battery:
        return "ups"
    if ats is None or ats.feeding in (None, NO_INPUT):
        return ""
    return ats.feeding
