"""What the guest network's gateway asks of the kernel and of dnsmasq, rendered from a Config
(pure: text and argument lists in, nothing run). facility/guestnet/io.py applies them.

The nftables table ``inet cnap_guest`` is ours alone (replaced whole, never touching other
tables):

- ``admitted``: the clients let out, each with its own timeout (the portal's Accept adds one);
- unadmitted guests' HTTP (tcp 80) to anywhere is redirected to the portal listener, so every
  phone's captive-portal probe lands on the terms page;
- from the guest interface the appliance itself answers only DHCP, DNS and the portal;
  everything else (the kiosk's own listeners, SSH, the agent, …) is dropped and counted;
- forwarded: guest → guest is dropped (client isolation), unadmitted → dropped, → an office
  network → dropped, → anything but the outbound interfaces → dropped; the rest goes out, with an
  optional per-client rate ceiling (nftables meters) and counted in bytes;
- back towards guests only replies of admitted clients' connections pass.

The total cap is tc htb: on the guest interface's egress (downloads) and on an ifb device fed
from its ingress (uploads). PLATFORM.md: htb, u32 and mirred work on this kernel; fq_codel, sfq
and netem do not, so the leaves keep htb's default pfifo.
"""
from __future__ import annotations

from .config import Config

TABLE = "cnap_guest"
ADMITTED_SET = "admitted"
COUNTERS = ("blocked", "bytes_up", "bytes_down", "redirected")


