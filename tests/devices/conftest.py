import threading
import time

import pytest


class EventLog:
    """Collects DeviceEvents from a driver's thread; tests wait on conditions, never on sleeps."""

    def __init__(self):
        self.events = []
        self._cond = threading.Condition()

    def __call__(self, event):
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def kinds(self):
        with self._cond:
            return [e.kind for e in self.events]

    def of(self, kind):
        with self._cond:
            return [e for e in self.events if e.kind == kind]

    def wait_for(self, kind, count=1, timeout=5.0, **data):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [e for e in self.events if e.kind == kind
                        and all(e.data.get(k) == v for k, v in data.items())]
                if len(hits) >= count:
                    return hits[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind} {data} (x{count}) in {self.kinds()}")
                self._cond.wait(left)


def wait_until(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def events():
    return EventLog()


@pytest.fixture(autouse=True)
def no_leftover_device_threads():
    """Like pymodbus' conftest: a test must stop every poll loop and simulator it started."""
    yield
    deadline = time.monotonic() + 3
    prefixes = ("ccnet-poll", "sim-", "ecr-", "sim-http")
    while time.monotonic() < deadline:
        alive = [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"threads left running: {alive}")
