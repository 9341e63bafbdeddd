"""The guest network's settings, parsed once into plain values (pure: no I/O).

``from_settings`` raises ConfigError with a sentence an installer can act on; the controller shows
it as its fault, and the kiosk does not open the portal listener for a guest network that cannot
be set up.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
NETNS = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_ADMIT_MINUTES = 7 * 24 * 60


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Config:
    interface: str                      # the guests' interface (Wi-Fi access point's port)
    gateway: str                        # the appliance's address on it, e.g. 10.99.0.1
    network: str                        # e.g. 10.99.0.0/22
    dhcp_first: str
    dhcp_last: str
    lease_min: int
    admit_minutes: int
    total_kbit: int                     # the whole guest network, each direction
    client_kbit: int                    # one client, each direction (0: only the total cap)
    office_networks: tuple[str, ...]    # never reachable from the guest network
    out_interfaces: tuple[str, ...]     # guests leave only through these ('' tuple: any but ours)
    dns_servers: tuple[str, ...]        # dnsmasq's upstreams (empty: the system's resolvers)
    portal_port: int
    netns: str = ""
    masquerade: bool = True
    uplinks_note: str = ""              # a consistency remark about the uplink watch ('' when fine)

    @property
    def netmask(self) -> str:
        return str(ipaddress.IPv4Network(self.network).netmask)

    @property
    def portal_url(self) -> str:
        """The terms page, where a captive guest is sent."""
        return f"http://{self.gateway}:{self.portal_port}/portal/"

    @property
    def api_url(self) -> str:
        """RFC 8908 API, announced in DHCP option 114 (RFC 8910)."""
        return f"http://{self.gateway}:{self.portal_port}/captive-portal/api"

    def contains(self, address: str) -> bool:
        """``address`` is a guest's address (inside the network, not the gateway nor broadcast)."""
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            return False
        net = ipaddress.IPv4Network(self.network)
        return ip in net and ip not in (net.network_address, net.broadcast_address,
                                        ipaddress.IPv4Address(self.gateway))


def enabled(settings: dict) -> bool:
    return bool(settings.get("GUEST_INTERFACE", ""))


def _network(text: str, what: str):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a network such as 192.168.10.0/24") from None


def _range(text: str, net: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address) -> tuple[str, str]:
    hosts_first, hosts_last = net.network_address + 1, net.broadcast_address - 1
    if not text:   # everything but the first ten addresses (the gateway and spare fixed ones)
        first = hosts_first + 9 if net.num_addresses > 32 else hosts_first + 1
        return str(first), str(hosts_last)
    first_text, sep, last_text = text.partition("-")
    try:
        first, last = ipaddress.IPv4Address(first_text.strip()), ipaddress.IPv4Address(last_text.strip())
    except ValueError:
        raise ConfigError(f"GUEST_DHCP_RANGE {text!r}: write FIRST-LAST, e.g. 10.99.0.10-10.99.3.250") from None
    if not sep or not (hosts_first <= first <= last <= hosts_last):
        raise ConfigError(f"GUEST_DHCP_RANGE {text!r}: both ends must lie in {net}, first ≤ last")
    if first <= gateway <= last:
        raise ConfigError(f"GUEST_DHCP_RANGE {text!r} holds the gateway's own address {gateway}")
    return str(first), str(last)


