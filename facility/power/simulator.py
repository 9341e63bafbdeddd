"""The other side of the wire, for `cnap demo` and tests without NUT installed: a small server
that speaks NUT's network protocol (the subset clients use: LIST UPS/VAR/CMD, GET VAR,
USERNAME/PASSWORD/LOGIN/LOGOUT, VER) on loopback, with a control to switch the UPS between
OL, OB, LB and FSD; and an ATS answering the generic Modbus map through pymodbus' own server.

Control over the protocol itself (so `cnap power sim LB` or NUT's own `upscmd` can drive a
running demo): ``INSTCMD <ups> sim.ol|sim.ob|sim.ob_short|sim.lb|sim.fsd``, ``SET VAR <ups> <var>
"<value>"``, and ``FSD <ups>`` as upsmon's primary sends it. Faults for tests: ``fault = "drop"`` closes the connection instead of answering,
``"garbage"`` answers bytes that are not NUT, ``"silent"`` never answers."""
from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from typing import Any

# What a small line-interactive UPS reports in each state (dummy-ups .dev files carry the same).
PRESETS: dict[str, dict[str, str]] = {
    "OL": {"ups.status": "OL", "battery.charge": "100", "battery.runtime": "1800", "input.voltage": "230.0"},
    "OB": {"ups.status": "OB DISCHRG", "battery.charge": "80", "battery.runtime": "1200", "input.voltage": "0.0"},
    "OB_SHORT": {"ups.status": "OB DISCHRG", "battery.charge": "30", "battery.runtime": "240",
                 "input.voltage": "0.0"},
    "LB": {"ups.status": "OB DISCHRG LB", "battery.charge": "9", "battery.runtime": "90", "input.voltage": "0.0"},
    "FSD": {"ups.status": "FSD OB DISCHRG LB", "battery.charge": "8", "battery.runtime": "80",
            "input.voltage": "0.0"},
}
BASE_VARS = {"device.type": "ups", "device.mfr": "cnap", "device.model": "Simulated UPS", "ups.load": "23",
             "battery.charge.low": "10", "battery.runtime.low": "120", "driver.name": "cnap-sim"}
MAX_LINE = 512


