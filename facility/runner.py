"""Runs the facility controllers: one thread per controller calls ``poll`` every ``interval_s``;
status is served from the snapshot each thread takes right after its poll, so a slow or stuck
controller never delays the others or a ``/status`` request.

A controller must never raise (facility/base.py), but the runner does not rely on it: a poll,
status or command that raises is caught and logged, and the controller shows as unavailable
(alert ``poll_failed``) until a poll goes through again. A poll still running after
``STUCK_AFTER_INTERVALS`` intervals shows it as unavailable too (alert ``poll_stuck``).

The runner calls one controller's ``poll``, ``status``, ``command`` and ``close`` one at a time
(a lock per controller), so controllers need no locking of their own for the runner's sake.
After every poll and command, each function in ``listeners`` gets ``(name, snapshot)`` on the
controller's thread: the seam for reporting (MQTT, issue "monitoring") without touching the runner.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import import_module
from typing import Any, Callable, Iterable, Mapping

from facility.base import UNAVAILABLE, Controller

log = logging.getLogger("cnap.agent")

STARTING = "starting"           # the state shown before a controller's first poll has ended
STUCK_AFTER_INTERVALS = 3        # a poll running longer than this many intervals is stuck
RUNNER_EVENTS_KEPT = 20          # the runner's own events per controller (poll failures, recoveries)
COMMAND_WAIT_S = 10.0            # how long a command waits for a poll in progress

StatusListener = Callable[[str, dict], None]


def utc_iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def load_controllers(settings: Mapping[str, Any], modules: Iterable[str] | None = None
                     ) -> tuple[list[Controller], dict[str, str]]:
    """Import each controller package and ``build(settings)`` it. Returns the controllers built
    and, by name, the reason each other one is unavailable; never raises."""
    if modules is None:
        from facility import CONTROLLERS as modules
    controllers: list[Controller] = []
    unavailable: dict[str, str] = {}
    for module_name in modules:
        name = module_name.rsplit(".", 1)[-1]
        try:
            module = import_module(module_name)
        except Exception as exc:  # missing package, or one that fails at import
            reason = f"cannot import {module_name}: {type(exc).__name__}: {exc}"
            log.error("controller %s unavailable: %s", name, reason)
            unavailable[name] = reason
            continue
        try:
            controller = module.build(dict(settings))
        except Exception as exc:
            log.exception("controller %s unavailable: build failed", name)
            unavailable[name] = f"build failed: {type(exc).__name__}: {exc}"
            continue
        problem = _contract_problem(controller)
        if problem is None and controller.name in {c.name for c in controllers} | set(unavailable):
            problem = f"a second controller named {controller.name!r}"
        if problem:
            log.error("controller %s unavailable: %s", name, problem)
            unavailable[name] = problem
            _close_quietly(controller)
            continue
        controllers.append(controller)
    return controllers, unavailable


def _contract_problem(controller: Any) -> str | None:
    if not isinstance(controller, Controller):
        return "build() did not return a Controller (name, interval_s, poll, status, command, close)"
    if not isinstance(controller.name, str) or not controller.name:
        return "the controller has no name"
    interval = controller.interval_s
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not (
            math.isfinite(interval) and interval > 0):
        return f"interval_s must be a positive number of seconds, not {interval!r}"
    return None


def _finite(value: Any) -> Any:
    """NaN and infinities (a sensor with no reading) become null, so one odd number does not cost
    the whole status; anything else that is not JSON still fails the round trip."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _close_quietly(controller: Any) -> None:
    try:
        controller.close()
    except Exception:
        log.exception("closing a rejected controller failed")


@dataclass(eq=False)
class _Slot:
    name: str
    controller: Controller | None          # None: not loaded (``fault`` says why)
    fault: str | None = None               # why the runner shows it unavailable
    alert: str | None = None               # the runner's alert word for ``fault``
    snapshot: dict = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)   # the runner's own, newest first
    polls: int = 0
    poll_started: float | None = None      # monotonic, while a poll runs
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None


