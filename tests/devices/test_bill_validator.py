"""The CCNET driver against its simulator over a pty and over a loopback socket."""
import socket

import pytest

from devices.bill_validator import codec as c
from devices.bill_validator.driver import BillValidator
from devices.bill_validator.simulator import BillValidatorSimulator
from tests.devices.conftest import wait_until

FAST = dict(accept_time_s=0.03, stack_time_s=0.05, return_time_s=0.05, reject_time_s=0.05,
            init_time_s=0.03)


@pytest.fixture(params=["tcp", "pty"])
def rig(request, events):
    sims, drivers = [], []

    def make(sim_kwargs=None, **driver_kwargs):
        sim = BillValidatorSimulator(**{**FAST, **(sim_kwargs or {})})
        url = sim.start_tcp() if request.param == "tcp" else sim.start_pty()
        sims.append(sim)
        options = dict(poll_interval_s=0.02, lost_after_polls=5, response_timeout_s=0.1)
        options.update(driver_kwargs)
        bv = BillValidator(url, **options)
        bv.subscribe(events)
        drivers.append(bv)
        bv.start()
        return sim, bv

    yield make
    for bv in drivers:
        bv.stop()
    for sim in sims:
        sim.stop()


def accept(sim, bv, events, amount, n=1):
    assert sim.insert_bill(amount)
    events.wait_for("escrow", count=n)
    bv.stack()
    return events.wait_for("stacked", count=n)


def test_start_reads_identification_and_bill_table(rig, events):
    sim, bv = rig()
    assert bv.bill_table == [100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000]
    status = bv.status()
    assert status.online and status.detail["part_number"] == "SM-UA1015"
    assert events.kinds()[0] == "online"
    sent = [name for name in sim.commands if name != "ACK"]
    # one POLL first: a bill still in flight from a previous host must not be RESET away
    assert sent[:5] == ["GET BILL TABLE", "POLL", "RESET", "IDENTIFICATION", "GET BILL TABLE"]


def test_table_without_1000_is_respected(rig, events):
    table = [(v, "UAH") for v in (1, 2, 5, 10, 20, 50, 100, 200, 500)]
    sim, bv = rig({"table": table})
    assert 100000 not in bv.bill_table and 50000 in bv.bill_table
    bv.enable({100000, 50000})
    events.wait_for("idle")
    assert sim.enabled == {8}


def test_escrow_then_stack_credits_once_and_only_on_stacked(rig, events):
    sim, bv = rig()
    bv.enable({2000})
    events.wait_for("idle")
    assert sim.insert_bill(2000)
    escrow = events.wait_for("escrow")
    assert escrow.data == {"amount_kop": 2000, "currency": "UAH", "bill_type": 4}
    assert events.of("stacked") == [] and sim.cassette == []
    bv.stack()
    stacked = events.wait_for("stacked")
    assert stacked.data["amount_kop"] == 2000 and stacked.seq > escrow.seq
    assert sim.cassette == [2000]


def test_driver_never_auto_stacks_and_holds_the_bill(rig, events):
    sim, bv = rig({"escrow_timeout_s": 0.4})
    bv.enable({5000})
    events.wait_for("idle")
    sim.insert_bill(5000)
    events.wait_for("escrow")
    # longer than the device's escrow timeout: the driver must keep it with HOLD, not stack it
    import devices.bill_validator.driver as driver_module
    original = driver_module.HOLD_EVERY_S
    driver_module.HOLD_EVERY_S = 0.1
    try:
        wait_until(lambda: "HOLD" in sim.commands, what="HOLD sent")
        wait_until(lambda: sim.commands.count("HOLD") >= 6, what="bill kept past escrow timeout")
    finally:
        driver_module.HOLD_EVERY_S = original
    assert sim.cassette == [] and sim.returned_to_customer == []
    assert "STACK" not in sim.commands
    bv.return_bill()
    events.wait_for("returned", amount_kop=5000)
    assert sim.returned_to_customer == [5000] and events.of("stacked") == []


def test_repeated_stacked_after_lost_ack_is_one_bill(rig, events):
    sim, bv = rig()
    bv.enable({2000})
    events.wait_for("idle")
    sim.lose_next_acks(3)
    accept(sim, bv, events, 2000)
    wait_until(lambda: sim.lose_acks == 0, what="the device to repeat the stacked answer")
    events.wait_for("idle", count=2)
    assert len(events.of("stacked")) == 1 and sim.cassette == [2000]


