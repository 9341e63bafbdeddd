"""The controller the agent runs, against the loopback simulator (no root, no namespaces): the
contract of facility/base.py, settings parsing, the watch itself in report-only mode."""
from __future__ import annotations

import json
import time

import pytest

from facility.base import DISABLED, UNAVAILABLE, Controller
from facility.uplinks import build, start_simulator
from facility.uplinks.config import ConfigError, from_settings, parse_target, parse_uplink
from terminal import settings as settings_module
from tests.payments.helpers import wait_until


def settings(**overrides):
    values = settings_module.defaults()
    values.update(overrides)
    return values


def wait_for(predicate, timeout=10.0, what="condition"):
    return wait_until(predicate, timeout=timeout, what=what)


@pytest.fixture
def sim():
    simulator = start_simulator(settings())
    yield simulator
    simulator.stop()


@pytest.fixture
def watch(sim):
    made = []

    def make(**overrides):
        controller = build(settings(**{**sim.settings, "UPLINKS_PROBE_INTERVAL_MS": 100,
                                       "UPLINKS_PROBE_TIMEOUT_MS": 300, "UPLINKS_STABLE_S": 1.0,
                                       **overrides})).start()
        made.append(controller)
        return controller

    yield make
    for controller in made:
        controller.close()


def test_defaults_leave_the_watch_off():
    controller = build(settings())
    assert isinstance(controller, Controller)
    controller.poll(time.time())
    status = controller.status()
    assert status["state"] == DISABLED and status["available"] is False
    assert controller.command("prefer", {"uplink": "x"})["ok"] is False
    controller.close()


def test_bad_settings_make_it_unavailable_with_the_reason_not_a_crash():
    controller = build(settings(UPLINKS=["kyivstar via=10.0.0.1"]))
    controller.poll(time.time())
    status = controller.status()
    assert status["state"] == UNAVAILABLE and "config_error" in status["alerts"]
    assert "dev= or src=" in status["error"] and status["events"][0]["kind"] == "config_error"
    controller.close()


@pytest.mark.parametrize("line, message", [
    ("Kyiv dev=eth1", "uplink name"),
    ("a dev=eth1 foo=1", "not one of"),
    ("a dev=eth1 via=10.0.0.300", "not an IPv4 address"),
    ("a dev=eth1 table=255", "table must be"),
    ("a dev=this-name-is-too-long", "not an interface name"),
])
def test_uplink_lines_are_checked(line, message):
    with pytest.raises(ConfigError, match=message):
        parse_uplink(line)


def test_targets_and_modes_are_checked():
    assert parse_target("http://192.0.2.1/x").label == "http://192.0.2.1:80/x"
    assert parse_target("tcp:192.0.2.1:443").port == 443
    for bad in ("ftp://x", "tcp:192.0.2.1", "icmp:example.org", "http://192.0.2.1:0/"):
        with pytest.raises(ConfigError):
            parse_target(bad)
    two = ["a dev=eth1 via=10.0.0.1 table=101", "b dev=eth2 via=10.0.1.1 table=102"]
    with pytest.raises(ConfigError, match="gateway mode needs"):
        from_settings(settings(UPLINKS=["a dev=eth1"], UPLINKS_MODE="gateway"))
    with pytest.raises(ConfigError, match="must all differ"):
        from_settings(settings(UPLINKS=two, UPLINKS_MODE="gateway", UPLINKS_ACTIVE_TABLE=101))
    with pytest.raises(ConfigError, match="hysteresis"):
        from_settings(settings(UPLINKS=two, UPLINKS_LOSS_UP_PCT=60.0))
    with pytest.raises(ConfigError, match="not one of the uplinks"):
        from_settings(settings(UPLINKS=two, UPLINKS_GUEST_UPLINK="c"))
    env = settings_module.load(environ={"CNAP_UPLINKS": ",".join(two), "CNAP_UPLINKS_STABLE_S": "12"})
    cfg = from_settings(env)
    assert [u.name for u in cfg.uplinks] == ["a", "b"] and cfg.thresholds.stable_s == 12
    assert len(cfg.targets) == 6 and cfg.mode == "report_only"


def test_simulated_cut_is_reported_and_failback_follows_the_stable_period(sim, watch):
    controller = watch()
    wait_for(lambda: all(r["rounds"] >= 3 for r in controller.status()["uplinks"]), what="rounds")
    status = controller.status()
    assert status["available"] and status["state"] == "ok" and status["active"] == "ukrtelecom"
    sim.set_fault("ukrtelecom", cut=True)
    wait_for(lambda: controller.status()["active"] == "kyivstar", what="failover")
    status = controller.status()
    assert status["state"] == "degraded" and "uplink_down" in status["alerts"]
    down = status["uplinks"][0]
    assert down["state"] == "down" and down["reason"] == "no_answer"
    assert status["switches"][0]["reason"] == "failover"
    assert any(e["kind"] == "uplink_down" and "ukrtelecom" in e["text_uk"] for e in status["events"])
    assert json.loads(json.dumps(status)) == status
    sim.set_fault("ukrtelecom")
    wait_for(lambda: controller.status()["uplinks"][0]["state"] == "recovering", what="recovering")
    wait_for(lambda: controller.status()["active"] == "ukrtelecom", what="failback")
    assert controller.status()["switches"][0]["reason"] == "failback"


def test_simulated_loss_and_slowness_below_thresholds_are_only_reported(sim, watch):
    sim.set_fault("kyivstar", loss=0.15)
    sim.set_fault("lifecell", delay_ms=150)
    controller = watch()
    wait_for(lambda: controller.status()["uplinks"][1]["rounds"] >= 20, what="20 rounds")
    status = controller.status()
    assert status["state"] == "ok" and status["switches"] == []
    kyivstar, lifecell = status["uplinks"][1], status["uplinks"][2]
    assert 0 < max(p["loss_pct"] for p in kyivstar["paths"].values())
    assert lifecell["rtt_ms"] >= 150


def test_all_cut_and_prefer(sim, watch):
    controller = watch()
    assert controller.command("prefer", {"uplink": "lifecell"})["ok"]
    assert controller.status()["active"] == "lifecell" and controller.status()["preferred"] == "lifecell"
    assert controller.command("prefer", {"uplink": 5})["ok"] is False
    assert controller.command("reboot", {})["ok"] is False
    assert controller.command("prefer", {})["ok"] and controller.status()["active"] == "ukrtelecom"
    for name in ("ukrtelecom", "kyivstar", "lifecell"):
        sim.set_fault(name, cut=True)
    wait_for(lambda: controller.status()["state"] == "all_down", what="all down")
    assert "all_uplinks_down" in controller.status()["alerts"]
