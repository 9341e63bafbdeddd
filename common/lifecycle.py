"""Long-lived processes (`cnap agent`, `cnap hub`) stop the same way: SIGTERM (systemd) or SIGINT
(Ctrl+C) sets an event, the main thread wakes and stops the parts in order."""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def stop_on_signals(process: str, log: logging.Logger) -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs; the previous handlers come back after."""
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("%s: %s received, stopping", process, signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def wait(stop: threading.Event, poll_s: float = 1.0) -> None:
    """Blocks until ``stop`` is set; short waits keep the main thread responsive to signals."""
    while not stop.wait(poll_s):
        pass
