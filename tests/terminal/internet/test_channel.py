"""The kiosk's side of the control channel (WindowChannel) against a scripted window peer."""
from __future__ import annotations

import json
import socket
import threading

import pytest

from terminal.internet.allowlist import Allowlist
from terminal.internet.channel import WindowChannel, encode, request_from_message, request_message
from terminal.internet.port import SessionRequest

REQUEST = SessionRequest(allowlist=Allowlist(["diia.gov.ua", "gov.ua"], ports=(443, 80)),
                         home_url="https://diia.gov.ua/", lang="uk", proxy_url="http://127.0.0.1:3128",
                         session_s=600, idle_s=90, warn_s=25, extend_s=120, back_url="http://127.0.0.1:8080/")


class Collector:
    def __init__(self):
        self.events, self.cond = [], threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, count, timeout=5):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= count, timeout), self.events
            return list(self.events)


def read_message(peer: socket.socket) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = peer.recv(65536)
        assert chunk, "the channel closed"
        data += chunk
    return json.loads(data)


def test_a_request_survives_the_trip_through_the_channel():
    message = json.loads(encode(request_message(REQUEST)))
    assert message["op"] == "open" and message["allowlist"] == {"domains": ["diia.gov.ua", "gov.ua"],
                                                                  "ports": [80, 443]}
    assert request_from_message(message) == REQUEST


@pytest.mark.parametrize("change", [{"session_s": 0}, {"idle_s": -5}, {"warn_s": "30"}, {"lang": "de"},
                                    {"home_url": None}, {"allowlist": {"domains": ["com"], "ports": [443]}},
                                    {"unknown": 1}, {"session_s": True}])
def test_a_malformed_request_is_refused(change):
    message = {**request_message(REQUEST), **change}
    with pytest.raises((ValueError, TypeError, KeyError)):
        request_from_message(message)


def test_open_events_and_exactly_one_ended():
    channel = WindowChannel()
    peer = channel.connect()
    sink = Collector()
    assert channel.open(REQUEST, sink) is True
    assert read_message(peer)["op"] == "open"
    assert channel.open(REQUEST, Collector()) is False  # one session at a time
    assert channel.is_open()
    peer.sendall(encode({"type": "started"}) + encode({"type": "blocked", "host": "evil.test", "layer": "hook",
                                                       "kind": "navigation"}) + encode({"type": "nonsense"}))
    channel.end("user")
    assert read_message(peer) == {"op": "end", "reason": "user"}
    peer.sendall(encode({"type": "ended", "reason": "user", "seconds": 3.0}) +
                 encode({"type": "ended", "reason": "user", "seconds": 3.0}))
    events = sink.wait(3)
    assert [e["type"] for e in events] == ["started", "blocked", "ended"]
    assert not channel.is_open()
    peer.close()
    assert len(sink.events) == 3  # the window closing after the session adds nothing


def test_a_window_that_dies_mid_session_ends_it_with_error_and_a_new_window_can_serve():
    channel = WindowChannel()
    peer = channel.connect()
    sink = Collector()
    assert channel.open(REQUEST, sink)
    read_message(peer)
    peer.close()
    (event,) = sink.wait(1)
    assert event["type"] == "ended" and event["reason"] == "error"
    assert not channel.is_open()
    assert channel.open(REQUEST, Collector()) is False  # no window now
    second = channel.connect()  # run_window reopened the window
    sink2 = Collector()
    assert channel.open(REQUEST, sink2)
    assert read_message(second)["op"] == "open"
    second.sendall(encode({"type": "ended", "reason": "idle", "seconds": 90.0}))
    assert sink2.wait(1) == [{"type": "ended", "reason": "idle", "seconds": 90.0}]
    second.close()


def test_an_oversized_or_garbled_stream_closes_the_window_link():
    channel = WindowChannel()
    peer = channel.connect()
    sink = Collector()
    assert channel.open(REQUEST, sink)
    read_message(peer)
    peer.sendall(b"not json\n")
    (event,) = sink.wait(1)
    assert event["reason"] == "error"
