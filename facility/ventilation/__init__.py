"""Ventilation control: one supply/exhaust air handling unit over Modbus, run by ``cnap agent``.

``build(settings)`` gives the controller (facility/base.py's Controller); ``start_simulator(settings)``
a simulated unit on a free loopback port whose ``settings`` point the controller at it.

CO2, temperature and humidity come from the unit's own registers when its profile has them, or
from an external source fed in-process with ``controller.feed_sensor(…)`` (the ESPHome nodes in
firmware_configs/esphome/ publish over MQTT; the monitoring agent passes their values on here).
A fresh external value wins over the unit's own.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from facility.base import DISABLED, UNAVAILABLE

from . import policy
from .io import ModbusUnit, Profile, ProfileError, UnitReading, load_profile

log = logging.getLogger(__name__)
NAME = "ventilation"
MAX_EVENTS = 50
REWRITE_S = 300.0

# alert word -> (Ukrainian, English); anything not here (unit_alarm_*, register_implausible_*) is
# described by its prefix.
ALERT_TEXT = {
    "unit_unavailable": ("Вентиляційна установка не відповідає", "The air handling unit does not answer"),
    "filter_dirty": ("Фільтр забруднений: великий перепад тиску", "Filter dirty: differential pressure high"),
    "supply_fan_fault": ("Припливний вентилятор не обертається", "Supply fan is not running"),
    "extract_fan_fault": ("Витяжний вентилятор не обертається", "Extract fan is not running"),
    "co2_implausible": ("Датчик CO2 показує неможливе значення", "CO2 sensor reads an impossible value"),
    "co2_stale": ("Давно немає даних від датчика CO2", "No recent CO2 reading"),
    "co2_stuck": ("Датчик CO2 завис на одному значенні", "CO2 sensor stuck at one value"),
    "co2_unavailable": ("Немає даних CO2: працює за розкладом", "No CO2 reading: running to the schedule"),
    "frost_protection": ("Захист від замерзання: потік обмежено", "Frost protection: airflow limited"),
    "humidity_high": ("Висока вологість у приміщенні", "Room humidity high"),
    "temperature_high": ("Висока температура у приміщенні", "Room temperature high"),
    "level_not_applied": ("Установка не прийняла заданий рівень", "The unit does not keep the commanded level"),
    "hours_unknown": ("Невідомий графік роботи відділення", "Branch opening hours unknown"),
    "room_temp_implausible": ("Датчик температури несправний", "Room temperature sensor implausible"),
    "humidity_implausible": ("Датчик вологості несправний", "Humidity sensor implausible"),
    "outdoor_temp_implausible": ("Датчик зовнішньої температури несправний", "Outdoor temperature sensor implausible"),
    "supply_temp_implausible": ("Датчик температури припливу несправний", "Supply temperature sensor implausible"),
}


def _alert_text(word: str) -> tuple[str, str]:
    if word in ALERT_TEXT:
        return ALERT_TEXT[word]
    if word.startswith("unit_alarm_"):
        name = word.removeprefix("unit_alarm_")
        return f"Аварія установки: {name}", f"Unit alarm: {name}"
    if word.startswith("register_implausible_"):
        name = word.removeprefix("register_implausible_")
        return f"Регістр установки поза межами: {name}", f"Unit register out of range: {name}"
    return word, word


def _ints(values: Any, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(str(v).strip()) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: whole numbers expected, got {values!r}") from None


def config_from_settings(settings: dict[str, Any], profile: Profile) -> policy.Config:
    """The policy's configuration: the site's settings inside the unit's limits."""
    max_level = min(int(settings.get("VENT_MAX_LEVEL", profile.max_level)), profile.max_level)
    min_level = max(1, min(int(settings.get("VENT_MIN_LEVEL", 1)), max_level))
    return policy.Config(
        bands_ppm=_ints(settings.get("VENT_CO2_BANDS_PPM", [800, 1000, 1400]), "VENT_CO2_BANDS_PPM"),
        band_levels=_ints(settings.get("VENT_CO2_LEVELS", [1, 2, 3, 4]), "VENT_CO2_LEVELS"),
        hysteresis_ppm=int(settings.get("VENT_HYSTERESIS_PPM", 100)),
        dwell_s=float(settings.get("VENT_DWELL_S", 300)),
        down_dwell_s=float(settings.get("VENT_DOWN_DWELL_S", 900)),
        pre_purge_s=float(settings.get("VENT_PRE_PURGE_MIN", 60)) * 60,
        post_purge_s=float(settings.get("VENT_POST_PURGE_MIN", 30)) * 60,
        purge_level=int(settings.get("VENT_PURGE_LEVEL", 2)),
        open_level=int(settings.get("VENT_OPEN_LEVEL", 2)),
        closed_level=int(settings.get("VENT_CLOSED_LEVEL", 0)),
        min_level=min_level, max_level=max_level, allow_off=profile.allow_off,
        rh_max_pct=float(settings.get("VENT_RH_MAX_PCT", 70)),
        temp_max_c=float(settings.get("VENT_TEMP_MAX_C", 26)),
        comfort_level=int(settings.get("VENT_COMFORT_LEVEL", 3)),
        frost_outdoor_c=float(settings.get("VENT_FROST_OUTDOOR_C", -15)),
        frost_supply_c=float(settings.get("VENT_FROST_SUPPLY_C", 8)),
        frost_max_level=int(settings.get("VENT_FROST_MAX_LEVEL", 1)),
        filter_dp_max_pa=float(settings.get("VENT_FILTER_DP_MAX_PA", 150)),
        fan_min_rpm=float(settings.get("VENT_FAN_MIN_RPM", 200)),
        fan_grace_s=float(settings.get("VENT_FAN_GRACE_S", 120)),
        stuck_s=float(settings.get("VENT_CO2_STUCK_MIN", 30)) * 60,
        stale_s=float(settings.get("VENT_SENSOR_STALE_S", 300)),
        override_max_s=float(settings.get("VENT_OVERRIDE_MAX_MIN", 240)) * 60,
    ).validate()


