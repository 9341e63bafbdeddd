"""The kiosk's "out of service" switch, commanded from the monitoring hub (through ``cnap agent``
and the loopback API in terminal/views/internal.py).

While it is on, no new payment starts: it is one of the app's payment gates
(``KioskState.payment_gates``, the same list the UPS gate is on), so the pay flow shows why —
"Оплата тимчасово недоступна: <reason>" — while payments in flight finish and print, and the
catalogue keeps working. The reason is a word from :data:`REASONS`, shown through the interface
catalogue: free text from the hub never reaches a visitor's screen.

The switch survives a kiosk restart: a small JSON file in the instance folder, replaced whole
(write a temporary file, then rename). A file that cannot be read keeps payments closed (money is
not taken on a switch whose state is unknown) and says so in /healthz. Each change is written to
the staff audit log.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from flask import Flask

from terminal import i18n
from terminal.state import state

log = logging.getLogger("cnap.out_of_service")

FILE_NAME = "out_of_service.json"
REASONS = ("maintenance", "equipment_fault", "encashment", "network", "other")
# Who switched it: a hub or staff account name (monitoring/topics.py Account), nothing else.
BY = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_FILE_BYTES = 4096
UNREADABLE = "unreadable"

# Interface strings looked up under names built at run time, listed so that pybabel extracts them.
RUNTIME_KEYS = (
    i18n.N_("oos.reason.encashment"),
    i18n.N_("oos.reason.equipment_fault"),
    i18n.N_("oos.reason.maintenance"),
    i18n.N_("oos.reason.network"),
    i18n.N_("oos.reason.other"),
)


@dataclass(frozen=True)
class OutOfService:
    on: bool
    reason: str | None = None     # one of REASONS while on
    by: str | None = None         # the account that switched it last
    since: float | None = None    # when it was switched last (epoch seconds)
    error: str | None = None      # the file could not be read: payments stay closed

    def as_dict(self) -> dict:
        return asdict(self)


OFF = OutOfService(False)


def check(on, reason, by) -> str | None:
    """What is wrong with a command's values (a short English reason), or None."""
    if not isinstance(on, bool):
        return "on: true or false is required"
    if not isinstance(by, str) or not BY.fullmatch(by):
        return "by: an account name (a-z, 0-9, . _ -, at most 64) is required"
    if on and reason not in REASONS:
        return f"reason: one of {', '.join(REASONS)} is required"
    if not on and reason is not None and reason not in REASONS:
        return f"reason: one of {', '.join(REASONS)} or none"
    return None


class OutOfServiceSwitch:
    """The switch's state, in memory and in ``path``. ``audit(action, detail)`` is called once per
    change."""

    def __init__(self, path: Path, audit: Callable[[str, dict], None] | None = None,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self._audit = audit
        self._clock = clock
        self._lock = threading.Lock()
        self._state = self._load()

    def _load(self) -> OutOfService:
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return OFF
        except OSError as exc:
            return self._unreadable(f"{type(exc).__name__}")
        try:
            data = json.loads(raw) if len(raw) <= MAX_FILE_BYTES else None
            since = data.get("since") if isinstance(data, dict) else None
            if (not isinstance(data, dict) or check(data.get("on"), data.get("reason"), data.get("by"))
                    or not (since is None or (isinstance(since, (int, float)) and not isinstance(since, bool)))):
                return self._unreadable("not a switch state")
        except ValueError:
            return self._unreadable("not JSON")
        return OutOfService(data["on"], data.get("reason") if data["on"] else None, data["by"], since)

    def _unreadable(self, why: str) -> OutOfService:
        log.error("out of service: %s is %s: new payments stay refused until the switch is set again",
                  self.path, why)
        return OutOfService(True, "other", None, None, UNREADABLE)

    def current(self) -> OutOfService:
        return self._state

    def set(self, on: bool, reason: str | None, by: str) -> tuple[bool, str]:
        """Switch; ``(ok, message)``. Bad values are refused (ok False) and change nothing."""
        problem = check(on, reason, by)
        if problem:
            return False, problem
        with self._lock:
            before = self._state
            new = OutOfService(on, reason if on else None, by, self._clock())
            if before.on == new.on and before.reason == new.reason and before.error is None:
                return True, f"already {'on' if on else 'off'}"
            try:
                self._write(new)
            except OSError as exc:
                log.error("out of service: cannot write %s: %s", self.path, exc)
                return False, f"cannot save the switch: {type(exc).__name__}"
            self._state = new
        log.warning("out of service %s (reason %s) by %s", "ON" if on else "OFF", new.reason, by)
        if self._audit is not None:
            try:
                self._audit("out_of_service.on" if on else "out_of_service.off",
                            {"reason": new.reason, "by": by})
            except Exception:   # the switch has changed; a failed audit write is logged, not undone
                log.exception("out of service: audit entry failed")
        return True, f"out of service {'on' if on else 'off'}"

    def _write(self, value: OutOfService) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fresh = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"on": value.on, "reason": value.reason, "by": value.by, "since": value.since}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(fresh, self.path)   # whole or not at all

    def refusal(self) -> str | None:
        """The payment gate: why no new payment may start (the visitor's language), or None."""
        current = self._state
        if not current.on:
            return None
        return i18n.gettext("oos.refusal", reason=i18n.gettext(f"oos.reason.{current.reason or 'other'}"))

    def health(self) -> tuple[bool, dict]:
        # Switched on by the hub is an intended state, not a fault; an unreadable file is one.
        current = self._state
        return current.error is None, {"on": current.on, "reason": current.reason,
                                       **({"error": current.error} if current.error else {})}


def init_app(app: Flask) -> OutOfServiceSwitch:
    kiosk_state = state(app)

    def audit(action: str, detail: dict) -> None:
        if kiosk_state.staff is not None:
            kiosk_state.staff.audit(None, action, **detail)

    switch = OutOfServiceSwitch(Path(app.instance_path) / FILE_NAME, audit)
    kiosk_state.out_of_service = switch
    kiosk_state.payment_gates.append(switch.refusal)
    kiosk_state.health["out_of_service"] = switch.health
    return switch
