"""A private X screen for window tests and benches: Xvfb (it picks a free display) with the
matchbox window manager (without one, full screen is ignored). Used by tests/terminal/test_shell.py
and the internet window tests and bench."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

SCREEN_W, SCREEN_H = 1280, 800
TOOLS = ("Xvfb", "matchbox-window-manager", "import", "xprop", "xdotool")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@contextmanager
def x_screen(workdir: Path, width: int = SCREEN_W, height: int = SCREEN_H, attempts: int = 3):
    """Yields the display name (":N"); RuntimeError when Xvfb or the window manager fail
    ``attempts`` times in a row (a display number another screen was just leaving can refuse the
    window manager's first connection)."""
    for attempt in range(attempts):
        try:
            screen = _x_screen(workdir, width, height)
            display = screen.__enter__()
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
            continue
        try:
            yield display
        finally:
            screen.__exit__(None, None, None)
        return


@contextmanager
def _x_screen(workdir: Path, width: int, height: int):
    if missing_tools():
        raise RuntimeError(f"{', '.join(missing_tools())} missing: apt-get install xvfb xauth imagemagick "
                           "matchbox-window-manager x11-utils xdotool")
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
        pass_fds=[write_fd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    processes = [xvfb]
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()  # Xvfb picks a free display and reports it here
        if not number:
            raise RuntimeError("Xvfb did not start")
        display = f":{number}"
        env = {**os.environ, "DISPLAY": display}
        wm_log = workdir / "matchbox.log"
        # Alt+F4 closes the focused window, as in most window managers (matchbox's own is Alt+c).
        kbdconfig = workdir / "kbdconfig"
        kbdconfig.write_text("<alt>F4=close\n<alt>c=close\n")
        with open(wm_log, "w") as wm_output:
            processes.append(subprocess.Popen(
                ["matchbox-window-manager", "-use_titlebar", "no", "-kbdconfig", str(kbdconfig)], env=env,
                stdout=wm_output, stderr=subprocess.STDOUT,
            ))
        deadline = time.monotonic() + 15
        while True:
            if processes[-1].poll() is not None:
                raise RuntimeError(f"matchbox-window-manager exited on {display}: {wm_log.read_text()!r}")
            probe = subprocess.run(["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], env=env,
                                   capture_output=True, text=True)
            if "window id" in probe.stdout:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gave up waiting for the window manager on {display}")
            time.sleep(0.1)
        yield display
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
