"""The real side of the uplink watch: probes bound to each uplink, policy routing, conntrack.

``Prober`` sends one round per uplink every interval: an ICMP echo (unprivileged ping socket
when ``net.ipv4.ping_group_range`` allows, else a raw socket as root), a TCP connect or an HTTP
HEAD to every target, each socket bound to the uplink's interface (SO_BINDTODEVICE) or source
address. One selector multiplexes them all, so rounds overlap and RTTs are measured to the
millisecond. A refused TCP connection counts as an answer: the path reached the target.

``Router`` gives every uplink its own routing table and an ``oif`` rule for the probes; in
gateway mode it also adds the rules that send forwarded traffic through the active (and the
guest) table, and an nftables table that pins every connection to the uplink it started on
(conntrack mark = the uplink's table number), so a switch moves only new connections and
failing back breaks nothing. ``flush`` forgets the connections of an uplink that died.
"""
from __future__ import annotations

import errno
import logging
import os
import random
import selectors
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from . import netns
from .config import Config, Target, Uplink
from .policy import Probe, Round

log = logging.getLogger("cnap.uplinks")

ICMP_ECHO, ICMP_ECHO_REPLY = 8, 0
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
NFT_TABLE = "cnap_uplinks"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _bind(sock: socket.socket, uplink: Uplink) -> None:
    if uplink.dev:
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, uplink.dev.encode())
    if uplink.src:
        sock.bind((uplink.src, 0))


@dataclass
class _RoundState:
    uplink: str
    sent_at: float                          # monotonic
    deadline: float
    waiting: int
    probes: list[Probe] = field(default_factory=list)


class _IcmpSocket:
    """One ICMP socket per uplink; replies are matched by sequence number."""

    def __init__(self, uplink: Uplink) -> None:
        self.raw = False
        try:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        except PermissionError:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            self.raw = True
        try:
            self.sock.setblocking(False)
            _bind(self.sock, uplink)
        except OSError:
            self.sock.close()
            raise
        # The kernel picks the identifier of a ping socket; a raw socket sends ours.
        self.ident = random.randrange(1, 0xFFFF) if self.raw else 0
        self.seq = random.randrange(0, 0xFFFF)

    def send(self, host: str) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        payload = b"cnap-uplinks-probe"
        header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, self.ident, self.seq)
        header = struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(header + payload), self.ident, self.seq)
        self.sock.sendto(header + payload, (host, 0))
        return self.seq

    def replies(self) -> list[tuple[str, int]]:
        """(source address, sequence) of the echo replies waiting on the socket."""
        found = []
        while True:
            try:
                data, (addr, _) = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return found
            except OSError:
                return found
            if self.raw:
                data = data[(data[0] & 0x0F) * 4:] if data else b""
            if len(data) < 8:
                continue
            kind, _, _, ident, seq = struct.unpack("!BBHHH", data[:8])
            if kind == ICMP_ECHO_REPLY and (not self.raw or ident == self.ident):
                found.append((addr, seq))

    def close(self) -> None:
        self.sock.close()


