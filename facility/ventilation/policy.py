"""Ventilation decisions: readings + time in, one fan level out. Pure: no I/O, no clock, no threads.

Levels are abstract steps 0 … N (0 = fans off); the unit's profile maps them to register values.
``decide`` is called once per poll with the previous ``State`` and returns the next one together
with the level to command (``None``: do not write anything, the unit cannot be trusted now) and the
alerts that are active. Operator commands (``set_mode``, ``start_override``) only change the state;
the next ``decide`` carries them out.

Why the rules look the way they do (the decision table is in docs/facility-ventilation.md):
- CO2 bands have hysteresis and every automatic change waits a dwell time, so a reading that sits
  on a threshold cannot make the fans hunt;
- safety (off, frost) may lower the level at once; raising always waits for the dwell;
- a sensor that is stale, out of range or stuck at one value is not believed: demand falls back to
  the schedule's level, never to "off";
- the level written is always inside the unit's and the site's limits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Iterable

MODES = ("off", "schedule", "demand")

# Plausible ranges of what sensors report; outside them the value is not believed.
CO2_RANGE_PPM = (300.0, 5000.0)
TEMP_RANGE_C = (-45.0, 70.0)
RH_RANGE_PCT = (0.0, 100.0)


@dataclass(frozen=True)
class Config:
    bands_ppm: tuple[int, ...] = (800, 1000, 1400)
    band_levels: tuple[int, ...] = (1, 2, 3, 4)   # level below the first band, in each band, above the last
    hysteresis_ppm: int = 100
    dwell_s: float = 300.0          # an automatic change waits this long after the previous one
    down_dwell_s: float = 900.0     # a lowering (not for safety) waits this long
    pre_purge_s: float = 3600.0
    post_purge_s: float = 1800.0
    purge_level: int = 2
    open_level: int = 2             # schedule mode while open; demand's fallback without CO2
    closed_level: int = 0
    min_level: int = 1              # lowest running level allowed
    max_level: int = 4
    allow_off: bool = True          # the unit may be stopped by command
    rh_max_pct: float = 70.0
    temp_max_c: float = 26.0
    comfort_level: int = 3          # for humidity above the limit / free cooling of a warm room
    frost_outdoor_c: float = -15.0
    frost_supply_c: float = 8.0
    frost_hysteresis_c: float = 2.0
    frost_max_level: int = 1
    filter_dp_max_pa: float = 150.0
    fan_min_rpm: float = 200.0
    fan_grace_s: float = 120.0      # spin-up time before a stopped fan counts as failed
    stuck_s: float = 1800.0         # a CO2 reading identical for this long is stuck
    stale_s: float = 300.0          # a CO2 reading older than this is stale
    override_max_s: float = 4 * 3600.0

    def allowed(self, level: int) -> int:
        """The nearest level the unit and the site allow."""
        if level <= 0 and self.allow_off:
            return 0
        return max(self.min_level, min(self.max_level, level))

    def validate(self) -> "Config":
        if len(self.band_levels) != len(self.bands_ppm) + 1:
            raise ValueError("band_levels needs one level more than there are CO2 bands")
        if list(self.bands_ppm) != sorted(set(self.bands_ppm)):
            raise ValueError("CO2 bands must be strictly increasing")
        if not 1 <= self.min_level <= self.max_level:
            raise ValueError("need 1 <= min_level <= max_level")
        if self.hysteresis_ppm < 0 or self.dwell_s < 0 or self.down_dwell_s < 0:
            raise ValueError("hysteresis and dwell times cannot be negative")
        return self


@dataclass(frozen=True)
class Reading:
    """One poll's view of the unit and the room. ``None``: not available."""
    at: float                              # epoch seconds of the poll
    unit_ok: bool = True                   # the unit answered (False: nothing else here is true)
    co2_ppm: float | None = None
    co2_at: float | None = None            # when the CO2 value was measured (None: at ``at``)
    room_c: float | None = None
    rh_pct: float | None = None
    outdoor_c: float | None = None
    supply_c: float | None = None
    filter_dp_pa: float | None = None
    supply_rpm: float | None = None
    extract_rpm: float | None = None
    unit_alarms: frozenset[str] = frozenset()
    bad_registers: frozenset[str] = frozenset()   # read but out of the profile's range


Hours = tuple[tuple[datetime, datetime], ...]   # opening intervals around now (local, aware)


@dataclass(frozen=True)
class State:
    mode: str = "demand"
    override_level: int | None = None
    override_until: float = 0.0
    level: int | None = None               # last level decided (None: none yet)
    changed_at: float = -math.inf
    forced: bool = False                   # an operator command waits to be carried out at once
    band: int = 0
    co2_last: float | None = None
    co2_same_since: float = 0.0
    frost: bool = False


