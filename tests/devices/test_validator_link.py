"""The CCNET link under a misbehaving device and a failing host (issue 8).

Host side: a subscriber that raises means the event is not durable, so the driver must not ACK
it, must re-deliver the same event (same seq) on the device's repeat with a back-off, and must
not move money meanwhile. Device side: unreadable identification or bill table, a device that
answers everything with a bare ACK, corrupt frames, "stacked" without a bill type, and a device
that needs the line quiet between frames (CCNET t_free).
"""
import threading
import time

import pytest

import devices.bill_validator.driver as driver_module
from devices.bill_validator import codec as c
from devices.bill_validator.driver import RESET_BACKOFF_S, Backoff, BillValidator
from devices.bill_validator.simulator import BillValidatorSimulator
from devices.events import DeliveryError, EventEmitter
from tests.devices.conftest import EventLog, wait_until

FAST = dict(accept_time_s=0.03, stack_time_s=0.05, return_time_s=0.05, reject_time_s=0.05,
            init_time_s=0.03)


class FlakyHost:
    """Stands for the till's journal: while failing, recording raises (disk full); it keeps
    what it recorded once per (seq), as a journal keyed by the event does."""

    def __init__(self):
        self.attempts = []
        self.recorded = []
        self._fail_left = 0
        self._fail_kinds = None
        self._lock = threading.Lock()

    def fail(self, kinds=None, times=10**9):
        with self._lock:
            self._fail_kinds, self._fail_left = kinds, times

    def heal(self):
        self.fail(None, 0)

    def __call__(self, event):
        with self._lock:
            self.attempts.append(event)
            if self._fail_left and (self._fail_kinds is None or event.kind in self._fail_kinds):
                self._fail_left -= 1
                raise OSError(28, "No space left on device")
            if all(e.seq != event.seq for e in self.recorded):
                self.recorded.append(event)

    def kinds(self, where="recorded"):
        with self._lock:
            return [e.kind for e in getattr(self, where)]

    def of(self, kind, where="recorded"):
        with self._lock:
            return [e for e in getattr(self, where) if e.kind == kind]


@pytest.fixture(params=["tcp", "pty"])
def link(request):
    sims, drivers = [], []

    def make(sim_kwargs=None, faults=(), subscriber=None, **driver_kwargs):
        sim = BillValidatorSimulator(**{**FAST, **(sim_kwargs or {})})
        for name, *args in faults:
            getattr(sim, name)(*args)
        url = sim.start_tcp() if request.param == "tcp" else sim.start_pty()
        sims.append(sim)
        options = dict(poll_interval_s=0.02, lost_after_polls=5, response_timeout_s=0.1,
                       delivery_backoff_s=(0.05, 0.2))
        options.update(driver_kwargs)
        bv = BillValidator(url, **options)
        log = subscriber if subscriber is not None else EventLog()
        bv.subscribe(log)
        drivers.append(bv)
        bv.start()
        return sim, bv, log

    yield make
    for bv in drivers:
        bv.stop()
    for sim in sims:
        sim.stop()


# ----------------------------------------------------------------------------- failing host
def test_stacked_is_acked_only_once_the_host_recorded_it(link):
    host = FlakyHost()
    sim, bv, _ = link(subscriber=host)
    bv.enable({2000})
    wait_until(lambda: "idle" in host.kinds(), what="idle recorded")
    host.fail({"stacked"}, times=3)
    sim.lose_next_acks(2)  # and the first ACKs after success get lost on the wire too
    assert sim.insert_bill(2000)
    wait_until(lambda: host.of("escrow"), what="escrow recorded")
    bv.stack()
    wait_until(lambda: len(host.of("stacked", "attempts")) >= 2, what="a second delivery attempt")
    # while the host cannot record the credit the device is not acknowledged and keeps the 0x81
    status = bv.status()
    assert status.state == "host_error" and not status.online
    assert "No space left on device" in status.last_error
    assert sim.sticky == c.PollState(c.BILL_STACKED, 4)
    wait_until(lambda: host.of("stacked"), timeout=5, what="credit recorded")
    wait_until(lambda: sim.sticky is None and sim.lose_acks == 0, what="ACKed after recording")
    wait_until(lambda: bv.status().online, what="back to normal")
    attempts = host.of("stacked", "attempts")
    assert len(attempts) == 4  # 3 failures, 1 success; the repeats after lost ACKs are not new
    assert {(e.seq, tuple(sorted(e.data.items()))) for e in attempts} == {
        (attempts[0].seq, (("amount_kop", 2000), ("bill_type", 4), ("currency", "UAH")))}
    assert [e.data["amount_kop"] for e in host.of("stacked")] == [2000]
    assert sim.cassette == [2000]
    assert bv.status().state != "host_error" and bv.status().detail["host_error"] is None


