"""Three make-believe providers on loopback, for ``cnap demo`` and tests without namespaces.

Nothing on the machine's network changes. Each simulated uplink is a loopback source address
(127.0.0.11, .12, .13; all of 127/8 is local on Linux) that the prober binds its probes to; the
probe targets are small HTTP servers on 127.0.0.1 that look at the caller's address to know
which "uplink" a probe came through, and then answer, answer late, or stay silent as scripted
(``set_fault``). The controller runs in report_only mode against them, so the whole watch —
probes, windows, decisions, status, events — works exactly as on real links.
"""
from __future__ import annotations

import random
import socketserver
import threading
import time
from dataclasses import dataclass
from typing import Any

NAMES = ("ukrtelecom", "kyivstar", "lifecell")
SILENT_HOLD_S = 5.0


@dataclass
class Fault:
    loss: float = 0.0        # share of probes that get no answer (0–1)
    cut: bool = False        # no answer at all
    delay_ms: float = 0.0    # answer this late


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sim: UplinkSimulator = self.server.sim  # type: ignore[attr-defined]
        self.request.settimeout(SILENT_HOLD_S)
        try:
            if not self.request.recv(1024):
                return
        except OSError:
            return
        fault = sim.fault_for(self.client_address[0])
        if fault.cut or sim.rng.random() < fault.loss:
            # A lost probe: say nothing until the prober gives up and resets the connection.
            try:
                self.request.recv(1024)
            except OSError:
                pass
            return
        if fault.delay_ms:
            time.sleep(min(fault.delay_ms, 10_000) / 1000)
        try:
            self.request.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        except OSError:
            pass


class QuietServer(socketserver.ThreadingTCPServer):
    """A probe target: threads that never hold up a stop, the port reusable at once."""
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class UplinkSimulator:
    def __init__(self, names=NAMES, targets: int = 3, seed: int | None = None,
                 interval_ms: int = 500, stable_s: int = 10) -> None:
        self.rng = random.Random(seed)
        self.sources = {f"127.0.0.{11 + i}": name for i, name in enumerate(names)}
        self.faults: dict[str, Fault] = {name: Fault() for name in names}
        self._lock = threading.Lock()
        self.servers: list[QuietServer] = []
        self.threads: list[threading.Thread] = []
        for _ in range(targets):
            server = QuietServer(("127.0.0.1", 0), _Handler)
            server.sim = self  # type: ignore[attr-defined]
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name="uplinks-sim", daemon=True)
            thread.start()
            self.servers.append(server)
            self.threads.append(thread)
        self.settings: dict[str, Any] = {
            "UPLINKS": [f"{name} src={src}" for src, name in self.sources.items()],
            "UPLINKS_TARGETS": [f"http://127.0.0.1:{s.server_address[1]}/" for s in self.servers],
            "UPLINKS_MODE": "report_only",
            "UPLINKS_PROBE_INTERVAL_MS": interval_ms,
            "UPLINKS_STABLE_S": stable_s,
        }

    @classmethod
    def start(cls, settings: dict[str, Any] | None = None) -> "UplinkSimulator":
        return cls()

    def fault_for(self, address: str) -> Fault:
        with self._lock:
            name = self.sources.get(address)
            return Fault(**vars(self.faults[name])) if name else Fault()

    def set_fault(self, uplink: str, *, loss: float = 0.0, cut: bool = False, delay_ms: float = 0.0) -> None:
        """Script an uplink: ``loss`` 0–1 of its probes unanswered, ``cut`` none answered,
        ``delay_ms`` answers late. ``set_fault(name)`` heals it."""
        if uplink not in self.faults:
            raise KeyError(uplink)
        if not 0 <= loss <= 1 or delay_ms < 0:
            raise ValueError("loss is 0–1 and delay_ms not negative")
        with self._lock:
            self.faults[uplink] = Fault(loss=loss, cut=cut, delay_ms=delay_ms)

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for thread in self.threads:
            thread.join(5)
