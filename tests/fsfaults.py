"""File-system faults for tests and benches: a real file system filled to ENOSPC."""
from __future__ import annotations

import errno
import os


def fill(directory) -> str:
    """Fill the file system holding ``directory`` until it says ENOSPC; the filler's path
    (delete it to give the space back)."""
    path = os.path.join(directory, "filler")
    chunk = b"\0" * 65536
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return path
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)