def test_while_the_host_fails_nothing_that_moves_money_goes_out(link):
    host = FlakyHost()
    sim, bv, _ = link({"escrow_timeout_s": 0.6}, subscriber=host, delivery_backoff_s=(0.1, 0.3))
    bv.enable({2000})
    wait_until(lambda: "idle" in host.kinds() and sim.enabled == {4}, what="idle recorded")
    time.sleep(0.2)  # let the enable sequence settle
    host.fail()  # the journal's disk is full from now on
    mark = len(sim.commands)
    assert sim.insert_bill(2000)
    wait_until(lambda: host.of("escrow", "attempts"), what="escrow attempted")
    bv.stack()  # even if asked: the escrow was never recorded
    bv.enable({2000, 5000})
    # the device's own escrow timeout gives the bill back; the driver only polls meanwhile
    wait_until(lambda: sim.returned_to_customer == [2000], timeout=5, what="bill returned by the device")
    wait_until(lambda: len(host.attempts) >= 6, what="more delivery attempts")
    first_failure = host.of("escrow", "attempts")[0].at
    after = [n for t, d, n in list(sim.wire_log) if d == "in" and t > first_failure]
    assert after and set(after) <= {"POLL"}, after
    assert sim.cassette == [] and bv._thread.is_alive()
    status = bv.status()
    assert status.state == "host_error" and not status.online and status.detail["undelivered"]
    # back-off: attempts are spaced, not one per poll interval
    polls = after.count("POLL")
    host.heal()
    wait_until(lambda: bv.status().online, what="recovered")
    wait_until(lambda: "returned" in host.kinds(), what="returned recorded")
    seqs = [e.seq for e in host.recorded]
    assert seqs == sorted(set(seqs))
    assert host.of("stacked") == [] and sim.cassette == []
    assert polls < 30  # one per back-off step; at the 20 ms poll interval it would be ~75


@pytest.mark.parametrize("error", [RuntimeError, SystemExit])
def test_a_subscriber_that_always_raises_never_stops_the_thread(link, error):
    def broken(event):
        raise error("caller bug")

    sim, bv, _ = link(subscriber=broken)
    bv.enable({2000})
    wait_until(lambda: bv.status().state == "host_error", what="host error reported")
    assert "caller bug" in bv.status().last_error
    time.sleep(0.3)
    assert bv._thread.is_alive() and sim.enabled == set() and "ENABLE BILL TYPES" not in sim.commands


def test_event_bus_calls_every_subscriber_and_reports_failures():
    bus = EventEmitter("bill_validator")
    seen = []
    bus.subscribe(lambda e: seen.append(("a", e.seq)))
    bus.subscribe(lambda e: (_ for _ in ()).throw(OSError("read-only file system")))
    bus.subscribe(lambda e: seen.append(("c", e.seq)))
    event = bus.make("stacked", {"amount_kop": 2000})
    with pytest.raises(DeliveryError) as failure:
        bus.deliver(event)
    assert "read-only file system" in str(failure.value) and failure.value.event is event
    assert seen == [("a", 1), ("c", 1)]
    assert bus.make("idle").seq == 2


