"""The central broker's log-in, TLS and per-role ACL, proven against a real Mosquitto with MQTT 5
reason codes: a denied publish at QoS 1 gets PUBACK 135, a denied subscription SUBACK 135."""
from __future__ import annotations

import re
import socket
import ssl
import subprocess
import uuid
from datetime import datetime, timezone

import pytest

from monitoring import brokerconf, topics
from tests.monitoring.conftest import PASSWORDS
from tests.monitoring.mqtt import WAIT_S, Client

NOT_AUTHORIZED = 135
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
pytestmark = pytest.mark.timeout(60)   # a broker that stops answering fails fast


@pytest.fixture
def login(central):
    clients = []

    def connect(username, *, tls=False, password=None, **kwargs):
        client = Client(central.tls_port if tls else central.local_port, username,
                        PASSWORDS[username] if password is None else password, client_id=f"t-{uuid.uuid4()}",
                        **kwargs)
        clients.append(client)
        code = client.connect()
        assert code == 0, f"{username}: CONNACK {code}"
        return client

    yield connect
    for client in clients:
        client.close()


# (user, topic, may publish?) — every role against its own and other sites' topics.
PUBLISH = [
    ("kyiv-1", "cnap/kyiv-1/online", True),
    ("kyiv-1", "cnap/kyiv-1/power", True),
    ("kyiv-1", "cnap/kyiv-1/uplink/lte", True),
    ("kyiv-1", "cnap/kyiv-1/device/printer", True),
    ("kyiv-1", "cnap/kyiv-1/survey/answer", True),
    ("kyiv-1", "cnap/kyiv-1/cmd_result/ventilation", True),
    ("kyiv-1", "cnap/kyiv-1/internet", True),
    ("kyiv-1", "cnap/kyiv-1/guest_network", True),
    ("kyiv-1", "cnap/lviv-2/guest_network", False),          # nor another site's guest Wi-Fi
    ("kyiv-1", "cnap/kyiv-1/cmd/ventilation", False),        # a site cannot forge commands
    ("kyiv-1", "cnap/kyiv-1/unknown", False),                # nor topics outside the tree
    ("kyiv-1", "cnap/lviv-2/power", False),                  # nor another site's state
    ("kyiv-1", "cnap/lviv-2/cmd_result/power", False),
    ("kyiv-1", "elsewhere", False),
    ("tablet.kyiv-1.desk-3", "cnap/kyiv-1/survey/answer", True),
    ("tablet.kyiv-1.desk-3", "cnap/lviv-2/survey/answer", False),
    ("tablet.kyiv-1.desk-3", "cnap/kyiv-1/power", False),
    ("tablet.kyiv-1.desk-3", "cnap/tablet.kyiv-1.desk-3/online", False),   # what the patterns alone would allow
    ("hub.central", "cnap/kyiv-1/cmd/ventilation", True),
    ("hub.central", "cnap/lviv-2/cmd/uplinks", True),
    ("hub.central", "cnap/kyiv-1/power", False),             # the hub cannot fake a site's state
    ("hub.central", "cnap/kyiv-1/cmd_result/ventilation", False),
    ("hub.central", "cnap/hub.central/online", False),
    ("staff.olena", "cnap/kyiv-1/cmd/ventilation", False),   # staff are read-only
    ("staff.olena", "cnap/kyiv-1/power", False),
    ("staff.olena", "cnap/kyiv-1/guest_network", False),
    ("staff.olena", "cnap/staff.olena/online", False),
]

@pytest.mark.parametrize("user, topic, allowed", PUBLISH)
def test_publish_acl_per_role(login, user, topic, allowed):
    code = login(user).publish(topic, b"x")
    assert code.is_failure != allowed, f"{user} → {topic}: PUBACK {code.value} {code}"
    if not allowed:
        assert code.value == NOT_AUTHORIZED


# Mosquitto's acl_file never refuses a SUBSCRIBE (its maintainer: "subscriptions are never
# forbidden", eclipse-mosquitto/mosquitto#2042): SUBACK grants any filter and the read ACL then
# filters each message on delivery. So reading is proven by what arrives: each writer publishes
# one message of this scenario, and every subscriber must receive exactly what its role may read.
SCENARIO = [
    ("kyiv-1", "cnap/kyiv-1/power"),
    ("kyiv-1", "cnap/kyiv-1/cmd_result/ventilation"),
    ("lviv-2", "cnap/lviv-2/power"),
    ("tablet.kyiv-1.desk-3", "cnap/kyiv-1/survey/answer"),
    ("hub.central", "cnap/lviv-2/cmd/ventilation"),
    ("hub.central", "cnap/kyiv-1/cmd/ventilation"),
]
EVERYTHING = {topic for _, topic in SCENARIO}

