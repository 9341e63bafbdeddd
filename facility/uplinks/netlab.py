"""A small internet in network namespaces (root only), made and removed by the tests and by
bench/failover.py; nothing outside the namespaces it makes is touched.

    client ns (cli) ── lan 10.200.0.0/24 ──┐
                    ── glan 10.201.0.0/24 ─┤ (guest network)
                                           appliance ns (app, the gateway, masquerades)
             wan1 100.64.1.0/24 ── up1 ns ─┤
             wan2 100.64.2.0/24 ── up2 ns ─┤
             wan3 100.64.3.0/24 ── up3 ns ─┘

Every upstream namespace holds its own copy of "the internet": 192.0.2.1–3 (probe targets;
HTTP on 192.0.2.3:8080) and 198.51.100.10:7000, an echo server that answers with the name of
its upstream, so a test sees which uplink a connection really went through. Faults are
nftables rules in the upstream namespace: a cut, random loss, ICMP rate limiting.
"""
from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import threading
import time
import uuid

from facility.uplinks.netns import in_netns
from facility.uplinks.simulator import QuietServer

TARGETS = ["icmp:192.0.2.1", "icmp:192.0.2.2", "icmp:192.0.2.3", "tcp:192.0.2.1:443",
           "tcp:192.0.2.2:443", "http://192.0.2.3:8080/"]
ECHO = ("198.51.100.10", 7000)


