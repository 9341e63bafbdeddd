"""The uplink watch on real links: three providers in network namespaces, the appliance as the
client's gateway, cuts and bad targets made with nftables in the providers' namespaces."""
from __future__ import annotations

import time

import pytest

from facility.uplinks import build
from facility.uplinks.config import from_settings
from facility.uplinks.io import _IcmpSocket
from facility.uplinks.netlab import NetLab, sh, usable
from facility.uplinks.netns import in_netns
from tests.payments.helpers import wait_until

pytestmark = pytest.mark.skipif(bool(usable()), reason=usable() or "ok")


@pytest.fixture
def lab():
    net = NetLab()
    yield net
    net.close()


@pytest.fixture
def controllers():
    made = []

    def make(settings):
        controller = build(settings).start()
        made.append(controller)
        return controller

    yield make
    for controller in made:
        controller.close()


def wait_for(predicate, timeout=10.0, what="condition"):
    return wait_until(predicate, timeout=timeout, what=what)


def uplink(status, name):
    return next(row for row in status["uplinks"] if row["name"] == name)


def all_probed(controller):
    return all(row["rounds"] >= 3 for row in controller.status()["uplinks"])


def test_cut_fails_over_flushes_the_dead_uplink_keeps_the_others_and_fails_back(lab, controllers):
    ctl = controllers(lab.settings(UPLINKS_MODE="gateway", UPLINKS_GUEST_UPLINK="up3",
                                   UPLINKS_GUEST_NETWORK="10.201.0.0/24"))
    wait_for(lambda: all_probed(ctl), what="first rounds")
    assert ctl.status()["available"] and ctl.status()["active"] == "up1"

    staff = lab.connect()
    guest = lab.connect(guest=True)
    assert lab.echo(staff) == "up1"
    assert lab.echo(guest) == "up3"          # the guest network keeps to its own uplink

    lab.cut(1)
    wait_for(lambda: ctl.status()["active"] == "up2", what="failover to up2")
    status = ctl.status()
    assert uplink(status, "up1")["state"] == "down"
    assert status["switches"][0] == {**status["switches"][0], "from": "up1", "to": "up2", "reason": "failover"}
    assert status["flushed"]["up1"] >= 1

    # The guest's flow was never on the dead uplink: it goes on untouched.
    assert lab.echo(guest, "still there") == "up3"
    # The staff flow was pinned to up1 and flushed: its next packet reaches up2's copy of the
    # server, which knows nothing of it and resets it; the client reconnects through up2.
    with pytest.raises(OSError):
        lab.echo(staff, "after the cut")
        lab.echo(staff, "after the cut, again")
    staff.close()
    moved = lab.connect()
    assert lab.echo(moved) == "up2"

    lab.heal(1)
    wait_for(lambda: ctl.status()["active"] == "up1", timeout=15, what="failback to up1")
    assert ctl.status()["switches"][0]["reason"] == "failback"
    # A connection made during the failover stays pinned to up2 after failing back.
    assert lab.echo(moved, "after failback") == "up2"
    fresh = lab.connect()
    assert lab.echo(fresh) == "up1"
    for sock in (moved, fresh, guest):
        sock.close()


def test_guest_network_is_cut_off_while_its_uplink_is_down_and_prefer_moves_staff(lab, controllers):
    ctl = controllers(lab.settings(UPLINKS_MODE="gateway", UPLINKS_GUEST_UPLINK="up3",
                                   UPLINKS_GUEST_NETWORK="10.201.0.0/24"))
    wait_for(lambda: all_probed(ctl), what="first rounds")
    lab.cut(3)
    wait_for(lambda: ctl.status()["guest_active"] is None and uplink(ctl.status(), "up3")["state"] == "down",
             what="guest network off")
    with pytest.raises(OSError):
        lab.connect(guest=True, timeout=1)
    assert lab.echo(lab.connect()) == "up1"   # staff unaffected
    assert ctl.command("prefer", {"uplink": "up2"})["ok"]
    assert lab.echo(lab.connect()) == "up2"
    assert ctl.command("prefer", {"uplink": "nope"})["ok"] is False
    rules = sh("ip", "-n", lab.app, "rule", "show")
    assert "suppress_prefixlength 0" in rules and "from 10.201.0.0/24 lookup 201" in rules
    ctl.close()
    ctl.router.teardown()   # uninstall: our rules and nftables table are gone, nothing else
    rules = sh("ip", "-n", lab.app, "rule", "show")
    assert "lookup 10" not in rules and "lookup 20" not in rules and "lookup main" in rules
    assert "cnap_uplinks" not in sh("ip", "netns", "exec", lab.app, "nft", "list", "tables")


