"""`cnap demo` runs the facility simulators and `cnap agent` as a separate process pointed at
them: killing the kiosk leaves the agent answering; a normal stop ends both."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitoring.agent_client import AgentClient
from tests.facility.fakes import wait_until
from tests.helpers import descendants, kill_all
from tests.monitoring.test_agent import ROOT
from tests.terminal.kiosk_http import StaffBrowser

FAKES = "tests.facility.fakeplant.ventilation,tests.facility.fakeplant.power,tests.facility.no_such_package"


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")     # ended; its new parent has not reaped it yet


def start_demo(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY") and not k.startswith("CNAP_")}
    env.update({"PYTHONPATH": str(ROOT), "FAKEPLANT_MARKS": str(tmp_path), "CNAP_SECRET_KEY": "demo-test",
                "CNAP_FACILITY_CONTROLLERS": FAKES, "CNAP_SERVICE_PINS_MUST_CHANGE": "0"})
    demo = subprocess.Popen([sys.executable, "-m", "terminal.cli", "demo", "--port", "0", "--no-window",
                             "--instance", str(tmp_path / "instance")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen: list[str] = []
    kiosk_url = agent_pid = agent_port = None
    deadline = time.monotonic() + 90
    while kiosk_url is None and time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        seen.append(line)
        if match := re.search(r"agent \(pid (\d+)\) at http://127\.0\.0\.1:(\d+)", line):
            agent_pid, agent_port = int(match.group(1)), int(match.group(2))
        if match := re.search(r"open (http://127\.0\.0\.1:\d+)/", line):
            kiosk_url = match.group(1)
    assert kiosk_url and agent_pid, "".join(seen)
    return demo, kiosk_url, agent_pid, agent_port, "".join(seen)


def test_killing_the_kiosk_leaves_the_agent_answering(tmp_path):
    demo, kiosk_url, agent_pid, agent_port, out = start_demo(tmp_path)
    others = [pid for pid in descendants(demo.pid) if pid != agent_pid]   # broker, hub: the demo's, not the site's
    try:
        assert "no facility package tests.facility.no_such_package" in out
        assert (tmp_path / "ventilation.simulator").exists()
        staff = StaffBrowser(kiosk_url)
        staff.log_in("222222")
        status, page = staff.get("/service/facility")
        assert status == 200 and "Вентиляція" in page and "Агент недоступний" not in page
        client = AgentClient("127.0.0.1", agent_port, tmp_path / "instance" / "agent.token")
        assert client.status()["controllers"]["ventilation"]["stop_timeout_s"] == 7.5   # simulator's setting
        demo.kill()                        # the kiosk crashes
        demo.wait(10)
        assert not gone(agent_pid)
        controllers = client.status()["controllers"]
        assert controllers["ventilation"]["available"] and controllers["power"]["available"]
        assert client.command("ventilation", "override", {"level": 50, "minutes": 5})["ok"] is True
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if not gone(agent_pid):
            os.kill(agent_pid, signal.SIGTERM)
        kill_all(others)
    assert wait_until(lambda: gone(agent_pid), timeout=20)
    assert (tmp_path / "ventilation.closed").exists()    # stopped in order: controllers closed


def test_a_normal_demo_stop_ends_the_agent_and_the_simulators(tmp_path):
    demo, kiosk_url, agent_pid, _, _ = start_demo(tmp_path)
    try:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if not gone(agent_pid):
            os.kill(agent_pid, signal.SIGKILL)
            pytest.fail("cnap demo left its agent running after a normal stop")
    assert gone(agent_pid)
    for mark in ("ventilation.closed", "power.closed", "ventilation.simulator_stopped", "power.simulator_stopped"):
        assert (tmp_path / mark).exists(), mark