def sh(*argv: str, input: str | None = None) -> str:
    done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def usable(tools: tuple[str, ...] = ("ip", "nft", "conntrack")) -> str:
    """Why namespaces with ``tools`` cannot be used here, or ''."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in tools:
        if subprocess.run(["which", tool], capture_output=True).returncode:
            return f"{tool} is missing: run `make test`, which installs it"
    return ""


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(30)
        try:
            while data := self.request.recv(1024):
                self.request.sendall(self.server.label + b":" + data)
        except OSError:
            pass


class _Http(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(10)
        try:
            if self.request.recv(1024):
                time.sleep(self.server.lab.http_delay.get(self.server.upstream, 0))
                self.request.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        except OSError:
            pass


class NamespaceLab:
    """Network namespaces made together (each with its loopback up) and removed together, with
    the servers a lab runs in them; the base of the uplink and guest-network labs."""

    def __init__(self, namespaces: list[str]) -> None:
        self.namespaces = list(namespaces)
        self.servers: list[QuietServer] = []

    def make_namespaces(self) -> None:
        for ns in self.namespaces:
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class NetLab(NamespaceLab):
    def __init__(self, uplinks: int = 3) -> None:
        tag = uuid.uuid4().hex[:6]
        self.app, self.cli = f"cnap-app-{tag}", f"cnap-cli-{tag}"
        self.ups = [f"cnap-up{i}-{tag}" for i in range(1, uplinks + 1)]
        super().__init__([self.app, self.cli, *self.ups])
        self.http_delay: dict[int, float] = {}
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # --- building ------------------------------------------------------------------------
    def _build(self) -> None:
        self.make_namespaces()
        app, cli = self.app, self.cli
        sh("ip", "netns", "exec", app, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i, up in enumerate(self.ups, 1):
            sh("ip", "link", "add", "wan%d" % i, "netns", app, "type", "veth", "peer", "name", "eth0",
               "netns", up)
            sh("ip", "-n", app, "addr", "add", f"100.64.{i}.2/24", "dev", f"wan{i}")
            sh("ip", "-n", up, "addr", "add", f"100.64.{i}.1/24", "dev", "eth0")
            for ns, dev in ((app, f"wan{i}"), (up, "eth0")):
                sh("ip", "-n", ns, "link", "set", dev, "up")
            for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3", ECHO[0]):
                sh("ip", "-n", up, "addr", "add", f"{address}/32", "dev", "lo")
            sh("ip", "netns", "exec", up, "nft", "-f", "-", input=(
                "table inet fault {\n"
                "  chain input { type filter hook input priority 0; policy accept; }\n"
                "  chain output { type filter hook output priority 0; policy accept; }\n}\n"))
            self._serve(up, ECHO, _Echo, label=f"up{i}".encode())
            self._serve(up, ("192.0.2.3", 8080), _Http, upstream=i)
        for dev, peer, net in (("lan", "eth0", "10.200.0"), ("glan", "eth1", "10.201.0")):
            sh("ip", "link", "add", dev, "netns", app, "type", "veth", "peer", "name", peer, "netns", cli)
            sh("ip", "-n", app, "addr", "add", f"{net}.1/24", "dev", dev)
            sh("ip", "-n", cli, "addr", "add", f"{net}.2/24", "dev", peer)
            sh("ip", "-n", app, "link", "set", dev, "up")
            sh("ip", "-n", cli, "link", "set", peer, "up")
        sh("ip", "-n", cli, "route", "add", "default", "via", "10.200.0.1")
        # Guest sockets bind to 10.201.0.2 and leave through the guest network.
        sh("ip", "-n", cli, "route", "add", "default", "via", "10.201.0.1", "table", "100")
        sh("ip", "-n", cli, "rule", "add", "from", "10.201.0.2", "lookup", "100")
        sh("ip", "netns", "exec", app, "nft", "-f", "-", input=(
            "table ip nat {\n  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n"
            '    oifname "wan*" masquerade\n  }\n}\n'))

    def _serve(self, ns: str, address, handler, **attrs) -> None:
        with in_netns(ns):
            server = QuietServer(address, handler)
        server.lab = self
        for key, value in attrs.items():
            setattr(server, key, value)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self.servers.append(server)

    def settings(self, **overrides) -> dict:
        """Settings for a controller in the appliance namespace: fast probing for tests."""
        from terminal import settings as settings_module
        values = settings_module.defaults()
        values.update({
            "UPLINKS": [f"up{i} dev=wan{i} via=100.64.{i}.1 table={100 + i}"
                        for i in range(1, len(self.ups) + 1)],
            "UPLINKS_TARGETS": list(TARGETS),
            "UPLINKS_NETNS": self.app,
            "UPLINKS_PROBE_INTERVAL_MS": 100,
            "UPLINKS_PROBE_TIMEOUT_MS": 300,
            "UPLINKS_STABLE_S": 1.5,
            "UPLINKS_WINDOW_S": 10,
        })
        values.update(overrides)
        return values

    # --- faults --------------------------------------------------------------------------
    def faults(self, i: int, rules: list[str]) -> None:
        up = self.ups[i - 1]
        script = "flush chain inet fault input\nflush chain inet fault output\n"
        for rule in rules:
            chains = ("input", "output") if not rule.startswith("input:") else ("input",)
            rule = rule.removeprefix("input:")
            script += "".join(f"add rule inet fault {chain} {rule}\n" for chain in chains)
        sh("ip", "netns", "exec", up, "nft", "-f", "-", input=script)

    def cut(self, i: int) -> None:
        """Provider i stops carrying anything (its link to the appliance stays up)."""
        self.faults(i, ['iifname "eth0" drop', 'oifname "eth0" drop'])

    def lose(self, i: int, pct: int) -> None:
        """Provider i drops ``pct`` % of packets at random, each way."""
        self.faults(i, [f"numgen random mod 100 < {pct} drop"])

    def limit_icmp(self, i: int, address: str) -> None:
        """A target that answers at most one ping a second, like a rate-limiting public host."""
        self.faults(i, [f"input:ip daddr {address} icmp type echo-request limit rate over 1/second drop"])

    def heal(self, i: int) -> None:
        self.faults(i, [])

    # --- traffic -------------------------------------------------------------------------
    def connect(self, guest: bool = False, timeout: float = 3.0) -> socket.socket:
        """A TCP connection from the client namespace to the echo server, staff or guest side."""
        with in_netns(self.cli):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        if guest:
            sock.bind(("10.201.0.2", 0))
        sock.connect(ECHO)
        return sock

    @staticmethod
    def echo(sock: socket.socket, text: str = "ping") -> str:
        """Send ``text``; return which upstream answered ("up1", …)."""
        sock.sendall(text.encode())
        reply = sock.recv(1024).decode()
        label, _, echoed = reply.partition(":")
        assert echoed == text, reply
        return label

    def conntrack_count(self) -> int:
        out = sh("ip", "netns", "exec", self.app, "conntrack", "-C")
        return int(out.strip() or 0)
