"""A guest Wi-Fi in network namespaces (root only), made and removed by the tests, by
bench/internet_guest.py and by ``cnap demo``; nothing outside the namespaces it makes is touched.

    guest1 ns (eth0, DHCP) ─┐
    guest2 ns (eth0, DHCP) ─┤ ap ns: a bridge with isolated ports (the access point's client
                            │        isolation) ── guest0 10.99.0.1/22 (GUEST_INTERFACE)
                          gateway ns (runs the agent's nftables table, dnsmasq, tc, the portal)
        office0 192.168.50.1/24 ─── office ns 192.168.50.2 (HTTP on :80, must stay unreachable)
        wan0 203.0.113.2/24 ─────── internet ns 203.0.113.1, with 198.51.100.10 on lo:
                                    HTTP :80 ("internet"), a byte sink :5001 (uploads),
                                    a byte source :5002 (downloads)
"""
from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from facility.uplinks.netlab import NamespaceLab, sh
from facility.uplinks.netlab import usable as namespaces_usable
from facility.uplinks.netns import in_netns
from facility.uplinks.simulator import QuietServer

INTERNET = "198.51.100.10"
OFFICE = "192.168.50.2"
GATEWAY = "10.99.0.1"
GUEST_INTERFACE = "guest0"
INTERNET_PAGE = b"you are on the internet"
OFFICE_PAGE = b"office intranet"

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with the lease in its environment: set the address and route, keep option 114.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    ip route replace default via "$router" dev "$interface"
    echo "ip=$ip router=$router dns=$dns opt114=$opt114" > "$LEASE_OUT"
    ;;