# (user, filter it subscribes to, the topics of SCENARIO it must receive)
READ = [
    ("kyiv-1", "cnap/kyiv-1/cmd/+", {"cnap/kyiv-1/cmd/ventilation"}),
    ("kyiv-1", "#", {"cnap/kyiv-1/cmd/ventilation"}),          # an agent reads only its own commands
    ("kyiv-1", "cnap/lviv-2/cmd/+", set()),
    ("kyiv-1", "cnap/kyiv-1/#", {"cnap/kyiv-1/cmd/ventilation"}),
    ("lviv-2", "cnap/+/cmd/+", {"cnap/lviv-2/cmd/ventilation"}),
    ("tablet.kyiv-1.desk-3", "#", set()),                       # a tablet reads nothing
    ("hub.central", "cnap/#", EVERYTHING),
    ("hub.central", f"$share/hub/{topics.HUB_FILTER}", EVERYTHING),
    ("staff.olena", "#", EVERYTHING),
]


@pytest.mark.parametrize("user, topic_filter, expected", READ)
def test_read_acl_per_role(login, user, topic_filter, expected):
    reader = login(user)
    assert not reader.subscribe(topic_filter).is_failure        # granted, whatever the filter (see above)
    writers = {name: login(name) for name in dict.fromkeys(name for name, _ in SCENARIO)}
    for writer, topic in SCENARIO:
        assert not writers[writer].publish(topic, b"x").is_failure
    reader.subscribe("barrier/nothing-here")   # its SUBACK comes after every delivery queued before it
    assert set(reader.received_topics()) == expected


def test_what_a_site_publishes_reaches_the_hub_and_staff_and_nothing_else(login):
    hub, staff = login("hub.central"), login("staff.olena")
    assert hub.subscribe(f"$share/hub/{topics.HUB_FILTER}").value == 1
    assert staff.subscribe("cnap/#").value == 1
    agent = login("kyiv-1")
    denied = agent.publish("cnap/lviv-2/power", b"forged")
    assert denied.value == NOT_AUTHORIZED
    state = topics.outgoing("kyiv-1", topics.PowerState(ts=NOW, available=True, state="online"))
    assert not agent.publish(state.topic, state.payload).is_failure
    for reader in (hub, staff):
        got = reader.next_message()
        assert got.topic == "cnap/kyiv-1/power"      # the forged message never came first
        assert isinstance(topics.parse(got.topic, got.payload), topics.Message)


def test_a_command_reaches_only_its_site(login):
    kyiv, lviv = login("kyiv-1"), login("lviv-2")
    assert kyiv.subscribe(topics.command_filter("kyiv-1")).value == 1
    assert lviv.subscribe(topics.command_filter("lviv-2")).value == 1
    hub = login("hub.central")
    command = topics.Command(ts=NOW, id=str(uuid.uuid4()), action="set_level", args={"level": 2}, by="hub.central")
    sent = topics.outgoing("kyiv-1", command, "ventilation")
    assert not hub.publish(sent.topic, sent.payload).is_failure
    got = kyiv.next_message()
    assert topics.parse(got.topic, got.payload).payload == command
    lviv.subscribe("barrier/nothing-here")
    assert lviv.received_topics() == []


def test_anonymous_and_wrong_passwords_are_refused(central):
    anonymous = Client(central.local_port)
    assert anonymous.connect().value == NOT_AUTHORIZED
    anonymous.close()
    for username, password in [("kyiv-1", "wrong"), ("kyiv-1", PASSWORDS["lviv-2"]), ("nobody", "x"),
                               ("hub.central", "")]:
        client = Client(central.local_port, username, password)
        code = client.connect()
        client.close()
        # Mosquitto 2.0 answers 135 for a wrong password as for none (not 134, "bad user name or password").
        assert code.value == NOT_AUTHORIZED, (username, code.value)


def test_the_tls_listener_takes_tls_only(central, certs, login):
    assert login("kyiv-1", tls=True, ca_file=certs / "ca.crt") is not None
    # Plain MQTT CONNECT on the TLS port: no CONNACK, the broker closes the connection.
    connect = bytes([0x10, 0x10, 0x00, 0x04]) + b"MQTT" + bytes([0x05, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x03]) + b"abc"
    with socket.create_connection(("127.0.0.1", central.tls_port), WAIT_S) as sock:
        sock.sendall(connect)
        sock.settimeout(WAIT_S)
        try:
            answer = sock.recv(64)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x20")           # 0x20 would be a CONNACK
    # A client that does not trust our CA refuses the broker's certificate.
    untrusting = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", central.tls_port), WAIT_S) as sock:
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting.wrap_socket(sock, server_hostname="localhost")
    # The trusted CA and the right name work.
    trusting = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with socket.create_connection(("127.0.0.1", central.tls_port), WAIT_S) as sock:
        with trusting.wrap_socket(sock, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_no_private_key_is_committed():
    root = brokerconf.MOSQUITTO_DIR.parent.parent
    tracked = subprocess.run(["git", "ls-files", "-z"], capture_output=True, text=True, cwd=root, check=True).stdout
    for name in filter(None, tracked.split("\0")):
        if not (root / name).is_file():
            continue
        text = (root / name).read_text(errors="replace")
        assert not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text), name