def test_two_equal_bills_in_a_row_are_two(rig, events):
    sim, bv = rig()
    bv.enable({2000})
    events.wait_for("idle")
    accept(sim, bv, events, 2000, 1)
    wait_until(lambda: sim.state.code == c.IDLING and sim.sticky is None, what="idle")
    accept(sim, bv, events, 2000, 2)
    assert [e.data["amount_kop"] for e in events.of("stacked")] == [2000, 2000]
    assert sim.cassette == [2000, 2000]


def test_counterfeit_and_inhibited_bills_are_rejected_with_reason(rig, events):
    sim, bv = rig()
    bv.enable({2000})
    events.wait_for("idle")
    sim.insert_bill(2000, counterfeit=True)
    events.wait_for("rejected", reason="verification")
    wait_until(lambda: sim.state.code == c.IDLING, what="idle")
    sim.insert_bill(50000)  # not enabled
    events.wait_for("rejected", reason="inhibit")
    assert events.of("escrow") == [] and events.of("stacked") == [] and sim.cassette == []


def test_enable_and_disable_follow_the_caller(rig, events):
    sim, bv = rig()
    events.wait_for("disabled")
    bv.enable({2000, 100000})
    events.wait_for("idle")
    assert sim.enabled == {4, 9} and sim.escrow_types == {4, 9}
    bv.disable()
    events.wait_for("disabled", count=2)
    assert sim.enabled == set()


@pytest.mark.parametrize("fault, kind, clear, data", [
    ("set_cassette_full", "cassette_full", lambda s: s.set_cassette_full(False), {}),
    ("jam_bill", "jammed", lambda s: s.clear_jam(), {"where": "validator"}),
    ("cheat", "cheated", None, {}),
    ("fail", "failure", lambda s: s.clear_failure(), {"code": 0x50, "reason": "stack_motor"}),
])
def test_device_faults_become_events(rig, events, fault, kind, clear, data):
    sim, bv = rig()
    bv.enable({2000})
    events.wait_for("idle")
    getattr(sim, fault)()
    event = events.wait_for(kind)
    assert all(event.data[k] == v for k, v in data.items())
    if clear:
        clear(sim)
    events.wait_for("idle", count=2)
    assert bv.status().online


def test_cassette_jam_is_reported_with_place(rig, events):
    sim, bv = rig()
    sim.jam_bill("cassette")
    events.wait_for("jammed", where="cassette")
    assert bv.status().state == "cassette_jammed"


def test_cassette_removed_and_replaced(rig, events):
    sim, bv = rig()
    bv.enable({2000})
    events.wait_for("idle")
    sim.remove_cassette()
    events.wait_for("cassette_removed")
    sim.replace_cassette()
    events.wait_for("cassette_replaced")
    events.wait_for("idle", count=2)
    assert events.kinds().index("cassette_removed") < events.kinds().index("cassette_replaced")


def test_power_cycle_mid_stack_is_an_incident_with_the_bill(rig, events):
    sim, bv = rig({"stack_time_s": 0.5})
    bv.enable({20000})
    events.wait_for("idle")
    sim.insert_bill(20000)
    events.wait_for("escrow")
    bv.stack()
    wait_until(lambda: sim.state.code == c.STACKING, what="stacking")
    sim.power_cycle(off_s=0.1)
    incident = events.wait_for("powerup_with_bill")
    assert incident.data["where"] == "stacker"
    assert incident.data["amount_kop"] == 20000 and incident.data["stack_sent"] is True
    events.wait_for("idle", count=2)  # re-initialised and re-enabled by itself
    assert events.of("stacked") == []  # no credit without a stacked answer
    assert sim.cassette == [20000]  # the money is in the box: payments reconciles from the incident


def test_power_up_with_bill_in_validator(rig, events):
    sim, bv = rig()
    bv.enable({2000})
    events.wait_for("idle")
    sim.insert_bill(2000)
    events.wait_for("escrow")
    sim.power_cycle(off_s=0.05, bill_in="validator")
    incident = events.wait_for("powerup_with_bill")
    assert incident.data["where"] == "validator" and incident.data["stack_sent"] is False
    events.wait_for("idle", count=2)
    assert sim.returned_to_customer == [2000] and events.of("stacked") == []


def test_plain_power_cycle_reinitialises_and_reenables(rig, events):
    sim, bv = rig()
    bv.enable({2000})
    events.wait_for("idle")
    sim.power_cycle(off_s=0.05, bill_in=None)
    events.wait_for("power_up")
    events.wait_for("idle", count=2)
    assert sim.commands.count("RESET") == 2 and sim.enabled == {4}