esac
exit 0
"""


def usable() -> str:
    """Why the lab cannot be built here, or ''."""
    return namespaces_usable(("ip", "nft", "tc", "dnsmasq", "udhcpc", "bridge"))


class _Page(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(10)
        try:
            if self.request.recv(4096):
                body = self.server.page
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        except OSError:
            pass


class _Sink(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(30)
        try:
            while self.request.recv(65536):
                pass
        except OSError:
            pass


class _Source(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(30)
        chunk = b"x" * 65536
        try:
            seconds = float(self.request.recv(16).decode() or 0)
            end = time.monotonic() + min(seconds, 30)
            while time.monotonic() < end:
                self.request.sendall(chunk)
        except (OSError, ValueError):
            pass


class GuestLab(NamespaceLab):
    def __init__(self, guests: int = 2) -> None:
        tag = uuid.uuid4().hex[:6]
        self.gateway = f"cnap-gw-{tag}"
        self.internet = f"cnap-inet-{tag}"
        self.office = f"cnap-office-{tag}"
        self.ap = f"cnap-ap-{tag}"
        self.guests = [f"cnap-guest{i}-{tag}" for i in range(1, guests + 1)]
        super().__init__([self.gateway, self.internet, self.office, self.ap, *self.guests])
        self.folder = Path(tempfile.mkdtemp(prefix="cnap-guestlab-"))
        self.addresses: dict[str, str] = {}
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        self.make_namespaces()
        gw = self.gateway
        for dev, peer, ns, ours, theirs in (("wan0", "eth0", self.internet, "203.0.113.2", "203.0.113.1"),
                                            ("office0", "eth0", self.office, "192.168.50.1", OFFICE)):
            sh("ip", "link", "add", "name", dev, "netns", gw, "type", "veth", "peer", "name", peer, "netns", ns)
            sh("ip", "-n", gw, "addr", "add", f"{ours}/24", "dev", dev)
            sh("ip", "-n", ns, "addr", "add", f"{theirs}/24", "dev", peer)
            sh("ip", "-n", gw, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", peer, "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", ours)
        sh("ip", "-n", self.internet, "addr", "add", f"{INTERNET}/32", "dev", "lo")
        sh("ip", "-n", gw, "route", "add", "default", "via", "203.0.113.1")
        # The access point, a box of its own: a bridge whose guest ports are isolated from each
        # other (its "client isolation"), uplinked to the gateway's guest interface. (tc's ifb
        # upload shaping does not work on a bridge: GUEST_INTERFACE is a plain interface.)
        ap = self.ap
        sh("ip", "-n", ap, "link", "add", "name", "br0", "type", "bridge")
        sh("ip", "link", "add", "name", GUEST_INTERFACE, "netns", gw, "type", "veth", "peer", "name", "uplink",
           "netns", ap)
        sh("ip", "-n", ap, "link", "set", "uplink", "master", "br0")
        sh("ip", "-n", ap, "link", "set", "uplink", "up")
        for i, ns in enumerate(self.guests, 1):
            port = f"port{i}"
            sh("ip", "link", "add", "name", port, "netns", ap, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", ap, "link", "set", port, "master", "br0")
            sh("ip", "-n", ap, "link", "set", port, "up")
            sh("ip", "netns", "exec", ap, "bridge", "link", "set", "dev", port, "isolated", "on")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ap, "link", "set", "br0", "up")
        self._serve(self.internet, (INTERNET, 80), _Page, page=INTERNET_PAGE)
        self._serve(self.internet, (INTERNET, 5001), _Sink)
        self._serve(self.internet, (INTERNET, 5002), _Source)
        self._serve(self.office, (OFFICE, 80), _Page, page=OFFICE_PAGE)

    def _serve(self, ns: str, address, handler, **attrs) -> None:
        with in_netns(ns):
            server = QuietServer(address, handler)
        for key, value in attrs.items():
            setattr(server, key, value)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self.servers.append(server)

    def settings(self, **overrides) -> dict:
        """Settings for the agent's controller and the kiosk's portal, pointed at this lab."""
        return {"GUEST_INTERFACE": GUEST_INTERFACE, "GUEST_ADDRESS": f"{GATEWAY}/22",
                "GUEST_NETNS": self.gateway, "GUEST_OUT_INTERFACES": ["wan0"],
                "GUEST_STATE_DIR": str(self.folder / "state"), "GUEST_DNS_SERVERS": ["203.0.113.1"],
                **overrides}

    # --- a guest's side ------------------------------------------------------------------
    def dhcp(self, i: int = 1, timeout_s: float = 20) -> dict[str, str]:
        """Run udhcpc in guest ``i`` until it has a lease; returns what the lease said."""
        script = self.folder / "udhcpc.sh"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o700)
        out = self.folder / f"lease{i}"
        out.unlink(missing_ok=True)
        env = dict(os.environ, LEASE_OUT=str(out))
        done = subprocess.run(["ip", "netns", "exec", self.guests[i - 1], "udhcpc", "-i", "eth0", "-n", "-q",
                               "-f", "-t", str(int(timeout_s)), "-T", "1", "-O", "114", "-s", str(script)],
                              env=env, capture_output=True, text=True, timeout=timeout_s + 10)
        if done.returncode or not out.exists():
            raise RuntimeError(f"udhcpc got no lease: {done.stderr.strip()[-300:]}")
        lease = dict(word.split("=", 1) for word in out.read_text().split() if "=" in word)
        self.addresses[self.guests[i - 1]] = lease["ip"]
        return lease

    def connect(self, i: int, host: str, port: int, timeout: float = 3.0) -> socket.socket:
        with in_netns(self.guests[i - 1]):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def http(self, i: int, host: str, port: int = 80, path: str = "/", headers: dict | None = None,
             method: str = "GET", body: bytes = b"", timeout: float = 3.0) -> tuple[int, dict, bytes]:
        """A plain HTTP/1.1 request from guest ``i``; (status, headers in lower case, body)."""
        sock = self.connect(i, host, port, timeout)
        try:
            lines = [f"{method} {path} HTTP/1.1", f"Host: {(headers or {}).pop('Host', host)}",
                     "Connection: close", f"Content-Length: {len(body)}"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        finally:
            sock.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parsed = {}
        for line in header_lines:
            key, _, value = line.partition(":")
            parsed.setdefault(key.strip().lower(), []).append(value.strip())
        return int(status_line.split()[1]), {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}, payload

    def reaches(self, i: int, host: str, port: int, timeout: float = 1.5) -> bool:
        try:
            self.connect(i, host, port, timeout).close()
            return True
        except OSError:
            return False

    def upload_rate_kbit(self, i: int = 1, seconds: float = 3.0) -> float:
        """Guest ``i`` sends to the internet's sink as fast as it can; kbit/s of payload, measured
        after a short warm-up (TCP's slow start and the shaper's first burst)."""
        sock = self.connect(i, INTERNET, 5001, timeout=10)
        chunk = b"u" * 16384
        written = 0

        def delivered() -> int:   # written minus what is still unsent or unacknowledged here
            return written - _unsent(sock)

        try:
            warm_end = time.monotonic() + 0.5
            while time.monotonic() < warm_end:
                sock.sendall(chunk)
                written += len(chunk)
            start, at_start = time.monotonic(), delivered()
            while time.monotonic() - start < seconds:
                sock.sendall(chunk)
                written += len(chunk)
            elapsed, at_end = time.monotonic() - start, delivered()
        finally:
            sock.close()
        return max(0, at_end - at_start) * 8 / 1000 / elapsed

    def download_rate_kbit(self, i: int = 1, seconds: float = 3.0) -> float:
        sock = self.connect(i, INTERNET, 5002, timeout=10)
        try:
            sock.sendall(f"{seconds + 1.5}".encode().ljust(16))
            warm_end = time.monotonic() + 0.5
            while time.monotonic() < warm_end:
                sock.recv(65536)
            got, start = 0, time.monotonic()
            while time.monotonic() - start < seconds:
                data = sock.recv(65536)
                if not data:
                    break
                got += len(data)
            elapsed = time.monotonic() - start
        finally:
            sock.close()
        return got * 8 / 1000 / elapsed

    def close(self) -> None:
        super().close()
        subprocess.run(["rm", "-rf", str(self.folder)], capture_output=True)


def _unsent(sock: socket.socket) -> int:
    """Bytes written but not yet acknowledged by the other end (SIOCOUTQ); 0 where unknown."""
    import fcntl
    import struct
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), 0x5411, b"\0\0\0\0"))[0]
    except OSError:
        return 0


class Site:
    """The appliance's side for a lab: ``cnap agent`` (in this process, only the guestnet
    controller) and the kiosk app with its portal listener in the gateway namespace."""

    def __init__(self, lab: GuestLab, instance: str, **overrides) -> None:
        from monitoring.agent import Agent
        from terminal import create_app
        from terminal import settings as settings_module
        from terminal.cli import guest_listener
        from terminal.server import BackgroundServer

        self.lab = lab
        # The installer's job on a real site (the agent sets it too): the address exists before
        # the kiosk binds its portal listener to it.
        sh("ip", "-n", lab.gateway, "addr", "replace", f"{GATEWAY}/22", "dev", GUEST_INTERFACE)
        sh("ip", "-n", lab.gateway, "link", "set", GUEST_INTERFACE, "up")
        self.settings = settings_module.load({"INSTANCE_PATH": instance, **lab.settings(**overrides)}, environ={})
        self.agent = Agent(self.settings, modules=["facility.guestnet"])
        self.servers = []
        self.app = None
        try:
            agent_url = self.agent.start(port=0)
            self.agent.runner.wait_first_polls(20)
            self.app = create_app({"INSTANCE_PATH": instance, "AGENT_PORT": int(agent_url.rsplit(":", 1)[1]),
                                   "HOST": "127.0.0.1", **lab.settings(**overrides)})
            server = BackgroundServer(self.app, "127.0.0.1", 0, threads=4, **guest_listener(self.app.config))
            self.servers.append(server)
            if not server.guest_url:
                raise RuntimeError(f"no portal listener: {server.guest_error}")
            self.portal_port = self.settings["GUEST_PORTAL_PORT"]
        except BaseException:
            self.close()
            raise

    def status(self) -> dict:
        return self.agent.runner.status()["controllers"]["guestnet"]

    def accept_request(self, i: int = 1) -> tuple[str, str]:
        """What a phone's captive browser gets first: the session cookie and the form's CSRF token."""
        import re
        status, headers, page = self.lab.http(i, GATEWAY, self.portal_port, "/portal/?lang=en")
        if status != 200:
            raise RuntimeError(f"the terms page gave {status}")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
        return headers["set-cookie"].split(";")[0], token

    def accept(self, i: int = 1, prepared: tuple[str, str] | None = None) -> tuple[int, bytes]:
        cookie, token = prepared or self.accept_request(i)
        status, _, body = self.lab.http(i, GATEWAY, self.portal_port, "/portal/accept", method="POST",
                                        headers={"Cookie": cookie,
                                                 "Content-Type": "application/x-www-form-urlencoded"},
                                        body=f"csrf_token={token}&lang=en".encode())
        return status, body

    def close(self) -> None:
        from terminal import close_app
        from .config import from_settings
        from .io import Gateway

        for server in self.servers:
            server.stop()
        if self.app is not None:
            close_app(self.app)
        self.agent.stop()
        Gateway(from_settings(self.settings)).teardown()
