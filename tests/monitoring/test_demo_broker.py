"""``cnap demo``'s broker (monitoring/demo_broker.py): a real Mosquitto with generated passwords
and the production ACL when installed, the embedded amqtt broker otherwise; both on 127.0.0.1,
both carry a site's retained state to the hub with the generated accounts."""
from __future__ import annotations

import socket

import paho.mqtt.client as mqtt
import pytest

from monitoring import topics
from monitoring.demo_broker import start_demo_broker
from tests.monitoring.mqtt import Client

NOT_AUTHORIZED = 135


def round_trip(broker, protocol) -> None:
    host, port, accounts, stop = broker
    assert host == "127.0.0.1" and set(accounts) == {"kyiv-1", "hub.demo", "staff.demo"}
    site = Client(port, "kyiv-1", accounts["kyiv-1"], protocol=protocol)
    hub = Client(port, "hub.demo", accounts["hub.demo"], protocol=protocol)
    try:
        assert site.connect() == 0
        assert site.publish(topics.topic("online", "kyiv-1"), b"online", retain=True) in (0, 16)  # 16: no subscriber yet
        assert hub.connect() == 0
        assert hub.subscribe(topics.HUB_FILTER) == 1
        message = hub.next_message(topics.topic("online", "kyiv-1"))
        assert message.payload == b"online" and message.retain
    finally:
        site.close()
        hub.close()
    wrong = Client(port, "hub.demo", accounts["hub.demo"] + "x", protocol=protocol)
    try:
        assert wrong.connect() != 0
    finally:
        wrong.close()


def test_with_mosquitto_installed_it_is_mosquitto_with_the_acl(tmp_path):
    broker = start_demo_broker(tmp_path, "kyiv-1")
    try:
        assert (broker.kind, broker.mqtt_protocol) == ("mosquitto", "5")
        round_trip(broker, mqtt.MQTTv5)
        # the production ACL holds: a site writes only its own tree, the hub no state at all
        site = Client(broker.port, "kyiv-1", broker.accounts["kyiv-1"])
        hub = Client(broker.port, "hub.demo", broker.accounts["hub.demo"])
        try:
            assert site.connect() == 0 and hub.connect() == 0
            assert site.publish(topics.topic("online", "lviv-2"), b"online") == NOT_AUTHORIZED
            assert hub.publish(topics.topic("online", "kyiv-1"), b"offline") == NOT_AUTHORIZED
        finally:
            site.close()
            hub.close()
        assert "mosquitto.log" in {p.name for p in tmp_path.iterdir()}
    finally:
        broker.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=5).close()


def test_without_mosquitto_it_is_the_embedded_broker(tmp_path, monkeypatch):
    monkeypatch.setattr("monitoring.demo_broker.shutil.which", lambda name: None)
    broker = start_demo_broker(tmp_path, "kyiv-1")
    try:
        assert (broker.kind, broker.mqtt_protocol) == ("embedded", "3.1.1")
        round_trip(broker, mqtt.MQTTv311)
    finally:
        broker.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=5).close()


def test_asking_for_mosquitto_without_it_and_bad_site_ids_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError):
        start_demo_broker(tmp_path, "Kyiv 1")
    monkeypatch.setattr("monitoring.demo_broker.shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match="not installed"):
        start_demo_broker(tmp_path, use_mosquitto=True)
