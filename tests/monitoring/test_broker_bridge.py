"""The site broker's bridge to the central broker (TLS, the site's own account): this site's state
and survey answers go up, its commands come down, another site's topics do neither."""
from __future__ import annotations

import os
import queue
import select
import signal
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from monitoring import brokerconf, topics
from tests.monitoring.conftest import PASSWORDS
from tests.monitoring.mqtt import WAIT_S, Broker, Client

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
pytestmark = pytest.mark.timeout(60)   # a broker that stops answering fails fast


@pytest.fixture
def connect():
    clients = []

    def make(broker, username, *, tls=False, ca_file=None):
        client = Client(broker.tls_port if tls else broker.local_port, username, PASSWORDS[username],
                        ca_file=ca_file, client_id=f"t-{uuid.uuid4()}")
        clients.append(client)
        assert client.connect() == 0
        return client

    yield make
    for client in clients:
        client.close()


def wait_for(client: Client, topic: str, payload: bytes):
    while True:
        message = client.next_message(topic)
        if message.payload == payload:
            return message


@pytest.fixture
def bridged(central, site, connect):
    """The site's bridge is up: the central broker has `cnap/kyiv-1/bridge` = "1" and passes
    commands down (probed until the first one arrives: the bridge subscribes just after it
    announces itself)."""
    hub = connect(central, "hub.central")
    assert hub.subscribe("cnap/kyiv-1/bridge").value == 1
    wait_for(hub, "cnap/kyiv-1/bridge", b"1")
    probe = connect(site, "kyiv-1")
    assert probe.subscribe("cnap/kyiv-1/cmd/probe").value == 1
    for _ in range(int(WAIT_S / 0.1)):
        assert not hub.publish("cnap/kyiv-1/cmd/probe", b"ping").is_failure
        try:
            probe.messages.get(timeout=0.1)
            break
        except queue.Empty:
            continue
    else:
        pytest.fail(f"commands never reached the site broker: {site.log_text()}")
    return hub


def test_state_goes_up_retained_and_other_sites_do_not(central, site, bridged, connect):
    hub = connect(central, "hub.central")
    assert hub.subscribe(topics.HUB_FILTER).value == 1
    agent, intruder = connect(site, "kyiv-1"), connect(site, "lviv-2")
    # lviv-2's agent on kyiv-1's broker (a mistake in its password file): allowed there by the
    # pattern, but the bridge carries only kyiv-1's topics.
    assert not intruder.publish("cnap/lviv-2/power", b"{}").is_failure
    state = topics.outgoing("kyiv-1", topics.PowerState(
        ts=NOW, available=True, state="on_battery", ups=topics.Ups(status="on_battery", charge_pct=64.5),
        inputs=[topics.PowerInput(name="mains", live=False)]))
    assert not agent.publish(state.topic, state.payload, retain=state.retain).is_failure
    before = []
    while (got := hub.next_message()).topic != "cnap/kyiv-1/power":
        before.append(got.topic)                        # retained ones, e.g. cnap/kyiv-1/bridge
    assert not [topic for topic in before if topic.startswith("cnap/lviv-2/")]
    parsed = topics.parse(got.topic, got.payload)
    assert parsed.payload.ups.charge_pct == 64.5
    # Retained at the central broker: a reader arriving later still gets the last state.
    staff = connect(central, "staff.olena")
    assert staff.subscribe("cnap/kyiv-1/power").value == 1
    late = staff.next_message("cnap/kyiv-1/power")
    assert late.retain and late.payload == state.payload
    assert not agent.publish(state.topic, b"", retain=True).is_failure     # clear it for other tests


def test_a_tablet_answer_over_tls_reaches_the_hub(central, site, certs, bridged, connect):
    hub = connect(central, "hub.central")
    assert hub.subscribe(f"$share/hub/{topics.HUB_FILTER}").value == 1
    tablet = connect(site, "tablet.kyiv-1.desk-3", tls=True, ca_file=certs / "ca.crt")
    answer = topics.SurveyAnswer(ts=NOW, uuid=str(uuid.uuid4()), tablet_id=3, branch_id="kyiv-1", desk="3",
                                 survey_id="main", version=1, main="q1", score=5, scale=5, comment="Дякую")
    sent = topics.outgoing("kyiv-1", answer)
    assert not tablet.publish(sent.topic, sent.payload).is_failure
    got = hub.next_message("cnap/kyiv-1/survey/answer")
    assert not got.retain
    assert topics.parse(got.topic, got.payload).payload == answer


