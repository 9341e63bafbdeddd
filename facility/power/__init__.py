"""Power supervision: the UPS through NUT's upsd, and the automatic transfer switch between the
two substation inputs. ``policy`` decides, ``io`` reads, ``simulator`` stands in for both.

Two users share :class:`PowerMonitor`: the agent's :class:`PowerController` (status, events,
alerts for monitoring) and the kiosk's payment gate (terminal/views/power.py), which reads upsd
itself so that it never depends on the agent being up."""
from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import datetime, timezone
from typing import Any

from facility.base import DISABLED, UNAVAILABLE
from facility.power import policy
from facility.power.io import NutTarget, PowerIOError, open_ats, read_ups
from facility.power.policy import Assessment, AtsReading, UpsReading

log = logging.getLogger("cnap.power")

EVENTS_KEPT = 50

# Event texts, Ukrainian first (what staff read in monitoring), by the new state or alert.
EVENT_TEXTS = {
    policy.ONLINE: ("Живлення від мережі", "On mains power"),
    policy.ON_BATTERY: ("ДБЖ працює від акумулятора", "The UPS runs on battery"),
    policy.LOW_BATTERY: ("Акумулятор ДБЖ розряджений: кіоск вимикається", "UPS battery low: the kiosk shuts down"),
    policy.FSD: ("Примусове вимкнення (FSD) від ДБЖ", "Forced shutdown (FSD) from the UPS"),
    policy.UNAVAILABLE: ("Немає зв'язку з ДБЖ (upsd)", "No contact with the UPS (upsd)"),
    policy.ALERT_RUNTIME_SHORT: ("Залишок часу роботи ДБЖ менший за запас: нові оплати зупинено",
                                 "UPS runtime below the margin: new payments stopped"),
    policy.ALERT_INPUT_A_LOST: ("Немає напруги на вводі A", "No voltage on input A"),
    policy.ALERT_INPUT_B_LOST: ("Немає напруги на вводі B", "No voltage on input B"),
    policy.ALERT_ATS_UNAVAILABLE: ("Немає зв'язку з АВР", "No contact with the transfer switch"),
    policy.ALERT_SOURCES_DISAGREE: ("АВР і ДБЖ повідомляють різне про живлення",
                                    "The transfer switch and the UPS disagree about the power"),
    policy.INPUT_A: ("Живлення від вводу A", "Powered from input A"),
    policy.INPUT_B: ("Живлення від вводу B", "Powered from input B"),
}


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")


class PowerMonitor:
    """Reads upsd and the ATS, remembers what the policy needs between readings (was the UPS on
    battery when last heard, since when is it silent), and returns the assessment. Thread-safe;
    never raises from :meth:`poll`."""

    def __init__(self, target: NutTarget | None, ats=None, *, margin_s: float, deadtime_s: float):
        self.target, self.ats = target, ats
        self.margin_s, self.deadtime_s = margin_s, deadtime_s
        self._lock = threading.Lock()
        self.last_on_battery = False
        self.last_heard: float | None = None
        self.last_error = ""
        self.ups: UpsReading | None = None
        self.ats_reading: AtsReading | None = None
        self.assessment = Assessment(UNAVAILABLE, (), False, False)

    @classmethod
    def from_settings(cls, settings: dict) -> "PowerMonitor | None":
        """None when neither a UPS nor an ATS is configured (NUT_HOST empty, ATS_SOURCE none)."""
        target = None
        if settings.get("NUT_HOST"):
            target = NutTarget(settings["NUT_HOST"], int(settings["NUT_PORT"]), settings["NUT_UPS"],
                               settings.get("NUT_USERNAME", ""), settings.get("NUT_PASSWORD", ""),
                               timeout_s=float(settings["NUT_TIMEOUT_S"]))
        ats = open_ats(settings.get("ATS_SOURCE", "none"), settings.get("ATS_URL", ""))
        if target is None and ats is None:
            return None
        return cls(target, ats, margin_s=float(settings["POWER_RUNTIME_MARGIN_S"]),
                   deadtime_s=float(settings["POWER_DEADTIME_S"]))

    def poll(self, now: float) -> Assessment:
        with self._lock:
            try:
                return self._poll(now)
            except Exception:  # a bug here must not stop the poller or the payment gate
                log.exception("power: assessment failed")
                self.assessment = Assessment(UNAVAILABLE, (policy.ALERT_COMMS_LOST,), False, False)
                return self.assessment

    def _poll(self, now: float) -> Assessment:
        ups = None
        errors = []
        if self.target is not None:
            try:
                ups = read_ups(self.target)
            except PowerIOError as exc:
                errors.append(str(exc))
        ats = None
        if self.ats is not None:
            try:
                ats = self.ats.read()
            except PowerIOError as exc:
                errors.append(str(exc))
        if ups is not None and ups.status & {"OL", "OB", "FSD"}:
            self.last_heard = now
            self.last_on_battery = "OB" in ups.status
        silent_s = 0.0 if self.last_heard is None else max(0.0, now - self.last_heard)
        error = "; ".join(errors)
        if error and error != self.last_error:
            log.warning("power: %s", error)
        self.last_error = error
        self.ups, self.ats_reading = ups, ats
        if self.target is None:  # an ATS alone: it tells on mains or not, nothing of a battery
            fake = None if ats is None else UpsReading(frozenset({"OB" if ats.feeding == policy.NO_INPUT else "OL"}))
            self.assessment = policy.assess(fake, margin_s=self.margin_s, ats=ats, ats_configured=True)
        else:
            self.assessment = policy.assess(ups, margin_s=self.margin_s, ats=ats,
                                            ats_configured=self.ats is not None,
                                            last_on_battery=self.last_on_battery, silent_s=silent_s,
                                            deadtime_s=self.deadtime_s)
        return self.assessment

    def close(self) -> None:
        if self.ats is not None:
            self.ats.close()


