"""Property-based tests over each driver: whatever a device says, the driver never raises, never
hangs and never credits a bill it did not see stacked."""
import time

from hypothesis import HealthCheck, given, settings, strategies as st

from devices.bill_validator import codec as ccnet
from devices.bill_validator.driver import BillValidator
from devices.card_terminal import codec as ecr
from devices.card_terminal.driver import CardTerminal
from devices.printer.driver import ReceiptPrinter
from devices.simwire import SimulatorBase
from tests.devices.conftest import EventLog, wait_until

FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class ScriptedDevice(SimulatorBase):
    """Answers each complete request with the next scripted bytes, then falls silent."""

    name = "fuzz"

    def __init__(self, answers, split):
        super().__init__()
        self.answers = list(answers)
        self.split = split
        self.sent = []

    def on_data(self, data):
        for item in self.split(data):
            if self.answers:
                answer = self.answers.pop(0)
                self.sent.append(answer)
                self.send(answer)


states = st.sampled_from(sorted(ccnet.STATE_NAMES) + [0x00, 0x30, 0x99])
ccnet_answer = st.one_of(
    st.builds(lambda code, sub: ccnet.encode_frame(bytes([code, sub])), states, st.integers(0, 23)),
    st.builds(lambda code: ccnet.encode_frame(bytes([code])), states),
    st.builds(lambda f: f[:-1] + bytes([f[-1] ^ 1]), st.builds(lambda s: ccnet.encode_frame(bytes([ccnet.BILL_STACKED, s])), st.integers(0, 9))),
    st.binary(max_size=12),
    st.builds(lambda s: ccnet.encode_frame(bytes([ccnet.BILL_STACKED, s]))[:4], st.integers(0, 9)),
)


def ccnet_split(data):
    return [f for f in ccnet.FrameDecoder().feed(data) if isinstance(f, ccnet.Frame) and f.command not in (0x00, 0xFF)]


def count_stacked_transitions(sent):
    """Stacked answers the device really sent, counting a run of equal answers as one."""
    decoder, previous, count = ccnet.FrameDecoder(), None, 0
    for raw in sent:
        for item in decoder.feed(raw):
            if isinstance(item, ccnet.Frame):
                if item.payload[:1] == bytes([ccnet.BILL_STACKED]) and item.payload != previous:
                    count += 1
                previous = item.payload
        decoder.reset()
    return count


@FUZZ
@given(st.lists(ccnet_answer, max_size=40))
def test_bill_validator_driver_survives_any_device(answers):
    table = ccnet.encode_frame(ccnet.encode_bill_table([(v, "UAH") for v in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)]))
    script = [ccnet.encode_frame(b"\x00"), ccnet.encode_frame(b"SM" + bytes(32)), table] + answers
    device = ScriptedDevice(script, ccnet_split)
    url = device.start_tcp()
    log = EventLog()
    bv = BillValidator(url, poll_interval_s=0.0, lost_after_polls=3, response_timeout_s=0.03)
    bv.subscribe(log)
    try:
        bv.start()
        bv.enable({2000, 5000})
        wait_until(lambda: not device.answers, timeout=10, what="script consumed")
        time.sleep(0.1)
        status = bv.status()  # still answers
        assert bv._thread.is_alive()
    finally:
        bv.stop()
        device.stop()
    seqs = [e.seq for e in log.events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(log.of("stacked")) <= count_stacked_transitions(device.sent)
    assert isinstance(status.online, bool)


def ecr_split(data, _decoder={}):
    return [m for m in ecr.MessageDecoder().feed(data) if isinstance(m, dict)]


ecr_answer = st.one_of(
    st.binary(max_size=60).map(lambda b: b + b"\x00"),
    st.builds(lambda code, err: ecr.encode_message({"method": "Purchase", "params": {"responseCode": code, "amount": "1.00"}, "error": err}),
              st.sampled_from(["0000", "0051", "1001", "1005", "x"]), st.booleans()),
    st.builds(lambda last: ecr.encode_message(ecr.service("getLastResult", lastResult=last)),
              st.one_of(st.none(), st.just({"method": "Purchase", "params": {"responseCode": "0000", "amount": "1.00", "invoiceNumber": "7"}}))),
    st.just(ecr.encode_message(ecr.service("deviceBusy"))),
    st.binary(max_size=30),
)


@FUZZ
@given(st.lists(ecr_answer, max_size=6))
def test_card_terminal_driver_survives_any_terminal(answers):
    device = ScriptedDevice(answers, ecr_split)
    url = device.start_tcp()
    terminal = CardTerminal(url, timeouts={"purchase": 0.15, "last_result": 0.1, "last_result_total": 0.3})
    try:
        result = terminal.purchase(100)
        purchases = [m for m in device.sent]  # noqa: F841  (what it answered)
    finally:
        terminal.close()
        device.stop()
    assert result.status in {"approved", "declined", "cancelled", "timeout", "busy", "offline", "error", "unknown"}
    if result.status == "approved":
        assert result.response_code in ecr.APPROVED_CODES


@FUZZ
@given(st.lists(st.binary(min_size=0, max_size=3), max_size=8))
def test_printer_driver_survives_any_status_bytes(answers):
    device = ScriptedDevice(answers, lambda data: [b for b in data if b == 0x04] and [1] * data.count(b"\x10\x04"))
    url = device.start_tcp()
    printer = ReceiptPrinter(url, profile={"status_timeout_s": 0.05})
    try:
        status = printer.status()
    finally:
        device.stop()
    assert status.paper in ("ok", "near_end", "out", "unknown")
    if status.paper == "unknown":
        assert status.online is False
