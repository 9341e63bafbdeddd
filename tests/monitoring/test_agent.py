"""The agent's endpoint: the token, loopback only, bad and oversized bodies, commands; `cnap agent`
as a process that stops in order on SIGTERM."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from facility.runner import Runner
from monitoring.agent import Agent, create_agent_app, ensure_token, read_token
from monitoring.agent_client import AgentClient, AgentUnavailable
from terminal import settings as settings_module
from tests.facility.fakes import FakeController, wait_until

ROOT = Path(__file__).resolve().parents[2]


def agent_settings(tmp_path, **overrides) -> dict:
    values = settings_module.load({"INSTANCE_PATH": str(tmp_path / "instance"), **overrides}, environ={})
    return values


@pytest.fixture
def agent(tmp_path):
    runner = Runner([FakeController("ventilation"), FakeController("power")], {"uplinks": "cannot import x"})
    running = Agent(agent_settings(tmp_path), runner=runner)
    running.start(port=0)
    yield running
    running.stop()


def call(agent, method, path, body=None, token="good", headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", agent.server.port, timeout=10)
    sent = dict(headers or {})
    if token == "good":
        sent["Authorization"] = f"Bearer {agent.token}"
    elif token is not None:
        sent["Authorization"] = token
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    connection.request(method, path, body=body, headers=sent)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    return response.status, json.loads(raw) if raw.startswith(b"{") else raw


def test_the_token_file_is_private_random_and_kept_across_restarts(tmp_path):
    path = tmp_path / "instance" / "agent.token"
    first = ensure_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32 and read_token(path) == first
    assert ensure_token(path) == first                     # a restart keeps it
    path.write_text("short")                              # a broken file is replaced
    assert ensure_token(path) != first and len(read_token(path)) >= 32
    assert ensure_token(tmp_path / "other" / "agent.token") != first


@pytest.mark.parametrize("token", [None, "Bearer wrong", "Bearer ", "Basic abc", "Bearer \u0456".encode()])
def test_every_route_needs_the_token(agent, token):
    for method, path, body in (("GET", "/status", None),
                               ("POST", "/command/ventilation", {"action": "override", "args": {}}),
                               ("GET", "/nothing", None)):
        status, answer = call(agent, method, path, body, token=token)
        assert status == 401 and "token" in answer["error"]
    assert agent.runner._slots["ventilation"].controller.commands == []


def test_status_gives_every_controller_with_the_token(agent):
    status, answer = call(agent, "GET", "/status")
    assert status == 200
    assert list(answer["controllers"]) == ["ventilation", "power", "uplinks"]
    assert answer["controllers"]["uplinks"]["available"] is False
    assert wait_until(lambda: call(agent, "GET", "/status")[1]["controllers"]["power"]["available"])


def test_a_command_reaches_its_controller_and_its_answer_comes_back(agent):
    status, answer = call(agent, "POST", "/command/ventilation",
                          {"action": "override", "args": {"level": 70, "minutes": 15}})
    assert (status, answer) == (200, {"ok": True, "message": "level 70 for 15 min"})
    status, answer = call(agent, "POST", "/command/uplinks", {"action": "probe"})
    assert status == 200 and answer["ok"] is False and "unavailable" in answer["message"]
    assert call(agent, "POST", "/command/lights", {"action": "on"})[0] == 404


@pytest.mark.parametrize("body", [
    b"", b"{", b"[1, 2]", b'"override"', b"\xff\xfe", b'{"action": NaN}', b'{"action": 1e999}',
    b"[" * 3000 + b"]" * 3000, b'{"action": "override", "args": {"a": ' + b"[" * 25 + b"]" * 25 + b"}}",
    b'{"action": "Override!"}', b'{"action": ""}', b'{"action": "override", "args": [1]}',
    b'{"args": {}}', json.dumps({"action": "x" * 65}).encode(),
])
def test_bad_json_is_400_with_a_reason(agent, body):
    status, answer = call(agent, "POST", "/command/ventilation", body, headers={"Content-Type": "application/json"})
    assert status == 400 and answer["error"]
    assert agent.runner._slots["ventilation"].controller.commands == []


def test_an_oversized_body_is_400_and_a_flood_is_refused_at_the_door(agent):
    limit = agent.settings["AGENT_MAX_BODY"]
    big = json.dumps({"action": "override", "args": {"note": "x" * limit}}).encode()
    status, answer = call(agent, "POST", "/command/ventilation", big)
    assert status == 400 and str(limit) in answer["error"]
    # Announce 2 MB and send none of it: waitress answers from the header, before reading a byte
    # (sending the body too races the server's early close against our write).
    connection = http.client.HTTPConnection("127.0.0.1", agent.server.port, timeout=10)
    connection.putrequest("POST", "/command/ventilation")
    connection.putheader("Authorization", f"Bearer {agent.token}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(2 * 1024 * 1024))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
    assert agent.runner._slots["ventilation"].controller.commands == []


def test_wrong_methods_and_paths_answer_json(agent):
    assert call(agent, "GET", "/command/ventilation")[0] == 405
    assert call(agent, "POST", "/command/Ventilation!", {"action": "x"})[0] == 404
    assert call(agent, "POST", "/status", {})[0] == 405


def test_only_loopback_clients_are_answered(tmp_path):
    runner = Runner([FakeController("power")])
    app = create_agent_app(runner, "t" * 43)
    client = app.test_client()
    good = {"Authorization": "Bearer " + "t" * 43}
    assert client.get("/status", headers=good, environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.get("/status", headers=good, environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    for outsider in ("192.168.10.20", "10.0.0.1", "::ffff:192.0.2.1", "fe80::1", "", "unknown"):
        response = client.get("/status", headers=good, environ_base={"REMOTE_ADDR": outsider})
        assert response.status_code == 403, outsider


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.10.5", "::", "localhost", "example.org"])
def test_the_endpoint_cannot_be_set_to_listen_beyond_loopback(tmp_path, host):
    with pytest.raises(settings_module.SettingError, match="AGENT_HOST"):
        agent_settings(tmp_path, AGENT_HOST=host)
    assert agent_settings(tmp_path, AGENT_HOST="::1")["AGENT_HOST"] == "::1"


def test_the_kiosk_side_client(agent, tmp_path):
    client = AgentClient.from_settings({**agent.settings, "AGENT_PORT": agent.server.port})
    assert set(client.status()["controllers"]) == {"ventilation", "power", "uplinks"}
    assert client.command("ventilation", "override", {"level": 40, "minutes": 5})["ok"] is True
    assert client.command("lights", "on", {}) == {"ok": False, "message": "no controller 'lights'"}
    assert client.command("power", "Bad Action", {})["ok"] is False
    wrong = AgentClient("127.0.0.1", agent.server.port, tmp_path / "none.token")
    with pytest.raises(AgentUnavailable, match="no agent token"):
        wrong.status()
    (tmp_path / "stale.token").write_text("s" * 43)
    with pytest.raises(AgentUnavailable, match="401"):
        AgentClient("127.0.0.1", agent.server.port, tmp_path / "stale.token").status()
    port = agent.server.port
    agent.stop()
    with pytest.raises(AgentUnavailable, match="no answer"):
        AgentClient("127.0.0.1", port, agent_settings(tmp_path)["INSTANCE_PATH"] + "/agent.token").status()


def child_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNAP_")}
    env.update({"PYTHONPATH": str(ROOT), "FAKEPLANT_MARKS": str(tmp_path),
                "CNAP_FACILITY_CONTROLLERS": "tests.facility.fakeplant.ventilation,tests.facility.fakeplant.power,"
                                             "tests.facility.no_such_package"})
    return env


def read_until(process, marker: str, seen: list[str]) -> str:
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError("".join(seen))


def test_cnap_agent_serves_then_stops_in_order_on_sigterm(tmp_path):
    instance = tmp_path / "instance"
    agent = subprocess.Popen([sys.executable, "-m", "terminal.cli", "agent", "--port", "0", "--instance",
                              str(instance)], env=child_env(tmp_path), cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen: list[str] = []
    try:
        line = read_until(agent, "cnap agent: listening on ", seen)
        assert "no_such_package (unavailable)" in line
        port = int(line.split("listening on http://127.0.0.1:", 1)[1].split()[0])
        client = AgentClient("127.0.0.1", port, instance / "agent.token")
        controllers = client.status()["controllers"]
        assert set(controllers) == {"ventilation", "power", "no_such_package"}
        assert "cannot import tests.facility.no_such_package" in controllers["no_such_package"]["fault"]
        assert stat.S_IMODE((instance / "agent.token").stat().st_mode) == 0o600
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(20) == 0
        rest = agent.stdout.read()
        assert "cnap agent: stopped" in rest and "SIGTERM received, stopping" in rest, rest
        assert (tmp_path / "ventilation.closed").exists() and (tmp_path / "power.closed").exists()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def test_controller_packages_are_module_names(tmp_path):
    with pytest.raises(settings_module.SettingError, match="FACILITY_CONTROLLERS"):
        agent_settings(tmp_path, FACILITY_CONTROLLERS="facility.power,../../tmp/x")
    assert agent_settings(tmp_path, FACILITY_CONTROLLERS="facility.power")["FACILITY_CONTROLLERS"] == ["facility.power"]


def test_a_ups_shutdown_stops_the_agent_only_after_the_kiosk_has_stopped():
    from monitoring.agent import ShutdownOnPowerLoss

    stop, kiosk_up = threading.Event(), threading.Event()
    kiosk_up.set()
    watch = ShutdownOnPowerLoss(stop, ("127.0.0.1", 1), wait_s=30, is_listening=lambda *_: kiosk_up.is_set())
    watch("ventilation", {"shutdown": True})           # only the power controller decides
    watch("power", {"shutdown": False, "state": "on_battery"})
    assert not watch.started.is_set()
    watch("power", {"shutdown": True, "state": "low_battery"})
    assert not stop.wait(1.2)                           # the kiosk still closes its journal
    kiosk_up.clear()
    assert stop.wait(5)


def test_a_ups_shutdown_stops_the_agent_after_the_wait_when_the_kiosk_never_stops():
    from monitoring.agent import ShutdownOnPowerLoss, kiosk_listening

    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as fake_kiosk:
        port = fake_kiosk.getsockname()[1]
        assert kiosk_listening("127.0.0.1", port)
        watch = ShutdownOnPowerLoss(stop, ("127.0.0.1", port), wait_s=1.0)
        watch("power", {"shutdown": True})
        assert stop.wait(10)
    assert not kiosk_listening("127.0.0.1", port)
