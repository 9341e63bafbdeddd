"""The survey store's clock: wall time that does not jump while tablets are talking to it.

Everything the store compares — an answer's time against its shift's start and end, the repeat
and burst windows, the time the server received an answer, "older than the offline window" —
is measured on this one timeline. It follows the wall clock once (at start) and from then on the
monotonic clock, so an NTP step of hours, backwards or forwards, in the middle of a shift or a
burst moves nothing. Slow NTP corrections are followed anyway (the monotonic clock is slewed
with the wall clock; only steps are ignored).

A step is adopted when nothing is going on: when the store has had no activity (answers, shift
starts and ends) for ``quiet_s`` seconds, or none yet since it opened. That covers the appliance
that boots with a wrong real-time clock and gets NTP a minute later, without letting a step in
the middle of the working day split a burst or push answers out of their shift. The store moves
its open shifts by an adopted step so they stay on the timeline.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("cnap.surveys")

STEP_TOLERANCE_S = 2.0      # wall and steady time further apart than this: the wall clock stepped


class SteadyClock:
    def __init__(self, wall: Callable[[], float] | None = None, monotonic: Callable[[], float] | None = None,
                 quiet_s: float = 3600):
        # Looked up at call time, so a test that replaces time.time/time.monotonic is obeyed.
        self._wall = wall or (lambda: time.time())
        self._monotonic = monotonic or (lambda: time.monotonic())
        self.quiet_s = quiet_s
        self._lock = threading.Lock()
        self._anchor_wall = self._wall()
        self._anchor_mono = self._monotonic()
        self._last_activity: float | None = None
        self._step_noted = 0.0

    def read(self) -> tuple[float, float]:
        """(now on the steady timeline, the wall-clock step adopted by this reading or 0)."""
        with self._lock:
            mono, wall = self._monotonic(), self._wall()
            steady = self._anchor_wall + (mono - self._anchor_mono)
            step = wall - steady
            if abs(step) <= STEP_TOLERANCE_S:
                return steady, 0.0
            quiet = self._last_activity is None or mono - self._last_activity >= self.quiet_s
            if quiet:
                self._anchor_wall, self._anchor_mono = wall, mono
                self._step_noted = 0.0
                log.warning("survey clock: adopted a wall-clock step of %+.0f s (no survey activity)", step)
                return wall, step
            if abs(step - self._step_noted) > STEP_TOLERANCE_S:
                self._step_noted = step
                log.warning("survey clock: the wall clock stepped by %+.0f s; survey times keep the steady "
                            "timeline until the tablets are quiet", step)
            return steady, 0.0

    def now(self) -> float:
        return self.read()[0]

    def monotonic(self) -> float:
        """For durations measured on the server (rate limits)."""
        return self._monotonic()

    def touch(self) -> None:
        """Something happened that a step must not split (an answer, a shift start or end)."""
        with self._lock:
            self._last_activity = self._monotonic()