def test_a_command_comes_down_to_its_site_only(central, site, bridged, connect):
    agent, intruder = connect(site, "kyiv-1"), connect(site, "lviv-2")
    assert agent.subscribe(topics.command_filter("kyiv-1")).value == 1
    assert intruder.subscribe(topics.command_filter("lviv-2")).value == 1
    hub = connect(central, "hub.central")
    assert hub.subscribe("cnap/kyiv-1/cmd_result/+").value == 1
    other = topics.outgoing("lviv-2", topics.Command(ts=NOW, id=str(uuid.uuid4()), action="stop", by="hub.central"),
                            "ventilation")
    assert not hub.publish(other.topic, other.payload).is_failure
    command = topics.Command(ts=NOW, id=str(uuid.uuid4()), action="set_level", args={"level": 3}, by="hub.central")
    sent = topics.outgoing("kyiv-1", command, "ventilation")
    assert not hub.publish(sent.topic, sent.payload).is_failure
    got = agent.next_message("cnap/kyiv-1/cmd/ventilation")
    assert topics.parse(got.topic, got.payload).payload == command
    intruder.subscribe("barrier/nothing-here")
    assert intruder.received_topics() == []             # lviv-2's command stayed at the central broker
    # The result goes back up.
    result = topics.outgoing("kyiv-1", topics.CommandResult(ts=NOW, id=command.id, ok=True, message="рівень 3"),
                             "ventilation")
    assert not agent.publish(result.topic, result.payload).is_failure
    back = hub.next_message("cnap/kyiv-1/cmd_result/ventilation")
    assert topics.parse(back.topic, back.payload).payload.id == command.id


def test_the_central_broker_hears_when_a_site_broker_dies(central, certs, connect):
    hub = connect(central, "hub.central")
    assert hub.subscribe("cnap/lviv-2/bridge").value == 1
    lviv = Broker("site-lviv", lambda b: brokerconf.site_conf(
        site="lviv-2", conf_dir=b.dir, cert_dir=certs, data_dir=b.dir, central_host="127.0.0.1",
        central_port=central.tls_port, central_ca_file=certs / "ca.crt", bridge_password=PASSWORDS["lviv-2"],
        local_port=b.local_port, tls_port=b.tls_port, tls_bind="127.0.0.1", persistence=False, log_dest="stderr"),
        {"lviv-2": PASSWORDS["lviv-2"]})
    try:
        wait_for(hub, "cnap/lviv-2/bridge", b"1")
        os.kill(lviv.process.pid, signal.SIGKILL)        # no goodbye: the bridge's will speaks for it
        assert wait_for(hub, "cnap/lviv-2/bridge", b"0").payload == b"0"
    finally:
        lviv.stop()



AGENT = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from monitoring import topics
port, password = int(sys.argv[1]), sys.stdin.readline().strip()
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-kyiv-1", protocol=mqtt.MQTTv5)
client.username_pw_set("kyiv-1", password)
offline = topics.outgoing("kyiv-1", False)
client.will_set(offline.topic, offline.payload, qos=offline.qos, retain=offline.retain)
client.connect("127.0.0.1", port)
client.loop_start()
online = topics.outgoing("kyiv-1", True)
client.publish(online.topic, online.payload, qos=online.qos, retain=online.retain).wait_for_publish(10)
print("ready", flush=True)
time.sleep(600)
"""


def test_an_agent_that_dies_shows_offline_at_the_hub(central, site, bridged, connect):
    hub = connect(central, "hub.central")
    assert hub.subscribe("cnap/kyiv-1/online").value == 1
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(site.local_port)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=Path(brokerconf.__file__).parents[1])
    try:
        agent.stdin.write(PASSWORDS["kyiv-1"] + "\n")
        agent.stdin.flush()
        ready, _, _ = select.select([agent.stdout], [], [], WAIT_S)
        assert ready and agent.stdout.readline().strip() == "ready"
        wait_for(hub, "cnap/kyiv-1/online", b"online")
        agent.send_signal(signal.SIGKILL)              # no DISCONNECT: the broker publishes the will
        message = wait_for(hub, "cnap/kyiv-1/online", b"offline")
        assert topics.parse(message.topic, message.payload).payload == topics.OFFLINE
    finally:
        agent.kill()
        agent.wait()
