"""Pure mapping from the runner's controller snapshots (facility/runner.py ``status()``, the
per-controller dicts of facility/ventilation, facility/power, facility/uplinks and facility/guestnet)
onto the payload models of monitoring/topics.py.

A snapshot is whatever a controller said, so every field is checked on the way: a word that is
not a topics word is left out (alerts) or replaced (state), a number out of the model's range or
of the wrong type becomes absent, and a snapshot that still does not fit its model is published as
``available=False, state="unavailable"`` with the alert ``bad_status``. Nothing here raises.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Mapping

from pydantic import ValidationError

from monitoring import topics

WORD = re.compile(r"[a-z0-9_]{1,40}")
UNAVAILABLE = "unavailable"
BAD_STATUS = "bad_status"     # the alert of a snapshot that did not fit its model
MAX_UPLINKS = 16              # uplink topics per site, however many rows a snapshot has
AIR_SENSOR_NAME = "unit"      # the air handling unit's own sensors (ventilation readings)


# --- small checks --------------------------------------------------------------------------------
def word(value: Any, default: str) -> str:
    if isinstance(value, str):
        candidate = value.strip().lower().replace("-", "_").replace(" ", "_")
        if WORD.fullmatch(candidate):
            return candidate
    return default


def words(value: Any, limit: int = 32) -> list[str]:
    if not isinstance(value, (list, tuple)):
        return []
    found: list[str] = []
    for item in value:
        if isinstance(item, str) and WORD.fullmatch(item) and item not in found:
            found.append(item)
    return found[:limit]


def number(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and low <= value <= high else None


def count(value: Any, low: int, high: int) -> int | None:
    found = number(value, low, high)
    return None if found is None else int(round(found))


def timestamp(value: Any) -> datetime | None:
    """An ISO 8601 string (the runner's ``polled_at``) or epoch seconds, within the topics range."""
    try:
        if isinstance(value, str) and len(value) <= 40:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                return None
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            parsed = datetime.fromtimestamp(value, timezone.utc)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    parsed = parsed.astimezone(timezone.utc)
    return parsed if topics.MIN_TIMESTAMP <= parsed < topics.MAX_TIMESTAMP else None


def _stamp(snapshot: Mapping[str, Any], now: float) -> datetime:
    # The poll's own time when it is plausible, else the agent's clock: never a future stamp.
    polled = timestamp(snapshot.get("polled_at"))
    current = datetime.fromtimestamp(now, timezone.utc)
    return polled if polled is not None and polled <= current else current


def _common(snapshot: Mapping[str, Any], now: float) -> dict[str, Any]:
    available = snapshot.get("available") is True
    return {"ts": _stamp(snapshot, now), "available": available,
            "state": word(snapshot.get("state"), UNAVAILABLE if not available else "unknown"),
            "alerts": words(snapshot.get("alerts"))}


def _build(model: type[topics.Payload], fields: dict[str, Any]) -> topics.Payload:
    """The model from ``fields``, or an "unavailable" one of the same model when they do not fit."""
    try:
        return model(**fields)
    except (ValidationError, ValueError, TypeError):
        fallback = {"ts": fields["ts"], "available": False, "state": UNAVAILABLE,
                    "alerts": (fields.get("alerts") or [])[:31] + [BAD_STATUS]}
        if model is topics.UplinkState:
            fallback.update(up=False, active=False)
        return model(**fallback)


def _as_dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# --- one controller each -----------------------------------------------------------------------
def ventilation(snapshot: Any, now: float) -> topics.VentilationState:
    snap = _as_dict(snapshot)
    fields = _common(snap, now)
    max_level = count(snap.get("max_level"), 1, 100)
    level = count(snap.get("level"), 0, 100)
    if level is not None and max_level is not None and level > max_level:
        level = None
    override = _as_dict(snap.get("override"))
    fields.update(level=level, max_level=max_level, override_until=timestamp(override.get("until")))
    return _build(topics.VentilationState, fields)


def air(snapshot: Any, now: float) -> topics.AirQualityState:
    """The unit's own sensors (ventilation ``readings``) as one air sensor."""
    snap = _as_dict(snapshot)
    fields = _common(snap, now)
    readings = _as_dict(snap.get("readings"))
    sensor = {"name": AIR_SENSOR_NAME, "online": fields["available"] and bool(readings),
              "co2_ppm": number(readings.get("co2_ppm"), 0, 10000),
              "temperature_c": number(readings.get("room_temp_c"), -40, 85),
              "humidity_pct": number(readings.get("rh_pct"), 0, 100)}
    fields["sensors"] = [sensor] if readings else []
    return _build(topics.AirQualityState, fields)


def _ups_status(nut_flags: Any) -> str:
    flags = set(nut_flags.split()) if isinstance(nut_flags, str) else set()
    if "FSD" in flags or "LB" in flags:
        return "low_battery"
    if "OB" in flags:
        return "on_battery"
    if "OL" in flags:
        return "online"
    return "unknown"


def power(snapshot: Any, now: float) -> topics.PowerState:
    snap = _as_dict(snapshot)
    fields = _common(snap, now)
    ups = None
    if snap.get("ups_status") or snap.get("charge_pct") is not None or snap.get("runtime_s") is not None:
        ups = {"status": _ups_status(snap.get("ups_status")),
               "charge_pct": number(snap.get("charge_pct"), 0, 100),
               "runtime_s": count(snap.get("runtime_s"), 0, 7 * 86400),
               "input_voltage_v": number(snap.get("input_voltage"), 0, 400)}
    source = snap.get("source")
    inputs = []
    if source in ("input_a", "input_b") or any(a in fields["alerts"] for a in ("input_a_lost", "input_b_lost")):
        inputs = [{"name": name, "live": f"{name}_lost" not in fields["alerts"]} for name in ("input_a", "input_b")]
    fields.update(ups=ups, inputs=inputs,
                  active_input=source if isinstance(source, str) and topics.valid_name(source) else None)
    return _build(topics.PowerState, fields)


def uplinks(snapshot: Any, now: float) -> dict[str, topics.UplinkState]:
    """One UplinkState per uplink row, by the uplink's name (rows with a bad name are skipped)."""
    snap = _as_dict(snapshot)
    common = _common(snap, now)
    rows = snap.get("uplinks")
    result: dict[str, topics.UplinkState] = {}
    for row in rows if isinstance(rows, list) else []:
        row = _as_dict(row)
        name = row.get("name")
        if not topics.valid_name(name) or name in result or len(result) >= MAX_UPLINKS:
            continue
        state = word(row.get("state"), "unknown")
        fields = {"ts": common["ts"], "available": common["available"],
                  "state": state if common["available"] else UNAVAILABLE,
                  "alerts": [] if state == "up" else ["uplink_down"],
                  "up": common["available"] and state == "up", "active": snap.get("active") == name,
                  "latency_ms": number(row.get("rtt_ms"), 0, 60000), "loss_pct": number(row.get("loss_pct"), 0, 100)}
        result[name] = _build(topics.UplinkState, fields)
    return result


def device(name: str, fields: Any, now: float) -> topics.DeviceState | None:
    """A kiosk device's payload from KioskSource.devices() fields (no ts); None when they do not fit."""
    model = {"bill_validator": topics.BillValidatorState, "printer": topics.PrinterState,
             "card_terminal": topics.CardTerminalState}.get(name)
    if model is None or not isinstance(fields, Mapping):
        return None
    data = {key: value for key, value in fields.items() if key not in ("v", "ts") and key in model.model_fields}
    try:
        return model(**data, ts=datetime.fromtimestamp(now, timezone.utc))
    except (ValidationError, ValueError, TypeError):
        return None


# visitor internet: the kiosk's browsing counters (/internal/internet, monitoring/kiosk_client.py)
def internet(fields: Any, now: float) -> topics.InternetState | None:
    """The kiosk's browsing counters (KioskClient.internet(), no ts) as InternetState; None when
    they do not fit (the topic is then left as it was rather than published wrong)."""
    data = _as_dict(fields)
    top = []
    for row in data.get("top_blocked") if isinstance(data.get("top_blocked"), list) else []:
        row = _as_dict(row)
        host, attempts = row.get("host"), count(row.get("attempts"), 1, 10 ** 9)
        if isinstance(host, str) and re.fullmatch(r"[a-z0-9.-]{1,253}", host) and attempts is not None:
            top.append({"host": host, "attempts": attempts})
    ended = _as_dict(data.get("ended"))
    try:
        return topics.InternetState(
            ts=datetime.fromtimestamp(now, timezone.utc), enabled=data.get("enabled") is True,
            available=data.get("available") is True, state=word(data.get("state"), "unknown"),
            session_open=data.get("session_open") is True, day=data.get("day"),
            sessions=count(data.get("sessions"), 0, 10 ** 7) or 0,
            ended={word(k, "error"): count(v, 0, 10 ** 7) or 0 for k, v in list(ended.items())[:8]},
            minutes=number(data.get("minutes"), 0, 10 ** 7) or 0.0,
            blocked_hook=count(data.get("blocked_hook"), 0, 10 ** 9) or 0,
            blocked_proxy=count(data.get("blocked_proxy"), 0, 10 ** 9) or 0,
            top_blocked=top[:topics.MAX_TOP_BLOCKED])
    except (ValidationError, ValueError, TypeError):
        return None


# the guest Wi-Fi: the guestnet controller (facility/guestnet)
IFNAME = re.compile(r"[A-Za-z0-9_.@-]{1,15}")   # topics.Ifname


def guest_network(snapshot: Any, now: float) -> topics.GuestNetworkState:
    """The guestnet controller's status: its counters (a count out of range or of the wrong type
    becomes 0, a rate or time limit None), the interface when it is an interface name."""
    snap = _as_dict(snapshot)
    fields = _common(snap, now)
    interface = snap.get("interface")
    dhcp = snap.get("dhcp")

    def total(key: str, high: int = topics.MAX_COUNTER) -> int:
        return count(snap.get(key), 0, high) or 0

    fields.update(interface=interface if isinstance(interface, str) and IFNAME.fullmatch(interface) else None,
                  dhcp=dhcp if isinstance(dhcp, bool) else None,
                  clients_now=total("clients_now", 100000), admitted_today=total("admitted_today", 10 ** 7),
                  bytes_up=total("bytes_up"), bytes_down=total("bytes_down"), blocked=total("blocked"),
                  redirected=total("redirected"),
                  total_rate_kbit=count(snap.get("total_rate_kbit"), 1, 10 ** 7),
                  client_rate_kbit=count(snap.get("client_rate_kbit"), 1, 10 ** 7),   # 0: no per-client cap
                  admit_minutes=count(snap.get("admit_minutes"), 1, 7 * 24 * 60))
    return _build(topics.GuestNetworkState, fields)


# --- the whole status --------------------------------------------------------------------------
def controller_outgoing(site: str, name: str, snapshot: Any, now: float) -> list[topics.Outgoing]:
    """What one controller's snapshot publishes (ventilation also gives the air topic)."""
    if name == "ventilation":
        return [topics.outgoing(site, ventilation(snapshot, now)), topics.outgoing(site, air(snapshot, now))]
    if name == "power":
        return [topics.outgoing(site, power(snapshot, now))]
    if name == "uplinks":
        return [topics.outgoing(site, state, uplink) for uplink, state in uplinks(snapshot, now).items()]
    if name == "guestnet":
        return [topics.outgoing(site, guest_network(snapshot, now))]
    return []   # a controller without a topic of its own (yet)


def status_outgoing(site: str, status: Any, now: float) -> list[topics.Outgoing]:
    """Every topic of a runner ``status()``."""
    controllers = _as_dict(_as_dict(status).get("controllers"))
    found: list[topics.Outgoing] = []
    for name, snapshot in controllers.items():
        found.extend(controller_outgoing(site, name, snapshot, now))
    return found


def content_key(message: topics.Outgoing) -> bytes:
    """The payload without its ``ts``: two messages with the same key say the same thing."""
    import json

    try:
        data = json.loads(message.payload)
    except ValueError:
        return message.payload
    if isinstance(data, dict):
        data.pop("ts", None)
    return json.dumps(data, sort_keys=True).encode()
