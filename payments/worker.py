"""One thread for the till's blocking device work (card operations, printing), done in the
order it was asked for, so a web request or the validator's poll thread never waits on it."""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

log = logging.getLogger("cnap.payments")


class DeviceWorker:
    def __init__(self, name: str = "till-worker") -> None:
        self._name = name
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def submit(self, job: Callable[[], None], what: str) -> None:
        """Run ``job`` after everything submitted before; ``what`` names it in the log should
        it raise."""
        self._queue.put((job, what))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until everything submitted so far has run (tests, recovery)."""
        done = threading.Event()
        self._queue.put((done.set, None))
        return done.wait(timeout)

    def close(self, timeout: float = 15.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, what = item
            try:
                job()
            except Exception:
                log.exception("device command %s failed", what)