class Prober:
    """Sends rounds and hands each finished one to ``on_round(round, now)`` in its own thread;
    ``on_tick(now)`` runs at least every ``tick_s`` so time-based decisions are not late."""

    def __init__(self, cfg: Config, on_round: Callable[[Round, float], None],
                 on_tick: Callable[[float], None], tick_s: float = 0.05,
                 on_start: Callable[[], None] | None = None) -> None:
        self.cfg = cfg
        self.on_round, self.on_tick, self.on_start = on_round, on_tick, on_start
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: dict[str, str] = {}     # uplink → the last socket error, for the status

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="uplinks-prober", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the loop ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            netns.enter(self.cfg.netns)
            if self.on_start:
                self.on_start()
            self._loop()
        except Exception:  # noqa: BLE001 - the controller sees a dead thread and reports it
            log.exception("uplink prober stopped")

    def _loop(self) -> None:
        cfg = self.cfg
        self.sel = selectors.DefaultSelector()
        self.icmp: dict[str, _IcmpSocket] = {}
        self.rounds: dict[int, _RoundState] = {}
        self.icmp_pending: dict[tuple[str, int], tuple[int, str, float, str]] = {}
        self.stream_pending: dict[socket.socket, tuple[int, Target, float, str]] = {}
        self.round_id = 0
        next_round = time.monotonic()
        next_tick = next_round
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_round:
                    for uplink in cfg.uplinks:
                        self._send_round(uplink, now)
                    next_round += cfg.interval_s
                    if next_round < now:   # we were held up: skip, do not burst
                        next_round = now + cfg.interval_s
                deadlines = [r.deadline for r in self.rounds.values()]
                wake = min([next_round, next_tick, *deadlines])
                for key, _ in self.sel.select(max(0.0, wake - time.monotonic())):
                    self._ready(key, time.monotonic())
                now = time.monotonic()
                self._expire(now)
                if now >= next_tick:
                    self.on_tick(now)
                    next_tick = now + self.tick_s
        finally:
            for sock in list(self.stream_pending):
                sock.close()
            for icmp in self.icmp.values():
                icmp.close()
            self.sel.close()

    def _send_round(self, uplink: Uplink, now: float) -> None:
        self.round_id += 1
        rid = self.round_id
        state = _RoundState(uplink.name, now, now + self.cfg.timeout_s, 0)
        self.rounds[rid] = state
        for target in self.cfg.targets:
            label = target.label
            try:
                if target.kind == "icmp":
                    icmp = self._icmp(uplink)
                    seq = icmp.send(target.host)
                    self.icmp_pending[(uplink.name, seq)] = (rid, label, time.monotonic(), target.host)
                else:
                    self._connect(uplink, target, rid)
                state.waiting += 1
                self.errors.pop(uplink.name, None)
            except OSError as exc:
                # No route, interface gone, …: this path failed now, no waiting for a timeout.
                state.probes.append(Probe(label, False))
                if target.kind == "icmp":
                    self._drop_icmp(uplink.name)
                if self.errors.get(uplink.name) != str(exc):
                    log.warning("uplink %s: probe %s failed to send: %s", uplink.name, label, exc)
                self.errors[uplink.name] = str(exc)
        self._finish_if_done(rid)

    def _icmp(self, uplink: Uplink) -> _IcmpSocket:
        icmp = self.icmp.get(uplink.name)
        if icmp is None:
            icmp = self.icmp[uplink.name] = _IcmpSocket(uplink)
            self.sel.register(icmp.sock, selectors.EVENT_READ, ("icmp", uplink.name))
        return icmp

    def _drop_icmp(self, name: str) -> None:
        icmp = self.icmp.pop(name, None)
        if icmp is not None:
            self.sel.unregister(icmp.sock)
            icmp.close()

    def _connect(self, uplink: Uplink, target: Target, rid: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            # Close with a reset: no TIME_WAIT pile-up from a probe every half second.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            _bind(sock, uplink)
            code = sock.connect_ex((target.host, target.port))
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, os.strerror(code))
        except OSError:
            sock.close()
            raise
        self.stream_pending[sock] = (rid, target, time.monotonic(), "connect")
        self.sel.register(sock, selectors.EVENT_WRITE, ("stream", None))

    def _ready(self, key: selectors.SelectorKey, now: float) -> None:
        kind, name = key.data
        if kind == "icmp":
            icmp = self.icmp.get(name)
            if icmp is None:
                return
            for _addr, seq in icmp.replies():
                pending = self.icmp_pending.pop((name, seq), None)
                if pending:
                    rid, label, sent, _host = pending
                    self._result(rid, Probe(label, True, round((now - sent) * 1000, 1)))
            return
        sock = key.fileobj
        rid, target, sent, step = self.stream_pending[sock]
        if step == "connect":
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            reached = code in (0, errno.ECONNREFUSED)
            if target.kind == "http" and code == 0:
                request = (f"HEAD {target.path} HTTP/1.1\r\nHost: {target.host}\r\n"
                           "User-Agent: cnap-uplinks\r\nConnection: close\r\n\r\n").encode()
                try:
                    sock.send(request)
                    self.stream_pending[sock] = (rid, target, sent, "answer")
                    self.sel.modify(sock, selectors.EVENT_READ, ("stream", None))
                    return
                except OSError:
                    reached = False
            self._close_stream(sock)
            self._result(rid, Probe(target.label, reached, round((now - sent) * 1000, 1) if reached else None))
        else:
            try:
                data = sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            self._close_stream(sock)
            ok = data.startswith(b"HTTP/")
            self._result(rid, Probe(target.label, ok, round((now - sent) * 1000, 1) if ok else None))

    def _close_stream(self, sock: socket.socket) -> None:
        self.stream_pending.pop(sock, None)
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _result(self, rid: int, probe: Probe) -> None:
        state = self.rounds.get(rid)
        if state is None:
            return   # a late answer to a round already counted as lost
        state.probes.append(probe)
        state.waiting -= 1
        self._finish_if_done(rid)

    def _finish_if_done(self, rid: int) -> None:
        state = self.rounds[rid]
        if state.waiting <= 0:
            del self.rounds[rid]
            self.on_round(Round(state.uplink, state.sent_at, tuple(state.probes)), time.monotonic())

    def _expire(self, now: float) -> None:
        for rid, state in list(self.rounds.items()):
            if now < state.deadline:
                continue
            for key, (prid, label, _sent, _host) in list(self.icmp_pending.items()):
                if prid == rid:
                    del self.icmp_pending[key]
                    state.probes.append(Probe(label, False))
            for sock, (prid, target, _sent, _step) in list(self.stream_pending.items()):
                if prid == rid:
                    self._close_stream(sock)
                    state.probes.append(Probe(target.label, False))
            state.waiting = 0
            self._finish_if_done(rid)