@dataclass(frozen=True)
class Decision:
    level: int | None                      # what to write now (None: write nothing)
    state: State
    alerts: frozenset[str]
    phase: str                             # open / pre_purge / post_purge / closed / unknown
    reason: str                            # short word for the status page: why this level


@dataclass(frozen=True)
class CommandResult:
    state: State
    ok: bool
    message: str


def set_mode(state: State, mode: str) -> CommandResult:
    if mode not in MODES:
        return CommandResult(state, False, f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    return CommandResult(replace(state, mode=mode, forced=True), True, f"mode {mode}")


def start_override(state: State, config: Config, level: object, minutes: object,
                   now: float) -> CommandResult:
    """A manual level for a limited time; the level is brought inside the limits."""
    if isinstance(level, bool) or not isinstance(level, int):
        return CommandResult(state, False, "level must be a whole number")
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes):
        return CommandResult(state, False, "minutes must be a number")
    if not 0 <= level <= config.max_level:
        return CommandResult(state, False, f"level must be 0…{config.max_level}")
    if not 0 < minutes * 60 <= config.override_max_s:
        return CommandResult(state, False, f"minutes must be 1…{int(config.override_max_s // 60)}")
    allowed = config.allowed(level)
    new = replace(state, override_level=allowed, override_until=now + minutes * 60, forced=True)
    return CommandResult(new, True, f"level {allowed} for {minutes:g} min")


def cancel_override(state: State) -> CommandResult:
    return CommandResult(replace(state, override_level=None, override_until=0.0, forced=True),
                         True, "override cancelled")


def phase_at(hours: Hours | None, local_now: datetime, pre_s: float, post_s: float) -> str:
    if hours is None:
        return "unknown"
    if any(start <= local_now < end for start, end in hours):
        return "open"
    if any(start - timedelta(seconds=pre_s) <= local_now < start for start, _ in hours):
        return "pre_purge"
    if any(end <= local_now < end + timedelta(seconds=post_s) for _, end in hours):
        return "post_purge"
    return "closed"


def co2_band(config: Config, previous: int, co2: float) -> int:
    """Band index with hysteresis: up at a threshold, down only below it minus the hysteresis."""
    band = max(0, min(previous, len(config.bands_ppm)))
    while band < len(config.bands_ppm) and co2 >= config.bands_ppm[band]:
        band += 1
    while band > 0 and co2 < config.bands_ppm[band - 1] - config.hysteresis_ppm:
        band -= 1
    return band


def _plausible(value: float | None, bounds: tuple[float, float]) -> bool:
    return value is not None and math.isfinite(value) and bounds[0] <= value <= bounds[1]


def _co2_check(config: Config, state: State, reading: Reading, alerts: set[str]) -> tuple[float | None, State]:
    """The CO2 value to believe (or None) and the state that tracks a stuck sensor."""
    co2 = reading.co2_ppm
    if co2 is None:
        return None, replace(state, co2_last=None)
    if not _plausible(co2, CO2_RANGE_PPM):
        alerts.add("co2_implausible")
        return None, replace(state, co2_last=None)
    measured_at = reading.co2_at if reading.co2_at is not None else reading.at
    if reading.at - measured_at > config.stale_s:
        alerts.add("co2_stale")
        return None, state
    if state.co2_last is None or co2 != state.co2_last:
        state = replace(state, co2_last=co2, co2_same_since=reading.at)
    elif reading.at - state.co2_same_since >= config.stuck_s:
        alerts.add("co2_stuck")
        return None, state
    return co2, state


def _faults(config: Config, state: State, reading: Reading, alerts: set[str]) -> None:
    if _plausible(reading.filter_dp_pa, (0.0, 5000.0)) and reading.filter_dp_pa > config.filter_dp_max_pa:
        alerts.add("filter_dirty")
    running_long_enough = (state.level is not None and state.level > 0
                           and reading.at - state.changed_at >= config.fan_grace_s)
    if running_long_enough:
        if reading.supply_rpm is not None and reading.supply_rpm < config.fan_min_rpm:
            alerts.add("supply_fan_fault")
        if reading.extract_rpm is not None and reading.extract_rpm < config.fan_min_rpm:
            alerts.add("extract_fan_fault")
    for name in reading.unit_alarms:
        alerts.add(f"unit_alarm_{name}")
    for name in reading.bad_registers:
        alerts.add(f"register_implausible_{name}")
    for name, value, bounds in (("room_temp", reading.room_c, TEMP_RANGE_C),
                                ("humidity", reading.rh_pct, RH_RANGE_PCT),
                                ("outdoor_temp", reading.outdoor_c, TEMP_RANGE_C),
                                ("supply_temp", reading.supply_c, TEMP_RANGE_C)):
        if value is not None and not _plausible(value, bounds):
            alerts.add(f"{name}_implausible")


