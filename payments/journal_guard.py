"""Journal writes for the till, and the journal-fault state a failed write puts it in.

A write that fails (disk full, I/O error, read-only file) is raised to the caller — nobody may
act on an event that is not on disk — and starts the fault state: the till takes no money until
a probe write succeeds again and the validator's re-delivered events have all been journaled
(docs/payments.md, "Journal faults")."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, TypeVar

from payments.journal import JournalError
from payments.streams import DEVICE_STREAM

log = logging.getLogger("cnap.payments")

JOURNAL_PROBE_S = 0.5  # how often a failed journal is tried again

T = TypeVar("T")


class JournalGuard:
    """Writes events through ``journal`` and keeps the fault state.

    The till's lock guards the state; the callbacks let the till react without this class
    knowing its devices: ``on_change`` (lock held) publishes a state change to the screens,
    ``on_first_fault`` stops taking bills, ``may_clear`` (lock held) says whether every device
    event whose delivery failed has been journaled since, ``on_cleared`` (lock held) resumes
    a cash payment."""

    def __init__(self, journal, lock: threading.RLock, *, on_change: Callable[[], None],
                 on_first_fault: Callable[[], None], may_clear: Callable[[], bool],
                 on_cleared: Callable[[], None]) -> None:
        self.journal = journal
        self.fault: str | None = None  # why writes fail now; None while they succeed
        self.faults = 0                # fault episodes since start
        self.closed = False
        self._lock = lock
        self._on_change = on_change
        self._on_first_fault = on_first_fault
        self._may_clear = may_clear
        self._on_cleared = on_cleared
        self._probe: threading.Thread | None = None

    def append(self, stream: str, kind: str, data: dict | None = None) -> int:
        """Journal one event durably; returns its journal id. A failure enters the fault state
        and is raised as JournalError."""
        try:
            return self.journal.append(stream, kind, data)
        except Exception as exc:
            self._failed(exc)
            if isinstance(exc, JournalError):
                raise
            raise JournalError(f"journal write failed: {exc}") from exc

    def enter_fault(self, reason: str) -> None:
        """The journal is known not to take writes (e.g. found so at start)."""
        self._failed(JournalError(reason))

    def retry_until_written(self, write: Callable[[], T]) -> T:
        """For outcomes that exist only in memory (a card result, a print result): keep trying
        until the journal takes them. Losing them would lose the record of real money."""
        while True:
            try:
                return write()
            except JournalError:
                if self.closed:
                    raise
                time.sleep(JOURNAL_PROBE_S)

    def try_clear(self) -> bool:
        """Called with the lock held. True once the fault is cleared."""
        if self.fault is None:
            return True
        if not self._may_clear():
            return False  # the device's re-delivery must be journaled first
        try:
            self.journal.append(DEVICE_STREAM, "journal_recovered", {"fault": self.fault})
        except Exception:
            return False
        log.warning("journal writes again after: %s", self.fault)
        self.fault = None
        self._on_change()
        self._on_cleared()
        return True

    def close(self) -> None:
        """Stop the probe and every retry loop (the till is closing)."""
        self.closed = True

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            first = self.fault is None
            self.fault = (str(exc) or type(exc).__name__)[:200]
            if first:
                self.faults += 1
            self._on_change()
        if not first:
            return
        log.error("journal write failed (%s): the kiosk takes no money until the journal writes again", self.fault)
        self._on_first_fault()
        with self._lock:
            if self._probe is None or not self._probe.is_alive():
                self._probe = threading.Thread(target=self._probe_journal, name="journal-probe", daemon=True)
                self._probe.start()

    def _probe_journal(self) -> None:
        """Try the journal now and then; the fault clears once a write succeeds and every
        device event whose delivery failed has been delivered (journaled) again."""
        while not self.closed:
            time.sleep(JOURNAL_PROBE_S)
            with self._lock:
                if self.fault is None or self.try_clear():
                    return
