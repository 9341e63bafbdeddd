"""An MQTT broker inside the Python process, for ``cnap demo`` on a machine without Mosquitto:
amqtt on 127.0.0.1 (a free port unless one is given), in a background thread with its own event
loop, so synchronous code (paho clients, the demo's main thread) just calls start() and stop().

amqtt speaks MQTT 3.1.1 only (it answers a version-5 CONNECT with "unacceptable protocol
version"): clients that must work with it connect with ``paho.mqtt.client.MQTTv311``. It keeps
retained messages in memory and checks user names and passwords (``accounts``), but it has no
ACL: the demo only. Production sites use Mosquitto (monitoring/brokerconf.py).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import threading
from dataclasses import dataclass, field

from amqtt.broker import Broker
from amqtt.errors import BrokerError
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

log = logging.getLogger("cnap.embedded_broker")

MQTT_PROTOCOL = "3.1.1"
START_TIMEOUT_S = 30.0   # generous: a loaded CI machine
PORT_ATTEMPTS = 5        # a free port may be taken between asking for it and binding it


class AccountsAuthPlugin(BaseAuthPlugin):
    """Lets in exactly the configured accounts (user name → password); nobody anonymous."""

    @dataclass
    class Config:
        accounts: dict[str, str] = field(default_factory=dict)

    async def authenticate(self, *, session: Session) -> bool:
        expected = self.config.accounts.get(session.username or "")
        given = session.password or ""
        return expected is not None and hmac.compare_digest(
            expected.encode(), given.encode() if isinstance(given, str) else bytes(given))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmbeddedBroker:
    """``start()`` returns once the broker listens on ``host:port``; ``stop()`` ends it and its
    thread. ``accounts`` None lets anybody in (tests of the broker itself only)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, accounts: dict[str, str] | None = None):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the embedded broker listens on loopback only")
        self.host, self.port, self.accounts = host, port, accounts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Broker | None = None

    def _config(self, port: int) -> dict:
        if self.accounts is None:
            auth = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        else:
            auth = {f"{__name__}.AccountsAuthPlugin": {"accounts": dict(self.accounts)}}
        bind = f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"
        return {"listeners": {"default": {"type": "tcp", "bind": bind}}, "plugins": auth}

    def start(self) -> "EmbeddedBroker":
        if self._thread is not None:
            raise RuntimeError("already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="embedded-mqtt", daemon=True)
        self._thread.start()
        last_error: Exception | None = None
        for _ in range(PORT_ATTEMPTS if self.port == 0 else 1):
            port = self.port or free_port(self.host)
            try:
                asyncio.run_coroutine_threadsafe(self._start(port), self._loop).result(START_TIMEOUT_S)
            except BrokerError as exc:   # the port was taken meanwhile: another one
                last_error = exc
                continue
            self.port = port
            log.info("embedded MQTT broker (amqtt, MQTT %s) on %s:%d", MQTT_PROTOCOL, self.host, port)
            return self
        self._end_loop()
        raise RuntimeError(f"the embedded broker could not start: {last_error}")

    async def _start(self, port: int) -> None:
        broker = Broker(self._config(port), loop=asyncio.get_running_loop())
        await broker.start()
        self._broker = broker

    def stop(self, timeout: float = START_TIMEOUT_S) -> None:
        if self._loop is None:
            return
        if self._broker is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(timeout)
            except Exception:   # stopping anyway: the loop and its sockets go below
                log.exception("embedded broker: shutdown failed")
            self._broker = None
        self._end_loop(timeout)

    def _end_loop(self, timeout: float = START_TIMEOUT_S) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
