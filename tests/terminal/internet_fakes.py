"""Fakes of the two things the kiosk's internet pages talk to: the window's browsing view (the
WindowPort contract of terminal/internet/port.py; the real window is tested on its own branch)
and the filtering proxy (start/update/stop/running)."""
from __future__ import annotations

import threading

from terminal.state import state


class FakeWindow:
    """Records each SessionRequest; ``emit`` plays the window's events to the kiosk."""

    def __init__(self, accept: bool = True):
        self.accept = accept
        self.requests = []
        self.ended: list[str] = []
        self._sink = None
        self._open = False
        self.lock = threading.Lock()

    def open(self, request, on_event) -> bool:
        with self.lock:
            if self._open or not self.accept:
                return False
            self.requests.append(request)
            self._sink, self._open = on_event, True
        return True

    def end(self, reason: str = "stopped") -> None:
        self.ended.append(reason)
        if self._open:
            self.emit({"type": "ended", "reason": reason, "seconds": 1.0})

    def is_open(self) -> bool:
        return self._open

    def emit(self, event: dict) -> None:
        if event.get("type") == "ended":
            self._open = False
        self._sink(event)


class FakeProxy:
    instances: list["FakeProxy"] = []

    """The surface of terminal/internet/proxy.py FilteringProxy the kiosk uses."""

    def __init__(self, allowlist, *, workdir, port=0, upstream="", binary="tinyproxy", max_clients=32,
                 on_event=None, on_down=None):
        self.allowlist, self.workdir, self.port = allowlist, workdir, port
        self.on_event, self.on_down = on_event, on_down
        self.updates = []
        self.running = False
        self.stopped = False
        FakeProxy.instances.append(self)

    def start(self) -> str:
        self.running = True
        return "http://127.0.0.1:3128"

    def update(self, allowlist) -> None:
        self.updates.append(allowlist)

    def stop(self) -> None:
        self.running, self.stopped = False, True


class BrokenProxy(FakeProxy):
    def start(self) -> str:
        raise FileNotFoundError("tinyproxy is not installed")


def make_ready(app, uplink: str = "up", window: FakeWindow | None = None, proxy=FakeProxy) -> FakeWindow:
    """The app as `cnap kiosk` with a browsing window would have it: a window port, a running
    (fake) proxy, and an agent answer with one uplink ``up`` (or ``down``, or no uplink watch)."""
    window = window or FakeWindow()
    kiosk_state = state(app)
    kiosk_state.internet_window = window
    browsing = kiosk_state.internet
    browsing._proxy_factory = proxy
    browsing.start_proxy()
    rows = {"up": [{"name": "a", "state": "up"}], "down": [{"name": "a", "state": "down"}]}
    answer = ({"controllers": {}} if uplink == "none" else
              {"controllers": {"uplinks": {"available": True, "state": "ok", "uplinks": rows[uplink]}}})
    browsing.uplinks._ask = lambda: answer
    return window
