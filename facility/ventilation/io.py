"""The real side of ventilation: the unit's register map (a profile file) and a pymodbus client.

Nothing here raises to the caller: a unit that does not answer, answers with a Modbus exception or
times out gives ``UnitReading(ok=False, error=…)``; a register whose value is outside the
profile's range is left out of the reading and named in ``bad_registers``.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

log = logging.getLogger(__name__)

PROFILE_DIR = Path(__file__).resolve().parent.parent.parent / "firmware_configs" / "ventilation"
TABLES = ("holding", "input")
# Points the controller understands; a profile may define any subset (level_command is required).
KNOWN_POINTS = ("level_command", "level_feedback", "user_mode", "mode_request", "co2_ppm",
                "room_temp_c", "rh_pct", "outdoor_temp_c", "supply_temp_c", "filter_dp_pa",
                "supply_rpm", "extract_rpm")
MAX_READ = 100   # registers per request (Modbus allows 125)


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Point:
    name: str
    table: str
    address: int          # wire address
    signed: bool = False
    scale: float = 1.0
    min: float = 0.0
    max: float = 65535.0

    def decode(self, raw: int) -> float | None:
        """Raw register to a value in units, or None when it is outside the profile's range."""
        value = raw - 0x10000 if self.signed and raw >= 0x8000 else raw
        scaled = value * self.scale
        return scaled if self.min <= scaled <= self.max else None


@dataclass(frozen=True)
class PreWrite:
    point: str
    value: int
    unless_point: str | None = None
    unless_equals: int | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    source: str
    levels: tuple[int, ...]          # register value for each policy level
    allow_off: bool
    points: dict[str, Point]
    alarms: dict[str, Point]
    level_point: str
    before: tuple[PreWrite, ...] = ()
    read_gap: int = 0

    @property
    def max_level(self) -> int:
        return len(self.levels) - 1


def _int(value: Any, what: str, low: int = 0, high: int = 65535) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProfileError(f"{what}: expected a whole number {low}…{high}, got {value!r}")
    return value


def _point(name: str, spec: Any, base: int) -> Point:
    if not isinstance(spec, dict):
        raise ProfileError(f"point {name}: expected a mapping")
    table = spec.get("table")
    if table not in TABLES:
        raise ProfileError(f"point {name}: table must be one of {TABLES}")
    address = _int(spec.get("address"), f"point {name} address", base, 65535 + base) - base
    try:
        return Point(name, table, address, bool(spec.get("signed", False)),
                     float(spec.get("scale", 1.0)), float(spec.get("min", -32768 if spec.get("signed") else 0)),
                     float(spec.get("max", 65535)))
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"point {name}: {exc}") from None


