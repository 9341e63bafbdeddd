"""The device's side of the wire: a loopback TCP socket or a pty, served by one thread.

Every simulator subclasses ``SimulatorBase`` and implements ``on_data`` (bytes from the host)
and optionally ``tick`` (time-driven behaviour). Writes may be delayed with ``send_later`` so a
"slow device" is a property of the simulator, not of the test.
"""
from __future__ import annotations

import heapq
import logging
import os
import select
import socket
import threading
import time
import tty

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
TICK_S = 0.005


class SimulatorBase:
    name = "device"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._master_fd: int | None = None
        self._slave_fd: int | None = None
        self._pending: list[tuple[float, int, bytes]] = []
        self._pending_seq = 0
        self.url: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0

    # ----------------------------------------------------------------- lifecycle
    def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if host not in LOOPBACK_HOSTS:
            raise ValueError("simulators listen on loopback only")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(4)
        self._listener = listener
        self.url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
        self._start_thread()
        return self.url

    def start_pty(self) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass as they are
        self._master_fd, self._slave_fd = master, slave
        self.url = os.ttyname(slave)
        self._start_thread()
        return self.url

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        for sock in (self._client, self._listener):
            if sock:
                try:
                    sock.close()
                except OSError:
                    pass
        for fd in (self._master_fd, self._slave_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._client = self._listener = None
        self._master_fd = self._slave_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.name}", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- subclass hooks
    def on_data(self, data: bytes) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Time-driven behaviour; called every few milliseconds under ``self.lock``."""

    def on_connect(self) -> None:
        """A new host connection (TCP only)."""

    # ----------------------------------------------------------------- output
    def send(self, data: bytes) -> None:
        """Write now (called from the simulator thread)."""
        if not data:
            return
        self.bytes_out += len(data)
        try:
            if self._client is not None:
                self._client.sendall(data)
            elif self._master_fd is not None:
                os.write(self._master_fd, data)
        except OSError as exc:
            log.debug("%s: write failed: %s", self.name, exc)

    def send_later(self, delay_s: float, data: bytes) -> None:
        if delay_s <= 0:
            self.send(data)
            return
        self._pending_seq += 1
        heapq.heappush(self._pending, (time.monotonic() + delay_s, self._pending_seq, data))

    def drop_pending(self) -> None:
        self._pending.clear()

    # ----------------------------------------------------------------- loop
    def _run(self) -> None:
        while not self._stop.is_set():
            readers = []
            if self._client is not None:
                readers.append(self._client)
            elif self._listener is not None:
                readers.append(self._listener)
            if self._master_fd is not None:
                readers.append(self._master_fd)
            timeout = TICK_S
            if self._pending:
                timeout = max(0.0, min(timeout, self._pending[0][0] - time.monotonic()))
            try:
                ready, _, _ = select.select(readers, [], [], timeout)
            except (OSError, ValueError):
                ready = []
                time.sleep(TICK_S)
            for source in ready:
                if source is self._listener:
                    self._accept()
                    continue
                data = self._read(source)
                if data:
                    self.bytes_in += len(data)
                    with self.lock:
                        try:
                            self.on_data(data)
                        except Exception:
                            log.exception("%s simulator failed on input", self.name)
            now = time.monotonic()
            with self.lock:
                while self._pending and self._pending[0][0] <= now:
                    _, _, data = heapq.heappop(self._pending)
                    self.send(data)
                try:
                    self.tick(now)
                except Exception:
                    log.exception("%s simulator tick failed", self.name)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self._client = client
            self._pending.clear()
            self.on_connect()

    def _read(self, source) -> bytes:
        try:
            if isinstance(source, socket.socket):
                data = source.recv(65536)
                if not data:  # host closed: serve the next one
                    source.close()
                    self._client = None
                return data
            return os.read(source, 65536)
        except OSError:
            if isinstance(source, socket.socket):
                source.close()
                self._client = None
            else:
                time.sleep(TICK_S)  # pty with no reader on the other side yet
            return b""