class Router:
    """Policy routing for the uplinks (pyroute2 over netlink), nftables pins, conntrack flushes."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.by_name = {u.name: u for u in cfg.uplinks}
        p = cfg.rule_priority
        self.prio_probe = p             # + index: oif DEV lookup TABLE (the probes)
        self.prio_local = p + 20        # lookup main suppress_prefixlength 0 (LAN, connected nets)
        self.prio_pinned = p + 30       # + index: fwmark TABLE lookup TABLE (pinned connections)
        self.prio_guest = p + 60        # from GUEST_NETWORK lookup GUEST_TABLE
        self.prio_active = p + 70       # lookup ACTIVE_TABLE
        self.prio_range = range(p, p + 100)

    def _ipr(self):
        from pyroute2 import IPRoute
        with netns.in_netns(self.cfg.netns):
            return IPRoute()

    def _ifindex(self, ipr, uplink: Uplink) -> int:
        found = ipr.link_lookup(ifname=uplink.dev)
        if not found:
            raise OSError(errno.ENODEV, f"no interface {uplink.dev}")
        return found[0]

    def setup(self) -> None:
        """Tables and rules, replacing whatever an earlier run left in our priority range."""
        cfg = self.cfg
        problems: list[str] = []
        ipr = self._ipr()
        try:
            for rule in ipr.get_rules(family=socket.AF_INET):
                prio = rule.get("priority")
                if prio in self.prio_range:
                    ipr.rule("del", priority=prio, table=rule.get("table"))
            for index, uplink in enumerate(cfg.uplinks):
                if not uplink.routable:
                    continue
                # The rule first: it only matches sockets bound to the device, so it is harmless
                # while the interface is missing, and the route follows once it is there.
                ipr.rule("add", priority=self.prio_probe + index, oifname=uplink.dev, table=uplink.table)
                try:
                    self._uplink_route(ipr, uplink, uplink.table)
                except Exception as exc:  # noqa: BLE001 - one missing modem must not stop the others
                    problems.append(f"uplink {uplink.name}: {exc}")
            if cfg.gateway:
                ipr.rule("add", priority=self.prio_local, table=254, suppress_prefixlen=0)
                for index, uplink in enumerate(cfg.uplinks):
                    ipr.rule("add", priority=self.prio_pinned + index, fwmark=uplink.table,
                             table=uplink.table)
                if cfg.guest_uplink and cfg.guest_network:
                    dst, _, length = cfg.guest_network.partition("/")
                    ipr.rule("add", priority=self.prio_guest, src=dst, src_len=int(length),
                             table=cfg.guest_table)
                ipr.rule("add", priority=self.prio_active, table=cfg.active_table)
        finally:
            ipr.close()
        if cfg.gateway:
            self._nft(self._pin_ruleset())
        if problems:
            raise OSError("; ".join(problems))

    def _uplink_route(self, ipr, uplink: Uplink, table: int) -> None:
        ipr.route("replace", dst="0.0.0.0/0", gateway=uplink.via, oif=self._ifindex(ipr, uplink),
                  table=table)

    def _pin_ruleset(self) -> str:
        pins = "\n".join(f'    ct mark 0 oifname "{u.dev}" ct mark set {u.table}' for u in self.cfg.uplinks)
        return (f"table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n"
                f"table inet {NFT_TABLE} {{\n"
                "  chain restore {\n    type filter hook prerouting priority mangle; policy accept;\n"
                "    ct mark != 0 meta mark set ct mark\n  }\n"
                "  chain restore_local {\n    type route hook output priority mangle; policy accept;\n"
                "    ct mark != 0 meta mark set ct mark\n  }\n"
                "  chain pin {\n    type filter hook postrouting priority mangle; policy accept;\n"
                f"{pins}\n  }}\n}}\n")

    def _nft(self, script: str) -> None:
        done = subprocess.run(netns.command(self.cfg.netns, ["nft", "-f", "-"]), input=script,
                              text=True, capture_output=True, timeout=10)
        if done.returncode:
            raise OSError(f"nft: {done.stderr.strip()[:300]}")

    def set_route(self, role: str, uplink_name: str | None) -> None:
        """Point the active (role "main") or guest table at an uplink; None: unreachable."""
        table = self.cfg.active_table if role == "main" else self.cfg.guest_table
        ipr = self._ipr()
        try:
            if uplink_name is None:
                ipr.route("replace", dst="0.0.0.0/0", type="unreachable", table=table)
            else:
                self._uplink_route(ipr, self.by_name[uplink_name], table)
        finally:
            ipr.close()

    def addresses(self, uplink: Uplink) -> list[str]:
        ipr = self._ipr()
        try:
            index = self._ifindex(ipr, uplink)
            return [a.get("address") for a in ipr.get_addr(family=socket.AF_INET, index=index)]
        finally:
            ipr.close()

    def flush(self, uplink_name: str) -> int:
        """Forget the tracked connections of a dead uplink (pinned to it, or NATed to its
        address), so their next packet starts over on the active uplink. Returns how many."""
        uplink = self.by_name[uplink_name]
        selectors_ = [["--mark", str(uplink.table)]] if uplink.table else []
        if uplink.dev:
            selectors_ += [["--reply-dst", address] for address in self.addresses(uplink)]
        elif uplink.src:
            selectors_.append(["--reply-dst", uplink.src])
        deleted = 0
        for selector in selectors_:
            done = subprocess.run(netns.command(self.cfg.netns, ["conntrack", "-D", *selector]),
                                  capture_output=True, text=True, timeout=10)
            # conntrack exits 1 when nothing matched; the count is on stderr either way.
            words = done.stderr.split()
            if "flow" in words and words.index("flow") > 0 and words[words.index("flow") - 1].isdigit():
                deleted += int(words[words.index("flow") - 1])
            elif done.returncode:
                raise OSError(f"conntrack: {done.stderr.strip()[:300]}")
        return deleted

    def teardown(self) -> None:
        """Remove our rules and nftables table (uninstall; close() leaves routing as it is)."""
        ipr = self._ipr()
        try:
            for rule in ipr.get_rules(family=socket.AF_INET):
                if rule.get("priority") in self.prio_range:
                    ipr.rule("del", priority=rule.get("priority"), table=rule.get("table"))
        finally:
            ipr.close()
        if self.cfg.gateway:
            self._nft(f"table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n")
