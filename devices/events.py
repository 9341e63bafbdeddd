"""Typed events and status shared by every driver."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceEvent:
    seq: int  # strictly increasing per driver instance
    device: str  # "bill_validator" | "card_terminal" | "printer"
    kind: str
    data: dict
    at: float  # time.monotonic()


@dataclass(frozen=True)
class DeviceStatus:
    online: bool
    state: str
    last_error: str | None
    detail: dict = field(default_factory=dict)


class DeliveryError(Exception):
    """One or more subscribers raised on an event: the host could not make it durable."""

    def __init__(self, event: DeviceEvent, errors: list[BaseException]):
        self.event = event
        self.errors = errors
        super().__init__("; ".join(f"{type(e).__name__}: {e}" for e in errors))


class EventEmitter:
    """Numbers events and hands them to subscribers.

    A subscriber that raises is *not* hidden: ``deliver`` calls every subscriber, then raises
    ``DeliveryError`` so the driver can decide (the bill validator withholds its ACK and
    re-delivers the same event later; see its module docstring). Subscribers must therefore
    recognise a re-delivery by ``(device, seq)``. Only the bill validator publishes events today;
    the card terminal and printer drivers answer calls directly and only share ``DeviceStatus``.
    """

    def __init__(self, device: str):
        self.device = device
        self._seq = 0
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[DeviceEvent], None]] = []

    def subscribe(self, callback: Callable[[DeviceEvent], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def make(self, kind: str, data: dict | None = None) -> DeviceEvent:
        """A new event with the next sequence number (not delivered yet)."""
        with self._lock:
            self._seq += 1
            return DeviceEvent(self._seq, self.device, kind, dict(data or {}), time.monotonic())

    def deliver(self, event: DeviceEvent) -> None:
        """Hand ``event`` to every subscriber; raise DeliveryError if any of them raised."""
        with self._lock:
            subscribers = list(self._subscribers)
        log.info("%s event #%d %s %s", self.device, event.seq, event.kind, event.data)
        errors: list[BaseException] = []
        for callback in subscribers:
            try:
                callback(event)
            except BaseException as exc:  # noqa: BLE001 - even SystemExit must not end a poll thread
                # collected, never lost: the caller decides what it means
                log.warning("%s subscriber failed on #%d %s: %r", self.device, event.seq, event.kind, exc)
                errors.append(exc)
        if errors:
            raise DeliveryError(event, errors)

    def emit(self, kind: str, data: dict | None = None) -> DeviceEvent:
        """make + deliver; raises DeliveryError like ``deliver``."""
        event = self.make(kind, data)
        self.deliver(event)
        return event
