"""The real side of power supervision: upsd over NUT's network protocol (through aionut, the
client library Home Assistant's NUT integration uses) and the automatic transfer switch (Modbus
through pymodbus, or two dry contacts read as GPIO value files).

Every reader returns a reading or raises :class:`PowerIOError`; the callers turn that into
"unavailable". Why aionut rather than PyNUTClient: PyNUTClient 2.8.5 reads with
``data += sock.recv(50)`` until the terminator and never checks for end of file, so an upsd that
closes the connection mid-answer leaves it spinning forever (a test of ours saw it). aionut has
a timeout on every read and raises on a closed connection. It is asyncio-only; one short-lived
event loop per reading keeps this module synchronous for the poller threads.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from facility.power.policy import INPUT_A, INPUT_B, NO_INPUT, AtsReading, UpsReading

log = logging.getLogger("cnap.power")

# upsd answers a few hundred bytes; anything past this is not NUT.
MAX_VARS = 500


class PowerIOError(Exception):
    """upsd or the transfer switch cannot be read now (the message says why, no secrets)."""


@dataclass(frozen=True)
class NutTarget:
    host: str
    port: int
    ups: str
    username: str = ""
    password: str = ""
    timeout_s: float = 3.0


def run_coroutine(make_coroutine):
    """Run an aionut exchange to the end from synchronous code. A caller already inside an event
    loop (an asyncio program, Playwright's sync API in tests) cannot use asyncio.run: the
    exchange then gets a short-lived thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    outcome: dict = {}

    def work():
        try:
            outcome["value"] = asyncio.run(make_coroutine())
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="nut-read", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def read_ups_vars(target: NutTarget) -> dict[str, str]:
    """``LIST VAR <ups>`` from upsd, as a dict of strings. Raises PowerIOError."""
    try:
        return run_coroutine(lambda: _list_vars(target))
    except PowerIOError:
        raise
    except Exception as exc:  # aionut's NUTError family, OSError, asyncio's limit errors, …
        raise PowerIOError(f"upsd {target.host}:{target.port}: {type(exc).__name__}: {exc}"[:300]) from None


async def _list_vars(target: NutTarget) -> dict[str, str]:
    from aionut import AIONUTClient

    client = AIONUTClient(target.host, target.port, username=target.username or None,
                          password=target.password or None, timeout=target.timeout_s, persistent=False)
    try:
        # an outer limit too: aionut times each read, this bounds the whole exchange
        async with asyncio.timeout(target.timeout_s * 3):
            values = await client.list_vars(target.ups)
    finally:
        client.shutdown()
    if not values or len(values) > MAX_VARS:
        raise PowerIOError(f"upsd {target.host}:{target.port}: {len(values)} variables for {target.ups!r}")
    return values


def read_ups(target: NutTarget) -> UpsReading:
    return UpsReading.from_vars(read_ups_vars(target))


# ----------------------------------------------------------------------------- transfer switch
# The generic ATS Modbus map (docs/facility-power.md; firmware_configs/facility/ats-generic.toml):
# input register 0: bit 0 input A has voltage, bit 1 input B has voltage,
#                   bit 2 switch in position A, bit 3 switch in position B, bit 4 ATS alarm;
# input registers 1 and 2: input A and input B voltage in volts.
ATS_STATUS_REGISTER = 0
BIT_A_LIVE, BIT_B_LIVE, BIT_POS_A, BIT_POS_B, BIT_ALARM = 0, 1, 2, 3, 4


def decode_ats_registers(registers: list[int]) -> AtsReading:
    """Pure: the three input registers → a reading. Both positions at once is a broken
    contact or a wrong map: refused rather than guessed."""
    if len(registers) < 1:
        raise PowerIOError("ATS: no status register")
    word = registers[0]
    pos_a, pos_b = bool(word >> BIT_POS_A & 1), bool(word >> BIT_POS_B & 1)
    if pos_a and pos_b:
        raise PowerIOError("ATS: both positions reported at once")
    feeding = INPUT_A if pos_a else INPUT_B if pos_b else NO_INPUT
    return AtsReading(input_a_live=bool(word >> BIT_A_LIVE & 1), input_b_live=bool(word >> BIT_B_LIVE & 1),
                      feeding=feeding)


class ModbusAts:
    """An ATS with a Modbus TCP interface: ``modbus-tcp://host:port?unit=1``."""

    def __init__(self, url: str, timeout_s: float = 2.0):
        parts = urlsplit(url)
        if parts.scheme != "modbus-tcp" or not parts.hostname:
            raise ValueError(f"ATS_URL {url!r}: expected modbus-tcp://host:port?unit=N")
        try:
            self.host, self.port = parts.hostname, parts.port or 502
        except ValueError as exc:
            raise ValueError(f"ATS_URL {url!r}: {exc}") from None
        unit = parse_qs(parts.query).get("unit", ["1"])[0]
        if not unit.isascii() or not unit.isdigit() or not 0 <= int(unit) <= 247:
            raise ValueError(f"ATS_URL {url!r}: unit must be 0 to 247")
        self.unit = int(unit)
        self.timeout_s = timeout_s
        self._client = None

    def read(self) -> AtsReading:
        from pymodbus.client import ModbusTcpClient

        try:
            if self._client is None:
                self._client = ModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s, retries=0)
            if not self._client.connected and not self._client.connect():
                raise PowerIOError(f"ATS {self.host}:{self.port}: no connection")
            answer = self._client.read_input_registers(ATS_STATUS_REGISTER, count=3, device_id=self.unit)
            if answer.isError():
                raise PowerIOError(f"ATS {self.host}:{self.port}: {answer}")
            return decode_ats_registers(list(answer.registers))
        except PowerIOError:
            self.close()
            raise
        except Exception as exc:  # pymodbus' ModbusException family, OSError
            self.close()
            raise PowerIOError(f"ATS {self.host}:{self.port}: {type(exc).__name__}: {exc}"[:300]) from None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass


