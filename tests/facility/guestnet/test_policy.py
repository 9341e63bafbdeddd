"""The guest network's pure side: settings parsed with clear refusals, every rule rendered."""
from __future__ import annotations

import pytest

from facility.guestnet import GuestNetworkController, config, policy
from terminal import settings as settings_module


def values(**overrides):
    found = settings_module.defaults()
    found.update({"GUEST_INTERFACE": "wlan1", **overrides})
    return found


def test_defaults_give_the_reference_centres_network():
    cfg = config.from_settings(values())
    assert (cfg.gateway, cfg.network, cfg.dhcp_first, cfg.dhcp_last) == (
        "10.99.0.1", "10.99.0.0/22", "10.99.0.10", "10.99.3.254")
    assert cfg.total_kbit == 5000 and cfg.portal_port == 8083
    assert cfg.api_url == "http://10.99.0.1:8083/captive-portal/api"
    assert cfg.contains("10.99.2.7") and not cfg.contains("10.99.0.1") and not cfg.contains("10.99.3.255")
    assert not cfg.contains("192.168.1.5") and not cfg.contains("x")


def test_every_rule_is_in_the_ruleset():
    cfg = config.from_settings(values(GUEST_OUT_INTERFACES=["wan0", "lte0"], GUEST_CLIENT_RATE_KBIT=2000,
                                      GUEST_OFFICE_NETWORKS=["192.168.10.0/24"]))
    text = policy.nft_ruleset(cfg)
    assert text.startswith("table inet cnap_guest\ndelete table inet cnap_guest\n")   # replaced whole
    for rule in (
        "set admitted {\n    type ipv4_addr; flags timeout;",
        "elements = { 192.168.10.0/24 }",
        'iifname "wlan1" ip saddr != @admitted ip daddr != 10.99.0.1 tcp dport 80 counter name redirected '
        "dnat ip to 10.99.0.1:8083",
        'ip saddr 10.99.0.0/22 oifname != "wlan1" masquerade',
        "udp dport 67 accept", "ip daddr 10.99.0.1 udp dport 53 accept", "ip daddr 10.99.0.1 tcp dport 8083 accept",
        'oifname "wlan1" counter name blocked drop',                     # client isolation
        "ip saddr != @admitted counter name blocked drop",
        "ip daddr @offices counter name blocked drop",
        'oifname != { "wan0", "lte0" } counter name blocked drop',
        "meter client_up { ip saddr limit rate over 250 kbytes/second",
        "meter client_down { ip daddr limit rate over 250 kbytes/second",
        "ct state != { established, related } drop",
        "counter name bytes_up accept", "counter name bytes_down accept",
    ):
        assert rule in text, rule
    # Input from guests: only DHCP, DNS, the portal (and a few pings); then drop and count.
    chain = text.split("chain guest_to_appliance {")[1].split("}")[0]
    assert chain.strip().splitlines()[-1].strip() == "counter name blocked drop"
    assert "8080" not in chain


def test_no_per_client_meter_or_masquerade_when_off():
    text = policy.nft_ruleset(config.from_settings(values(GUEST_MASQUERADE=False)))
    assert "meter" not in text and "masquerade" not in text


def test_tc_caps_both_ways_and_dnsmasq_announces_the_portal():
    cfg = config.from_settings(values(GUEST_TOTAL_RATE_KBIT=4000))
    commands = [" ".join(c) for c in policy.tc_commands(cfg)]
    assert "ip link add name ifbwlan1 type ifb" in commands
    for dev in ("wlan1", "ifbwlan1"):
        assert any(c.startswith(f"tc class add dev {dev} parent 1: classid 1:10 htb rate 4000kbit ceil 4000kbit")
                   for c in commands)
    assert any("mirred egress redirect dev ifbwlan1" in c for c in commands)
    argv = policy.dnsmasq_argv(cfg, "/run/x.leases")
    for arg in ("--interface=wlan1", "--bind-interfaces", "--quiet-dhcp", "--listen-address=10.99.0.1",
                "--dhcp-range=10.99.0.10,10.99.3.254,255.255.252.0,60m", "--dhcp-option=option:router,10.99.0.1",
                "--dhcp-option=114,http://10.99.0.1:8083/captive-portal/api", "--dhcp-leasefile=/run/x.leases"):
        assert arg in argv
    assert "--no-resolv" not in argv
    assert "--server=9.9.9.9" in policy.dnsmasq_argv(config.from_settings(values(GUEST_DNS_SERVERS=["9.9.9.9"])), "x")