# ----------------------------------------------------------------------------- misbehaving device
@pytest.mark.parametrize("missing", ["missing", 23, 10, 6])
def test_stacked_without_a_known_bill_type_is_an_incident_not_a_credit(link, missing):
    # 23: absent from the table; 10: a EUR bill in the table; 6: 100 UAH, not the 20 UAH escrowed
    table = [(v, "UAH") for v in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)] + [(5, "EUR")]
    sim, bv, events = link({"table": table})
    bv.enable({2000})
    events.wait_for("idle")
    sim.report_stacked_type(missing)
    assert sim.insert_bill(2000)
    events.wait_for("escrow")
    bv.stack()
    incident = events.wait_for("stacked_unknown")
    assert events.of("stacked") == []
    assert incident.data["escrow_kop"] == 2000 and incident.data["raw"].startswith("81")
    assert incident.data["bill_type"] == (None if missing == "missing" else missing)
    status = bv.status()
    assert status.state == "alarm" and not status.online and "bill type" in status.last_error
    wait_until(lambda: sim.sticky is None, what="incident ACKed once recorded")
    wait_until(lambda: sim.enabled == set(), what="acceptance switched off")
    bv.enable({2000})  # the till asking again does not switch it back on
    time.sleep(0.2)
    assert sim.enabled == set() and bv.status().state == "alarm"
    bv.clear_alarm()  # an operator counted the cassette
    events.wait_for("alarm_cleared")
    wait_until(lambda: sim.enabled == {4}, what="accepting again")
    assert bv.status().online and events.of("stacked") == []


@pytest.mark.parametrize("fault, reason", [
    (("fail_bill_table", "garbage"), "bill table"),
    (("fail_bill_table", "short"), "bill table"),
    (("fail_bill_table", "ack"), "ACK only"),
    (("fail_identification", "illegal"), "identification"),
    (("fail_identification", "garbage"), "identification"),
    (("fail_identification", "ack"), "ACK only"),
    (("set_ack_only", True), "ACK only"),
    (("set_ignore_reset", True), "power-up"),
])
def test_unreadable_device_is_reset_with_back_off_and_reported(link, fault, reason):
    sim, bv, events = link(faults=[fault], reset_backoff_s=(0.25, 1.0))
    bv.enable({2000})
    started = time.monotonic()
    event = events.wait_for("unavailable")
    assert reason in event.data["reason"]
    time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
    resets = sim.commands.count("RESET")
    status = bv.status()
    # back-off 0.25 s doubling: RESETs at about 0, 0.25, 0.75, 1.75 s (today: one per poll)
    assert 1 <= resets <= 5, sim.commands
    assert status.state == "unavailable" and not status.online and reason in status.last_error
    assert "ENABLE BILL TYPES" not in sim.commands and sim.enabled == set()
    getattr(sim, fault[0])(None if fault[1] is not True else False)  # the device is fixed
    events.wait_for("available", timeout=5)
    wait_until(lambda: sim.enabled == {4}, what="enabled after recovery")
    assert bv.status().online and bv.status().state in ("idling", "unit_disabled")


def test_identification_padded_with_nuls_is_accepted(link):
    sim, bv, events = link(faults=[("fail_identification", "nul_padded")])
    assert bv.status().online and bv.status().detail["part_number"] == "SM-UA1015"
    assert bv.status().detail["serial_number"] == "41K123456" and events.of("unavailable") == []


