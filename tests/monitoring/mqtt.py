"""Real Mosquitto brokers for tests, and a small synchronous wrapper around paho-mqtt 2.x (MQTT 5)
that returns the broker's reason codes."""
from __future__ import annotations

import contextlib
import grp
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from monitoring import brokerconf

WAIT_S = 10   # an upper bound for one broker round trip on a loaded CI machine, never a timing assert


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property lengths)."""
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8_string(text: str) -> bytes:
    """MQTT's UTF-8 string: two length bytes, then the bytes."""
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_dir(prefix: str) -> Path:
    """A temporary folder Mosquitto can read after dropping to its own user (group mosquitto)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chown(path, -1, grp.getgrnam("mosquitto").gr_gid)
    path.chmod(0o750)
    return path


def make_certs(out: Path) -> Path:
    subprocess.run(["sh", str(brokerconf.MOSQUITTO_DIR / "make-certs.sh"), str(out), "localhost", "127.0.0.1"],
                   check=True, capture_output=True)
    os.chown(out, -1, grp.getgrnam("mosquitto").gr_gid)
    out.chmod(0o750)
    return out


class Broker:
    """One mosquitto process on free loopback ports, in its own folder; ``stop()`` ends it."""

    def __init__(self, name: str, conf_text_for, accounts: dict[str, str]):
        self.dir = private_dir(f"cnap-{name}-")
        self.process = None
        try:
            self._start(conf_text_for, accounts)
        except BaseException:
            self.stop()
            raise

    def _start(self, conf_text_for, accounts: dict[str, str]) -> None:
        self.local_port, self.tls_port = free_port(), free_port()
        for username, password in accounts.items():
            brokerconf.set_password(self.dir / "passwd", username, password)
        (self.dir / "acl").write_text(brokerconf.acl_text(list(accounts)), encoding="utf-8")
        for file in ("passwd", "acl"):
            os.chown(self.dir / file, -1, grp.getgrnam("mosquitto").gr_gid)
            (self.dir / file).chmod(0o640)
        conf = self.dir / "mosquitto.conf"
        conf.write_text(conf_text_for(self), encoding="utf-8")
        conf.chmod(0o640)
        os.chown(conf, -1, grp.getgrnam("mosquitto").gr_gid)
        self.log = open(self.dir / "log", "wb")
        self.process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.local_port), 0.2), \
                    socket.create_connection(("127.0.0.1", self.tls_port), 0.2):
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen: {self.log_text()}")

    def log_text(self) -> str:
        self.log.flush()
        return (self.dir / "log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "log", None) is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    """paho-mqtt 2.x over MQTT 5 (or ``protocol=mqtt.MQTTv311``, for the embedded broker), made
    synchronous: each call waits for the broker's answer and returns its reason code(s)."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None, *,
                 ca_file: Path | None = None, client_id: str = "", will: tuple[str, bytes] | None = None,
                 protocol: int = mqtt.MQTTv5):
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._answers: dict[tuple[str, int], queue.Queue] = {}
        self._lock = threading.Lock()
        self.connack: queue.Queue = queue.Queue()
        self.mqtt = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.mqtt.reconnect_delay_set(0.05, 0.5)   # a refused client's thread stops quickly on close()
        if username is not None:
            self.mqtt.username_pw_set(username, password)
        if ca_file is not None:
            self.mqtt.tls_set(ca_certs=str(ca_file))
        if will is not None:
            self.mqtt.will_set(will[0], will[1], qos=1, retain=True)
        self.mqtt.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc)
        self.mqtt.on_publish = lambda c, u, mid, rc, props: self._answer("pub", mid).put(rc)
        self.mqtt.on_subscribe = lambda c, u, mid, rcs, props: self._answer("sub", mid).put(rcs)
        self.mqtt.on_message = lambda c, u, msg: self.messages.put(msg)
        self.port = port

    def _answer(self, kind: str, mid: int) -> queue.Queue:
        with self._lock:
            return self._answers.setdefault((kind, mid), queue.Queue())

    def connect(self) -> mqtt.ReasonCode:
        """The CONNACK's reason code (0 = accepted)."""
        self.mqtt.connect("127.0.0.1", self.port, keepalive=30)
        self.mqtt.loop_start()
        return self.connack.get(timeout=WAIT_S)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> mqtt.ReasonCode:
        """Publish at QoS 1; the PUBACK's reason code (135 = not authorized; 16 = accepted, no subscriber)."""
        info = self.mqtt.publish(topic, payload, qos=1, retain=retain)
        return self._answer("pub", info.mid).get(timeout=WAIT_S)

    def subscribe(self, topic_filter: str, qos: int = 1) -> mqtt.ReasonCode:
        """The SUBACK's reason code for one filter (the granted QoS, or 135 = not authorized)."""
        _, mid = self.mqtt.subscribe(topic_filter, qos=qos)
        return self._answer("sub", mid).get(timeout=WAIT_S)[0]

    def next_message(self, topic: str | None = None) -> mqtt.MQTTMessage:
        """The next message received (on ``topic`` when given; others before it are skipped)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            message = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            if topic is None or message.topic == topic:
                return message

    def received_topics(self) -> list[str]:
        """Everything received so far, without waiting."""
        seen = []
        with contextlib.suppress(queue.Empty):
            while True:
                seen.append(self.messages.get_nowait().topic)
        return seen

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()

