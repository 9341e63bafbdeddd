"""monitoring/hub/worker.py's paho client that reads the socket in large chunks and acknowledges a
batch in one write: every packet of a byte stream cut anywhere is delivered once and in order, a
reconnect never replays the old connection's bytes, and the batched PUBACKs are the MQTT 5 bytes."""
from __future__ import annotations

import random
import struct

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from monitoring.hub.worker import _IngestClient
from tests.monitoring.mqtt import varint


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """MQTT 5 PUBLISH, QoS 1, retained, no properties."""
    body = struct.pack("!H", len(topic)) + topic.encode() + struct.pack("!H", packet_id) + b"\x00" + payload
    return b"\x33" + varint(len(body)) + body


class ChunkedSocket:
    """A non-blocking socket whose receive side hands out ``data`` in the given chunks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.sent = b""

    def recv(self, bufsize: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError()
        chunk = self.chunks.pop(0)
        if len(chunk) > bufsize:   # the rest stays for the next call, as a socket would keep it
            self.chunks.insert(0, chunk[bufsize:])
            chunk = chunk[:bufsize]
        return chunk

    def send(self, data) -> int:
        self.sent += bytes(data)
        return len(data)

    def close(self) -> None:
        pass

    def fileno(self) -> int:
        return -1


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    chunks, at = [], 0
    while at < len(data):
        size = rng.choice([1, 2, 3, 7, 50, 300, 4096, 100000])
        chunks.append(data[at:at + size])
        at += size
    return chunks


def make_client(received: list) -> _IngestClient:
    client = _IngestClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True)
    client.on_message = lambda c, u, message: received.append((message.topic, message.payload, message.mid,
                                                               message.retain))
    return client


def read_all(client: _IngestClient) -> None:
    for _ in range(1_000_000):
        if not client._sock.chunks and not client._buffered():
            return
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    raise AssertionError("the stream was not read to its end")


def test_every_packet_of_a_stream_cut_anywhere_is_delivered_once_in_order():
    rng = random.Random(11)
    expected = [(f"cnap/site-{n % 37:03d}/uplink/u{n % 5}", bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400))),
                 n % 65535 + 1, True) for n in range(3000)]
    stream = b"".join(publish_packet(topic, payload, mid) for topic, payload, mid, _ in expected)
    for trial in range(3):
        received: list = []
        client = make_client(received)
        client._sock = ChunkedSocket(cut(stream, rng))
        read_all(client)
        assert received == expected, f"trial {trial}"


def test_a_new_connection_never_gets_the_old_ones_buffered_bytes():
    received: list = []
    client = make_client(received)
    old = ChunkedSocket([publish_packet("cnap/a/online", b"online", 1) + publish_packet("cnap/a/power", b"{}", 2)])
    client._sock = old
    assert client._sock_recv(1) == b"\x33"   # one byte taken, the rest of the 64 KiB read is buffered
    assert client._buffered()
    client._sock = ChunkedSocket([publish_packet("cnap/b/online", b"online", 1)])   # paho reconnected
    assert not client._buffered()
    read_all(client)
    assert [r[0] for r in received] == ["cnap/b/online"]


def test_the_acknowledgements_of_a_batch_are_one_write_of_mqtt5_pubacks():
    client = make_client([])
    client.ack_many([1, 2, 65535])
    client.ack_many([])
    assert [p["packet"] for p in client._out_packet] == [b"\x40\x02\x00\x01" + b"\x40\x02\x00\x02" + b"\x40\x02\xff\xff"]