def _frost(config: Config, state: State, reading: Reading) -> bool:
    outdoor = reading.outdoor_c if _plausible(reading.outdoor_c, TEMP_RANGE_C) else None
    supply = reading.supply_c if _plausible(reading.supply_c, TEMP_RANGE_C) else None
    if not state.frost:
        return ((outdoor is not None and outdoor < config.frost_outdoor_c)
                or (supply is not None and supply < config.frost_supply_c))
    margin = config.frost_hysteresis_c
    return ((outdoor is not None and outdoor < config.frost_outdoor_c + margin)
            or (supply is not None and supply < config.frost_supply_c + margin))


def decide(config: Config, state: State, reading: Reading, local_now: datetime,
           hours: Hours | None) -> Decision:
    now = reading.at
    alerts: set[str] = set()
    phase = phase_at(hours, local_now, config.pre_purge_s, config.post_purge_s)
    if phase == "unknown":
        alerts.add("hours_unknown")
    if not reading.unit_ok:
        alerts.add("unit_unavailable")
        return Decision(None, state, frozenset(alerts), phase, "unavailable")

    if state.override_level is not None and now >= state.override_until:
        state = replace(state, override_level=None, override_until=0.0, forced=True)
    co2, state = _co2_check(config, state, reading, alerts)
    _faults(config, state, reading, alerts)
    frost = _frost(config, state, reading)
    state = replace(state, frost=frost)
    if frost:
        alerts.add("frost_protection")

    # 1. what the mode asks for
    scheduled = {"open": config.open_level, "unknown": config.open_level,
                 "pre_purge": config.purge_level, "post_purge": config.purge_level,
                 "closed": config.closed_level}[phase]
    if co2 is not None:
        state = replace(state, band=co2_band(config, state.band, co2))
    if state.override_level is not None:
        target, reason = state.override_level, "override"
    elif state.mode == "off":
        target, reason = 0, "off"
    elif state.mode == "schedule":
        target, reason = scheduled, phase
    elif co2 is None:
        alerts.add("co2_unavailable")
        # without a believable CO2 value, ventilate as the schedule would (never less)
        target, reason = scheduled, "no_co2"
    else:
        by_co2 = config.band_levels[state.band]
        if phase == "closed" and state.band == 0:
            target, reason = config.closed_level, "closed"
        elif phase in ("pre_purge", "post_purge") and scheduled > by_co2:
            target, reason = scheduled, phase
        else:
            target, reason = by_co2, f"co2_band_{state.band}"

    # 2. comfort limits raise an automatic level (never an override or "off")
    if reason not in ("override", "off"):
        if _plausible(reading.rh_pct, RH_RANGE_PCT) and reading.rh_pct > config.rh_max_pct:
            alerts.add("humidity_high")
            if target < config.comfort_level:
                target, reason = config.comfort_level, "humidity"
        warm = _plausible(reading.room_c, TEMP_RANGE_C) and reading.room_c > config.temp_max_c
        if warm:
            alerts.add("temperature_high")
            cooler_outside = (_plausible(reading.outdoor_c, TEMP_RANGE_C)
                              and reading.outdoor_c < reading.room_c - 2.0)
            if cooler_outside and target < config.comfort_level:
                target, reason = config.comfort_level, "free_cooling"

    target = config.allowed(target)

    # 3. dwell: automatic changes wait; operator commands and safety act at once
    previous = state.level
    if previous is None or state.forced:
        level = target
    elif target > previous:
        level = target if now - state.changed_at >= config.dwell_s else previous
    elif target < previous:
        immediate = reason == "off"
        level = target if immediate or now - state.changed_at >= config.down_dwell_s else previous
    else:
        level = previous

    # 4. frost caps whatever was chosen (safety, at once); limits last of all
    if frost and level > config.frost_max_level:
        level, reason = config.frost_max_level, "frost"
    level = config.allowed(level)

    if previous is None or level != previous:
        state = replace(state, level=level, changed_at=now)
    state = replace(state, forced=False)
    return Decision(level, state, frozenset(alerts), phase, reason)


def changes_per_hour(times: Iterable[float]) -> int:
    """The most level changes inside any one-hour window (for tests and the bench)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= 3600.0:
            start += 1
        best = max(best, end - start + 1)
    return best
