"""Run the calling thread inside a named network namespace (``ip netns`` name).

setns(2) moves only the calling thread; sockets keep the namespace they were created in. So a
prober thread enters the uplinks' namespace once, and short calls use ``in_netns`` around the
creation of their socket. (pyroute2's pushns keeps one stack for the whole process, which
threads would share.)
"""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from typing import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter(name: str) -> None:
    """Move this thread into namespace ``name`` for good ('' leaves it where it is)."""
    if not name:
        return
    with open(f"/run/netns/{name}", "rb") as target:
        _setns(target.fileno())


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """This thread inside ``name`` for the block, then back ('' does nothing)."""
    if not name:
        yield
        return
    with open("/proc/thread-self/ns/net", "rb") as own, open(f"/run/netns/{name}", "rb") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(own.fileno())


def command(name: str, argv: list[str]) -> list[str]:
    """``argv`` run inside namespace ``name`` (through ``ip netns exec``)."""
    return ["ip", "netns", "exec", name, *argv] if name else list(argv)
