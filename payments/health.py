"""One verdict per device: the rule that says whether a device can serve a visitor right now.

``/healthz`` (and through it the monitoring agent), the till's availability on the confirm screen
and the service-mode self-test all read a device's health from here, so they cannot disagree
(before, a printer with its cover open passed /healthz and failed the self-test).

Each ``*_health`` function takes what the driver reports (and, for the validator, the fault the
till learned from its events) and returns a :class:`DeviceHealth`. Nothing here talks to a device
or moves money; the till gathers the inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NOT_CONFIGURED = "not_configured"


@dataclass(frozen=True)
class DeviceHealth:
    device: str
    configured: bool
    ok: bool
    state: str                      # a short machine word: idle, offline, paper_out, cover_open, …
    detail: dict[str, Any] = field(default_factory=dict)

    def as_check(self) -> tuple[bool, dict]:
        """The (ok, detail) pair of a /healthz check. A device that is not configured is not a
        failure: the kiosk simply does not offer what it would do."""
        return (self.ok or not self.configured), {"configured": self.configured, "state": self.state,
                                                   **self.detail}


def not_configured(device: str) -> DeviceHealth:
    return DeviceHealth(device, False, False, NOT_CONFIGURED)


def validator_health(status, bill_table: list[int], fault: str | None) -> DeviceHealth:
    """Takes cash when the driver is online, knows its bill table, and no fault event (jam,
    cassette out or full, failure, an unknown stacked bill) is open."""
    online = bool(getattr(status, "online", False))
    state = str(getattr(status, "state", "unknown"))
    ok = online and not fault and bool(bill_table)
    if fault:
        state = fault
    elif online and not bill_table:
        state = "no_bill_table"
    elif not online:
        state = state if state not in ("idle", "disabled") else "offline"
    return DeviceHealth("bill_validator", True, ok, state,
                        {"fault": fault, "bills": list(bill_table),
                         "error": getattr(status, "last_error", None)})


def card_health(status, pinged: bool | None = None) -> DeviceHealth:
    """Takes cards when the terminal is online; when the self-test has just asked it (``pinged``:
    its PingDevice answered or not), that fresh answer decides."""
    online = bool(getattr(status, "online", False))
    ok = online if pinged is None else bool(pinged)
    state = "online" if ok else "offline"
    detail: dict[str, Any] = {"driver_state": str(getattr(status, "state", "unknown"))}
    if pinged is not None:
        detail["ping"] = bool(pinged)
    return DeviceHealth("card_terminal", True, ok, state, detail)


def printer_health(status: dict) -> DeviceHealth:
    """Prints when online, with paper, cover closed, no error. Paper running low still prints."""
    if not status.get("online"):
        state = "offline"
    elif status.get("paper") == "out":
        state = "paper_out"
    elif status.get("cover_open"):
        state = "cover_open"
    else:
        state = "ready"
    return DeviceHealth("printer", True, state == "ready", state,
                        {"paper": status.get("paper"), "cover_open": bool(status.get("cover_open")),
                         "error": status.get("error")})
