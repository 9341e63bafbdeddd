"""ECR JSON codec vectors and the card terminal driver against its simulator (pty and socket)."""
import json
import socket
import threading

import pytest
from hypothesis import given, settings, strategies as st

from devices.card_terminal import codec as c
from devices.card_terminal.driver import CardTerminal
from devices.card_terminal.simulator import CardTerminalSimulator
from tests.devices.conftest import wait_until

FAST = {"purchase": 0.6, "last_result": 0.5, "last_result_total": 2.0, "ping": 0.5,
        "void": 0.5, "audit": 0.5, "reconcile": 0.5}


# ---------------------------------------------------------------- codec
def test_message_is_utf8_json_terminated_by_nul():
    raw = c.encode_message(c.purchase(20050, "7"))
    assert raw.endswith(b"\x00") and raw.count(b"\x00") == 1
    assert json.loads(raw[:-1].decode("utf-8")) == {
        "method": "Purchase", "step": 0, "params": {"amount": "200.50", "discount": "", "merchantId": "7"}}


def test_cyrillic_survives_the_codec():
    message = {"method": "Purchase", "params": {"note": "Оплата послуг ЦНАП: ї є ґ"}}
    (decoded,) = c.MessageDecoder().feed(c.encode_message(message))
    assert decoded == message


@pytest.mark.parametrize("text, kop", [("200.00", 20000), ("0.5", 50), ("1,05", 105), ("7", 700),
                                       (12, 1200), ("-1.00", None), ("1e3", None), ("", None),
                                       (None, None), (True, None), ("1.005", None)])
def test_amounts_never_use_floats(text, kop):
    assert c.amount_to_kop(text) == kop


@pytest.mark.parametrize("raw, reason", [
    (b"\xff\xfe\x00", "invalid_utf8"),
    (b"{\"method\": \x00", "invalid_json"),
    (b"[1, 2]\x00", "not_object"),
    (b"{\"params\": {}}\x00", "not_object"),
    (b"{\"method\": \"X\", \"params\": 5}\x00", "not_object"),
])
def test_bad_messages_are_reported_not_raised(raw, reason):
    (item,) = c.MessageDecoder().feed(raw)
    assert isinstance(item, c.DecodeError) and item.reason == reason


def test_oversized_message_is_skipped_and_decoder_recovers():
    decoder = c.MessageDecoder()
    items = decoder.feed(b"{" + b"x" * (c.MAX_MESSAGE + 10))
    assert [i.reason for i in items] == ["oversized"]
    items = decoder.feed(b"still junk\x00" + c.encode_message(c.request(c.PING)))
    assert items == [c.request(c.PING)]


@pytest.mark.parametrize("code, error, status", [
    ("0000", False, "approved"), ("0051", True, "declined"), ("1001", True, "cancelled"),
    ("1002", True, "timeout"), ("1004", True, "offline"), ("1005", True, "error"),
    (None, True, "error"), (None, False, "unknown"),
])
def test_classification(code, error, status):
    message = {"method": "Purchase", "params": {"responseCode": code} if code else {}, "error": error}
    assert c.classify(message)["status"] == status


def test_full_pan_is_masked():
    fields = c.classify({"method": "Purchase", "params": {"pan": "4149 6200 1234 5678", "responseCode": "0000"}})
    assert fields["masked_pan"] == "414962******5678"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_decoder_never_raises_on_any_bytes(data, chunk):
    decoder = c.MessageDecoder()
    for i in range(0, len(data), chunk):
        for item in decoder.feed(data[i : i + chunk]):
            assert isinstance(item, (dict, c.DecodeError))
            if isinstance(item, dict):
                c.classify(item)  # and classification of whatever parsed never raises either
        assert len(decoder.buffer) <= c.MAX_MESSAGE + chunk


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6), st.text(max_size=12))
def test_any_object_round_trips_and_classifies(params, method):
    message = {"method": method, "params": params}
    (decoded,) = c.MessageDecoder().feed(c.encode_message(message))
    assert decoded == message
    result = c.classify(decoded)
    assert result["status"] in {"approved", "declined", "cancelled", "timeout", "busy", "offline", "error", "unknown"}
    assert result["amount_kop"] is None or isinstance(result["amount_kop"], int)


# ---------------------------------------------------------------- driver against simulator
@pytest.fixture(params=["tcp", "pty"])
def rig(request):
    sim = CardTerminalSimulator(processing_s=0.1)
    url = sim.start_tcp() if request.param == "tcp" else sim.start_pty()
    terminal = CardTerminal(url, timeouts=FAST)
    yield sim, terminal
    terminal.close()
    sim.stop()


def purchases_sent(sim):
    return [m for m in sim.received if m["method"] == "Purchase"]


def test_ping(rig):
    sim, terminal = rig
    assert terminal.ping() is True
    assert terminal.status().online