def test_a_rate_limiting_and_a_slow_target_do_not_fail_a_link(lab, controllers):
    lab.limit_icmp(1, "192.0.2.1")
    lab.http_delay[1] = 2.0      # far beyond the 300 ms probe timeout
    ctl = controllers(lab.settings())
    wait_for(lambda: uplink(ctl.status(), "up1")["rounds"] >= 25, what="25 rounds")
    row = uplink(ctl.status(), "up1")
    assert row["state"] == "up" and ctl.status()["switches"] == []
    # The bad paths really were bad, and the others carried the link.
    assert row["paths"]["icmp:192.0.2.1"]["loss_pct"] >= 50
    assert row["paths"]["http://192.0.2.3:8080/"]["loss_pct"] == 100
    assert row["paths"]["icmp:192.0.2.2"]["loss_pct"] == 0
    assert row["loss_pct"] == 0


def test_report_only_watches_the_same_but_changes_no_route(lab, controllers):
    before_main = sh("ip", "-n", lab.app, "route", "show", "table", "main")
    ctl = controllers(lab.settings(UPLINKS_MODE="report_only"))
    wait_for(lambda: all_probed(ctl), what="first rounds")
    lab.cut(1)
    wait_for(lambda: ctl.status()["active"] == "up2", what="recommended uplink moves")
    assert ctl.status()["switches"][0]["to"] == "up2"
    assert ctl.status()["events"][0]["text_en"].startswith("Internet should switch from up1 to up2")
    rules = sh("ip", "-n", lab.app, "rule", "show")
    # Only the probes' own rules (oif wanN); no active table, no pinning.
    assert "lookup 200" not in rules and "fwmark" not in rules and "oif wan1 lookup 101" in rules
    assert "table 200" not in sh("ip", "-n", lab.app, "route", "show", "table", "all")
    assert sh("ip", "-n", lab.app, "route", "show", "table", "main") == before_main
    assert "cnap_uplinks" not in sh("ip", "netns", "exec", lab.app, "nft", "list", "tables")


def test_unprivileged_ping_socket_is_used_when_the_kernel_allows(lab):
    cfg = from_settings(lab.settings())
    up1 = cfg.uplinks[0]
    with in_netns(lab.app):
        raw = _IcmpSocket(up1)
        sh("ip", "netns", "exec", lab.app, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
        dgram = _IcmpSocket(up1)
    try:
        assert raw.raw and not dgram.raw
        # Both really get answers through wan1 (the probe rules are not set up: use the gateway).
        sh("ip", "-n", lab.app, "route", "add", "192.0.2.2/32", "via", "100.64.1.1")
        for icmp in (raw, dgram):
            seq = icmp.send("192.0.2.2")
            wait_for(lambda: any(s == seq for _, s in icmp.replies()), timeout=3, what="echo reply")
    finally:
        raw.close()
        dgram.close()


def test_missing_interface_makes_probes_fail_not_the_controller(lab, controllers):
    settings = lab.settings(UPLINKS=[*lab.settings()["UPLINKS"], "ghost dev=wan9 via=100.64.9.1 table=109"])
    ctl = controllers(settings)
    status = wait_for(lambda: (s := ctl.status()) and uplink(s, "ghost")["state"] == "down" and s,
                      what="ghost down")
    assert status["available"] and "route_failed" in status["alerts"]
    assert "wan9" in status["error"]
    assert "No such device" in uplink(status, "ghost")["error"]
    assert uplink(status, "up1")["state"] == "up" and status["active"] == "up1"