class Runner:
    def __init__(self, controllers: Iterable[Controller], unavailable: Mapping[str, str] | None = None, *,
                 clock: Callable[[], float] = time.time, stop_timeout_s: float = 10.0,
                 command_wait_s: float = COMMAND_WAIT_S, order: Iterable[str] = ()):
        self.clock = clock
        self.stop_timeout_s = stop_timeout_s
        self.command_wait_s = command_wait_s
        self.listeners: list[StatusListener] = []
        self._slots: dict[str, _Slot] = {}
        for controller in controllers:
            self._slots[controller.name] = _Slot(controller.name, controller)
        for name, reason in (unavailable or {}).items():
            self._slots[name] = _Slot(name, None, fault=reason, alert="not_loaded")
        # Status lists controllers in ``order`` (FACILITY_CONTROLLERS), whether they loaded or not.
        rank = {name: number for number, name in enumerate(order)}
        self._slots = dict(sorted(self._slots.items(), key=lambda item: rank.get(item[0], len(rank))))
        self._stop = threading.Event()
        self._started = False

    # --- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for slot in self._slots.values():
            if slot.controller is None:
                continue
            slot.thread = threading.Thread(target=self._run, args=(slot,), name=f"cnap-{slot.name}",
                                           daemon=True)
            slot.thread.start()

    def stop(self) -> None:
        """Stop polling, wait (up to ``stop_timeout_s`` in all) for polls in progress, then close
        every controller (its equipment left in its safe state). Safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        deadline = time.monotonic() + self.stop_timeout_s
        for slot in self._slots.values():
            if slot.thread is not None:
                slot.thread.join(max(0.0, deadline - time.monotonic()))
                if slot.thread.is_alive():
                    log.error("controller %s: poll still running at stop; closing it anyway", slot.name)
        for slot in self._slots.values():
            if slot.controller is None:
                continue
            locked = slot.lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
            try:
                slot.controller.close()
            except Exception:
                log.exception("controller %s: close failed", slot.name)
            finally:
                if locked:
                    slot.lock.release()
        log.info("facility controllers stopped")

    def __enter__(self) -> "Runner":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- polling --------------------------------------------------------------------------
    def _run(self, slot: _Slot) -> None:
        interval = float(slot.controller.interval_s)
        due = time.monotonic()
        while not self._stop.is_set():
            self.poll_now(slot.name)
            due += interval
            now = time.monotonic()
            if due < now:  # the poll overran: go on from now rather than catch up in a burst
                due = now
            self._stop.wait(due - now)

    def poll_now(self, name: str) -> None:
        """One poll of one controller, then a fresh snapshot for status and listeners."""
        slot = self._slots[name]
        with slot.lock:
            slot.poll_started = time.monotonic()
            try:
                slot.controller.poll(self.clock())
            except Exception as exc:
                log.exception("controller %s: poll raised (a controller must not); unavailable", name)
                self._set_fault(slot, f"poll raised {type(exc).__name__}: {exc}", "poll_failed")
            else:
                if slot.alert == "poll_failed":
                    self._clear_fault(slot)
            finally:
                slot.poll_started = None
                slot.polls += 1
            snapshot = self._take_snapshot(slot)
        self._notify(name, snapshot)

    def _set_fault(self, slot: _Slot, reason: str, alert: str) -> None:
        if slot.alert != alert:
            self._event(slot, alert, f"Помилка контролера: {reason}", f"Controller fault: {reason}")
        slot.fault, slot.alert = reason, alert

    def _clear_fault(self, slot: _Slot) -> None:
        slot.fault = slot.alert = None
        self._event(slot, "recovered", "Контролер знову працює", "The controller works again")

    def _event(self, slot: _Slot, kind: str, text_uk: str, text_en: str) -> None:
        slot.events.insert(0, {"at": utc_iso(self.clock()), "kind": kind, "text_uk": text_uk,
                               "text_en": text_en})
        del slot.events[RUNNER_EVENTS_KEPT:]

    def _take_snapshot(self, slot: _Slot) -> dict:
        """The controller's status, checked and copied (JSON round trip), with the runner's view."""
        try:
            raw = slot.controller.status()
            snapshot = json.loads(json.dumps(_finite(raw), allow_nan=False))
            if not isinstance(snapshot, dict):
                raise TypeError(f"status() gave {type(raw).__name__}, not a dict")
        except Exception as exc:
            log.exception("controller %s: status() failed", slot.name)
            self._set_fault(slot, f"status failed: {type(exc).__name__}: {exc}", "status_failed")
            snapshot = {}
        else:
            if slot.alert == "status_failed":
                self._clear_fault(slot)
        snapshot["polled_at"] = utc_iso(self.clock())
        slot.snapshot = snapshot
        return self._view(slot)

    def _view(self, slot: _Slot) -> dict:
        """What status shows for a slot: its last snapshot, with the runner's faults on top."""
        view = dict(slot.snapshot)
        view["available"] = view.get("available") is True
        if not isinstance(view.get("state"), str) or not view["state"]:
            view["state"] = STARTING if slot.controller is not None and slot.polls == 0 else UNAVAILABLE
        alerts = [a for a in view.get("alerts", []) if isinstance(a, str)] if isinstance(
            view.get("alerts"), list) else []
        events = [e for e in view.get("events", []) if isinstance(e, dict)] if isinstance(
            view.get("events"), list) else []
        alert, fault = slot.alert, slot.fault
        started = slot.poll_started
        if (alert is None and started is not None and slot.controller is not None
                and time.monotonic() - started > STUCK_AFTER_INTERVALS * float(slot.controller.interval_s)):
            alert, fault = "poll_stuck", "a poll has been running for {:.0f} s".format(time.monotonic() - started)
        if alert:
            view.update(available=False, state=UNAVAILABLE, fault=fault)
            alerts = alerts + [alert] if alert not in alerts else alerts
        view["alerts"] = alerts
        view["events"] = sorted(slot.events + events, key=lambda e: str(e.get("at", "")), reverse=True)
        return view

    def _notify(self, name: str, snapshot: dict) -> None:
        for listener in list(self.listeners):
            try:
                listener(name, snapshot)
            except Exception:
                log.exception("status listener %r failed", listener)

    # --- what the agent serves ------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._slots)

    def status(self) -> dict:
        """Every controller's latest snapshot, by name; never waits for a controller."""
        return {"at": utc_iso(self.clock()),
                "controllers": {name: self._view(slot) for name, slot in self._slots.items()}}

    def wait_first_polls(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every running controller has been polled once, so
        what is reported at start is what the equipment says; False if some have not."""
        deadline = time.monotonic() + timeout
        while any(slot.controller is not None and slot.polls == 0 for slot in self._slots.values()):
            if time.monotonic() >= deadline or self._stop.wait(0.05):
                return False
        return True

    def polls(self, name: str) -> int:
        return self._slots[name].polls

    def command(self, name: str, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """Pass an operator's command to a controller; ``{"ok": bool, "message": str}``, never raises."""
        slot = self._slots.get(name)
        if slot is None:
            return {"ok": False, "message": f"no controller {name!r}"}
        if slot.controller is None:
            return {"ok": False, "message": f"controller {name} is unavailable: {slot.fault}"}
        if self._stop.is_set():
            return {"ok": False, "message": "the agent is stopping"}
        if not slot.lock.acquire(timeout=self.command_wait_s):
            return {"ok": False, "message": f"controller {name} is busy (a poll is still running)"}
        try:
            try:
                result = slot.controller.command(action, dict(args))
            except Exception as exc:
                log.exception("controller %s: command %r raised (a controller must not)", name, action)
                result = {"ok": False, "message": f"the controller failed: {type(exc).__name__}"}
            if not (isinstance(result, dict) and isinstance(result.get("ok"), bool)):
                log.error("controller %s: command %r gave %r, not {ok, message}", name, action, result)
                result = {"ok": False, "message": "the controller gave no clear answer"}
            result = {"ok": result["ok"], "message": str(result.get("message", ""))}
            snapshot = self._take_snapshot(slot)
        finally:
            slot.lock.release()
        log.info("controller %s: command %s → %s", name, action, "ok" if result["ok"] else "refused")
        self._notify(name, snapshot)
        return result
