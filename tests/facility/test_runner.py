"""facility/runner.py with fake controllers: a poll that raises, a slow one, commands, listeners,
a clean stop, and loading packages that are missing or broken."""
from __future__ import annotations

import json
import logging
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from facility.runner import Runner, load_controllers
from tests.facility.fakes import FakeController, install_fake_package, wait_until


@pytest.fixture
def runners():
    made: list[Runner] = []

    def make(*args, **kwargs) -> Runner:
        runner = Runner(*args, **kwargs)
        made.append(runner)
        runner.start()
        return runner

    yield make
    for runner in made:
        runner.stop()


def test_a_poll_that_raises_is_logged_and_turns_only_that_controller_unavailable(runners, caplog):
    raising = threading.Event()
    raising.set()

    def fail(_controller):
        if raising.is_set():
            raise RuntimeError("modbus gateway gone")

    bad, good = FakeController("ventilation", on_poll=fail), FakeController("power")
    with caplog.at_level(logging.ERROR, logger="cnap.agent"):
        runner = runners([bad, good])
        view = wait_until(lambda: (v := runner.status()["controllers"]["ventilation"])
                          and "poll_failed" in v["alerts"] and v)
    assert view["available"] is False and view["state"] == "unavailable"
    assert "modbus gateway gone" in view["fault"]
    assert view["events"][0]["kind"] == "poll_failed" and view["events"][0]["text_uk"]
    assert any("poll raised" in r.getMessage() for r in caplog.records)
    assert good.wait_polls(good.polls + 3)                    # the others go on
    assert runner.status()["controllers"]["power"]["available"] is True
    # A poll that goes through again makes it available again, with an event saying so.
    raising.clear()
    view = wait_until(lambda: (v := runner.status()["controllers"]["ventilation"]) and v["available"] and v)
    assert view["alerts"] == [] and "fault" not in view
    assert [e["kind"] for e in view["events"]][:2] == ["recovered", "poll_failed"]


def test_a_slow_poll_delays_neither_the_others_nor_status_and_shows_as_stuck(runners):
    release = threading.Event()
    slow = FakeController("uplinks", interval_s=0.05, on_poll=lambda _c: release.wait(10))
    fast = FakeController("power", interval_s=0.02)
    runner = runners([slow, fast], command_wait_s=0.1)
    try:
        start = fast.polls
        assert fast.wait_polls(start + 10)        # ten polls while uplinks' first poll hangs
        assert slow.polls == 0
        view = wait_until(lambda: (v := runner.status()["controllers"]["uplinks"])
                          and "poll_stuck" in v["alerts"] and v)
        assert view["available"] is False and "running" in view["fault"]
        answer = runner.command("uplinks", "probe", {})
        assert answer["ok"] is False and "busy" in answer["message"]
    finally:
        release.set()
    assert slow.wait_polls(1)
    assert wait_until(lambda: runner.status()["controllers"]["uplinks"]["available"])


def test_commands_reach_the_controller_and_every_answer_is_ok_and_message(runners):
    vent = FakeController("ventilation")
    broken = FakeController("power")
    broken.command = lambda action, args: (_ for _ in ()).throw(ValueError("boom"))
    vague = FakeController("uplinks")
    vague.command = lambda action, args: "done"
    runner = runners([vent, broken, vague])
    assert runner.command("ventilation", "override", {"level": 60, "minutes": 30}) == {
        "ok": True, "message": "level 60 for 30 min"}
    assert vent.commands == [("override", {"level": 60, "minutes": 30})]
    assert runner.status()["controllers"]["ventilation"]["state"] == "override"   # seen at once
    assert runner.command("ventilation", "fly", {})["ok"] is False
    assert runner.command("power", "test", {}) == {"ok": False, "message": "the controller failed: ValueError"}
    assert runner.command("uplinks", "probe", {})["ok"] is False
    assert runner.command("lights", "on", {})["ok"] is False


def test_listeners_get_each_snapshot_and_a_failing_listener_harms_nothing(runners):
    seen: list[tuple[str, dict]] = []

    def failing(_name, _snapshot):
        raise RuntimeError("broker away")

    runner = Runner([FakeController("power")])
    runner.listeners += [failing, lambda name, snap: seen.append((name, snap))]
    runner.start()
    try:
        assert wait_until(lambda: len(seen) >= 3)
        name, snapshot = seen[-1]
        assert name == "power" and snapshot["available"] is True and "polled_at" in snapshot
    finally:
        runner.stop()


def test_stop_closes_every_controller_and_polls_no_more():
    controllers = [FakeController("ventilation"), FakeController("power")]
    runner = Runner(controllers)
    runner.start()
    assert controllers[0].wait_polls(2)
    runner.stop()
    assert all(c.closed for c in controllers)
    counts = [c.polls for c in controllers]
    assert not controllers[0].wait_polls(counts[0] + 1, timeout=0.2)
    assert [c.polls for c in controllers] == counts
    runner.stop()   # a second stop is harmless