class NutSimulator:
    """upsd's network side with one UPS in it. ``settings`` points a controller or the kiosk here."""

    def __init__(self, ups: str = "cnapsim", host: str = "127.0.0.1", port: int = 0,
                 username: str = "", password: str = ""):
        self.ups = ups
        self.username, self.password = username, password
        self.vars: dict[str, str] = {**BASE_VARS, **PRESETS["OL"]}
        self.fault = ""          # "", "drop", "garbage", "silent"
        self.on_state = None     # called with the preset name after a switch (the demo's ATS follows)
        self._stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        simulator = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 30

            def handle(self):
                simulator._serve(self.rfile, self.wfile, self.connection)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server((host, port), Handler)
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="nut-sim", daemon=True)
        self._thread.start()
        self.settings: dict[str, Any] = {"NUT_HOST": self.host, "NUT_PORT": self.port, "NUT_UPS": ups,
                                         "NUT_USERNAME": username, "NUT_PASSWORD": password}

    # ---------------------------------------------------------------- control
    def set_state(self, name: str, **overrides: str) -> None:
        """Switch to a preset (OL, OB, OB_SHORT, LB, FSD) and/or set variables."""
        if name not in PRESETS:
            raise ValueError(f"unknown UPS state {name!r}; one of {', '.join(PRESETS)}")
        with self.lock:
            self.vars.update(PRESETS[name])
            self.vars.update({k: str(v) for k, v in overrides.items()})
        if self.on_state is not None:
            self.on_state(name)

    def set_vars(self, **values: str) -> None:
        with self.lock:
            self.vars.update({k.replace("_", "."): str(v) for k, v in values.items()})

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # ---------------------------------------------------------------- protocol
    def _serve(self, rfile, wfile, conn) -> None:
        while True:
            line = rfile.readline(MAX_LINE)
            if not line or not line.endswith(b"\n"):
                return
            with self.lock:
                self.requests += 1
                fault = self.fault
            if fault == "drop":
                return
            if fault == "silent":
                self._stopping.wait(60)  # answer nothing; let go at stop()
                return
            if fault == "garbage":
                wfile.write(b"\x00\xffHELLO there, this is not NUT\r\n" * 3)
                wfile.flush()
                continue
            answer = self._answer(line.decode("ascii", "replace").strip())
            if answer is None:
                return
            wfile.write(answer.encode("ascii", "replace"))
            wfile.flush()

    def _answer(self, command: str) -> str | None:
        words = command.split()
        if not words:
            return "ERR UNKNOWN-COMMAND\n"
        verb, rest = words[0].upper(), words[1:]
        with self.lock:
            values = dict(self.vars)
        if verb == "LOGOUT":
            return None
        if verb in ("USERNAME", "PASSWORD"):
            wanted = self.username if verb == "USERNAME" else self.password
            given = command.split(" ", 1)[1].strip('"') if len(words) > 1 else ""
            return "OK\n" if (not wanted or given == wanted) else "ERR ACCESS-DENIED\n"
        if verb == "LOGIN":
            return "OK\n" if rest == [self.ups] else "ERR UNKNOWN-UPS\n"
        if verb in ("VER", "VERSION"):
            return "Network UPS Tools upsd (cnap simulator)\n"
        if verb == "NETVER":
            return "1.3\n"
        if verb == "STARTTLS":
            return "ERR FEATURE-NOT-CONFIGURED\n"
        if verb == "LIST" and rest[:1] == ["UPS"]:
            return f'BEGIN LIST UPS\nUPS {self.ups} "cnap simulated UPS"\nEND LIST UPS\n'
        if verb == "LIST" and len(rest) == 2 and rest[0] in ("VAR", "CMD", "RW"):
            if rest[1] != self.ups:
                return "ERR UNKNOWN-UPS\n"
            kind = rest[0]
            if kind == "VAR":
                body = "".join(f'VAR {self.ups} {k} "{v}"\n' for k, v in sorted(values.items()))
            elif kind == "CMD":
                body = "".join(f"CMD {self.ups} sim.{name.lower()}\n" for name in PRESETS)
            else:
                body = ""
            return f"BEGIN LIST {kind} {self.ups}\n{body}END LIST {kind} {self.ups}\n"
        if verb == "INSTCMD" and len(rest) >= 2:
            if rest[0] != self.ups:
                return "ERR UNKNOWN-UPS\n"
            name = rest[1].upper().removeprefix("SIM.")
            if not rest[1].lower().startswith("sim.") or name not in PRESETS:
                return "ERR CMD-NOT-SUPPORTED\n"
            self.set_state(name)
            return "OK\n"
        if verb == "SET" and len(rest) >= 3 and rest[0] == "VAR":
            if rest[1] != self.ups:
                return "ERR UNKNOWN-UPS\n"
            value = command.split(rest[2], 1)[1].strip().strip('"')[:64]
            with self.lock:
                self.vars[rest[2]] = value
            return "OK\n"
        if verb == "FSD" and rest == [self.ups]:
            with self.lock:
                if "FSD" not in self.vars["ups.status"].split():
                    self.vars["ups.status"] = "FSD " + self.vars["ups.status"]
            return "OK FSD-SET\n"
        if verb == "GET" and len(rest) == 3 and rest[0] == "VAR":
            if rest[1] != self.ups:
                return "ERR UNKNOWN-UPS\n"
            if rest[2] not in values:
                return "ERR VAR-NOT-SUPPORTED\n"
            return f'VAR {self.ups} {rest[2]} "{values[rest[2]]}"\n'
        return "ERR UNKNOWN-COMMAND\n"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class AtsSimulator:
    """The transfer switch's Modbus TCP side (pymodbus' server and simulator device, generic map)
    with a control to choose which input feeds and which inputs have voltage."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, unit: int = 1):
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        self.host, self.port, self.unit = host, port or free_port(host), unit
        self.registers = [0, 0, 0]
        self.set(feeding="input_a", input_a_live=True, input_b_live=True)

        async def serve_current_registers(function_code, start_address, address, count, current, set_values):
            # every read answers what the control set last (the map is read-only on a real ATS)
            for i in range(len(current)):
                if 0 <= start_address + i < len(self.registers):
                    current[i] = self.registers[start_address + i]
            return None

        def block(kind, count):
            return [SimData(0, count=count, values=0 if kind is DataType.REGISTERS else False, datatype=kind)]

        device = SimDevice(id=unit, simdata=(block(DataType.BITS, 1), block(DataType.BITS, 1),
                                             block(DataType.REGISTERS, 1), block(DataType.REGISTERS, 3)),
                           action=serve_current_registers)
        self._loop = asyncio.new_event_loop()
        self._server = None

        async def serve():
            # pymodbus binds its server to the running loop, so it is made inside it
            self._server = ModbusTcpServer(device, address=(self.host, self.port))
            await self._server.serve_forever()

        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(serve(),), name="ats-sim",
                                        daemon=True)
        self._thread.start()
        self._wait_listening()
        self.settings: dict[str, Any] = {"ATS_SOURCE": "modbus",
                                         "ATS_URL": f"modbus-tcp://{self.host}:{self.port}?unit={unit}"}

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("ATS simulator did not start")

    def set(self, *, feeding: str, input_a_live: bool, input_b_live: bool, alarm: bool = False) -> None:
        if feeding not in ("input_a", "input_b", "none"):
            raise ValueError("feeding: input_a, input_b or none")
        word = (input_a_live << 0) | (input_b_live << 1) | ((feeding == "input_a") << 2) \
            | ((feeding == "input_b") << 3) | (alarm << 4)
        self.registers = [word, 230 if input_a_live else 0, 230 if input_b_live else 0]

    def set_raw(self, word: int) -> None:
        self.registers = [word & 0xFFFF] + self.registers[1:]

    def stop(self) -> None:
        if self._server is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
