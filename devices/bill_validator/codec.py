"""CashCode CCNET framing and messages. Pure: bytes in, values out; no I/O, no clock.

Frame: SYNC 0x02 | ADR | LNG | payload | CRC16 (low byte first). LNG counts the whole frame.
When a frame would exceed 250 bytes LNG is 0 and the real length follows as two bytes
(big-endian) right after LNG. The payload of a host frame is CMD + DATA; of a device frame it is
the answer data (for POLL: state byte + optional sub-byte).
"""
from __future__ import annotations

from dataclasses import dataclass, field

SYNC = 0x02
ADDR_BILL_VALIDATOR = 0x03
MAX_FRAME = 4096  # anything longer is garbage; real frames are < 300 bytes
MIN_FRAME = 6

# Commands (host -> device)
RESET = 0x30
GET_STATUS = 0x31
SET_SECURITY = 0x32
POLL = 0x33
ENABLE_BILL_TYPES = 0x34
STACK = 0x35
RETURN = 0x36
IDENTIFICATION = 0x37
HOLD = 0x38
GET_BILL_TABLE = 0x41

COMMAND_NAMES = {
    RESET: "RESET", GET_STATUS: "GET STATUS", SET_SECURITY: "SET SECURITY", POLL: "POLL",
    ENABLE_BILL_TYPES: "ENABLE BILL TYPES", STACK: "STACK", RETURN: "RETURN",
    IDENTIFICATION: "IDENTIFICATION", HOLD: "HOLD", GET_BILL_TABLE: "GET BILL TABLE",
}

# Single-byte answers
ACK = 0x00
NAK = 0xFF
ILLEGAL_COMMAND = 0x30

# Device states (first byte of a POLL answer)
POWER_UP = 0x10
POWER_UP_BILL_IN_VALIDATOR = 0x11
POWER_UP_BILL_IN_STACKER = 0x12
INITIALIZE = 0x13
IDLING = 0x14
ACCEPTING = 0x15
STACKING = 0x17
RETURNING = 0x18
UNIT_DISABLED = 0x19
HOLDING = 0x1A
BUSY = 0x1B
REJECTING = 0x1C
CASSETTE_FULL = 0x41
CASSETTE_OUT = 0x42
VALIDATOR_JAMMED = 0x43
CASSETTE_JAMMED = 0x44
CHEATED = 0x45
PAUSE = 0x46
FAILURE = 0x47
ESCROW = 0x80
BILL_STACKED = 0x81
BILL_RETURNED = 0x82

STATE_NAMES = {
    POWER_UP: "power_up",
    POWER_UP_BILL_IN_VALIDATOR: "power_up_bill_in_validator",
    POWER_UP_BILL_IN_STACKER: "power_up_bill_in_stacker",
    INITIALIZE: "initialize",
    IDLING: "idling",
    ACCEPTING: "accepting",
    STACKING: "stacking",
    RETURNING: "returning",
    UNIT_DISABLED: "unit_disabled",
    HOLDING: "holding",
    BUSY: "busy",
    REJECTING: "rejecting",
    CASSETTE_FULL: "drop_cassette_full",
    CASSETTE_OUT: "cassette_out_of_position",
    VALIDATOR_JAMMED: "validator_jammed",
    CASSETTE_JAMMED: "cassette_jammed",
    CHEATED: "cheated",
    PAUSE: "pause",
    FAILURE: "failure",
    ESCROW: "escrow",
    BILL_STACKED: "bill_stacked",
    BILL_RETURNED: "bill_returned",
}
# States whose second byte carries a bill type, reason or failure code
STATES_WITH_SUBCODE = {REJECTING, FAILURE, ESCROW, BILL_STACKED, BILL_RETURNED}

REJECT_REASONS = {
    0x60: "insertion",
    0x61: "magnetic",
    0x62: "remained_in_head",
    0x63: "multiplying",
    0x64: "conveying",
    0x65: "identification",
    0x66: "verification",
    0x67: "optic",
    0x68: "inhibit",
    0x69: "capacity",
    0x6A: "operation",
    0x6C: "length",
    0x6D: "uv",
}