class ContactsAts:
    """Two dry contacts of the ATS (its "position A" and "position B" auxiliary contacts) wired
    to GPIO inputs, read as sysfs/gpio-sim value files: ``contacts:///sys/class/gpio/gpio17/value,
    /sys/class/gpio/gpio27/value``. "1" = contact closed. The inputs' own voltage is not known
    from two contacts, so input_a_live/input_b_live stay None."""

    def __init__(self, url: str):
        if not url.startswith("contacts://"):
            raise ValueError(f"ATS_URL {url!r}: expected contacts://PATH_A,PATH_B")
        paths = [p.strip() for p in url[len("contacts://"):].split(",") if p.strip()]
        if len(paths) != 2:
            raise ValueError(f"ATS_URL {url!r}: needs two value files, A then B")
        self.path_a, self.path_b = Path(paths[0]), Path(paths[1])

    @staticmethod
    def _closed(path: Path) -> bool:
        try:
            text = path.read_text(encoding="ascii", errors="strict")[:8].strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise PowerIOError(f"ATS contact {path}: {exc}") from None
        if text not in ("0", "1"):
            raise PowerIOError(f"ATS contact {path}: {text!r} is not 0 or 1")
        return text == "1"

    def read(self) -> AtsReading:
        a, b = self._closed(self.path_a), self._closed(self.path_b)
        if a and b:
            raise PowerIOError("ATS: both position contacts closed")
        return AtsReading(None, None, INPUT_A if a else INPUT_B if b else NO_INPUT)

    def close(self) -> None:
        pass


class MisconfiguredAts:
    """ATS_SOURCE/ATS_URL that cannot work: every reading fails with the reason, so the status
    says "ats_unavailable" and why, and the kiosk still starts."""

    def __init__(self, reason: str):
        self.reason = reason

    def read(self) -> AtsReading:
        raise PowerIOError(self.reason)

    def close(self) -> None:
        pass


def open_ats(source: str, url: str):
    """The ATS reader for settings ATS_SOURCE/ATS_URL, or None when there is no ATS."""
    if source in ("", "none"):
        return None
    try:
        if source == "modbus":
            return ModbusAts(url)
        if source == "contacts":
            return ContactsAts(url)
        raise ValueError(f"ATS_SOURCE {source!r}: expected none, modbus or contacts")
    except ValueError as exc:
        log.error("power: %s", exc)
        return MisconfiguredAts(str(exc))
