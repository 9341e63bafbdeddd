"""A simulated air handling unit: a pymodbus server that speaks a profile's register map, over a
room model (CO2 rises with the people in it and falls with the airflow; the filter clogs while
air flows; fans spin at the commanded level), with scriptable faults.

The model's clock is its own: ``advance(seconds)`` moves it (tests and the bench run a day in
seconds); ``start_simulator(settings)`` also runs a thread that advances it in real time, for
``cnap demo``.
"""
from __future__ import annotations

import asyncio
import math
import random
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from .io import Point, Profile, load_profile

HOLDING_CODES = (3, 6, 16, 22, 23)
WRITE_CODES = (6, 16, 22, 23)


@dataclass
class Room:
    """A well-mixed room served by one supply/exhaust unit."""
    volume_m3: float = 400.0
    airflow_m3h: tuple[float, ...] = (0.0, 400.0, 800.0, 1200.0, 1600.0)   # per policy level
    infiltration_ach: float = 0.2         # air changes per hour with the fans off
    co2_outdoor_ppm: float = 420.0
    co2_per_person_lph: float = 20.0      # a seated adult breathes out ~18–20 L/h of CO2
    occupancy: float = 0.0
    co2_ppm: float = 450.0
    room_c: float = 21.0
    outdoor_c: float = 5.0
    rh_pct: float = 40.0
    heat_recovery: float = 0.75
    filter_dirt_pa: float = 0.0
    filter_clean_pa: float = 40.0
    clog_pa_per_h: float = 0.5            # at full airflow
    level: int = 0
    user_mode: int = 1                    # for maps with a user mode (Systemair: 1 = manual)
    clock_s: float = 0.0
    co2_noise_ppm: float = 8.0            # a real NDIR sensor wanders a few ppm between readings
    seed: int = 1

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def co2_reading(self) -> float:
        return self.co2_ppm + self._random.uniform(-self.co2_noise_ppm, self.co2_noise_ppm)

    def airflow(self) -> float:
        level = max(0, min(self.level, len(self.airflow_m3h) - 1))
        return self.airflow_m3h[level]

    def supply_c(self) -> float:
        if self.level == 0:
            return self.room_c
        return self.outdoor_c + self.heat_recovery * (self.room_c - self.outdoor_c)

    def filter_dp_pa(self) -> float:
        if self.level == 0:
            return 0.0
        share = self.airflow() / max(self.airflow_m3h)
        return (self.filter_clean_pa + self.filter_dirt_pa) * share * share

    def rpm(self) -> float:
        return 0.0 if self.level == 0 else 600.0 + 450.0 * self.level

    def advance(self, seconds: float) -> None:
        """Move the model on; exact solution of dC/dt = G/V - Q/V (C - C_out) over the step."""
        if seconds <= 0:
            return
        q = self.airflow() + self.infiltration_ach * self.volume_m3          # m³/h
        g = self.occupancy * self.co2_per_person_lph / 1000.0                # m³/h of CO2
        steady = self.co2_outdoor_ppm + g / q * 1e6
        self.co2_ppm = steady + (self.co2_ppm - steady) * math.exp(-q * seconds / 3600.0 / self.volume_m3)
        self.filter_dirt_pa += self.clog_pa_per_h * seconds / 3600.0 * self.airflow() / max(self.airflow_m3h)
        self.clock_s += seconds


@dataclass
class Faults:
    """What to break. Tests set these attributes while the server runs."""
    exception: int | None = None          # every request answers with this Modbus exception code
    delay_s: float = 0.0                  # answer this late (past the client's timeout: no answer)
    stuck_co2: float | None = None        # the CO2 register shows this whatever the room does
    supply_fan_failed: bool = False
    extract_fan_failed: bool = False
    alarms: set[str] = field(default_factory=set)        # alarm registers set to 1
    garbage: dict[str, int] = field(default_factory=dict)  # point -> raw register value shown
    ignore_level_writes: bool = False     # acknowledges level writes but keeps its own level


def _raw(point: Point, value: float) -> int:
    raw = int(round(value / point.scale))
    if point.signed:
        return raw & 0xFFFF
    return max(0, min(0xFFFF, raw))


