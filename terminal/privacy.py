"""File permissions of the instance folder: it holds the payment journal (payers' surnames and tax
numbers until their retention ends), the receipt key, staff PINs and survey answers, so only the
kiosk's own user may read any of it.

Two measures, because either alone leaves gaps: a process umask of 077, so every file and folder
the kiosk creates from now on (SQLite files and their -wal/-shm, exports, media, logs) is 0600 /
0700 whatever the login shell had; and one pass over an existing instance folder that takes
group and other permissions away from what an older version or an installer left readable."""
from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def restrict_umask() -> int:
    """Files created by this process are private from now on; returns the previous umask."""
    return os.umask(PRIVATE_UMASK)


def make_private(folder: str | os.PathLike) -> None:
    """Folders 0700, files without any group/other bit (symlinks are left alone)."""
    root = Path(folder)
    for path in [root, *root.rglob("*")]:
        try:
            info = path.lstat()
        except FileNotFoundError:  # a -wal or -shm that went away meanwhile
            continue
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            wanted = 0o700
        elif stat.S_ISREG(info.st_mode):
            wanted = mode & 0o700
        else:
            continue
        if mode != wanted:
            os.chmod(path, wanted)
