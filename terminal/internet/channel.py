"""The control channel between `cnap kiosk` (the Flask app, parent process) and the kiosk window
(``python -m terminal.shell``, child process): a Unix socket pair carrying one JSON object per line.

Kiosk → window: ``{"op": "open", <SessionRequest fields>}`` (the allowlist as ``{"domains": […],
"ports": […]}``) and ``{"op": "end", "reason": …}``. Window → kiosk: the events of
terminal/internet/port.py, one per line.

``WindowChannel`` is the kiosk's WindowPort. It outlives window processes: ``run_window`` gives
every new window a new socket pair (``connect()``); when a window dies mid-session the channel
itself reports ``{"type": "ended", "reason": "error"}``, so the kiosk never waits for an ended
event that cannot come. No display, no window: the kiosk's ``internet_window`` stays None.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import asdict

from terminal.internet.allowlist import Allowlist
from terminal.internet.port import Event, EventSink, SessionRequest

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024          # one message; an allowlist of 500 long names fits easily
END_REASONS = ("user", "session_limit", "idle", "stopped", "error")
EVENT_TYPES = ("started", "blocked", "warning", "extended", "ended")


def encode(message: dict) -> bytes:
    return json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode() + b"\n"


def request_message(request: SessionRequest) -> dict:
    fields = asdict(request)
    fields["allowlist"] = {"domains": list(request.allowlist.domains), "ports": sorted(request.allowlist.ports)}
    return {"op": "open", **fields}


def request_from_message(message: dict) -> SessionRequest:
    """The SessionRequest an "open" message carries; ValueError/TypeError/KeyError when malformed."""
    fields = {name: value for name, value in message.items() if name != "op"}
    listed = fields.pop("allowlist")
    fields["allowlist"] = Allowlist(listed["domains"], listed["ports"])
    request = SessionRequest(**fields)
    for name in ("session_s", "idle_s", "warn_s", "extend_s"):
        value = getattr(request, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive whole number of seconds")
    if request.lang not in ("uk", "en"):
        raise ValueError("lang must be uk or en")
    for name in ("home_url", "proxy_url", "back_url"):
        if not isinstance(getattr(request, name), str):
            raise TypeError(f"{name} must be a string")
    return request


def read_lines(sock: socket.socket):
    """JSON objects from ``sock`` until it closes; a line that is too long or not an object ends
    the stream (the peer is broken, not a visitor)."""
    buffer = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                log.error("internet channel: a message that is not JSON; closing")
                return
            if not isinstance(message, dict):
                return
            yield message
        if len(buffer) > MAX_LINE:
            log.error("internet channel: a message over %s bytes; closing", MAX_LINE)
            return


class WindowChannel:
    """The kiosk side (WindowPort). Thread-safe; events reach ``on_event`` from a reader thread."""

    def __init__(self, clock=time.monotonic):
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._sink: EventSink | None = None
        self._opened_at: float | None = None
        self._session_sock: socket.socket | None = None   # the window the open session lives in
        self._clock = clock

    # --- window processes ------------------------------------------------------------------
    def connect(self) -> socket.socket:
        """A fresh socket pair for a new window process: returns the window's end (pass its
        fileno() with pass_fds, then close it here). The previous window's end is dropped."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with self._lock:
            previous, self._sock = self._sock, ours
        if previous is not None:
            _close(previous)
        threading.Thread(target=self._read, args=(ours,), name="internet-window-events", daemon=True).start()
        return theirs

    def disconnect(self) -> None:
        """The window is gone for good (the kiosk is stopping)."""
        with self._lock:
            previous, self._sock = self._sock, None
        if previous is not None:
            _close(previous)

    def _read(self, sock: socket.socket) -> None:
        for event in read_lines(sock):
            if event.get("type") not in EVENT_TYPES:
                continue
            self._deliver(sock, event)
        # The window process ended (or its socket was replaced): a session it had open is over.
        with self._lock:
            if self._sock is sock:
                self._sock = None
        _close(sock)
        self._deliver_lost(sock)

    def _deliver(self, sock: socket.socket, event: Event) -> None:
        with self._lock:
            if sock is not self._session_sock:
                return  # a window that has no session of ours
            sink = self._sink
            if event["type"] == "ended":
                if self._opened_at is None:
                    return  # exactly one ended per session
                self._opened_at, self._sink, self._session_sock = None, None, None
        if sink is not None:
            _call(sink, event)

    def _deliver_lost(self, sock: socket.socket) -> None:
        with self._lock:
            if self._opened_at is None or sock is not self._session_sock:
                return
            seconds = round(self._clock() - self._opened_at, 1)
            sink, self._opened_at, self._sink, self._session_sock = self._sink, None, None, None
        log.error("internet: the window process ended during a browsing session")
        if sink is not None:
            _call(sink, {"type": "ended", "reason": "error", "seconds": seconds})

    # --- WindowPort ----------------------------------------------------------------------------
    def open(self, request: SessionRequest, on_event: EventSink) -> bool:
        with self._lock:
            if self._opened_at is not None or self._sock is None:
                return False
            try:
                self._sock.sendall(encode(request_message(request)))
            except OSError:
                return False
            self._opened_at, self._sink, self._session_sock = self._clock(), on_event, self._sock
        return True

    def end(self, reason: str = "stopped") -> None:
        if reason not in END_REASONS:
            reason = "stopped"
        with self._lock:
            if self._opened_at is None or self._session_sock is None:
                return
            try:
                self._session_sock.sendall(encode({"op": "end", "reason": reason}))
            except OSError:
                pass  # the reader sees the window gone and reports the session ended

    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _call(sink: EventSink, event: Event) -> None:
    try:
        sink(event)
    except Exception:
        log.exception("internet: the session's event handler failed")
