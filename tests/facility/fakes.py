"""Fake facility controllers that follow facility/base.py, for the runner, the agent and the
Facility screen while the real controller packages live on other branches."""
from __future__ import annotations

import sys
import threading
import time
import types
from datetime import datetime, timezone


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


class FakeController:
    """Counts polls; ``on_poll`` runs inside each poll (raise, block, …); keeps commands given."""

    def __init__(self, name: str, interval_s: float = 0.02, state: str = "normal", on_poll=None,
                 extra: dict | None = None):
        self.name, self.interval_s, self.state = name, interval_s, state
        self.on_poll = on_poll
        self.extra = dict(extra or {})
        self.polls = 0
        self.closed = False
        self.commands: list[tuple[str, dict]] = []
        self.events: list[dict] = []
        self.polled = threading.Condition()

    def poll(self, now: float) -> None:
        if self.on_poll is not None:
            self.on_poll(self)
        with self.polled:
            self.polls += 1
            self.polled.notify_all()

    def wait_polls(self, count: int, timeout: float = 5.0) -> bool:
        with self.polled:
            return self.polled.wait_for(lambda: self.polls >= count, timeout)

    def status(self) -> dict:
        return {"available": True, "state": self.state, "alerts": [], "events": list(self.events),
                "polls": self.polls, **self.extra}

    def command(self, action: str, args: dict) -> dict:
        self.commands.append((action, args))
        if action != "override":
            return {"ok": False, "message": f"unknown action {action!r}"}
        self.state = "override"
        self.events.insert(0, {"at": iso(time.time()), "kind": "override",
                               "text_uk": f"Ручний режим: {args.get('level')} % на {args.get('minutes')} хв",
                               "text_en": f"Override: {args.get('level')} % for {args.get('minutes')} min"})
        return {"ok": True, "message": f"level {args.get('level')} for {args.get('minutes')} min"}

    def close(self) -> None:
        self.closed = True


class FakeSimulator:
    def __init__(self, settings: dict):
        self.settings = settings
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def install_fake_package(monkeypatch, module_name: str, build=None, start_simulator=None) -> types.ModuleType:
    """A controller package importable under ``module_name`` for this test only."""
    module = types.ModuleType(module_name)
    if build is not None:
        module.build = build
    if start_simulator is not None:
        module.start_simulator = start_simulator
    monkeypatch.setitem(sys.modules, module_name, module)
    return module


def wait_until(condition, timeout: float = 5.0, step: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return condition()
