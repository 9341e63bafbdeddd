import pytest
from hypothesis import given, settings, strategies as st

from devices.bill_validator import codec as c

UAH = [(v, "UAH") for v in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)]


@pytest.mark.parametrize("command, expected", [
    (c.POLL, "02 03 06 33 da 81"),
    (c.RESET, "02 03 06 30 41 b3"),
])
def test_reference_crc_vectors(command, expected):
    assert c.encode_command(command).hex(" ") == expected


def test_crc_kermit_check_value():
    # the catalogue check value of CRC-16/KERMIT over "123456789"
    assert c.crc16_kermit(b"123456789") == 0x2189


def test_ack_and_nak_frames():
    assert c.ACK_FRAME[:4] == bytes([0x02, 0x03, 0x06, 0x00])
    assert c.NAK_FRAME[:4] == bytes([0x02, 0x03, 0x06, 0xFF])
    assert [f.payload for f in c.FrameDecoder().feed(c.ACK_FRAME + c.NAK_FRAME)] == [b"\x00", b"\xff"]


def test_split_frame_is_reassembled():
    decoder = c.FrameDecoder()
    frame = c.encode_poll_answer(c.PollState(c.ESCROW, 4))
    assert decoder.feed(frame[:2]) == []
    assert decoder.feed(frame[2:5]) == []
    (item,) = decoder.feed(frame[5:])
    assert c.parse_poll_answer(item.payload) == c.PollState(c.ESCROW, 4)


def test_resynchronises_after_garbage_and_bad_crc():
    good = c.encode_poll_answer(c.PollState(c.BILL_STACKED, 5))
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    items = c.FrameDecoder().feed(b"\x55\xaa\x02\x99" + bytes(bad) + good)
    frames = [i for i in items if isinstance(i, c.Frame)]
    errors = {i.reason for i in items if isinstance(i, c.FrameError)}
    assert [f.payload for f in frames] == [bytes([c.BILL_STACKED, 5])]
    assert {"garbage", "bad_crc"} <= errors


def test_bad_and_oversized_lengths_are_rejected():
    decoder = c.FrameDecoder()
    items = decoder.feed(bytes([0x02, 0x03, 0x03, 0x33, 0x00, 0x00]))
    assert any(isinstance(i, c.FrameError) and i.reason == "bad_length" for i in items)
    items = decoder.feed(bytes([0x02, 0x03, 0x00, 0xFF, 0xFF]) + c.POLL_FRAME)
    assert any(isinstance(i, c.FrameError) and i.reason == "oversized" for i in items)
    assert [i.payload for i in items if isinstance(i, c.Frame)] == [bytes([c.POLL])]


def test_extended_length_frame_round_trip():
    payload = bytes(range(256)) * 2
    frame = c.encode_frame(payload)
    assert frame[2] == 0 and (frame[3] << 8 | frame[4]) == len(frame)
    (item,) = c.FrameDecoder().feed(frame)
    assert item.payload == payload


def test_bill_table_uah_1_to_1000():
    table = c.parse_bill_table(c.encode_bill_table(UAH))
    assert [b.amount_kop for b in table] == [100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000]
    assert {b.currency for b in table} == {"UAH"}
    assert [b.index for b in table] == list(range(10))


def test_bill_table_is_read_not_assumed():
    entries = [None, (5, "UAH"), None, (200, "UAH"), (500, "UAH")]
    table = c.parse_bill_table(c.encode_bill_table(entries))
    assert [(b.index, b.amount_kop) for b in table] == [(1, 500), (3, 20000), (4, 50000)]


def test_bill_table_negative_power_and_raw_bytes():
    raw = bytearray(120)
    raw[0:5] = bytes([5]) + b"UAH" + bytes([0x81])  # 5 * 10^-1 = 0.50 UAH = 50 kop
    raw[5:10] = bytes([2]) + b"UAH" + bytes([2])  # 200 UAH
    table = c.parse_bill_table(bytes(raw))
    assert [b.amount_kop for b in table] == [50, 20000]


def test_type_masks():
    assert c.encode_type_mask({0}) == b"\x00\x00\x01"
    assert c.encode_type_mask({9, 23}) == b"\x80\x02\x00"
    assert c.decode_type_mask(b"\x80\x02\x00") == {9, 23}
    frame = c.encode_enable_bill_types({4, 5}, {4})
    (item,) = c.FrameDecoder().feed(frame)
    assert item.command == c.ENABLE_BILL_TYPES and item.data == b"\x00\x00\x30\x00\x00\x10"


def test_every_reference_state_and_reason_has_a_name():
    for code in (0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C,
                 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x80, 0x81, 0x82):
        assert not c.PollState(code).name.startswith("unknown")
    names = [c.PollState(c.REJECTING, r).reason for r in range(0x60, 0x6E) if r != 0x6B]
    assert len(set(names)) == 13 and not any(n.startswith("unknown") for n in names)
    assert c.PollState(c.REJECTING, 0x6B).reason.startswith("unknown")


def test_identification_round_trip():
    ident = c.Identification("SM-UA1015", "41K123456", "")
    parsed = c.parse_identification(c.encode_identification(ident))
    assert (parsed.part_number, parsed.serial_number) == ("SM-UA1015", "41K123456")


# ---------------------------------------------------------------- property-based
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_decoder_never_raises_and_stays_bounded(data, chunk):
    decoder = c.FrameDecoder()
    for i in range(0, len(data), chunk):
        for item in decoder.feed(data[i : i + chunk]):
            if isinstance(item, c.Frame):
                # anything it calls a frame was literally on the wire with a valid CRC
                assert c.encode_frame(item.payload, item.address) in data
        assert len(decoder.buffer) <= c.MAX_FRAME


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=400), st.binary(max_size=40))
def test_valid_frame_after_garbage_is_recovered(payload, garbage):
    garbage = garbage.replace(b"\x02", b"")  # garbage without SYNC cannot swallow the frame
    items = c.FrameDecoder().feed(garbage + c.encode_frame(payload))
    assert [i.payload for i in items if isinstance(i, c.Frame)] == [payload]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=5), st.binary(max_size=200))
def test_frames_survive_arbitrary_interleaving_prefix(payloads, noise):
    noise = noise.replace(b"\x02", b"\x03")
    stream = noise + b"".join(c.encode_frame(p) for p in payloads)
    items = c.FrameDecoder().feed(stream)
    assert [i.payload for i in items if isinstance(i, c.Frame)] == payloads


@given(st.binary(max_size=130))
def test_bill_table_parser_total(data):
    for bill in c.parse_bill_table(data):
        assert bill.amount_kop >= 0 and 0 <= bill.index < 24
