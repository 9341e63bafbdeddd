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


class EventEmitter:
    """Numbers events and hands them to subscribers; a failing subscriber never stops the driver."""

    def __init__(self, device: str):
        self.device = device
        self._seq = 0
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[DeviceEvent], None]] = []

    def subscribe(self, callback: Callable[[DeviceEvent], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def emit(self, kind: str, data: dict | None = None) -> DeviceEvent:
        with self._lock:
            self._seq += 1
            event = DeviceEvent(self._seq, self.device, kind, dict(data or {}), time.monotonic())
            subscribers = list(self._subscribers)
        log.info("%s event #%d %s %s", self.device, event.seq, kind, event.data)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # the caller's bug must not kill the poll thread
                log.exception("%s subscriber failed on %s", self.device, kind)
        return event