def test_stop_closes_a_controller_even_while_its_poll_hangs(caplog):
    release = threading.Event()
    hung = FakeController("uplinks", on_poll=lambda _c: release.wait(10))
    runner = Runner([hung], stop_timeout_s=0.3)
    runner.start()
    try:
        assert wait_until(lambda: runner.status()["controllers"]["uplinks"]["alerts"] == ["poll_stuck"])
        with caplog.at_level(logging.ERROR, logger="cnap.agent"):
            runner.stop()
        assert hung.closed
        assert any("still running at stop" in r.getMessage() for r in caplog.records)
    finally:
        release.set()


def test_missing_broken_and_wrong_packages_are_unavailable_with_the_reason(monkeypatch):
    install_fake_package(monkeypatch, "fakefacility.power", build=lambda s: FakeController("power"))
    install_fake_package(monkeypatch, "fakefacility.uplinks",
                         build=lambda s: (_ for _ in ()).throw(OSError("no such interface eth9")))
    install_fake_package(monkeypatch, "fakefacility.lights", build=lambda s: object())
    install_fake_package(monkeypatch, "fakefacility.doors", build=lambda s: FakeController("doors", interval_s=0))
    controllers, unavailable = load_controllers(
        {}, ("fakefacility.ventilation", "fakefacility.power", "fakefacility.uplinks",
             "fakefacility.lights", "fakefacility.doors"))
    assert [c.name for c in controllers] == ["power"]
    assert "cannot import fakefacility.ventilation" in unavailable["ventilation"]
    assert "OSError: no such interface eth9" in unavailable["uplinks"]
    assert "did not return a Controller" in unavailable["lights"]
    assert "interval_s" in unavailable["doors"]
    runner = Runner(controllers, unavailable)
    view = runner.status()["controllers"]
    assert list(view) == ["power", "ventilation", "uplinks", "lights", "doors"]
    assert view["uplinks"] == {**view["uplinks"], "available": False, "state": "unavailable",
                               "alerts": ["not_loaded"]}
    assert runner.command("uplinks", "probe", {}) == {
        "ok": False, "message": f"controller uplinks is unavailable: {unavailable['uplinks']}"}


def test_the_real_package_list_loads_without_raising():
    """On this branch the controller packages may be missing: each is then unavailable, never a crash."""
    from facility import CONTROLLERS

    controllers, unavailable = load_controllers({"AGENT_HOST": "127.0.0.1"})
    assert {c.name for c in controllers} | set(unavailable) == {m.rsplit(".", 1)[1] for m in CONTROLLERS}
    for controller in controllers:
        controller.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(json_values, st.dictionaries(
    st.sampled_from(["available", "state", "alerts", "events", "extra"]), json_values, max_size=5)),
    st.sets(st.text(max_size=3), max_size=2))
def test_whatever_a_controller_reports_status_is_json_with_the_contract_keys(raw, odd):
    controller = FakeController("power")
    controller.status = lambda: raw if not odd else {"available": True, "odd": odd}   # a set is not JSON
    runner = Runner([controller])
    runner.poll_now("power")
    view = runner.status()["controllers"]["power"]
    json.dumps(view, allow_nan=False)
    assert isinstance(view["available"], bool) and isinstance(view["state"], str) and view["state"]
    assert all(isinstance(a, str) for a in view["alerts"])
    assert all(isinstance(e, dict) for e in view["events"])
    if odd or not isinstance(raw, dict):
        assert view["available"] is False and "status_failed" in view["alerts"]


def test_before_its_first_poll_a_controller_is_starting_and_order_is_kept():
    release = threading.Event()
    slow = FakeController("ventilation", on_poll=lambda _c: release.wait(10))
    runner = Runner([FakeController("uplinks"), slow], {"power": "cannot import"},
                    order=["ventilation", "power", "uplinks"])
    assert list(runner.status()["controllers"]) == ["ventilation", "power", "uplinks"]
    assert runner.status()["controllers"]["ventilation"]["state"] == "starting"
    runner.start()
    try:
        assert runner.wait_first_polls(0.3) is False          # ventilation's first poll hangs
        assert runner.status()["controllers"]["uplinks"]["available"] is True
        release.set()
        assert runner.wait_first_polls(5) is True
        assert runner.status()["controllers"]["ventilation"]["state"] == "normal"
        assert runner.status()["controllers"]["power"]["state"] == "unavailable"
    finally:
        release.set()
        runner.stop()


def test_a_reading_that_is_not_a_number_becomes_null_not_a_failed_status():
    controller = FakeController("ventilation", extra={"co2_ppm": float("nan"), "rpm": [1.0, float("inf")]})
    runner = Runner([controller])
    runner.poll_now("ventilation")
    view = runner.status()["controllers"]["ventilation"]
    assert view["available"] is True and view["co2_ppm"] is None and view["rpm"] == [1.0, None]