class BranchHours:
    """The branch's opening hours from the catalogue database, read only. The last good copy is
    kept in memory and in a small JSON file, so a catalogue that cannot be read (being replaced,
    damaged, absent) does not stop the schedule."""

    def __init__(self, catalogue_db: str | os.PathLike | None, branch_id: str, tz: str,
                 cache_path: str | os.PathLike | None) -> None:
        self.catalogue_db = Path(catalogue_db) if catalogue_db else None
        self.branch_id = branch_id
        self.tz = ZoneInfo(tz)
        self.cache_path = Path(cache_path) if cache_path else None
        self._week: dict[int, list[tuple[str, str]]] | None = None
        self._special: dict[str, list[tuple[str, str]]] = {}
        self._checked = -math.inf
        self.error = ""
        self._load_cache()

    def _load_cache(self) -> None:
        if self.cache_path is None or not self.cache_path.exists():
            return
        try:
            data = json.loads(self.cache_path.read_text(encoding="utf-8"))
            self._week = {int(k): [tuple(i) for i in v] for k, v in data["week"].items()}
            self._special = {k: [tuple(i) for i in v] for k, v in data["special"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ventilation: hours cache unreadable: %s", exc)

    def refresh(self, now: float) -> None:
        """Re-read the catalogue at most every 10 minutes."""
        if now - self._checked < 600:
            return
        self._checked = now
        if self.catalogue_db is None or not self.catalogue_db.exists():
            self.error = "catalogue database not found"
            return
        try:
            from terminal.catalogue.store import CatalogueStore
            branch = CatalogueStore(self.catalogue_db).load().branch(self.branch_id)
        except Exception as exc:   # any failure to read keeps the last good copy
            self.error = f"catalogue unreadable: {type(exc).__name__}"
            log.warning("ventilation: catalogue unreadable, keeping the last hours: %s", exc)
            return
        if branch is None:
            self.error = f"branch {self.branch_id!r} not in the catalogue"
            return
        self.error = ""
        self._week = {day: [(i.start.isoformat(), i.end.isoformat()) for i in intervals]
                      for day, intervals in branch.week.items()}
        self._special = {d.isoformat(): [(i.start.isoformat(), i.end.isoformat()) for i in intervals]
                         for d, intervals in branch.special_days.items()}
        if self.cache_path is not None:
            try:
                tmp = self.cache_path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"week": self._week, "special": self._special}), encoding="utf-8")
                os.replace(tmp, self.cache_path)
            except OSError as exc:
                log.warning("ventilation: cannot keep the hours copy: %s", exc)

    def around(self, local_now: datetime) -> policy.Hours | None:
        """Opening intervals of yesterday, today and tomorrow as aware datetimes."""
        if self._week is None:
            return None
        result = []
        try:
            for offset in (-1, 0, 1):
                day: date = local_now.date() + timedelta(days=offset)
                key = day.isoformat()
                intervals = self._special[key] if key in self._special else self._week.get(day.weekday(), [])
                for start, end in intervals:
                    result.append((datetime.combine(day, datetime.strptime(start[:5], "%H:%M").time(), self.tz),
                                   datetime.combine(day, datetime.strptime(end[:5], "%H:%M").time(), self.tz)))
        except (TypeError, ValueError) as exc:   # a damaged copy: as if no hours were known
            self.error = f"hours unreadable: {type(exc).__name__}"
            return None
        return tuple(result)