def test_admit_script_restarts_the_clock_without_failing_on_a_new_client():
    script = policy.admit_script("10.99.0.20", 600)
    assert script.splitlines() == ["add element inet cnap_guest admitted { 10.99.0.20 }",
                                   "delete element inet cnap_guest admitted { 10.99.0.20 }",
                                   "add element inet cnap_guest admitted { 10.99.0.20 timeout 600s }"]


@pytest.mark.parametrize("overrides,words", [
    ({"GUEST_INTERFACE": "wlan 1"}, "not an interface name"),
    ({"GUEST_ADDRESS": "10.99.0.1"}, "/29 or larger"),
    ({"GUEST_ADDRESS": "10.99.0.0/22"}, "a host in it"),
    ({"GUEST_ADDRESS": "8.8.8.1/24"}, "private range"),
    ({"GUEST_ADDRESS": "banana"}, "with its prefix"),
    ({"GUEST_DHCP_RANGE": "10.99.0.1-10.99.0.50"}, "gateway's own address"),
    ({"GUEST_DHCP_RANGE": "10.99.0.10-10.100.0.50"}, "must lie in"),
    ({"GUEST_DHCP_RANGE": "10.99.0.10"}, "write FIRST-LAST"),
    ({"GUEST_TOTAL_RATE_KBIT": 10}, "GUEST_TOTAL_RATE_KBIT"),
    ({"GUEST_CLIENT_RATE_KBIT": 6000}, "GUEST_CLIENT_RATE_KBIT"),
    ({"GUEST_OFFICE_NETWORKS": ["10.99.2.0/24"]}, "cuts through the guest network"),
    ({"GUEST_OFFICE_NETWORKS": ["fd00::/8"]}, "not IPv4"),
    ({"GUEST_OFFICE_NETWORKS": ["office"]}, "not a network"),
    ({"GUEST_OUT_INTERFACES": ["wlan1"]}, "other than GUEST_INTERFACE"),
    ({"GUEST_DNS_SERVERS": ["dns.example"]}, "not an IP address"),
    ({"GUEST_PORTAL_PORT": 80}, "GUEST_PORTAL_PORT"),
    ({"GUEST_ADMIT_MINUTES": 0}, "GUEST_ADMIT_MINUTES"),
    ({"GUEST_LEASE_MIN": 1}, "GUEST_LEASE_MIN"),
    ({"GUEST_NETNS": "a b"}, "not a namespace name"),
    ({"UPLINKS_GUEST_NETWORK": "10.98.0.0/22"}, "make them the same network"),
])
def test_bad_settings_are_refused_with_a_clear_sentence(overrides, words):
    with pytest.raises(config.ConfigError, match=words):
        config.from_settings(values(**overrides))
    status = GuestNetworkController(values(**overrides)).status()
    assert status["state"] == "unavailable" and status["alerts"] == ["config_error"] and words.split()[0] in status["error"]


def test_the_uplink_watchs_guest_network_must_agree_or_is_pointed_out():
    assert config.from_settings(values(UPLINKS_GUEST_NETWORK="10.99.0.0/22")).uplinks_note == ""
    note = config.from_settings(values(UPLINKS_GUEST_UPLINK="guest")).uplinks_note
    assert "UPLINKS_GUEST_NETWORK" in note and "10.99.0.0/22" in note
    assert config.from_settings(values(UPLINKS=["a dev=wan0 via=1.2.3.4 table=101"])).out_interfaces == ("wan0",)


def test_off_without_an_interface_and_commands_say_why():
    controller = GuestNetworkController(settings_module.defaults())
    assert controller.status()["state"] == "disabled"
    assert controller.command("admit", {"ip": "10.99.0.20"}) == {
        "ok": False, "message": "the guest network is off (GUEST_INTERFACE is empty)"}
    assert controller.command("format_disk", {})["ok"] is False
