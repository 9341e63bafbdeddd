"""``cnap agent`` with MQTT settings: the reporter starts and stops with the agent, and /metrics
(behind the agent's token) passes `promtool check metrics`; without MQTT_HOST nothing changes."""
from __future__ import annotations

import http.client
import shutil
import subprocess

import pytest

from facility.runner import Runner
from monitoring.agent import Agent, metrics_text
from tests.facility.fakes import FakeController, wait_until
from tests.monitoring.mqtt import WAIT_S, Client
from tests.monitoring.conftest import PASSWORDS
from tests.monitoring.test_mqtt_agent import SITE, reporter_settings

pytestmark = pytest.mark.timeout(120)


def get(agent, path, token=True):
    connection = http.client.HTTPConnection("127.0.0.1", agent.server.port, timeout=10)
    connection.request("GET", path, headers={"Authorization": f"Bearer {agent.token}"} if token else {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, response.getheader("Content-Type"), body


def promtool_check(text: bytes) -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed (see PLATFORM.md)")
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_agent_with_mqtt_reports_and_serves_metrics(central, tmp_path):
    watcher = Client(central.local_port, "hub.central", PASSWORDS["hub.central"])
    assert watcher.connect() == 0 and watcher.subscribe(f"cnap/{SITE}/online") == 1
    runner = Runner([FakeController("ventilation", interval_s=0.1, extra={"level": 30, "max_level": 100}),
                     FakeController("power", interval_s=0.1)], {"uplinks": "cannot import x"})
    agent = Agent(reporter_settings(tmp_path, central.local_port), runner=runner)
    assert agent.reporter is not None
    agent.start(port=0)
    try:
        assert wait_until(lambda: agent.reporter.connected.is_set() and agent.reporter.published >= 3, timeout=WAIT_S)
        assert agent.reporter.on_snapshot in agent.status_listeners
        status, content_type, body = get(agent, "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        text = body.decode()
        assert 'cnap_agent_controller_available{controller="ventilation"} 1.0' in text
        assert 'cnap_agent_controller_available{controller="uplinks"} 0.0' in text
        assert "cnap_agent_mqtt_connected 1.0" in text and 'cnap_agent_mqtt_outbox_depth{kind="answer"}' in text
        assert 'cnap_agent_controller_last_poll_age_seconds{controller="power"}' in text
        assert "cnap_agent_mqtt_published_total" in text
        promtool_check(body)
        assert get(agent, "/metrics", token=False)[0] == 401          # the same token as every route
        assert watcher.next_message(f"cnap/{SITE}/online").payload == b"online"
    finally:
        agent.stop()
    assert watcher.next_message(f"cnap/{SITE}/online").payload == b"offline"   # stopped with the agent
    watcher.close()


def test_agent_without_mqtt_has_no_reporter_and_plain_metrics(tmp_path):
    from terminal import settings as settings_module

    runner = Runner([FakeController("ventilation", interval_s=0.1)])
    agent = Agent(settings_module.load({"INSTANCE_PATH": str(tmp_path / "i")}, environ={}), runner=runner)
    assert agent.reporter is None
    agent.start(port=0)
    try:
        assert wait_until(lambda: runner.polls("ventilation") > 0)
        status, _, body = get(agent, "/metrics")
        assert status == 200 and b"cnap_agent_mqtt" not in body
        promtool_check(body)
    finally:
        agent.stop()


def test_metrics_text_with_odd_snapshots_still_passes_promtool():
    class Odd(FakeController):
        def status(self):
            return {"available": "yes", "state": 5, "alerts": None, "polled_at": "not a time"}

    runner = Runner([Odd("ventilation", interval_s=0.1), FakeController("po\"wer\n", interval_s=0.1)])
    runner.poll_now("ventilation")
    promtool_check(metrics_text(runner))


def test_cnap_agent_process_reports_online_then_offline_on_sigterm(central, tmp_path):
    import signal
    import sys

    from tests.monitoring.test_agent import child_env, read_until
    from tests.monitoring.test_mqtt_agent import messages_until

    watcher = Client(central.local_port, "hub.central", PASSWORDS["hub.central"])
    assert watcher.connect() == 0 and watcher.subscribe(f"cnap/{SITE}/#") == 1
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "mqtt.password").write_text(PASSWORDS[SITE])
    env = {**child_env(tmp_path), "CNAP_MQTT_HOST": "127.0.0.1", "CNAP_MQTT_PORT": str(central.local_port),
           "CNAP_MQTT_SITE": SITE, "CNAP_FACILITY_CONTROLLERS": "tests.facility.fakeplant.ventilation"}
    agent = subprocess.Popen([sys.executable, "-m", "terminal.cli", "agent", "--port", "0", "--instance",
                              str(instance)], env=env, cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    seen: list[str] = []
    try:
        read_until(agent, "cnap agent: listening on ", seen)
        messages_until(watcher, f"cnap/{SITE}/online", lambda m: m.payload == b"online")   # after an old retained one
        assert watcher.next_message(f"cnap/{SITE}/ventilation")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        assert watcher.next_message(f"cnap/{SITE}/online").payload == b"offline"
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        watcher.close()


def test_mqtt_settings_are_checked(tmp_path):
    from terminal import settings as settings_module

    for bad in ({"MQTT_HOST": "127.0.0.1"}, {"MQTT_HOST": "127.0.0.1", "MQTT_SITE": "Kyiv/1"},
                {"MQTT_HOST": "127.0.0.1", "MQTT_SITE": "kyiv-1", "MQTT_PORT": 0},
                {"MQTT_OUTBOX_MAX_BYTES": 10}):
        with pytest.raises(settings_module.SettingError):
            settings_module.load(bad, environ={})


def test_a_missing_tls_file_is_retried_not_fatal(central, tmp_path):
    from monitoring.mqtt_agent import MqttReporter
    from tests.monitoring.test_mqtt_agent import Source

    reporter = MqttReporter(reporter_settings(tmp_path, central.tls_port, MQTT_TLS_CA_FILE=str(tmp_path / "no.crt")),
                            SITE, Source(), None)
    reporter.start()
    try:
        assert wait_until(lambda: reporter._backoff > 0.5, timeout=WAIT_S)   # tried, failed, backs off
        assert not reporter.connected.is_set() and reporter._thread.is_alive()
    finally:
        reporter.stop()