class VentilationController:
    name = NAME

    def __init__(self, settings: dict[str, Any], *, unit: ModbusUnit | None = None,
                 profile: Profile | None = None, hours: BranchHours | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock   # only for commands: poll() is given its time by the agent
        self.interval_s = float(settings.get("VENT_INTERVAL_S", 30))
        self._lock = threading.RLock()
        self._events: deque[dict[str, str]] = deque(maxlen=MAX_EVENTS)
        self._alerts: frozenset[str] = frozenset()
        self._external: dict[str, tuple[float, float]] = {}
        self._reading: UnitReading | None = None
        self._decision: policy.Decision | None = None
        self._inputs: policy.Reading | None = None
        self._write_error = ""
        self._written_at = -math.inf
        self.disabled_reason = ""
        tz_name = str(settings.get("TIMEZONE", "Europe/Kyiv"))
        try:
            self.tz = ZoneInfo(tz_name)
        except (ValueError, KeyError, OSError):   # ZoneInfoNotFoundError is a KeyError
            self._event("config_error", f"Невідомий часовий пояс {tz_name[:40]!r}: UTC",
                        f"Unknown time zone {tz_name[:40]!r}: using UTC")
            tz_name, self.tz = "UTC", ZoneInfo("UTC")
        self.config: policy.Config | None = None
        self.unit = unit
        self.profile = profile
        url = str(settings.get("VENT_UNIT_URL", "")).strip()
        try:
            self.profile = profile or load_profile(str(settings.get("VENT_PROFILE", "generic")))
            self.config = config_from_settings(settings, self.profile)
            if self.unit is None and url:
                self.unit = ModbusUnit(url, self.profile, float(settings.get("VENT_TIMEOUT_S", 1.0)))
        except (ProfileError, ValueError) as exc:
            self.disabled_reason = str(exc)
            self._event("config_error", f"Помилка налаштувань вентиляції: {exc}",
                        f"Ventilation settings error: {exc}")
            log.error("ventilation disabled: %s", exc)
        if self.unit is None and not self.disabled_reason:
            self.disabled_reason = "no unit configured (VENT_UNIT_URL)"
        mode = str(settings.get("VENT_MODE", "demand"))
        if mode not in policy.MODES:
            self._event("config_error", f"Невідомий режим вентиляції {mode[:20]!r}: працює demand",
                        f"Unknown ventilation mode {mode[:20]!r}: running demand")
            mode = "demand"
        self.state = policy.State(mode=mode)
        instance = settings.get("INSTANCE_PATH") or str(Path.cwd() / "instance")
        if hours is None:
            db = settings.get("CATALOGUE_DB", "catalogue.sqlite")
            cache = settings.get("VENT_HOURS_CACHE", "ventilation-hours.json")
            hours = BranchHours(Path(instance) / db if db else None, str(settings.get("BRANCH_ID", "central")),
                                tz_name,
                                Path(instance) / cache if cache and Path(instance).is_dir() else None)
        self.hours = hours

    # --- inputs --------------------------------------------------------------------------
    def feed_sensor(self, *, at: float, co2_ppm: float | None = None, temp_c: float | None = None,
                    rh_pct: float | None = None) -> None:
        """A room sensor's values (an ESPHome node over MQTT, or anything else in-process)."""
        with self._lock:
            for key, value in (("co2_ppm", co2_ppm), ("room_temp_c", temp_c), ("rh_pct", rh_pct)):
                if value is not None:
                    try:
                        self._external[key] = (float(value), float(at))
                    except (TypeError, ValueError):
                        continue

    def _policy_reading(self, now: float, unit: UnitReading) -> policy.Reading:
        values = dict(unit.values)
        co2_at = now if "co2_ppm" in values else None
        for key, (value, at) in self._external.items():
            if now - at <= self.config.stale_s or key not in values:
                values[key] = value
                if key == "co2_ppm":
                    co2_at = at
        return policy.Reading(
            at=now, unit_ok=unit.ok, co2_ppm=values.get("co2_ppm"), co2_at=co2_at,
            room_c=values.get("room_temp_c"), rh_pct=values.get("rh_pct"),
            outdoor_c=values.get("outdoor_temp_c"), supply_c=values.get("supply_temp_c"),
            filter_dp_pa=values.get("filter_dp_pa"), supply_rpm=values.get("supply_rpm"),
            extract_rpm=values.get("extract_rpm"), unit_alarms=unit.alarms,
            bad_registers=unit.bad_registers)

    # --- the loop ------------------------------------------------------------------------
    def poll(self, now: float) -> None:
        try:
            with self._lock:
                self._poll(now)
        except Exception as exc:   # the contract: never raise; report instead
            log.exception("ventilation poll failed")
            self._event("error", f"Помилка керування вентиляцією: {type(exc).__name__}",
                        f"Ventilation control error: {type(exc).__name__}")

    def _poll(self, now: float) -> None:
        if self.unit is None or self.config is None:
            return
        self.hours.refresh(now)
        reading = self.unit.read()
        self._reading = reading
        local_now = datetime.fromtimestamp(now, self.tz)
        inputs = self._policy_reading(now, reading)
        self._inputs = inputs
        decision = policy.decide(self.config, self.state, inputs, local_now, self.hours.around(local_now))
        previous = self.state.level
        self.state = decision.state
        self._decision = decision
        alerts = set(decision.alerts)
        if decision.level is not None and reading.ok:
            feedback = reading.values.get(self.profile.level_point)
            wanted = self.profile.levels[decision.level]
            mismatch = feedback is not None and feedback != wanted
            # a unit that shows another level than commanded gets the command again, but not
            # more often than every REWRITE_S (its own program or keypad may be holding it)
            if decision.level != previous or (mismatch and now - self._written_at >= REWRITE_S):
                error = self.unit.write_level(decision.level, reading)
                if error:
                    alerts.add("unit_unavailable")
                    if error != self._write_error:
                        self._event("write_failed", "Не вдалося задати рівень вентиляції",
                                    "Could not set the ventilation level")
                else:
                    if decision.level != previous:
                        self._event("level", f"Рівень вентиляції {decision.level} ({decision.reason})",
                                    f"Ventilation level {decision.level} ({decision.reason})")
                    self._written_at = now
                self._write_error = error
            elif mismatch:
                alerts.add("level_not_applied")
        self._update_alerts(frozenset(alerts))

    def _update_alerts(self, alerts: frozenset[str]) -> None:
        for word in sorted(alerts - self._alerts):
            uk, en = _alert_text(word)
            self._event(word, uk, en)
        for word in sorted(self._alerts - alerts):
            uk, en = _alert_text(word)
            self._event(f"{word}_cleared", f"Минуло: {uk}", f"Cleared: {en}")
        self._alerts = alerts

    def _event(self, kind: str, text_uk: str, text_en: str) -> None:
        self._events.appendleft({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 "kind": kind, "text_uk": text_uk, "text_en": text_en})

    # --- what the agent serves ---------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        try:
            with self._lock:
                return self._status()
        except Exception as exc:
            log.exception("ventilation status failed")
            return {"available": False, "state": UNAVAILABLE, "alerts": ["status_error"],
                    "events": [], "error": type(exc).__name__}

    def _status(self) -> dict[str, Any]:
        events = list(self._events)
        if self.unit is None or self.config is None:
            return {"available": False, "state": DISABLED, "alerts": [], "events": events,
                    "reason": self.disabled_reason}
        reading, decision = self._reading, self._decision
        available = bool(reading and reading.ok) and "unit_unavailable" not in self._alerts
        if not available:
            state = UNAVAILABLE
        elif self.state.override_level is not None:
            state = "override"
        else:
            state = self.state.mode
        return {
            "available": available, "state": state, "alerts": sorted(self._alerts), "events": events,
            "mode": self.state.mode, "level": self.state.level,
            "max_level": self.config.max_level, "reason": decision.reason if decision else "",
            "phase": decision.phase if decision else "",
            "override": ({"level": self.state.override_level,
                          "until": datetime.fromtimestamp(self.state.override_until, timezone.utc)
                          .isoformat(timespec="seconds")}
                         if self.state.override_level is not None else None),
            "readings": self._readings(),
            "co2_band": self.state.band, "profile": self.profile.name,
            "hours_error": self.hours.error,
        }

    def _readings(self) -> dict[str, float]:
        """What the last decision was based on (the unit's registers and any fed sensor)."""
        inputs = self._inputs
        if inputs is None or not inputs.unit_ok:
            return {}
        values = {"co2_ppm": inputs.co2_ppm, "room_temp_c": inputs.room_c, "rh_pct": inputs.rh_pct,
                  "outdoor_temp_c": inputs.outdoor_c, "supply_temp_c": inputs.supply_c,
                  "filter_dp_pa": inputs.filter_dp_pa, "supply_rpm": inputs.supply_rpm,
                  "extract_rpm": inputs.extract_rpm}
        return {k: round(v, 1) for k, v in values.items() if v is not None and math.isfinite(v)}

    def command(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._command(action, args if isinstance(args, dict) else {})
        except Exception as exc:
            log.exception("ventilation command failed")
            return {"ok": False, "message": f"error: {type(exc).__name__}"}

    def _command(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        if self.config is None or self.unit is None:
            return {"ok": False, "message": f"ventilation disabled: {self.disabled_reason}"}
        now = self.clock()
        with self._lock:
            if action == "override":
                result = policy.start_override(self.state, self.config, args.get("level"),
                                               args.get("minutes"), now)
            elif action == "cancel_override":
                result = policy.cancel_override(self.state)
            elif action == "mode":
                result = policy.set_mode(self.state, str(args.get("mode", ""))[:20])
            else:
                return {"ok": False, "message": f"unknown action {str(action)[:40]!r}; "
                                                "one of override, cancel_override, mode"}
            if not result.ok:
                return {"ok": False, "message": result.message}
            self.state = result.state
            self._event(f"command_{action}", f"Команда оператора: {result.message}",
                        f"Operator command: {result.message}")
            self._poll(now)
        return {"ok": True, "message": result.message}

    def close(self) -> None:
        """The unit keeps its last level (it runs on its own); only the connection is released."""
        try:
            if self.unit is not None:
                self.unit.close()
        except Exception:
            log.exception("ventilation close failed")


def build(settings: dict[str, Any]) -> VentilationController:
    return VentilationController(settings)


def start_simulator(settings: dict[str, Any]):
    from .simulator import start
    return start(settings, realtime=True)