def test_approved_purchase_carries_every_field(rig):
    sim, terminal = rig
    result = terminal.purchase(15000, merchant_id="1")
    assert result.status == "approved" and result.amount_kop == 15000
    assert result.approval_code and result.rrn and result.invoice_number
    assert result.masked_pan == "414962******1234" and result.card_type == "VISA"
    assert result.terminal_id == "S1KV0001" and result.merchant_id == "1000000001"
    assert result.response_code == "0000"
    assert purchases_sent(sim)[0]["params"]["amount"] == "150.00"


@pytest.mark.parametrize("behaviour, status, code", [
    ("decline", "declined", "0051"),
    ("customer_cancel", "cancelled", "1001"),
    ("no_paper", "error", "1005"),
    ("no_host", "offline", "1004"),
])
def test_failed_purchases(rig, behaviour, status, code):
    sim, terminal = rig
    sim.set_behaviour(behaviour)
    result = terminal.purchase(5000)
    assert (result.status, result.response_code) == (status, code)
    assert result.text and sim.purchases("approved") == []


def test_busy_terminal(rig):
    sim, terminal = rig
    sim.set_behaviour("busy")
    assert terminal.purchase(5000).status == "busy"


def test_lost_response_is_recovered_from_last_result_without_resending(rig):
    sim, terminal = rig
    sim.set_behaviour("lost_response")
    result = terminal.purchase(7700)
    assert result.status == "approved" and result.amount_kop == 7700 and result.rrn
    assert len(purchases_sent(sim)) == 1  # never re-sent
    assert any(m["params"].get("msgType") == "getLastResult" for m in sim.received)
    assert len(sim.purchases("approved")) == 1


def test_terminal_timeout_is_reported_from_last_result(rig):
    sim, terminal = rig
    sim.set_behaviour("timeout")
    result = terminal.purchase(100)
    assert result.status == "timeout" and len(purchases_sent(sim)) == 1


def test_silent_terminal_gives_unknown_never_a_second_purchase(rig):
    sim, terminal = rig
    sim.set_silent(True)
    result = terminal.purchase(100)
    assert result.status == "unknown"
    assert len(purchases_sent(sim)) == 1
    assert "Purchase" in terminal.status().last_error


def test_stale_last_result_is_not_taken_for_this_purchase(rig):
    sim, terminal = rig
    assert terminal.purchase(2500).status == "approved"
    sim.set_behaviour("lost_request")  # the second request never reaches the terminal
    result = terminal.purchase(2500)
    # getLastResult returns the first (approved, same amount) purchase: it is not this one
    assert result.status == "unknown"
    assert len(purchases_sent(sim)) == 2 and len(sim.purchases("approved")) == 1


def test_terminal_still_busy_after_our_timeout_gives_unknown(rig):
    sim, terminal = rig
    sim.processing_s = 30
    result = terminal.purchase(2500)
    assert result.status == "unknown" and len(purchases_sent(sim)) == 1
    sim.pending = None


def test_interrupt_cancels_a_running_purchase(rig):
    sim, terminal = rig
    sim.processing_s = 5
    holder = {}
    worker = threading.Thread(target=lambda: holder.update(r=terminal.purchase(9900)))
    worker.start()
    wait_until(lambda: sim.pending is not None, what="purchase in progress")
    terminal.interrupt()
    worker.join(5)
    assert holder["r"].status == "cancelled"


def test_void_audit_reconcile(rig):
    sim, terminal = rig
    paid = terminal.purchase(3000)
    voided = terminal.void(paid.invoice_number)
    assert voided.status == "approved" and voided.invoice_number == paid.invoice_number
    assert terminal.void("999").status == "declined"
    paid2 = terminal.purchase(4000)
    audit = terminal.audit()
    assert audit.status == "approved" and audit.raw["params"]["totalAmount"] == "40.00"
    assert terminal.reconcile().status == "approved"
    assert paid2.status == "approved"


def test_garbage_before_answers_is_counted_and_survived(rig):
    sim, terminal = rig
    sim.garbage_before_next_answers(2)
    assert terminal.ping() is True
    assert terminal.purchase(1000).status == "approved"
    counters = terminal.status().detail["counters"]
    assert counters["invalid_utf8"] >= 1 and counters["invalid_json"] >= 1


def test_garbage_from_host_does_not_break_the_simulator(rig):
    sim, terminal = rig
    terminal._send({"method": "Nonsense"})
    assert terminal.ping() is True


def test_result_journal_never_holds_a_full_pan():
    msg = {"method": "Purchase", "params": {"pan": "4149620012345678", "responseCode": "0000"}}
    from devices.card_terminal.driver import _result
    assert "4149620012345678" not in json.dumps(_result(msg).raw)


def test_unreachable_terminal_is_offline_not_an_exception():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    terminal = CardTerminal(f"socket://127.0.0.1:{port}", timeouts=FAST)
    assert terminal.ping() is False
    assert terminal.purchase(100).status == "offline"
    assert terminal.last_result().status == "unknown"
    assert terminal.status().online is False and "cannot open" in terminal.status().last_error


def test_bad_amount_is_refused_without_touching_the_terminal(rig):
    sim, terminal = rig
    assert terminal.purchase(0).status == "error"
    assert terminal.purchase(-5).status == "error"
    assert purchases_sent(sim) == []