def test_silent_device_is_lost_then_recovers(rig, events):
    sim, bv = rig()
    sim.set_silent(True)
    lost = events.wait_for("lost")
    assert lost.data["unanswered_polls"] == 5
    assert not bv.status().online and bv.status().state == "offline"
    assert bv.status().last_error
    sim.set_silent(False)
    online = events.wait_for("online", count=2)
    assert online.data["recovered"] is True and bv.status().online


def test_slow_device_within_timeout_still_works(rig, events):
    sim, bv = rig()
    sim.set_delay(0.06)
    bv.enable({1000})
    events.wait_for("idle")
    accept(sim, bv, events, 1000)
    assert events.of("lost") == []


def test_slow_device_beyond_timeout_is_lost(rig, events):
    sim, bv = rig()
    sim.set_delay(0.15)  # 1.5 x the response timeout: late answers must not pass as fresh ones
    events.wait_for("lost")
    sim.set_delay(0)
    events.wait_for("online", count=2)


@pytest.mark.parametrize("fault, counter", [
    ("corrupt_next_answers", "bad_crc"),
    ("garbage_before_next_answers", "garbage"),
    ("truncate_next_answers", "garbage"),
])
def test_wire_faults_are_counted_and_survived(rig, events, fault, counter):
    sim, bv = rig()
    bv.enable({2000})
    events.wait_for("idle")
    getattr(sim, fault)(3)
    wait_until(lambda: bv.status().detail["counters"][counter] >= 1, what=counter)
    accept(sim, bv, events, 2000)
    assert sim.cassette == [2000] and bv.status().online


def test_lost_stacked_answer_is_still_credited_once(rig, events):
    sim, bv = rig()
    bv.enable({2000})
    events.wait_for("idle")
    assert sim.insert_bill(2000)
    events.wait_for("escrow")
    sim.corrupt_next_answers(1)  # NAKed, and the device repeats
    bv.stack()
    events.wait_for("stacked")
    events.wait_for("idle", count=2)
    assert len(events.of("stacked")) == 1


def test_stack_without_escrow_is_ignored(rig, events):
    sim, bv = rig()
    bv.enable({2000})
    events.wait_for("idle")
    bv.stack()
    wait_until(lambda: "no bill in escrow" in (bv.status().last_error or ""), what="error noted")
    assert sim.insert_bill(2000)
    events.wait_for("escrow")
    wait_until(lambda: sim.commands.count("POLL") > 20, what="polls")
    assert "STACK" not in sim.commands and sim.cassette == []


def test_subscriber_exception_withholds_the_ack_and_never_stops_the_driver(rig, events):
    """A subscriber that raises means the host could not record the event: no ACK, the same
    event (same seq) again after a back-off, the thread alive, and the status saying so."""
    sim, bv = rig(delivery_backoff_s=(0.05, 0.1))
    failing = {"on": True}

    def broken(event):
        if failing["on"] and event.kind == "idle":
            raise RuntimeError("caller bug")

    bv.subscribe(broken)
    bv.enable({2000})
    wait_until(lambda: len(events.of("idle")) >= 3, what="idle delivered again")
    assert len({e.seq for e in events.of("idle")}) == 1
    status = bv.status()
    assert bv._thread.is_alive() and status.state == "host_error" and "caller bug" in status.last_error
    failing["on"] = False
    wait_until(lambda: bv.status().online, what="recovered")
    accept(sim, bv, events, 2000)
    seqs = [e.seq for e in events.events]
    assert seqs == sorted(seqs) and seqs[0] == 1  # repeats of one event, never out of order
    assert len(events.of("stacked")) == 1 and sim.cassette == [2000]


def test_absent_device_does_not_raise_and_shows_offline(events):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bv = BillValidator(f"socket://127.0.0.1:{port}", poll_interval_s=0.02, lost_after_polls=2)
    bv.subscribe(events)
    bv.start()
    try:
        status = bv.status()
        assert not status.online and status.state == "offline"
        assert "cannot open" in status.last_error
        assert bv.bill_table == []
        bv.enable({2000})  # accepted and remembered; nothing raises
        bv.stack()
    finally:
        bv.stop()
    assert "stacked" not in events.kinds()


def test_spy_url_traces_the_wire(tmp_path):
    sim = BillValidatorSimulator(**FAST)
    tty = sim.start_pty()
    trace = tmp_path / "trace.txt"
    bv = BillValidator(f"spy://{tty}?file={trace}", poll_interval_s=0.02, response_timeout_s=0.1)
    try:
        bv.start()
        assert bv.bill_table
    finally:
        bv.stop()
        sim.stop()
    text = trace.read_text().upper()
    assert "02 03 06 30 41 B3" in text  # the RESET frame, as the reference spells it