def _burst_kbytes(kbit: int) -> int:
    """A policer's burst: about 100 ms at the rate, at least 16 kB, so TCP is not starved."""
    return max(16, kbit // 80)


def nft_ruleset(cfg: Config) -> str:
    """The whole table, replacing an earlier one (admitted clients are lost with it: io re-adds
    those still valid)."""
    g, gw, port, net = cfg.interface, cfg.gateway, cfg.portal_port, cfg.network
    offices = ""
    if cfg.office_networks:
        offices = f"    elements = {{ {', '.join(cfg.office_networks)} }}\n"
    out = ""
    if cfg.out_interfaces:
        names = ", ".join(f'"{name}"' for name in cfg.out_interfaces)
        out = f"    oifname != {{ {names} }} counter name blocked drop\n"
    up_meter = down_meter = ""
    if cfg.client_kbit:
        rate, burst = cfg.client_kbit // 8, _burst_kbytes(cfg.client_kbit)
        up_meter = (f"    meter client_up {{ ip saddr limit rate over {rate} kbytes/second "
                    f"burst {burst} kbytes }} drop\n")
        down_meter = (f"    meter client_down {{ ip daddr limit rate over {rate} kbytes/second "
                      f"burst {burst} kbytes }} drop\n")
    masquerade = (f'    ip saddr {net} oifname != "{g}" masquerade\n' if cfg.masquerade else "")
    return (
        f"table inet {TABLE}\n"
        f"delete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        f"  set {ADMITTED_SET} {{\n    type ipv4_addr; flags timeout;\n  }}\n"
        f"  set offices {{\n    type ipv4_addr; flags interval; auto-merge;\n{offices}  }}\n"
        + "".join(f"  counter {name} {{ }}\n" for name in COUNTERS) +
        "  chain nat_pre {\n    type nat hook prerouting priority dstnat; policy accept;\n"
        f'    iifname "{g}" ip saddr != @{ADMITTED_SET} ip daddr != {gw} tcp dport 80 '
        f"counter name redirected dnat ip to {gw}:{port}\n  }}\n"
        "  chain nat_post {\n    type nat hook postrouting priority srcnat; policy accept;\n"
        f"{masquerade}  }}\n"
        "  chain input {\n    type filter hook input priority filter; policy accept;\n"
        f'    iifname "{g}" jump guest_to_appliance\n  }}\n'
        "  chain guest_to_appliance {\n"
        "    meta nfproto ipv6 counter name blocked drop\n"
        "    ct state established,related accept\n"
        "    udp dport 67 accept\n"
        f"    ip daddr {gw} udp dport 53 accept\n"
        f"    ip daddr {gw} tcp dport 53 accept\n"
        f"    ip daddr {gw} tcp dport {port} accept\n"
        f"    ip daddr {gw} icmp type echo-request limit rate 5/second accept\n"
        "    counter name blocked drop\n  }\n"
        "  chain forward {\n    type filter hook forward priority filter; policy accept;\n"
        f'    iifname "{g}" jump guest_out\n'
        f'    oifname "{g}" jump guest_back\n  }}\n'
        "  chain guest_out {\n"
        "    meta nfproto ipv6 counter name blocked drop\n"
        f'    oifname "{g}" counter name blocked drop\n'
        f"    ip saddr != {net} counter name blocked drop\n"
        f"    ip saddr != @{ADMITTED_SET} counter name blocked drop\n"
        "    ip daddr @offices counter name blocked drop\n"
        f"{out}{up_meter}"
        "    counter name bytes_up accept\n  }\n"
        "  chain guest_back {\n"
        "    meta nfproto ipv6 drop\n"
        "    ct state != { established, related } drop\n"
        f"    ip daddr != @{ADMITTED_SET} drop\n"
        f"{down_meter}"
        "    counter name bytes_down accept\n  }\n"
        "}\n")


def nft_teardown() -> str:
    return f"table inet {TABLE}\ndelete table inet {TABLE}\n"


def admit_script(address: str, seconds: int) -> str:
    """Admit (or re-admit, restarting the clock) one client for ``seconds``."""
    # add (a no-op when present) then delete, so the delete never fails: one transaction
    return (f"add element inet {TABLE} {ADMITTED_SET} {{ {address} }}\n"
            f"delete element inet {TABLE} {ADMITTED_SET} {{ {address} }}\n"
            f"add element inet {TABLE} {ADMITTED_SET} {{ {address} timeout {seconds}s }}\n")


def expel_script(address: str) -> str:
    return (f"add element inet {TABLE} {ADMITTED_SET} {{ {address} }}\n"
            f"delete element inet {TABLE} {ADMITTED_SET} {{ {address} }}\n")


def ifb_name(cfg: Config) -> str:
    return ("ifb" + cfg.interface)[:15]


def tc_commands(cfg: Config) -> list[list[str]]:
    """The total cap, each direction, as ``tc``/``ip`` argument lists; run after tc_teardown."""
    g, ifb, rate = cfg.interface, ifb_name(cfg), f"{cfg.total_kbit}kbit"
    # htb's own burst default (one timer tick of data) is too small at low rates for TCP to fill
    # the pipe; 15 ms of traffic, at least 16 kB, keeps the measured rate at the configured one.
    burst = f"{max(32_000, cfg.total_kbit * 1000 // 8 * 15 // 1000)}b"
    commands = []
    for dev in (g, ifb):
        commands += [
            ["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10"],
            ["tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", rate,
             "ceil", rate, "burst", burst, "cburst", burst],
            # An ifb's queue is 32 packets by default: too short, uploads back off far below the cap.
            ["tc", "qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:", "pfifo", "limit", "1000"],
        ]
    return [
        ["ip", "link", "add", "name", ifb, "type", "ifb"],
        ["ip", "link", "set", ifb, "up"],
        *commands,
        ["tc", "qdisc", "add", "dev", g, "handle", "ffff:", "ingress"],
        ["tc", "filter", "add", "dev", g, "parent", "ffff:", "protocol", "all", "prio", "1", "u32",
         "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb],
    ]


def tc_teardown(cfg: Config) -> list[list[str]]:
    """Undo tc_commands (each may fail when already gone: io ignores those)."""
    g, ifb = cfg.interface, ifb_name(cfg)
    return [["tc", "qdisc", "del", "dev", g, "root"],
            ["tc", "qdisc", "del", "dev", g, "ingress"],
            ["ip", "link", "del", ifb]]


def dnsmasq_argv(cfg: Config, lease_file: str) -> list[str]:
    """dnsmasq in the foreground serving DHCP and DNS on the guest interface only."""
    gw = cfg.gateway
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--log-facility=-",
            "--bind-interfaces", f"--interface={cfg.interface}", "--except-interface=lo",
            f"--listen-address={gw}", "--no-hosts", "--quiet-dhcp", "--dhcp-authoritative",
            f"--dhcp-range={cfg.dhcp_first},{cfg.dhcp_last},{cfg.netmask},{cfg.lease_min}m",
            f"--dhcp-option=option:router,{gw}", f"--dhcp-option=option:dns-server,{gw}",
            # RFC 8910: the captive-portal API's URI (option 114), so phones ask before probing.
            f"--dhcp-option=114,{cfg.api_url}",
            f"--dhcp-leasefile={lease_file}", "--pid-file=", "--user=root"]
    if cfg.dns_servers:
        argv += ["--no-resolv", *(f"--server={server}" for server in cfg.dns_servers)]
    return argv