class SimulatedUnit:
    """The register side: maps the room model onto a profile's registers and back."""

    def __init__(self, profile: Profile, room: Room | None = None) -> None:
        self.profile = profile
        self.room = room or Room()
        self.faults = Faults()
        self.lock = threading.Lock()
        self.writes: list[tuple[str, int]] = []        # (point, value) as received, for tests

    def values(self) -> dict[str, float]:
        room, faults = self.room, self.faults
        rpm = room.rpm()
        level_value = self.profile.levels[max(0, min(room.level, self.profile.max_level))]
        return {
            "level_command": level_value, "level_feedback": level_value,
            "user_mode": room.user_mode, "mode_request": 0,
            "co2_ppm": faults.stuck_co2 if faults.stuck_co2 is not None else room.co2_reading(),
            "room_temp_c": room.room_c, "rh_pct": room.rh_pct, "outdoor_temp_c": room.outdoor_c,
            "supply_temp_c": room.supply_c(), "filter_dp_pa": room.filter_dp_pa(),
            "supply_rpm": 0.0 if faults.supply_fan_failed else rpm,
            "extract_rpm": 0.0 if faults.extract_fan_failed else rpm,
        }

    def _points_in(self, table: str) -> list[Point]:
        return [p for p in (*self.profile.points.values(), *self.profile.alarms.values())
                if p.table == table]

    def blocks(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        holding = [SimData(p.address, values=0, datatype=DataType.REGISTERS)
                   for p in sorted(self._points_in("holding"), key=lambda p: p.address)]
        inputs = [SimData(p.address, values=0, datatype=DataType.REGISTERS)
                  for p in sorted(self._points_in("input"), key=lambda p: p.address)]
        return bits, list(bits), holding, inputs

    def _write(self, address: int, values: list[int]) -> ExcCodes | None:
        by_address = {p.address: p for p in self.profile.points.values() if p.table == "holding"}
        for offset, value in enumerate(values):
            point = by_address.get(address + offset)
            if point is None:
                return ExcCodes.ILLEGAL_ADDRESS
            if point.decode(value) is None:
                return ExcCodes.ILLEGAL_VALUE
            self.writes.append((point.name, value))
            if point.name == self.profile.level_point:
                if value not in self.profile.levels:
                    return ExcCodes.ILLEGAL_VALUE
                if self.faults.ignore_level_writes:
                    continue
                self.room.level = self.profile.levels.index(value)
            elif point.name == "mode_request" and value > 0:
                self.room.user_mode = value - 1
        return None

    async def action(self, function_code: int, start_address: int, address: int, count: int,
                     registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        with self.lock:
            if self.faults.exception is not None:
                return ExcCodes(self.faults.exception)
            table = "holding" if function_code in HOLDING_CODES else "input"
            if function_code in WRITE_CODES and set_values is not None:
                return self._write(address, [int(v) for v in set_values])
            values = self.values()
            for point in self._points_in(table):
                if not address <= point.address < address + count:
                    continue
                if point.name in self.faults.garbage:
                    raw = self.faults.garbage[point.name]
                elif point in self.profile.alarms.values():
                    raw = 1 if point.name in self.faults.alarms else 0
                else:
                    raw = _raw(point, values.get(point.name, 0.0))
                registers[point.address - start_address] = raw
        return None


class Simulator:
    """The unit on a loopback port. ``settings`` points a controller at it."""

    def __init__(self, profile: Profile, room: Room | None = None, *, framer: str = "socket",
                 realtime: bool = False, speed: float = 1.0, serial_port: str | None = None) -> None:
        self.unit = SimulatedUnit(profile, room)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._server: ModbusTcpServer | None = None
        self._error: BaseException | None = None
        self._framer = FramerType.RTU if framer == "rtu" else FramerType.SOCKET
        self._serial_port = serial_port
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="ventilation-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error:
            raise RuntimeError(f"ventilation simulator did not start: {self._error}")
        if serial_port:
            self.url = f"rtu://{serial_port}?baudrate=9600"
        else:
            scheme = "rtu+tcp" if framer == "rtu" else "tcp"
            self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.settings: dict[str, Any] = {"VENT_UNIT_URL": self.url, "VENT_PROFILE": profile.name}
        self._ticker = None
        if realtime:
            self._ticker = threading.Thread(target=self._tick, args=(speed,), name="ventilation-room",
                                            daemon=True)
            self._ticker.start()

    @property
    def room(self) -> Room:
        return self.unit.room

    @property
    def faults(self) -> Faults:
        return self.unit.faults

    def advance(self, seconds: float) -> None:
        with self.unit.lock:
            self.unit.room.advance(seconds)

    def _tick(self, speed: float) -> None:
        while not self._stopped.wait(1.0):
            self.advance(speed)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:   # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def _start(self) -> None:
        device = SimDevice(1, simdata=self.unit.blocks(), action=self.unit.action)
        if self._serial_port:
            # an RS-485 line: in tests one end of a pty pair made by socat
            self._server = ModbusSerialServer(device, framer=FramerType.RTU, port=self._serial_port,
                                              baudrate=9600)
            await self._server.serve_forever(background=True)
            return
        self._server = ModbusTcpServer(device, address=("127.0.0.1", 0), framer=self._framer)
        await self._server.serve_forever(background=True)
        sockets = getattr(self._server.transport, "sockets", None) or []
        if not sockets:
            raise RuntimeError("no listening socket")
        self.port = sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()

        async def shutdown() -> None:
            if self._server is not None:
                await self._server.shutdown()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if self._ticker is not None:
            self._ticker.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(settings: dict[str, Any] | None = None, *, realtime: bool = True, room: Room | None = None,
          framer: str = "socket", serial_port: str | None = None) -> Simulator:
    settings = settings or {}
    profile = load_profile(str(settings.get("VENT_PROFILE") or "generic"))
    return Simulator(profile, room, framer=framer, realtime=realtime, serial_port=serial_port)
