"""The uplinks' settings, parsed once into plain values (pure: no I/O).

An uplink is written like an ``ip route`` line: ``NAME dev=IFACE via=GATEWAY table=ID src=ADDR``
(``kyivstar dev=eth1 via=192.168.1.1 table=101``). ``dev`` binds the probes to the interface
(SO_BINDTODEVICE), ``src`` binds them to a source address; at least one is needed. ``via`` and
``table`` are needed where the appliance routes (gateway mode) or must reach the targets through
this uplink only.

A probe target is ``icmp:HOST``, ``tcp:HOST:PORT`` or ``http://HOST[:PORT][/PATH]``.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .policy import Thresholds

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
MODES = ("gateway", "report_only")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Uplink:
    name: str
    dev: str = ""
    via: str = ""
    table: int = 0
    src: str = ""

    @property
    def routable(self) -> bool:
        """Enough is known to give this uplink its own routing table."""
        return bool(self.dev and self.via and self.table)


@dataclass(frozen=True)
class Target:
    kind: str        # "icmp" | "tcp" | "http"
    host: str
    port: int = 0
    path: str = "/"

    @property
    def label(self) -> str:
        if self.kind == "icmp":
            return f"icmp:{self.host}"
        if self.kind == "tcp":
            return f"tcp:{self.host}:{self.port}"
        return f"http://{self.host}:{self.port}{self.path}"


@dataclass(frozen=True)
class Config:
    uplinks: tuple[Uplink, ...]
    targets: tuple[Target, ...]
    mode: str
    interval_s: float
    timeout_s: float
    thresholds: Thresholds
    guest_uplink: str = ""
    guest_network: str = ""
    guest_share: bool = False
    active_table: int = 200
    guest_table: int = 201
    rule_priority: int = 10000
    netns: str = ""
    flush_conntrack: bool = True

    @property
    def gateway(self) -> bool:
        return self.mode == "gateway"


def _address(text: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not an IPv4 address") from None


def parse_uplink(text: str) -> Uplink:
    words = text.split()
    if not words:
        raise ConfigError("empty uplink")
    name, options = words[0], {}
    if not NAME.match(name):
        raise ConfigError(f"uplink name {name!r}: use lower-case letters, digits, - and _ (≤ 32)")
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or key not in ("dev", "via", "table", "src") or key in options:
            raise ConfigError(f"uplink {name}: {word!r} is not one of dev=, via=, table=, src=")
        options[key] = value
    dev = options.get("dev", "")
    if dev and not IFNAME.match(dev):
        raise ConfigError(f"uplink {name}: {dev!r} is not an interface name")
    via = _address(options["via"], f"uplink {name} via") if "via" in options else ""
    src = _address(options["src"], f"uplink {name} src") if "src" in options else ""
    table = 0
    if "table" in options:
        try:
            table = int(options["table"])
        except ValueError:
            raise ConfigError(f"uplink {name}: table {options['table']!r} is not a number") from None
        if not 1 <= table <= 252:
            raise ConfigError(f"uplink {name}: table must be from 1 to 252 (253–255 are the kernel's)")
    if not dev and not src:
        raise ConfigError(f"uplink {name}: give dev= or src= so its probes leave through it")
    return Uplink(name=name, dev=dev, via=via, table=table, src=src)


def parse_target(text: str) -> Target:
    text = text.strip()
    if text.startswith("http://"):
        rest = text[len("http://"):]
        hostport, slash, path = rest.partition("/")
        host, _, port = hostport.partition(":")
        target = Target("http", host, int(port) if port.isdigit() else 80, "/" + path if slash else "/")
    elif text.startswith("icmp:"):
        target = Target("icmp", text[5:])
    elif text.startswith("tcp:"):
        host, _, port = text[4:].rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"target {text!r}: write tcp:HOST:PORT")
        target = Target("tcp", host, int(port))
    else:
        raise ConfigError(f"target {text!r}: write icmp:HOST, tcp:HOST:PORT or http://HOST[:PORT]/PATH")
    _address(target.host, f"target {text!r}")
    if target.kind != "icmp" and not 1 <= target.port <= 65535:
        raise ConfigError(f"target {text!r}: port must be from 1 to 65535")
    return target


def from_settings(settings: dict) -> Config:
    """Parse the ``UPLINKS_*`` settings; raises ConfigError with a sentence an installer can act on."""
    uplinks = tuple(parse_uplink(item) for item in settings.get("UPLINKS", []))
    names = [u.name for u in uplinks]
    if len(set(names)) != len(names):
        raise ConfigError("two uplinks have the same name")
    tables = [u.table for u in uplinks if u.table]
    if len(set(tables)) != len(tables):
        raise ConfigError("two uplinks have the same routing table")
    targets = tuple(parse_target(item) for item in settings.get("UPLINKS_TARGETS", []))
    if uplinks and not targets:
        raise ConfigError("UPLINKS_TARGETS is empty: give at least two probe targets")
    mode = settings.get("UPLINKS_MODE", "report_only")
    if mode not in MODES:
        raise ConfigError(f"UPLINKS_MODE must be gateway or report_only, not {mode!r}")
    active_table = int(settings.get("UPLINKS_ACTIVE_TABLE", 200))
    guest_table = int(settings.get("UPLINKS_GUEST_TABLE", 201))
    if mode == "gateway":
        for uplink in uplinks:
            if not uplink.routable:
                raise ConfigError(f"uplink {uplink.name}: gateway mode needs dev=, via= and table=")
        if {active_table, guest_table} & set(tables) or active_table == guest_table:
            raise ConfigError("UPLINKS_ACTIVE_TABLE, UPLINKS_GUEST_TABLE and the uplinks' tables "
                              "must all differ")
    guest_uplink = settings.get("UPLINKS_GUEST_UPLINK", "")
    if guest_uplink and guest_uplink not in names:
        raise ConfigError(f"UPLINKS_GUEST_UPLINK {guest_uplink!r} is not one of the uplinks")
    guest_network = settings.get("UPLINKS_GUEST_NETWORK", "")
    if guest_network:
        try:
            guest_network = str(ipaddress.IPv4Network(guest_network, strict=False))
        except ValueError:
            raise ConfigError(f"UPLINKS_GUEST_NETWORK {guest_network!r} is not a network "
                              "such as 10.99.0.0/22") from None
    interval_s = settings.get("UPLINKS_PROBE_INTERVAL_MS", 500) / 1000
    timeout_s = settings.get("UPLINKS_PROBE_TIMEOUT_MS", 800) / 1000
    if not 0.05 <= interval_s <= 60 or not 0.05 <= timeout_s <= 30:
        raise ConfigError("UPLINKS_PROBE_INTERVAL_MS must be 50–60000 and "
                          "UPLINKS_PROBE_TIMEOUT_MS 50–30000")
    thresholds = Thresholds(
        down_rounds=int(settings.get("UPLINKS_DOWN_ROUNDS", 3)),
        window_s=float(settings.get("UPLINKS_WINDOW_S", 30)),
        min_rounds=int(settings.get("UPLINKS_MIN_ROUNDS", 10)),
        loss_down_pct=float(settings.get("UPLINKS_LOSS_DOWN_PCT", 50)),
        loss_up_pct=float(settings.get("UPLINKS_LOSS_UP_PCT", 20)),
        rtt_down_ms=float(settings.get("UPLINKS_RTT_DOWN_MS", 1500)),
        rtt_up_ms=float(settings.get("UPLINKS_RTT_UP_MS", 800)),
        stable_s=float(settings.get("UPLINKS_STABLE_S", 30)),
    )
    problem = thresholds.problem()
    if problem:
        raise ConfigError(problem)
    netns = settings.get("UPLINKS_NETNS", "")
    if netns and not re.match(r"^[A-Za-z0-9_.-]{1,64}$", netns):
        raise ConfigError(f"UPLINKS_NETNS {netns!r} is not a namespace name")
    return Config(uplinks=uplinks, targets=targets, mode=mode, interval_s=interval_s,
                  timeout_s=timeout_s, thresholds=thresholds, guest_uplink=guest_uplink,
                  guest_network=guest_network, guest_share=bool(settings.get("UPLINKS_GUEST_SHARE", False)),
                  active_table=active_table, guest_table=guest_table,
                  rule_priority=int(settings.get("UPLINKS_RULE_PRIORITY", 10000)), netns=netns,
                  flush_conntrack=bool(settings.get("UPLINKS_FLUSH_CONNTRACK", True)))