def load_profile(name_or_path: str) -> Profile:
    """A profile by name (a file in firmware_configs/ventilation/) or by path."""
    candidate = Path(name_or_path)
    if candidate.suffix not in (".yaml", ".yml"):
        if "/" in name_or_path or not name_or_path.replace("-", "").replace("_", "").isalnum():
            raise ProfileError(f"profile {name_or_path!r}: not a profile name")
        candidate = PROFILE_DIR / f"{name_or_path}.yaml"
    try:
        data = yaml.safe_load(candidate.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"profile {name_or_path}: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"profile {name_or_path}: expected a mapping")
    base = data.get("register_numbering", 0)
    if base not in (0, 1):
        raise ProfileError("register_numbering must be 0 or 1")
    levels = data.get("levels")
    if not isinstance(levels, list) or len(levels) < 2:
        raise ProfileError("levels: a list of register values, one per level, at least two")
    levels_t = tuple(_int(v, "levels") for v in levels)
    points_spec = data.get("points") or {}
    if not isinstance(points_spec, dict):
        raise ProfileError("points: expected a mapping")
    unknown = set(points_spec) - set(KNOWN_POINTS)
    if unknown:
        raise ProfileError(f"unknown points {sorted(unknown)}; known: {KNOWN_POINTS}")
    points = {name: _point(name, spec, base) for name, spec in points_spec.items()}
    alarms_spec = data.get("alarms") or {}
    if not isinstance(alarms_spec, dict):
        raise ProfileError("alarms: expected a mapping")
    alarms = {str(name): _point(str(name), spec, base) for name, spec in alarms_spec.items()}
    command = data.get("command") or {}
    level_point = command.get("level", "level_command")
    if level_point not in points or points[level_point].table != "holding":
        raise ProfileError("command.level must name a holding-register point")
    befores = []
    for item in command.get("before") or ():
        unless = item.get("unless") or {}
        if item.get("write") not in points or (unless and unless.get("point") not in points):
            raise ProfileError(f"command.before: unknown point in {item!r}")
        befores.append(PreWrite(item["write"], _int(item.get("value"), "command.before value"),
                                unless.get("point"),
                                _int(unless["equals"], "unless.equals") if unless else None))
    return Profile(str(data.get("name", candidate.stem)), str(data.get("title", "")),
                   str(data.get("source", "")), levels_t, bool(data.get("allow_off", True)),
                   points, alarms, level_point, tuple(befores),
                   _int(data.get("read_gap", 0), "read_gap", 0, 50))


def read_plan(profile: Profile) -> list[tuple[str, int, int]]:
    """(table, first address, count) requests that cover every point and alarm register."""
    plan = []
    for table in TABLES:
        addresses = sorted({p.address for p in (*profile.points.values(), *profile.alarms.values())
                            if p.table == table})
        start = prev = None
        for address in addresses:
            if start is None:
                start = prev = address
            elif address - prev - 1 <= profile.read_gap and address - start < MAX_READ:
                prev = address
            else:
                plan.append((table, start, prev - start + 1))
                start = prev = address
        if start is not None:
            plan.append((table, start, prev - start + 1))
    return plan


@dataclass(frozen=True)
class UnitReading:
    ok: bool
    values: dict[str, float] = field(default_factory=dict)
    alarms: frozenset[str] = frozenset()
    bad_registers: frozenset[str] = frozenset()
    error: str = ""


@dataclass(frozen=True)
class UnitUrl:
    kind: str            # tcp | rtu-over-tcp | rtu
    host: str = ""
    port: int = 502
    device: str = ""     # serial device path
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    device_id: int = 1


def parse_url(url: str) -> UnitUrl:
    """``tcp://host:502?device_id=1``, ``rtu+tcp://gateway:4001`` (RTU framing through a
    transparent serial gateway), ``rtu:///dev/ttyUSB0?baudrate=9600&parity=N&stopbits=1``."""
    parts = urlsplit(url.strip())
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        device_id = int(query.get("device_id", "1"))
        if not 0 <= device_id <= 247:
            raise ValueError("device_id must be 0…247")
        if parts.scheme in ("tcp", "rtu+tcp"):
            if not parts.hostname:
                raise ValueError("no host")
            return UnitUrl("tcp" if parts.scheme == "tcp" else "rtu-over-tcp", parts.hostname,
                           parts.port or 502, device_id=device_id)
        if parts.scheme == "rtu":
            if not parts.path:
                raise ValueError("no serial device")
            parity = query.get("parity", "N").upper()
            if parity not in ("N", "E", "O"):
                raise ValueError("parity must be N, E or O")
            return UnitUrl("rtu", device=parts.path, baudrate=int(query.get("baudrate", "9600")),
                           parity=parity, stopbits=int(query.get("stopbits", "1")), device_id=device_id)
    except ValueError as exc:
        raise ValueError(f"unit URL {url!r}: {exc}") from None
    raise ValueError(f"unit URL {url!r}: scheme must be tcp, rtu+tcp or rtu")


class ModbusUnit:
    """One air handling unit behind a pymodbus client. Thread-safe; never raises from read/write."""

    def __init__(self, url: str, profile: Profile, timeout_s: float = 1.0) -> None:
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient
        from pymodbus.framer import FramerType

        self.profile = profile
        self.url = parse_url(url)
        self._lock = threading.Lock()
        if self.url.kind == "rtu":
            self._client = ModbusSerialClient(self.url.device, framer=FramerType.RTU,
                                              baudrate=self.url.baudrate, parity=self.url.parity,
                                              stopbits=self.url.stopbits, timeout=timeout_s, retries=0)
        else:
            framer = FramerType.SOCKET if self.url.kind == "tcp" else FramerType.RTU
            self._client = ModbusTcpClient(self.url.host, port=self.url.port, framer=framer,
                                           timeout=timeout_s, retries=0, reconnect_delay=0)

    def _registers(self, table: str, address: int, count: int) -> list[int]:
        call = (self._client.read_holding_registers if table == "holding"
                else self._client.read_input_registers)
        result = call(address, count=count, device_id=self.url.device_id)
        if result.isError():
            code = getattr(result, "exception_code", None)
            raise UnitError(f"{table} {address}+{count}: Modbus exception {code}")
        registers = list(result.registers)
        if len(registers) < count:
            raise UnitError(f"{table} {address}+{count}: short answer ({len(registers)})")
        return registers[:count]

    def _connected(self) -> None:
        if not self._client.connected and not self._client.connect():
            raise UnitError("cannot connect")

    def read(self) -> UnitReading:
        with self._lock:
            try:
                self._connected()
                raw: dict[tuple[str, int], int] = {}
                for table, address, count in read_plan(self.profile):
                    for offset, value in enumerate(self._registers(table, address, count)):
                        raw[(table, address + offset)] = value
            except Exception as exc:   # pymodbus raises several kinds; all mean "unavailable"
                self._drop()
                log.warning("ventilation unit read failed: %s", exc)
                return UnitReading(False, error=_short(exc))
        values: dict[str, float] = {}
        bad: set[str] = set()
        for name, point in self.profile.points.items():
            decoded = point.decode(raw[(point.table, point.address)])
            if decoded is None:
                bad.add(name)
            else:
                values[name] = decoded
        alarms = frozenset(name for name, point in self.profile.alarms.items()
                           if raw[(point.table, point.address)] != 0)
        return UnitReading(True, values, alarms, frozenset(bad))

    def write_level(self, level: int, reading: UnitReading | None = None) -> str:
        """Command a policy level. Returns "" on success, else the reason. The level must be one
        the profile has; anything else is refused here as a last guard."""
        profile = self.profile
        if not 0 <= level <= profile.max_level or (level == 0 and not profile.allow_off):
            return f"level {level} is outside the unit's limits"
        with self._lock:
            try:
                self._connected()
                for pre in profile.before:
                    if (pre.unless_point and reading is not None and reading.ok
                            and reading.values.get(pre.unless_point) == pre.unless_equals):
                        continue
                    self._write(profile.points[pre.point], pre.value)
                self._write(profile.points[profile.level_point], profile.levels[level])
            except Exception as exc:
                self._drop()
                log.warning("ventilation unit write failed: %s", exc)
                return _short(exc)
        return ""

    def _write(self, point: Point, value: int) -> None:
        result = self._client.write_register(point.address, value, device_id=self.url.device_id)
        if result.isError():
            raise UnitError(f"write {point.name}: Modbus exception {getattr(result, 'exception_code', None)}")

    def _drop(self) -> None:
        try:
            self._client.close()
        except Exception:   # closing a broken connection may fail too; nothing left to do
            pass

    def close(self) -> None:
        with self._lock:
            self._drop()


class UnitError(RuntimeError):
    pass


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:200]
