"""The agent's MQTT reporter against a real Mosquitto (the central broker's config and ACL, with
the Home Assistant discovery lines added): online and the last will, state, commands by role,
Home Assistant discovery, and the outbox through a broker restart and an hour's outage."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from facility.runner import Runner
from monitoring import brokerconf, discovery, topics
from monitoring.mqtt_agent import MqttReporter
from terminal import settings as settings_module
from tests.facility.fakes import FakeController, wait_until
from tests.monitoring.conftest import PASSWORDS
from tests.monitoring.mqtt import WAIT_S, Broker, Client

SITE = "kyiv-1"
NOT_AUTHORIZED = 135
pytestmark = pytest.mark.timeout(180)


def ha_conf(certs, persistence=False):
    def conf(b):
        # Discovery lines (monitoring/discovery.py ACL_LINES), and for the test: the site account may
        # read its configs back and announce Home Assistant's "online".
        with open(b.dir / "acl", "a", encoding="utf-8") as fh:
            fh.write("\n".join(discovery.ACL_LINES + ("pattern read homeassistant/+/%u/+/config",
                                                      "pattern write homeassistant/status")) + "\n")
        if persistence:
            b.dir.chmod(0o770)   # mosquitto (group) writes its database here
        return brokerconf.central_conf(conf_dir=b.dir, cert_dir=certs, data_dir=b.dir, local_port=b.local_port,
                                       tls_port=b.tls_port, tls_bind="127.0.0.1", persistence=persistence,
                                       log_dest="stderr")
    return conf


@pytest.fixture(scope="module")
def broker(certs):
    running = Broker("mqtt-agent", ha_conf(certs), PASSWORDS)
    yield running
    running.stop()


class KioskDown(Exception):
    pass


class FakeKiosk:
    """Stands for the kiosk process (monitoring/kiosk_client.py KioskClient's interface)."""

    def __init__(self):
        self.up = True
        self.refuse_forward = False
        self.answers: dict[str, dict] = {}
        self.forwarded: list[str] = []
        self.out_of_service: list[tuple] = []
        self.lock = threading.Lock()

    def add_answers(self, count: int, at: float) -> list[str]:
        made = []
        with self.lock:
            for _ in range(count):
                answer_id = str(uuid.uuid4())
                self.answers[answer_id] = {
                    "uuid": answer_id, "ts": datetime.fromtimestamp(at, timezone.utc).isoformat(), "tablet_id": 1,
                    "branch_id": "b1", "desk": "Вікно 3", "survey_id": "s1", "version": 1, "main": "q1",
                    "score": 4, "scale": 5}
                made.append(answer_id)
        return made

    def _check(self):
        if not self.up:
            raise KioskDown("the kiosk does not answer")

    def devices(self):
        self._check()
        return {"bill_validator": {"online": True, "state": "idling", "alerts": [], "cassette_bills": 100,
                                   "cassette_capacity": 500},
                "printer": {"online": True, "state": "ready", "alerts": [], "paper": "ok"},
                "card_terminal": {"online": False, "state": "offline", "alerts": ["terminal_offline"]}}

    def pending_answers(self, limit):
        self._check()
        with self.lock:
            return [dict(a) for a in list(self.answers.values())[:limit]]

    def mark_forwarded(self, uuids):
        self._check()
        if self.refuse_forward:
            raise KioskDown("the kiosk's database is busy")
        with self.lock:
            for answer_id in uuids:
                if self.answers.pop(answer_id, None) is not None:
                    self.forwarded.append(answer_id)
        return len(uuids)

    def set_out_of_service(self, on, reason, by):
        self._check()
        self.out_of_service.append((on, reason, by))
        return {"ok": True, "message": "out of service" if on else "in service"}


class FakeClock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class Source:
    """A status source with controlled snapshots (the runner's shape)."""

    def __init__(self):
        self.listeners = []
        self.charge = 90.0

    def snapshot(self):
        return {"available": True, "state": "online", "alerts": [], "ups_status": "OL", "charge_pct": self.charge,
                "runtime_s": 1200}

    def status(self):
        return {"at": "", "controllers": {"power": self.snapshot()}}

    def changed(self, charge):
        self.charge = charge
        for listener in list(self.listeners):
            listener("power", self.snapshot())


def reporter_settings(tmp_path, port, **overrides):
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    (instance / "mqtt.password").write_text(PASSWORDS[SITE] + "\n")
    values = {"INSTANCE_PATH": str(instance), "MQTT_HOST": "127.0.0.1", "MQTT_PORT": port, "MQTT_SITE": SITE,
              "MQTT_RECONNECT_MAX_S": 1.0, "MQTT_KIOSK_POLL_S": 0.5, "MQTT_KEEPALIVE_S": 5, **overrides}
    return settings_module.load(values, environ={})


@pytest.fixture
def reporters():
    made = []

    def make(*args, **kwargs):
        reporter = MqttReporter(*args, **kwargs)
        made.append(reporter)
        reporter.start()
        return reporter

    yield make
    for reporter in made:
        reporter.stop()


@pytest.fixture
def clients():
    made = []

    def connect(port, user, **kwargs):
        client = Client(port, user, PASSWORDS[user], client_id=f"t-{uuid.uuid4()}", **kwargs)
        assert client.connect() == 0
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


def messages_until(client, topic_name, predicate):
    """Messages on ``topic_name`` until one satisfies ``predicate`` (which is returned)."""
    deadline = time.monotonic() + WAIT_S * 2
    while time.monotonic() < deadline:
        message = client.next_message(topic_name)
        if predicate(message):
            return message
    raise AssertionError(f"nothing on {topic_name} satisfied the test")


def latest_by_topic(client, wanted):
    """The newest payload of each topic in ``wanted``, once all have come (in any order)."""
    seen = {}
    while not set(wanted) <= set(seen):
        message = client.next_message()
        seen[message.topic] = message.payload
    return seen


def command(action, args=None, *, ts=None, ttl_s=60, command_id=None):
    return json.dumps({"v": 1, "ts": (ts or datetime.now(timezone.utc)).isoformat(), "id": command_id or str(uuid.uuid4()),
                       "action": action, "args": args or {}, "by": "hub.central", "ttl_s": ttl_s}).encode()


# --- online, state, last will ---------------------------------------------------------------------
def test_tls_login_online_state_and_devices(broker, certs, tmp_path, reporters, clients):
    hub = clients(broker.local_port, "hub.central")
    assert hub.subscribe(topics.site_filter(SITE)) == 1
    runner = Runner([FakeController("ventilation", interval_s=0.2, extra={
        "level": 40, "max_level": 100, "readings": {"co2_ppm": 650.0}})])
    kiosk = FakeKiosk()
    reporters(reporter_settings(tmp_path, broker.tls_port, MQTT_TLS_CA_FILE=str(certs / "ca.crt")),
              SITE, runner, kiosk)
    runner.start()
    try:
        seen = latest_by_topic(hub, [f"cnap/{SITE}/{kind}" for kind in (
            "online", "ventilation", "air", "device/printer", "device/bill_validator", "device/card_terminal")])
        assert seen[f"cnap/{SITE}/online"] == b"online"
        vent = topics.parse(f"cnap/{SITE}/ventilation", seen[f"cnap/{SITE}/ventilation"])
        assert vent.payload.level == 40 and vent.payload.available
        air = topics.parse(f"cnap/{SITE}/air", seen[f"cnap/{SITE}/air"])
        assert air.payload.sensors[0].co2_ppm == 650.0
        printer = topics.parse(f"cnap/{SITE}/device/printer", seen[f"cnap/{SITE}/device/printer"])
        assert printer.payload.paper == "ok"
    finally:
        runner.stop()


def test_a_wrong_password_is_refused_and_retried_without_crashing(broker, tmp_path, reporters):
    settings = reporter_settings(tmp_path, broker.local_port)
    (tmp_path / "instance" / "mqtt.password").write_text("wrong")
    reporter = reporters(settings, SITE, Source(), None)
    assert wait_until(lambda: reporter._backoff > 0.5, timeout=WAIT_S)   # it tried, was refused and backs off
    assert not reporter.connected.is_set()


def test_last_will_offline_on_an_abrupt_disconnect_then_online_again(broker, tmp_path, reporters, clients):
    watcher = clients(broker.local_port, "hub.central")
    assert watcher.subscribe(f"cnap/{SITE}/online") == 1
    reporter = reporters(reporter_settings(tmp_path, broker.local_port), SITE, Source(), None)
    messages_until(watcher, f"cnap/{SITE}/online", lambda m: m.payload == b"online")
    reporter.kill_connection()                          # no DISCONNECT: the broker sends the will
    messages_until(watcher, f"cnap/{SITE}/online", lambda m: m.payload == b"offline")
    messages_until(watcher, f"cnap/{SITE}/online", lambda m: m.payload == b"online")   # it reconnects
    reporter.stop()                                     # a clean stop says offline too
    messages_until(watcher, f"cnap/{SITE}/online", lambda m: m.payload == b"offline")


def test_last_will_when_the_agent_process_is_killed(broker, tmp_path, clients):
    watcher = clients(broker.local_port, "hub.central")
    assert watcher.subscribe(f"cnap/{SITE}/online") == 1
    settings = reporter_settings(tmp_path, broker.local_port)
    script = ("import json, sys, time\n"
              "from monitoring.mqtt_agent import MqttReporter\n"
              "from tests.monitoring.test_mqtt_agent import Source\n"
              "r = MqttReporter(json.loads(sys.argv[1]), 'kyiv-1', Source(), None)\n"
              "r.start()\n"
              "time.sleep(600)\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen([os.sys.executable, "-c", script, json.dumps(settings)], env=env)
    try:
        messages_until(watcher, f"cnap/{SITE}/online", lambda m: m.payload == b"online")
        process.kill()                                   # SIGKILL: the socket closes without DISCONNECT
        process.wait(WAIT_S)
        messages_until(watcher, f"cnap/{SITE}/online", lambda m: m.payload == b"offline")
    finally:
        process.kill()
        process.wait()


# --- commands ----------------------------------------------------------------------------------
@pytest.fixture
def commanded(broker, tmp_path, reporters, clients):
    controller = FakeController("ventilation", interval_s=0.2)
    runner = Runner([controller])
    kiosk = FakeKiosk()
    reporter = reporters(reporter_settings(tmp_path, broker.local_port), SITE, runner, kiosk)
    hub = clients(broker.local_port, "hub.central")
    assert hub.subscribe(f"cnap/{SITE}/cmd_result/+") == 1
    assert wait_until(reporter.connected.is_set, timeout=WAIT_S)
    # The reporter's SUBSCRIBE follows its CONNACK: wait until a command reaches it.
    probe = str(uuid.uuid4())
    deadline = time.monotonic() + WAIT_S
    while reporter.commands == 0 and time.monotonic() < deadline:
        hub.publish(f"cnap/{SITE}/cmd/nothing", command("noop", command_id=probe))
        time.sleep(0.1)
    with contextlib.suppress(Exception):
        while True:
            hub.messages.get_nowait()
    return hub, controller, kiosk, reporter


def result_for(hub, controller, command_id):
    message = messages_until(hub, f"cnap/{SITE}/cmd_result/{controller}",
                             lambda m: json.loads(m.payload).get("id") == command_id)
    parsed = topics.parse(message.topic, message.payload)
    assert isinstance(parsed, topics.Message)
    return parsed.payload


def test_commands_from_the_hub_are_routed_and_answered(commanded):
    hub, controller, kiosk, _ = commanded
    command_id = str(uuid.uuid4())
    assert hub.publish(f"cnap/{SITE}/cmd/ventilation", command("override", {"level": 80, "minutes": 30},
                                                                 command_id=command_id)) < 128
    result = result_for(hub, "ventilation", command_id)
    assert result.ok and "level 80" in result.message
    assert controller.commands == [("override", {"level": 80, "minutes": 30})]
    # A QoS 1 duplicate is answered again but not run twice.
    hub.publish(f"cnap/{SITE}/cmd/ventilation", command("override", {"level": 80, "minutes": 30},
                                                          command_id=command_id))
    assert result_for(hub, "ventilation", command_id).ok and len(controller.commands) == 1

    kiosk_id = str(uuid.uuid4())
    hub.publish(f"cnap/{SITE}/cmd/kiosk", command("out_of_service", {"on": True, "reason": "ремонт"},
                                                    command_id=kiosk_id))
    assert result_for(hub, "kiosk", kiosk_id).ok
    assert kiosk.out_of_service == [(True, "ремонт", "hub.central")]
    kiosk.up = False
    down_id = str(uuid.uuid4())
    hub.publish(f"cnap/{SITE}/cmd/kiosk", command("out_of_service", {"on": False, "reason": ""}, command_id=down_id))
    answer = result_for(hub, "kiosk", down_id)
    assert not answer.ok and "does not answer" in answer.message


@pytest.mark.parametrize("payload, why", [
    (lambda i: command("override", {"level": 80}, command_id=i, ts=datetime.now(timezone.utc) - timedelta(hours=2)),
     "expired"),
    (lambda i: json.dumps({"v": 1, "id": i, "action": "override"}).encode(), "schema"),
    (lambda i: json.dumps({"v": 1, "ts": "2026-12-05T12:00:00+00:00", "id": i, "action": "Override!",
                           "by": "hub.central"}).encode(), "schema"),
    (lambda i: command("nonsense", command_id=i), "unknown action"),
])
def test_malformed_expired_or_unknown_commands_are_answered_not_run(commanded, payload, why):
    hub, controller, _, _ = commanded
    command_id = str(uuid.uuid4())
    hub.publish(f"cnap/{SITE}/cmd/ventilation", payload(command_id))
    result = result_for(hub, "ventilation", command_id)
    assert not result.ok and why in result.message
    assert all(action != "override" for action, _ in controller.commands)


def test_a_command_for_a_controller_the_site_does_not_have(commanded):
    hub, *_ = commanded
    command_id = str(uuid.uuid4())
    hub.publish(f"cnap/{SITE}/cmd/boiler", command("on", command_id=command_id))
    assert not result_for(hub, "boiler", command_id).ok


def test_a_command_without_a_usable_id_is_dropped_and_the_agent_goes_on(commanded):
    hub, controller, _, reporter = commanded
    before = reporter.commands
    for junk in (b"\xff\xfe", b"[]", b"{\"id\": 5}", b"x" * 5000):
        hub.publish(f"cnap/{SITE}/cmd/ventilation", junk)
    command_id = str(uuid.uuid4())
    hub.publish(f"cnap/{SITE}/cmd/ventilation", command("override", {"level": 10}, command_id=command_id))
    assert result_for(hub, "ventilation", command_id).ok and reporter.commands == before + 1


@pytest.mark.parametrize("user", [SITE, "tablet.kyiv-1.desk-3", "staff.olena", "lviv-2"])
def test_the_broker_refuses_commands_from_every_other_role(commanded, clients, broker, user):
    _, controller, kiosk, reporter = commanded
    before = reporter.commands
    sender = clients(broker.local_port, user)
    for target in ("ventilation", "kiosk"):
        code = sender.publish(f"cnap/{SITE}/cmd/{target}", command("override", {"level": 99}))
        assert code == NOT_AUTHORIZED, f"{user} → {target}: PUBACK {code}"
    # The hub's next command is the first the agent sees after the refused ones.
    hub = commanded[0]
    command_id = str(uuid.uuid4())
    hub.publish(f"cnap/{SITE}/cmd/ventilation", command("override", {"level": 20}, command_id=command_id))
    result_for(hub, "ventilation", command_id)
    assert reporter.commands == before + 1 and kiosk.out_of_service == []
    assert [args["level"] for _, args in controller.commands] == [20]


# --- Home Assistant discovery ---------------------------------------------------------------------------
def test_discovery_configs_are_retained_complete_and_resent_when_home_assistant_restarts(
        broker, tmp_path, reporters, clients):
    source = Source()
    reporter = reporters(reporter_settings(tmp_path, broker.local_port, MQTT_DISCOVERY=True), SITE, source, None)
    assert wait_until(lambda: reporter.connected.is_set() and reporter.depth["state"] == 0 and reporter.published >= 10,
               timeout=WAIT_S * 2)
    reader = clients(broker.local_port, SITE)
    assert reader.subscribe(f"homeassistant/+/{SITE}/+/config") == 1
    configs = {}
    while len(configs) < len(discovery.configs(SITE)):
        message = reader.next_message()
        assert message.retain
        configs[message.topic] = json.loads(message.payload)
    co2 = configs[f"homeassistant/sensor/{SITE}/co2/config"]
    assert co2["device_class"] == "carbon_dioxide" and co2["unit_of_measurement"] == "ppm"
    assert co2["state_class"] == "measurement" and co2["state_topic"] == f"cnap/{SITE}/air"
    for config in configs.values():
        assert config["availability_topic"] == f"cnap/{SITE}/online"
        assert config["device"] == {"identifiers": [f"cnap_{SITE}"], "name": f"ЦНАП {SITE}",
                                    "manufacturer": "cnap-kiosk", "model": "cnap agent"}
        assert config["unique_id"].startswith(f"cnap_{SITE}_") and "{{" in config["value_template"]
    assert configs[f"homeassistant/sensor/{SITE}/ups_input_voltage/config"]["entity_category"] == "diagnostic"
    # Every retained state topic of a site is announced by at least one entity.
    announced = {config["state_topic"].split("/")[2] for config in configs.values()}
    assert {"ventilation", "air", "power", "device", "internet", "guest_network"} <= announced
    # Home Assistant restarted: every config comes again (live, so not flagged retained).
    assert reader.publish("homeassistant/status", b"online") < 128
    again = set()
    while len(again) < len(configs):
        message = reader.next_message()
        if not message.retain:
            again.add(message.topic)
    assert again == set(configs)


def test_answers_the_kiosk_could_not_be_told_about_are_not_published_again(broker, tmp_path, reporters, clients):
    hub = clients(broker.local_port, "hub.central")
    assert hub.subscribe(f"cnap/{SITE}/survey/answer") == 1
    kiosk = FakeKiosk()
    kiosk.refuse_forward = True
    sent = kiosk.add_answers(7, time.time())
    reporter = reporters(reporter_settings(tmp_path, broker.local_port, MQTT_KIOSK_POLL_S=0.2), SITE, Source(), kiosk)
    assert wait_until(lambda: reporter.depth["answer_acked"] == 7, timeout=WAIT_S)
    time.sleep(1.0)   # several kiosk polls give the same 7 answers again meanwhile (not a timing assert)
    assert reporter.answers_published == 7 and kiosk.forwarded == []
    kiosk.refuse_forward = False
    assert wait_until(lambda: sorted(kiosk.forwarded) == sorted(sent), timeout=WAIT_S * 2)
    received = [json.loads(hub.next_message().payload)["uuid"] for _ in sent]
    assert sorted(received) == sorted(sent) and reporter.answers_published == 7


# --- the outbox through a broker restart and an hour's outage -----------------------------------------
class HubSession:
    """The hub's side: a persistent session (survives the broker's restart) collecting answers."""

    def __init__(self, port):
        self.answers: list[str] = []
        self.states: list[bytes] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hub-outbox-test", protocol=mqtt.MQTTv5)
        self.client.username_pw_set("hub.central", PASSWORDS["hub.central"])
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_message = self._message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(f"cnap/{SITE}/survey/answer", 1), (f"cnap/{SITE}/power", 1)])
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()

    def _message(self, client, userdata, message):
        with self.lock:
            if message.topic.endswith("/survey/answer"):
                self.answers.append(json.loads(message.payload)["uuid"])
            else:
                self.states.append(message.payload)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def restart(broker, down):
    """Stop mosquitto (it saves its sessions), run ``down`` while it is away, start it again on the same ports."""
    broker.process.terminate()
    broker.process.wait(WAIT_S)
    down()
    broker.process = subprocess.Popen(["mosquitto", "-c", str(broker.dir / "mosquitto.conf")],
                                      stdout=broker.log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", broker.local_port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError("mosquitto did not come back")


def test_no_answer_lost_or_doubled_through_a_broker_restart_and_an_hour_outage(certs, tmp_path, reporters):
    broker = Broker("mqtt-outbox", ha_conf(certs, persistence=True), PASSWORDS)
    hub = None
    try:
        hub = HubSession(broker.local_port)
        clock, kiosk, source = FakeClock(), FakeKiosk(), Source()
        sent = kiosk.add_answers(5, clock())
        reporter = reporters(reporter_settings(tmp_path, broker.local_port, MQTT_KIOSK_POLL_S=10.0), SITE, source,
                             kiosk, clock)
        assert wait_until(lambda: sorted(kiosk.forwarded) == sorted(sent), timeout=WAIT_S * 2)

        def outage():
            # One simulated hour without the broker: answers keep coming, the UPS charge keeps changing.
            assert wait_until(lambda: not reporter.connected.is_set(), timeout=WAIT_S)
            for minute in range(60):
                clock.advance(60)
                sent.extend(kiosk.add_answers(2, clock()))
                source.changed(90.0 - minute)
                assert wait_until(lambda: reporter.depth["answer"] + len(kiosk.forwarded) == len(sent), timeout=WAIT_S)
            assert reporter.depth["answer"] == 120 and reporter.depth["state"] >= 1

        restart(broker, outage)
        assert wait_until(lambda: len(kiosk.forwarded) == len(sent) and reporter.depth == {
            "state": 0, "answer": 0, "answer_acked": 0}, timeout=WAIT_S * 3)
        assert wait_until(lambda: len(hub.answers) >= len(sent), timeout=WAIT_S * 3)
        with hub.lock:
            # Every answer reached the hub, and the agent had each acknowledged exactly once (Mosquitto
            # may still hand the hub's persistent session one again after its restart: QoS 1 is "at
            # least once", and the hub stores answers once per uuid).
            assert set(hub.answers) == set(sent) and len(set(sent)) == len(sent)
            assert reporter.answers_published == len(sent)
            last_state = topics.parse(f"cnap/{SITE}/power", hub.states[-1])
        assert sorted(kiosk.forwarded) == sorted(sent) and kiosk.answers == {}
        assert last_state.payload.ups.charge_pct == 31.0        # the state ends current

        # A restarted agent finds nothing left to send twice.
        reporter.stop()
        again = reporters(reporter_settings(tmp_path, broker.local_port), SITE, source, kiosk, clock)
        assert wait_until(lambda: again.connected.is_set() and again.depth["state"] == 0, timeout=WAIT_S * 2)
        assert again.answers_published == 0 and set(hub.answers) == set(sent)
    finally:
        if hub is not None:
            hub.close()
        broker.stop()