def test_default_reset_back_off_is_a_handful_of_resets_in_12_s():
    backoff, at, resets = Backoff(*RESET_BACKOFF_S), 0.0, 0
    while at <= 12.0:
        resets += 1
        at += backoff.next()
    assert resets <= 4  # the emulator run that found this saw over a hundred
    assert [Backoff(0.5, 5.0).next() for _ in range(1)] == [0.5]
    b = Backoff(0.5, 5.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    b.reset()
    assert b.next() == 0.5


@pytest.mark.parametrize("fault, reason", [("set_ack_only", "ACK only"), ("set_refuse_poll", "ILLEGAL")])
def test_device_that_starts_answering_polls_without_a_state_is_reported(link, fault, reason):
    sim, bv, events = link()
    bv.enable({2000})
    events.wait_for("idle")
    getattr(sim, fault)(True)
    event = events.wait_for("unavailable")
    assert reason in event.data["reason"]
    assert bv.status().state == "unavailable" and not bv.status().online
    getattr(sim, fault)(False)
    events.wait_for("available")
    wait_until(lambda: bv.status().online, what="available again")


def test_corrupt_answer_is_nakked_at_once_and_its_repeat_awaited(link):
    sim, bv, events = link(response_timeout_s=2.0)
    bv.enable({2000})
    events.wait_for("idle")
    time.sleep(0.1)
    mark = len(sim.wire_log)
    sim.corrupt_next_answers(1)
    wait_until(lambda: [n for _, _, n in sim.wire_log[mark:]].count("ACK") >= 1
               and "corrupt" in [n for _, _, n in sim.wire_log[mark:]], timeout=6, what="corrupt frame handled")
    log = sim.wire_log[mark:]
    i = [n for _, _, n in log].index("corrupt")
    after = log[i + 1 : i + 4]
    assert [(d, n) for _, d, n in after] == [("in", "NAK"), ("out", "repeat"), ("in", "ACK")], log
    # the NAK answers the bad frame; it is not the 2 s response timeout running out
    assert after[0][0] - log[i][0] < 1.0
    assert bv.status().detail["counters"]["bad_crc"] == 1 and events.of("lost") == []


def test_truncated_answer_is_nakked_without_waiting_for_the_timeout(link):
    sim, bv, events = link(response_timeout_s=2.0)
    bv.enable({2000})
    events.wait_for("idle")
    time.sleep(0.1)
    mark = len(sim.wire_log)
    sim.truncate_next_answers(1)
    wait_until(lambda: "repeat" in [n for _, _, n in sim.wire_log[mark:]], timeout=6, what="repeat asked")
    log = sim.wire_log[mark:]
    names = [n for _, _, n in log]
    nak = names.index("NAK")
    assert log[nak][0] - log[nak - 1][0] < 1.0 and names[nak + 1] == "repeat"


# ----------------------------------------------------------------------------- line timing
def test_device_that_needs_a_quiet_line_between_frames_works(link):
    sim, bv, events = link(faults=[("require_gap", 0.01)])
    assert bv.bill_table, bv.status().last_error
    bv.enable({2000})
    events.wait_for("idle")
    assert sim.insert_bill(2000)
    events.wait_for("escrow")
    bv.stack()
    events.wait_for("stacked", amount_kop=2000)
    assert "unheard" not in [n for _, _, n in sim.wire_log]
    assert sim.cassette == [2000] and events.of("lost") == []


def test_host_frames_are_spaced_by_the_inter_frame_gap(monkeypatch):
    writes = []
    real_open = driver_module.open_url

    class SpyPort:
        def __init__(self, port):
            self.__dict__["_port"] = port

        def write(self, data):
            writes.append((time.monotonic(), bytes(data)))
            return self._port.write(data)

        def __getattr__(self, name):
            return getattr(self._port, name)

        def __setattr__(self, name, value):
            setattr(self._port, name, value)

    monkeypatch.setattr(driver_module, "open_url", lambda *a, **k: SpyPort(real_open(*a, **k)))
    sim = BillValidatorSimulator(**FAST)
    url = sim.start_pty()
    gap = 0.05
    bv = BillValidator(url, poll_interval_s=0.0, response_timeout_s=0.1, inter_frame_gap_s=gap)
    events = EventLog()
    bv.subscribe(events)
    try:
        bv.start()
        bv.enable({2000})
        events.wait_for("idle")
        assert sim.insert_bill(2000)
        events.wait_for("escrow")
        bv.stack()
        events.wait_for("stacked")
    finally:
        bv.stop()
        sim.stop()
    replies = {c.ACK_FRAME, c.NAK_FRAME}
    checked = 0
    for (t1, _), (t2, frame) in zip(writes, writes[1:]):
        if frame not in replies:  # a command: the line was quiet for the gap before it
            checked += 1
            assert t2 - t1 >= gap, (frame.hex(), t2 - t1)
    acks_then_command = sum(1 for (_, f1), (_, f2) in zip(writes, writes[1:])
                            if f1 == c.ACK_FRAME and f2 not in replies)
    assert checked > 10 and acks_then_command > 3
