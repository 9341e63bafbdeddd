"""The embedded amqtt broker (monitoring/embedded_broker.py) with real paho 2.x clients over
127.0.0.1: MQTT 3.1.1 publish/subscribe with retained messages, passwords checked, MQTT 5 not
spoken (amqtt supports 3.1.1 only), and the port free again after stop()."""
from __future__ import annotations

import queue
import socket
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
import pytest

from monitoring import topics
from monitoring.embedded_broker import EmbeddedBroker
from tests.monitoring.mqtt import Client

ACCOUNTS = {"kyiv-1": "site-secret", "hub.central": "hub-secret"}


@pytest.fixture
def broker():
    embedded = EmbeddedBroker(accounts=ACCOUNTS).start()
    yield embedded
    embedded.stop()


def client(broker, username, password, protocol=mqtt.MQTTv311) -> Client:
    return Client(broker.port, username, password, protocol=protocol)


def test_retained_state_reaches_a_subscriber_that_comes_later(broker):
    site = client(broker, "kyiv-1", "site-secret")
    hub = client(broker, "hub.central", "hub-secret")
    try:
        assert site.connect() == 0
        printer = topics.PrinterState(ts=datetime.now(timezone.utc), online=True, state="ready", paper="near_end")
        out = topics.outgoing("kyiv-1", printer)
        assert site.publish(out.topic, out.payload, retain=out.retain) == 0
        assert hub.connect() == 0
        assert hub.subscribe(topics.HUB_FILTER) == 1
        message = hub.next_message(out.topic)
        assert message.retain
        parsed = topics.parse(message.topic, message.payload)
        assert parsed and parsed.payload.paper == "near_end"
        # and a live one, not retained, to the subscriber already there
        assert site.publish(topics.topic("online", "kyiv-1"), b"online") == 0
        live = hub.next_message(topics.topic("online", "kyiv-1"))
        assert live.payload == b"online" and not live.retain
    finally:
        site.close()
        hub.close()


@pytest.mark.parametrize("username,password", [("hub.central", "wrong"), ("nobody", "hub-secret"), (None, None)])
def test_unknown_accounts_and_wrong_passwords_are_refused(broker, username, password):
    intruder = client(broker, username, password)
    try:
        assert intruder.connect() != 0
    finally:
        intruder.close()


def test_mqtt5_is_not_spoken(broker):
    modern = client(broker, "hub.central", "hub-secret", protocol=mqtt.MQTTv5)
    try:
        with pytest.raises(queue.Empty):   # amqtt closes the connection without a v5 CONNACK
            modern.connect()
    finally:
        modern.close()


def test_stop_frees_the_port_and_only_loopback_is_allowed():
    embedded = EmbeddedBroker(accounts=ACCOUNTS).start()
    port = embedded.port
    embedded.stop()
    embedded.stop()   # twice is harmless
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(ValueError):
        EmbeddedBroker("0.0.0.0")