def from_settings(settings: dict) -> Config:
    """Parse the ``GUEST_*`` settings (and check them against ``UPLINKS_GUEST_NETWORK``)."""
    interface = settings.get("GUEST_INTERFACE", "")
    if not IFNAME.match(interface or ""):
        raise ConfigError(f"GUEST_INTERFACE {interface!r} is not an interface name")
    address = settings.get("GUEST_ADDRESS", "")
    try:
        iface = ipaddress.IPv4Interface(address)
    except ValueError:
        raise ConfigError(f"GUEST_ADDRESS {address!r}: write the gateway's address with its prefix, "
                          "e.g. 10.99.0.1/22") from None
    net, gateway = iface.network, iface.ip
    if net.prefixlen > 29 or gateway in (net.network_address, net.broadcast_address):
        raise ConfigError(f"GUEST_ADDRESS {address!r}: the network must be /29 or larger and the "
                          "address a host in it")
    if not net.is_private:
        raise ConfigError(f"GUEST_ADDRESS {address!r}: the guest network must be a private range")
    first, last = _range(settings.get("GUEST_DHCP_RANGE", ""), net, gateway)
    lease = int(settings.get("GUEST_LEASE_MIN", 60))
    admit = int(settings.get("GUEST_ADMIT_MINUTES", 60))
    if not 2 <= lease <= 24 * 60:
        raise ConfigError("GUEST_LEASE_MIN must be from 2 to 1440 minutes")
    if not 1 <= admit <= MAX_ADMIT_MINUTES:
        raise ConfigError(f"GUEST_ADMIT_MINUTES must be from 1 to {MAX_ADMIT_MINUTES}")
    total = int(settings.get("GUEST_TOTAL_RATE_KBIT", 5000))
    client = int(settings.get("GUEST_CLIENT_RATE_KBIT", 0))
    if not 64 <= total <= 10_000_000:
        raise ConfigError("GUEST_TOTAL_RATE_KBIT must be from 64 to 10000000 (10 Gbit/s)")
    if client and not 64 <= client <= total:
        raise ConfigError("GUEST_CLIENT_RATE_KBIT must be 0 (no per-client cap) or from 64 to "
                          "GUEST_TOTAL_RATE_KBIT")
    offices = []
    for text in settings.get("GUEST_OFFICE_NETWORKS", []):
        office = _network(text, "GUEST_OFFICE_NETWORKS")
        if office.version != 4:
            raise ConfigError(f"GUEST_OFFICE_NETWORKS: {text!r} is not IPv4 (guests get IPv4 only)")
        if office.overlaps(net) and not office.supernet_of(net):
            raise ConfigError(f"GUEST_OFFICE_NETWORKS: {text!r} cuts through the guest network {net}")
        offices.append(office)
    # The guest network inside a listed private range (10.99.0.0/22 in 10.0.0.0/8) is fine: guests'
    # traffic to each other never leaves through the forward path (isolation drops it first).
    out = tuple(settings.get("GUEST_OUT_INTERFACES", []))
    if not out:
        out = tuple(_uplink_devices(settings.get("UPLINKS", [])))
    for name in out:
        if not IFNAME.match(name) or name == interface:
            raise ConfigError(f"GUEST_OUT_INTERFACES: {name!r} is not an interface name other than "
                              "GUEST_INTERFACE")
    dns = []
    for text in settings.get("GUEST_DNS_SERVERS", []):
        try:
            dns.append(str(ipaddress.ip_address(text)))
        except ValueError:
            raise ConfigError(f"GUEST_DNS_SERVERS: {text!r} is not an IP address") from None
    port = int(settings.get("GUEST_PORTAL_PORT", 8083))
    if not 1 <= port <= 65535 or port in (53, 67, 80):
        raise ConfigError("GUEST_PORTAL_PORT must be from 1 to 65535 and not 53, 67 or 80")
    netns = settings.get("GUEST_NETNS", "")
    if netns and not NETNS.match(netns):
        raise ConfigError(f"GUEST_NETNS {netns!r} is not a namespace name")
    note = ""
    uplink_net = settings.get("UPLINKS_GUEST_NETWORK", "")
    if uplink_net:
        if _network(uplink_net, "UPLINKS_GUEST_NETWORK") != net:
            raise ConfigError(f"GUEST_ADDRESS is in {net} but UPLINKS_GUEST_NETWORK is {uplink_net}: "
                              "make them the same network, or guests will not ride the guest uplink")
    elif settings.get("UPLINKS_GUEST_UPLINK", ""):
        note = (f"UPLINKS_GUEST_UPLINK is set but UPLINKS_GUEST_NETWORK is empty: set it to {net} "
                "so guests ride their own uplink")
    return Config(interface=interface, gateway=str(gateway), network=str(net), dhcp_first=first,
                  dhcp_last=last, lease_min=lease, admit_minutes=admit, total_kbit=total,
                  client_kbit=client, office_networks=tuple(str(o) for o in offices),
                  out_interfaces=out, dns_servers=tuple(dns), portal_port=port, netns=netns,
                  masquerade=bool(settings.get("GUEST_MASQUERADE", True)), uplinks_note=note)


def _uplink_devices(uplinks: list) -> list[str]:
    """The ``dev=`` of each UPLINKS line (facility/uplinks/config.py's syntax), when given."""
    found = []
    for line in uplinks:
        for word in str(line).split()[1:]:
            key, _, value = word.partition("=")
            if key == "dev" and value and value not in found:
                found.append(value)
    return found