FAILURE_CODES = {
    0x50: "stack_motor",
    0x51: "transport_motor_speed",
    0x52: "transport_motor",
    0x53: "aligning_motor",
    0x54: "initial_cassette_status",
    0x55: "optic_canal",
    0x56: "magnetic_canal",
    0x5F: "capacitance_canal",
}

BILL_TYPES = 24
BILL_TABLE_ENTRY = 5


def crc16_kermit(data: bytes) -> int:
    """CRC-16/KERMIT (CCITT, reflected, poly 0x8408, init 0) as CCNET uses it."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def encode_frame(payload: bytes, address: int = ADDR_BILL_VALIDATOR) -> bytes:
    total = len(payload) + 5
    if total <= 250:
        head = bytes([SYNC, address, total])
    else:
        total += 2
        if total > 0xFFFF:
            raise ValueError("payload too long")
        head = bytes([SYNC, address, 0, total >> 8, total & 0xFF])
    body = head + payload
    crc = crc16_kermit(body)
    return body + bytes([crc & 0xFF, crc >> 8])


def encode_command(command: int, data: bytes = b"") -> bytes:
    return encode_frame(bytes([command]) + data)


ACK_FRAME = encode_frame(bytes([ACK]))
NAK_FRAME = encode_frame(bytes([NAK]))
POLL_FRAME = encode_command(POLL)


@dataclass(frozen=True)
class Frame:
    address: int
    payload: bytes

    @property
    def command(self) -> int | None:
        return self.payload[0] if self.payload else None

    @property
    def data(self) -> bytes:
        return self.payload[1:]


@dataclass(frozen=True)
class FrameError:
    """Something on the wire that was not a valid frame; the decoder already resynchronised."""

    reason: str  # "garbage" | "bad_crc" | "bad_length" | "oversized"
    raw: bytes


@dataclass
class FrameDecoder:
    """Stream decoder: feed any bytes, get frames and errors; never raises, never grows unbounded."""

    address: int = ADDR_BILL_VALIDATOR
    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        self.buffer += data
        out: list[Frame | FrameError] = []
        buf = self.buffer
        while buf:
            start = self._find_start(buf)
            if start < 0:
                # keep a trailing SYNC: its address byte may still arrive
                keep = 1 if buf[-1] == SYNC else 0
                dropped = bytes(buf[: len(buf) - keep])
                del buf[: len(buf) - keep]
                if dropped:
                    out.append(FrameError("garbage", dropped))
                break
            if start > 0:
                out.append(FrameError("garbage", bytes(buf[:start])))
                del buf[:start]
            if len(buf) < 3:
                break
            length = buf[2]
            header = 3
            if length == 0:
                if len(buf) < 5:
                    break
                length = (buf[3] << 8) | buf[4]
                header = 5
                if length <= 250:
                    out.append(FrameError("bad_length", bytes(buf[:5])))
                    del buf[:1]
                    continue
            if length < MIN_FRAME or length < header + 3:
                out.append(FrameError("bad_length", bytes(buf[:3])))
                del buf[:1]
                continue
            if length > MAX_FRAME:
                out.append(FrameError("oversized", bytes(buf[:header])))
                del buf[:1]
                continue
            if len(buf) < length:
                break
            raw = bytes(buf[:length])
            crc = raw[-2] | (raw[-1] << 8)
            if crc16_kermit(raw[:-2]) != crc:
                out.append(FrameError("bad_crc", raw))
                del buf[:1]  # the real frame may start inside this one
                continue
            out.append(Frame(raw[1], raw[header:-2]))
            del buf[:length]
        return out

    def _find_start(self, buf: bytearray) -> int:
        i = buf.find(SYNC)
        while i >= 0:
            if i + 1 >= len(buf) or buf[i + 1] == self.address:
                return i
            i = buf.find(SYNC, i + 1)
        return -1

    def reset(self) -> None:
        self.buffer.clear()


# ----------------------------------------------------------------------------- messages
@dataclass(frozen=True)
class PollState:
    code: int
    sub: int | None = None

    @property
    def name(self) -> str:
        return STATE_NAMES.get(self.code, f"unknown_0x{self.code:02x}")

    @property
    def reason(self) -> str | None:
        if self.code == REJECTING and self.sub is not None:
            return REJECT_REASONS.get(self.sub, f"unknown_0x{self.sub:02x}")
        if self.code == FAILURE and self.sub is not None:
            return FAILURE_CODES.get(self.sub, f"0x{self.sub:02x}")
        return None


def parse_poll_answer(payload: bytes) -> PollState | None:
    """A POLL answer; None if the payload cannot be a state (empty)."""
    if not payload:
        return None
    code = payload[0]
    sub = payload[1] if len(payload) > 1 else None
    return PollState(code, sub)


def encode_poll_answer(state: PollState) -> bytes:
    if state.sub is None:
        return encode_frame(bytes([state.code]))
    return encode_frame(bytes([state.code, state.sub]))


@dataclass(frozen=True)
class BillType:
    index: int
    amount_kop: int
    currency: str


def encode_bill_table(entries: list[tuple[int, str] | None]) -> bytes:
    """Build a GET BILL TABLE answer payload from (amount in main units, currency) or None."""
    out = bytearray()
    for i in range(BILL_TYPES):
        entry = entries[i] if i < len(entries) else None
        if not entry:
            out += bytes(BILL_TABLE_ENTRY)
            continue
        value, currency = entry
        exponent = 0
        while value >= 256 or (value % 10 == 0 and value > 9):
            value //= 10
            exponent += 1
        out += bytes([value]) + currency.encode("ascii")[:3].ljust(3, b" ") + bytes([exponent])
    return bytes(out)


def parse_bill_table(payload: bytes) -> list[BillType]:
    """Decode a bill table: 24 entries x (digit, 3-letter country, power of ten; bit 7 = negative)."""
    bills = []
    for index in range(min(BILL_TYPES, len(payload) // BILL_TABLE_ENTRY)):
        entry = payload[index * 5 : index * 5 + 5]
        digit, exponent = entry[0], entry[4]
        if digit == 0:
            continue
        currency = entry[1:4].decode("ascii", "replace").strip()
        power = exponent & 0x7F
        if power > 9:
            continue  # nonsense from a corrupt table: ignore rather than mint huge notes
        if exponent & 0x80:
            amount_kop = digit * 100 // (10**power)
        else:
            amount_kop = digit * 100 * 10**power
        bills.append(BillType(index, amount_kop, currency))
    return bills


def encode_type_mask(bill_types: set[int] | list[int]) -> bytes:
    """3-byte mask; bill type 0 is bit 0 of the last byte."""
    mask = 0
    for bill_type in bill_types:
        if 0 <= bill_type < BILL_TYPES:
            mask |= 1 << bill_type
    return mask.to_bytes(3, "big")


def decode_type_mask(data: bytes) -> set[int]:
    mask = int.from_bytes(data[:3].rjust(3, b"\0"), "big")
    return {i for i in range(BILL_TYPES) if mask >> i & 1}


def encode_enable_bill_types(enabled: set[int], escrow: set[int]) -> bytes:
    return encode_command(ENABLE_BILL_TYPES, encode_type_mask(enabled) + encode_type_mask(escrow))


@dataclass(frozen=True)
class Identification:
    part_number: str
    serial_number: str
    asset_number: str


def encode_identification(ident: Identification) -> bytes:
    return (
        ident.part_number.encode("ascii")[:15].ljust(15, b" ")
        + ident.serial_number.encode("ascii")[:12].ljust(12, b" ")
        + ident.asset_number.encode("latin-1")[:7].ljust(7, b"\0")
    )


def parse_identification(payload: bytes) -> Identification:
    return Identification(  # padded with spaces, or NULs by some firmware
        payload[:15].decode("ascii", "replace").strip(" \0"),
        payload[15:27].decode("ascii", "replace").strip(" \0"),
        payload[27:34].hex(),
    )