class PowerController:
    """The agent's controller (facility/base.py). Power has nothing to command on the UPS here:
    upsmon owns the machine's shutdown; this reports and explains."""

    name = "power"

    def __init__(self, monitor: PowerMonitor | None, interval_s: float = 5.0):
        self.monitor = monitor
        self.interval_s = interval_s
        self.events: deque[dict] = deque(maxlen=EVENTS_KEPT)
        self._previous: Assessment | None = None
        self._lock = threading.Lock()

    def poll(self, now: float) -> None:
        if self.monitor is None:
            return
        try:
            current = self.monitor.poll(now)
            with self._lock:
                self._note_changes(self._previous, current, now)
                self._previous = current
        except Exception:
            log.exception("power: poll failed")

    def _note_changes(self, before: Assessment | None, after: Assessment, now: float) -> None:
        if before is None or before.state != after.state:
            self._event(now, after.state, after.state)
        for alert in after.alerts:
            if alert in EVENT_TEXTS and (before is None or alert not in before.alerts) and alert != after.state:
                self._event(now, alert, alert)
        if after.source in (policy.INPUT_A, policy.INPUT_B) and before is not None \
                and before.source in (policy.INPUT_A, policy.INPUT_B) and before.source != after.source:
            self._event(now, "transfer", after.source)

    def _event(self, now: float, kind: str, text_key: str) -> None:
        uk, en = EVENT_TEXTS.get(text_key, (text_key, text_key))
        self.events.appendleft({"at": _iso(now), "kind": kind, "text_uk": uk, "text_en": en})

    def status(self) -> dict[str, Any]:
        try:
            if self.monitor is None:
                return {"available": False, "state": DISABLED, "alerts": [], "events": []}
            with self._lock:
                a = self._previous or self.monitor.assessment
                events = list(self.events)
            ups = self.monitor.ups
            return {"available": a.state != UNAVAILABLE, "state": a.state, "alerts": list(a.alerts),
                    "events": events, "source": a.source, "stop_new_payments": a.stop_new_payments,
                    "shutdown": a.shutdown, "why": a.why, "runtime_s": a.runtime_s, "charge_pct": a.charge_pct,
                    "ups_status": " ".join(sorted(ups.status)) if ups else "",
                    "input_voltage": ups.input_voltage if ups else None,
                    "runtime_margin_s": self.monitor.margin_s,
                    "error": self.monitor.last_error}
        except Exception as exc:
            log.exception("power: status failed")
            return {"available": False, "state": UNAVAILABLE, "alerts": [], "events": [], "error": type(exc).__name__}

    def command(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        import time

        if action == "refresh":
            if self.monitor is None:
                return {"ok": False, "message": "power supervision is not configured"}
            self.poll(time.time())
            return {"ok": True, "message": self.status()["state"]}
        return {"ok": False, "message": f"unknown action {str(action)[:40]!r}; known: refresh"}

    def close(self) -> None:
        if self.monitor is not None:
            try:
                self.monitor.close()
            except Exception:
                log.exception("power: close failed")


def build(settings: dict) -> PowerController:
    return PowerController(PowerMonitor.from_settings(settings), interval_s=float(settings["POWER_POLL_S"]))


class PowerSimulator:
    """`cnap demo`'s UPS (NUT protocol on loopback) and ATS (Modbus TCP on loopback)."""

    def __init__(self, ups_name: str = "cnapsim"):
        from facility.power.simulator import AtsSimulator, NutSimulator

        self.nut = NutSimulator(ups=ups_name)
        try:
            self.ats = AtsSimulator()
        except Exception:
            self.nut.stop()
            raise
        self.settings: dict[str, Any] = {**self.nut.settings, **self.ats.settings}
        self.nut.on_state = self._ats_follows

    @property
    def description(self) -> str:
        nut = self.nut
        return (f"UPS simulator (NUT protocol) at {nut.host}:{nut.port}, ups {nut.ups}; switch it with "
                f"CNAP_NUT_HOST={nut.host} CNAP_NUT_PORT={nut.port} CNAP_NUT_UPS={nut.ups} "
                f"cnap power sim OB_SHORT|LB|FSD|OL")

    def set_state(self, name: str, **overrides) -> None:
        """OL, OB, OB_SHORT, LB or FSD; the ATS follows (no input feeds while on battery)."""
        self.nut.set_state(name, **overrides)

    def _ats_follows(self, name: str) -> None:
        mains = name == "OL"
        self.ats.set(feeding="input_a" if mains else "none", input_a_live=mains, input_b_live=mains)

    def stop(self) -> None:
        self.ats.stop()
        self.nut.stop()


def real_equipment_configured(settings: dict) -> bool:
    """`cnap demo` starts no simulator when a real upsd is configured."""
    return bool(settings.get("NUT_HOST"))


def start_simulator(settings: dict) -> PowerSimulator:
    return PowerSimulator(ups_name=settings.get("NUT_UPS") or "cnapsim")
