"""A real upsd with NUT's dummy-ups driver, in a temporary folder on a free loopback port
(docs/facility-power.md; /etc/nut is never touched). The test rewrites the driver's .dev file
to move the UPS between states; dummy-ups re-reads it when its modification time changes."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from facility.power.io import NutTarget, PowerIOError, read_ups_vars
from facility.power.simulator import free_port
from tests.payments.helpers import wait_until

NUT_BIN = Path("/lib/nut")
UPS = "kiosk"
DEV_STATES = {
    "OL": {"ups.status": "OL", "battery.charge": "100", "battery.runtime": "1800", "input.voltage": "230"},
    "OB": {"ups.status": "OB DISCHRG", "battery.charge": "70", "battery.runtime": "1100", "input.voltage": "0"},
    "OB_SHORT": {"ups.status": "OB DISCHRG", "battery.charge": "25", "battery.runtime": "200",
                 "input.voltage": "0"},
    "OB LB": {"ups.status": "OB DISCHRG LB", "battery.charge": "8", "battery.runtime": "70", "input.voltage": "0"},
    "FSD": {"ups.status": "FSD OB DISCHRG LB", "battery.charge": "7", "battery.runtime": "60",
            "input.voltage": "0"},
}


class Upsd:
    def __init__(self, folder: Path, port: int, seq: str | None = None):
        self.folder, self.port = folder, port
        self.dev = folder / "kiosk.dev"
        self.target = NutTarget("127.0.0.1", port, UPS, timeout_s=2.0)
        self._mtime = time.time()
        state = folder / "state"
        state.mkdir()
        driver_port = "kiosk.seq" if seq is not None else "kiosk.dev"
        (folder / "ups.conf").write_text(f'[{UPS}]\n  driver = dummy-ups\n  port = {driver_port}\n'
                                         f'  desc = "kiosk UPS"\n  pollinterval = 1\n')
        (folder / "upsd.conf").write_text(f"LISTEN 127.0.0.1 {port}\nMAXAGE 15\n")
        (folder / "upsd.users").write_text("[monitor]\n  password = watch\n  upsmon primary\n")
        (folder / "nut.conf").write_text("MODE=standalone\n")
        if seq is not None:
            (folder / "kiosk.seq").write_text(seq)
        self.write("OL")
        # driver and upsd drop to user nut (PLATFORM.md): it must read the folder, write state
        os.chmod(folder, 0o755)
        for name in ("ups.conf", "upsd.conf", "nut.conf", "kiosk.dev", "kiosk.seq"):
            if (folder / name).exists():
                os.chmod(folder / name, 0o644)
        shutil.chown(state, "root", "nut")
        os.chmod(state, 0o770)
        shutil.chown(folder / "upsd.users", "root", "nut")
        os.chmod(folder / "upsd.users", 0o640)
        self.env = {**os.environ, "NUT_CONFPATH": str(folder), "NUT_STATEPATH": str(state)}
        self.logs = open(folder / "nut.log", "wb")
        self.driver = self._spawn([str(NUT_BIN / "dummy-ups"), "-a", UPS, "-F"])
        # upsd finds the driver by its socket; started before it, upsd retries only slowly
        wait_until(lambda: (state / f"dummy-ups-{UPS}").exists(), timeout=10, what="the driver's socket")
        self.upsd = None
        self.start_upsd()

    def _spawn(self, argv):
        return subprocess.Popen(argv, env=self.env, stdout=self.logs, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)

    def start_upsd(self) -> None:
        self.upsd = self._spawn([str(NUT_BIN / "upsd"), "-F"])
        # upsd says WAIT until the driver's first update has reached it
        wait_until(lambda: self._answers() not in (None, "WAIT"), timeout=15, what="upsd to serve the dummy UPS")

    def _answers(self):
        try:
            return read_ups_vars(self.target).get("ups.status")
        except PowerIOError:
            return None

    def stop_upsd(self) -> None:
        if self.upsd is not None and self.upsd.poll() is None:
            self.upsd.terminate()
            self.upsd.wait(10)

    def write(self, name: str, **extra: str) -> None:
        """Rewrite the .dev file; a new, later mtime makes dummy-ups read it again."""
        values = {**DEV_STATES[name], **extra}
        tmp = self.dev.with_suffix(".tmp")
        tmp.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
        os.chmod(tmp, 0o644)
        self._mtime = max(self._mtime + 2, time.time())
        os.utime(tmp, (self._mtime, self._mtime))
        os.replace(tmp, self.dev)

    def status(self) -> str | None:
        return self._answers()

    def wait_status(self, status: str) -> None:
        wait_until(lambda: self.status() == status, timeout=10, what=f"upsd to report {status!r}")

    def close(self) -> None:
        for proc in (self.upsd, self.driver):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.logs.close()


def _start(seq=None):
    if not (NUT_BIN / "upsd").exists() or not (NUT_BIN / "dummy-ups").exists():
        pytest.fail("NUT is not installed: run `make test` (it installs nut-server and nut-client)")
    folder = Path(tempfile.mkdtemp(prefix="cnap-upsd-"))
    try:
        return Upsd(folder, free_port(), seq=seq)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


@pytest.fixture
def upsd():
    server = _start()
    yield server
    server.close()
    shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def upsd_factory():
    started = []

    def start(seq=None):
        server = _start(seq)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
        shutil.rmtree(server.folder, ignore_errors=True)
