"""The MQTT broker of ``cnap demo``: a real Mosquitto on loopback, with a generated password file
and the production ACL (monitoring/brokerconf.py), when ``mosquitto`` is installed; otherwise
the embedded amqtt broker (monitoring/embedded_broker.py: MQTT 3.1.1 only, passwords but no ACL).
No TLS: nothing leaves 127.0.0.1.

    broker = start_demo_broker(workdir)
    host, port, accounts, stop = broker          # accounts: user name -> generated password
    broker.kind, broker.mqtt_protocol            # "mosquitto" / "embedded", "5" / "3.1.1"
"""
from __future__ import annotations

import contextlib
import grp
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from monitoring import brokerconf, topics
from monitoring.embedded_broker import MQTT_PROTOCOL as EMBEDDED_PROTOCOL, EmbeddedBroker, free_port

log = logging.getLogger("cnap.demo_broker")

HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
PORT_ATTEMPTS = 3
MOSQUITTO_GROUP = "mosquitto"


@dataclass(frozen=True)
class DemoBroker:
    host: str
    port: int
    accounts: dict[str, str]
    stop: Callable[[], None]
    kind: str              # "mosquitto" or "embedded"
    mqtt_protocol: str     # "5" (Mosquitto speaks 3.1.1 too) or "3.1.1"

    def __iter__(self) -> Iterator:   # host, port, accounts, stop = start_demo_broker(...)
        return iter((self.host, self.port, self.accounts, self.stop))


def demo_accounts(site: str) -> dict[str, str]:
    """The site agent (user = site id), the hub and a read-only staff account, fresh passwords."""
    if not topics.valid_site_id(site):
        raise ValueError(f"bad site id {site!r}")
    return {name: secrets.token_urlsafe(18) for name in (site, "hub.demo", "staff.demo")}


def start_demo_broker(workdir: str | os.PathLike, site: str = "demo", *, use_mosquitto: bool | None = None) -> DemoBroker:
    """A running broker for the demo; ``use_mosquitto`` None: Mosquitto when installed."""
    accounts = demo_accounts(site)
    have_mosquitto = shutil.which("mosquitto") is not None and shutil.which("mosquitto_passwd") is not None
    if use_mosquitto is None:
        use_mosquitto = have_mosquitto
    if use_mosquitto:
        if not have_mosquitto:
            raise RuntimeError("mosquitto (and mosquitto_passwd) is not installed")
        return _start_mosquitto(Path(workdir), accounts)
    broker = EmbeddedBroker(HOST, 0, accounts).start()
    return DemoBroker(HOST, broker.port, accounts, broker.stop, "embedded", EMBEDDED_PROTOCOL)


# --- Mosquitto ---------------------------------------------------------------------------------------
def _conf_text(folder: Path, port: int) -> str:
    return "\n".join([
        "# cnap demo: loopback only, no TLS, nothing kept on disk",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {folder / 'passwd'}",
        f"acl_file {folder / 'acl'}",
        "persistence false",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        f"listener {port} {HOST}",
        ""])


def _broker_folder(workdir: Path) -> tuple[Path, bool]:
    """Where the broker's files go, and whether to remove it at stop. Mosquitto started as root
    drops to the mosquitto user before reading its password and ACL files: they then live in a
    private temporary folder of group mosquitto (the work folder may not be reachable for it)."""
    if os.geteuid() != 0:
        folder = workdir / "mqtt"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder, False
    folder = Path(tempfile.mkdtemp(prefix="cnap-demo-mqtt-"))
    os.chown(folder, -1, grp.getgrnam(MOSQUITTO_GROUP).gr_gid)
    folder.chmod(0o750)
    return folder, True


def _start_mosquitto(workdir: Path, accounts: dict[str, str]) -> DemoBroker:
    workdir.mkdir(parents=True, exist_ok=True)
    folder, temporary = _broker_folder(workdir)
    try:
        (folder / "passwd").unlink(missing_ok=True)
        for username, password in accounts.items():
            brokerconf.set_password(folder / "passwd", username, password)
        (folder / "acl").write_text(brokerconf.acl_text(list(accounts)), encoding="utf-8")
        for name in ("passwd", "acl"):
            if temporary:
                os.chown(folder / name, -1, grp.getgrnam(MOSQUITTO_GROUP).gr_gid)
            (folder / name).chmod(0o640)
        last_log = ""
        for _ in range(PORT_ATTEMPTS):   # a free port may be taken before mosquitto binds it
            port = free_port(HOST)
            conf = folder / "mosquitto.conf"
            conf.write_text(_conf_text(folder, port), encoding="utf-8")
            conf.chmod(0o640)
            if temporary:
                os.chown(conf, -1, grp.getgrnam(MOSQUITTO_GROUP).gr_gid)
            log_path = workdir / "mosquitto.log"
            with open(log_path, "ab") as log_file:
                process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
            if _wait_listening(process, port):
                break
            _end(process)
            last_log = log_path.read_text(errors="replace")[-2000:]
        else:
            raise RuntimeError(f"mosquitto did not start: {last_log}")
    except BaseException:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
        raise

    def stop() -> None:
        _end(process)
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)

    log.info("demo MQTT broker: mosquitto on %s:%d (accounts %s)", HOST, port, ", ".join(accounts))
    return DemoBroker(HOST, port, accounts, stop, "mosquitto", "5")


def _wait_listening(process: subprocess.Popen, port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
            return True
        time.sleep(0.05)
    return False


def _end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
