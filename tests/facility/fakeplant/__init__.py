"""Three fake controller packages (ventilation, power, uplinks) importable by a `cnap agent` or
`cnap demo` child process through FACILITY_CONTROLLERS, e.g.
CNAP_FACILITY_CONTROLLERS=tests.facility.fakeplant.ventilation,tests.facility.fakeplant.power.
With FAKEPLANT_MARKS set to a folder, ``close()`` and a simulator's ``stop()`` leave a file there,
so a test sees what another process did."""
from __future__ import annotations

import os
from pathlib import Path

from tests.facility.fakes import FakeController, FakeSimulator


def _mark(word: str) -> None:
    folder = os.environ.get("FAKEPLANT_MARKS")
    if folder:
        Path(folder, word).write_text(str(os.getpid()))


class MarkingController(FakeController):
    def close(self) -> None:
        super().close()
        _mark(f"{self.name}.closed")


class MarkingSimulator(FakeSimulator):
    def __init__(self, name: str, settings: dict):
        super().__init__(settings)
        self.name = name
        _mark(f"{name}.simulator")

    def stop(self) -> None:
        super().stop()
        _mark(f"{self.name}.simulator_stopped")


def package(name: str, extra: dict | None = None):
    def build(settings: dict) -> MarkingController:
        # What the simulator asked for reaches the controller (through the agent's environment).
        return MarkingController(name, interval_s=0.2,
                                 extra={**(extra or {}), "stop_timeout_s": settings.get("AGENT_STOP_TIMEOUT_S")})

    def start_simulator(settings: dict) -> MarkingSimulator:
        return MarkingSimulator(name, {"AGENT_STOP_TIMEOUT_S": 7.5})

    return build, start_simulator
