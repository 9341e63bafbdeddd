"""Open a device by URL (pyserial ``serial_for_url``): a tty path, ``socket://``, ``spy://``, ``loop://``."""
from __future__ import annotations

import time

import serial

PARITIES = {"none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD,
            "N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
READ_SLICE_S = 0.005


def open_url(url: str, *, baudrate: int = 9600, parity: str = "none", bytesize: int = 8,
             stopbits: int = 1, timeout: float = READ_SLICE_S):
    """Open and return a pyserial port object; raises serial.SerialException / OSError."""
    port = serial.serial_for_url(url, do_not_open=True)
    port.baudrate = baudrate
    port.parity = PARITIES.get(parity, parity)
    port.bytesize = bytesize
    port.stopbits = stopbits
    port.timeout = timeout
    port.write_timeout = 2.0
    port.open()
    sock = getattr(port, "_socket", None)
    if sock is not None:  # socket://: small request/answer frames must not wait for Nagle
        import socket

        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    return port


def read_some(port, deadline: float) -> bytes:
    """Whatever bytes arrive before ``deadline`` (monotonic) in one slice; b"" if none."""
    if time.monotonic() >= deadline:
        return b""
    waiting = port.in_waiting
    return port.read(waiting if waiting else 1)


def safe_close(port) -> None:
    if port is None:
        return
    sock = getattr(port, "_socket", None)
    if sock is not None and getattr(port, "is_open", False):
        # pyserial's socket:// close() sleeps 0.3 s; data already written is queued in the
        # kernel, so drain what we did not read (else the close is a reset) and close now
        try:
            port.reset_input_buffer()
        except Exception:
            pass
        port._socket = None
        port.is_open = False
        try:
            sock.shutdown(__import__("socket").SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        return
    try:
        port.close()
    except Exception:
        pass
