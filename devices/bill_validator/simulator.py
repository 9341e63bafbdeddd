"""A CashCode CCNET bill validator on the device side of the wire (pty or loopback TCP).

Uses the same codec as the driver. Behaviour is driven by wall time (accepting, stacking and
returning take a configurable while) so latency figures are honest, and by scriptable faults.
"""
from __future__ import annotations

import logging
import os
import time

from devices.bill_validator import codec as c
from devices.simwire import SimulatorBase

log = logging.getLogger(__name__)

UAH_TABLE = [(1, "UAH"), (2, "UAH"), (5, "UAH"), (10, "UAH"), (20, "UAH"), (50, "UAH"),
             (100, "UAH"), (200, "UAH"), (500, "UAH"), (1000, "UAH")]


class BillValidatorSimulator(SimulatorBase):
    name = "bill_validator"

    def __init__(self, *, table: list[tuple[int, str] | None] | None = None,
                 accept_time_s: float = 0.15, stack_time_s: float = 0.25,
                 return_time_s: float = 0.2, reject_time_s: float = 0.2,
                 init_time_s: float = 0.1, escrow_timeout_s: float = 10.0,
                 cassette_capacity: int = 1000,
                 part_number: str = "SM-UA1015", serial_number: str = "41K123456") -> None:
        super().__init__()
        self.table_entries = list(table if table is not None else UAH_TABLE)
        self.bill_types = c.parse_bill_table(c.encode_bill_table(self.table_entries))
        self.accept_time_s = accept_time_s
        self.stack_time_s = stack_time_s
        self.return_time_s = return_time_s
        self.reject_time_s = reject_time_s
        self.init_time_s = init_time_s
        self.escrow_timeout_s = escrow_timeout_s
        self.cassette_capacity = cassette_capacity
        self.identification = c.Identification(part_number, serial_number, "")
        self.decoder = c.FrameDecoder()
        # observable truth for tests and the bench
        self.cassette: list[int] = []  # kopiykas of every bill physically in the cassette
        self.returned_to_customer: list[int] = []
        self.stacked_at: list[float] = []  # monotonic time each bill reached "stacked"
        self.commands: list[str] = []  # names of commands received, in order
        self._power_on()

    # ------------------------------------------------------------------ state
    def _power_on(self, bill_in: str | None = None) -> None:
        self.powered = True
        self.off_until = 0.0
        self.pending_bill_in = None
        code = {None: c.POWER_UP, "validator": c.POWER_UP_BILL_IN_VALIDATOR,
                "stacker": c.POWER_UP_BILL_IN_STACKER}[bill_in]
        self.base = c.PollState(code)
        if bill_in is None:
            self.bill = None
        self.until = None  # when the current timed state ends
        self.next_state = None
        self.enabled: set[int] = set()
        self.escrow_types: set[int] = set()
        # An event state (stacked, returned, cheated) is answered until the host ACKs it; a lost
        # ACK repeats it.
        self.sticky: c.PollState | None = None
        self.sticky_polled = False
        self.escrow_deadline = None
        self.cassette_out = False
        self.jam: str | None = None
        self.failure_code: int | None = None
        self.cassette_full_flag = len(self.cassette) >= self.cassette_capacity
        self.busy_until = 0.0
        self.last_answer = b""
        # faults
        self.silent = False
        self.response_delay_s = 0.0
        self.lose_acks = 0
        self.corrupt_next = 0
        self.garbage_next = 0
        self.truncate_next = 0
        self.drop_next = 0
        # misbehaving-firmware modes (kept across power cycles: they are the device, not a glitch)
        if not hasattr(self, "identification_fault"):
            self.identification_fault: str | None = None  # illegal|garbage|silent|ack|nul_padded
            self.bill_table_fault: str | None = None  # "garbage" | "short" | "ack"
            self.ack_only = False  # answers every command, POLL included, with a bare ACK
            self.stacked_type: str | int | None = None  # "missing" or a bill type to report
            self.ignore_reset = False  # ACKs RESET but stays where it is (e.g. in power-up)
            self.refuse_poll = False  # answers POLL with ILLEGAL COMMAND
            self.min_gap_s = 0.0  # host frames closer than this to its previous one are not heard
            self.wire_log: list[tuple[float, str, str]] = []  # (monotonic, "in"|"out", name)
            self.last_frame_end = 0.0

    @property
    def state(self) -> c.PollState:
        """What a POLL would be answered with right now."""
        if self.failure_code is not None:
            return c.PollState(c.FAILURE, self.failure_code)
        if self.jam == "validator":
            return c.PollState(c.VALIDATOR_JAMMED)
        if self.jam == "cassette":
            return c.PollState(c.CASSETTE_JAMMED)
        if self.cassette_out:
            return c.PollState(c.CASSETTE_OUT)
        if self.sticky is not None:
            return self.sticky
        if time.monotonic() < self.busy_until:
            return c.PollState(c.BUSY)
        if self.cassette_full_flag and self.base.code in (c.IDLING, c.UNIT_DISABLED):
            return c.PollState(c.CASSETTE_FULL)
        return self.base

    def _settle(self) -> c.PollState:
        return c.PollState(c.IDLING if self.enabled else c.UNIT_DISABLED)

    def _set(self, state: c.PollState, duration: float | None = None, then=None) -> None:
        self.base = state
        self.until = time.monotonic() + duration if duration is not None else None
        self.next_state = then

    def _type_of(self, amount_kop: int) -> int | None:
        for bill in self.bill_types:
            if bill.amount_kop == amount_kop:
                return bill.index
        return None

    # ------------------------------------------------------------------ scripting API
    def insert_bill(self, amount_kop: int, *, counterfeit: bool = False,
                    reject_reason: int | None = None, when_enabled: bool = False) -> bool:
        """A customer pushes a bill in; False if the bezel is not accepting right now.
        ``when_enabled``: only once the host has enabled this denomination (a customer who waits
        for the screen to ask for it; without it a bill the host has not enabled is rejected)."""
        with self.lock:
            if not self.powered or self.state.code != c.IDLING:
                return False
            if when_enabled and self._type_of(amount_kop) not in self.enabled:
                return False
            self.bill = {"amount_kop": amount_kop, "type": self._type_of(amount_kop),
                         "counterfeit": counterfeit, "reason": reject_reason}
            self._set(c.PollState(c.ACCEPTING), self.accept_time_s, "validated")
            return True

    def set_cassette_full(self, full: bool = True) -> None:
        with self.lock:
            self.cassette_full_flag = full

    def remove_cassette(self) -> None:
        with self.lock:
            self.cassette_out = True

    def replace_cassette(self, *, empty: bool = True) -> None:
        with self.lock:
            if empty:
                self.cassette.clear()
                self.cassette_full_flag = False
            self.cassette_out = False
            self._set(c.PollState(c.INITIALIZE), self.init_time_s, "settle")

    def jam_bill(self, where: str = "validator") -> None:
        with self.lock:
            self.jam = where
            self.bill = None
            self.until = None

    def clear_jam(self) -> None:
        with self.lock:
            self.jam = None
            self._set(self._settle())

    def cheat(self) -> None:
        with self.lock:
            self.sticky, self.sticky_polled = c.PollState(c.CHEATED), False

    def fail(self, code: int = 0x50) -> None:
        with self.lock:
            self.failure_code = code

    def clear_failure(self) -> None:
        with self.lock:
            self.failure_code = None

    def set_busy(self, seconds: float) -> None:
        with self.lock:
            self.busy_until = time.monotonic() + seconds

    def power_cycle(self, *, off_s: float = 0.3, bill_in: str | None = "auto") -> None:
        """Cut power now; it comes back after ``off_s``. ``bill_in``: "auto" (where the current
        bill physically is), "validator", "stacker" or None."""
        with self.lock:
            if bill_in == "auto":
                code = self.base.code
                if code == c.STACKING:
                    bill_in = "stacker"
                elif code in (c.ACCEPTING, c.ESCROW, c.HOLDING, c.RETURNING) and self.bill:
                    bill_in = "validator"
                else:
                    bill_in = None
            if bill_in and not self.bill:
                self.bill = {"amount_kop": 0, "type": None, "counterfeit": False, "reason": None}
            self.powered = False
            self.pending_bill_in = bill_in
            self.off_until = time.monotonic() + off_s
            self.drop_pending()

    def set_silent(self, silent: bool = True) -> None:
        with self.lock:
            self.silent = silent

    def set_delay(self, seconds: float) -> None:
        with self.lock:
            self.response_delay_s = seconds

    def lose_next_acks(self, count: int = 1) -> None:
        """The host's next ACKs never arrive: event states are answered again."""
        with self.lock:
            self.lose_acks = count

    def corrupt_next_answers(self, count: int = 1) -> None:
        with self.lock:
            self.corrupt_next = count

    def garbage_before_next_answers(self, count: int = 1) -> None:
        with self.lock:
            self.garbage_next = count

    def truncate_next_answers(self, count: int = 1) -> None:
        with self.lock:
            self.truncate_next = count

    def drop_next_answers(self, count: int = 1) -> None:
        with self.lock:
            self.drop_next = count

    def fail_identification(self, mode: str | None = "illegal") -> None:
        """IDENTIFICATION answered with ILLEGAL COMMAND, garbage, nothing or a bare ACK; or
        ("nul_padded") correctly but padded with NULs, as some firmware does."""
        with self.lock:
            self.identification_fault = mode

    def fail_bill_table(self, mode: str | None = "garbage") -> None:
        """GET BILL TABLE answered with 120 bytes of noise, a short table or a bare ACK."""
        with self.lock:
            self.bill_table_fault = mode

    def set_ack_only(self, on: bool = True) -> None:
        """Firmware that answers every command (POLL too) with a bare ACK."""
        with self.lock:
            self.ack_only = on

    def report_stacked_type(self, bill_type: str | int | None = "missing") -> None:
        """The next "stacked" answers carry no bill type ("missing") or this bill type."""
        with self.lock:
            self.stacked_type = bill_type

    def set_refuse_poll(self, on: bool = True) -> None:
        """Firmware that answers POLL with ILLEGAL COMMAND."""
        with self.lock:
            self.refuse_poll = on

    def set_ignore_reset(self, on: bool = True) -> None:
        """Firmware that ACKs RESET and does nothing: it stays in power-up."""
        with self.lock:
            self.ignore_reset = on

    def require_gap(self, seconds: float) -> None:
        """Like a device that needs the line quiet between the host's frames: a host frame that
        follows the host's previous frame (with no answer of ours between them, as an ACK and
        the next command) by less than ``seconds`` is not heard."""
        with self.lock:
            self.min_gap_s = seconds

    def snapshot(self) -> dict:
        with self.lock:
            return {"powered": self.powered, "state": self.state.name,
                    "cassette_kop": list(self.cassette),
                    "returned_kop": list(self.returned_to_customer),
                    "enabled_types": sorted(self.enabled), "url": self.url}

    # ------------------------------------------------------------------ time
    def tick(self, now: float) -> None:
        if not self.powered:
            if now >= self.off_until:
                self._power_on(self.pending_bill_in)
            return
        if self.base.code in (c.ESCROW, c.HOLDING) and self.escrow_deadline and now >= self.escrow_deadline:
            self._set(c.PollState(c.RETURNING), self.return_time_s, "returned")
        if self.until is None or now < self.until:
            return
        step, self.until = self.next_state, None
        if step in ("validated", "stacked", "returned") and not self.bill:
            step = "settle"  # the bill vanished (jam cleared, reset): nothing to report
        if step == "validated":
            bill = self.bill
            if bill["counterfeit"] or bill["reason"] is not None:
                reason = bill["reason"] if bill["reason"] is not None else 0x66
                self._reject(reason)
            elif bill["type"] is None or bill["type"] not in self.enabled:
                self._reject(0x68)
            elif bill["type"] in self.escrow_types:
                self._set(c.PollState(c.ESCROW, bill["type"]))
                self.escrow_deadline = now + self.escrow_timeout_s
            else:
                self._set(c.PollState(c.STACKING), self.stack_time_s, "stacked")
        elif step == "stacked":
            bill, self.bill = self.bill, None
            self.cassette.append(bill["amount_kop"])
            self.stacked_at.append(now)
            if len(self.cassette) >= self.cassette_capacity:
                self.cassette_full_flag = True
            self._set(self._settle())
            reported = bill["type"]
            if self.stacked_type == "missing":
                reported = None
            elif self.stacked_type is not None:
                reported = int(self.stacked_type)
            self.sticky, self.sticky_polled = c.PollState(c.BILL_STACKED, reported), False
        elif step == "returned":
            bill, self.bill = self.bill, None
            self.returned_to_customer.append(bill["amount_kop"])
            self._set(self._settle())
            self.sticky, self.sticky_polled = c.PollState(c.BILL_RETURNED, bill["type"]), False
        elif step in ("settle", "rejected"):
            self._set(self._settle())

    def _reject(self, reason: int) -> None:
        self.returned_to_customer.append(self.bill["amount_kop"])
        self.bill = None
        self._set(c.PollState(c.REJECTING, reason), self.reject_time_s, "rejected")

    # ------------------------------------------------------------------ wire
    def on_connect(self) -> None:
        self.decoder.reset()

    def on_data(self, data: bytes) -> None:
        if not self.powered:
            return
        now = time.monotonic()
        for item in self.decoder.feed(data):
            if isinstance(item, c.FrameError):
                continue  # a real validator stays silent on garbage; the host times out
            too_soon = self.min_gap_s and now - self.last_frame_end < self.min_gap_s
            self.last_frame_end = now
            if too_soon:
                # still busy with the host's previous frame: this one is lost, as on a real device
                self.wire_log.append((now, "in", "unheard"))
                continue
            self._handle(item)

    def _answer(self, payload: bytes | None = None, *, frame: bytes | None = None) -> None:
        raw = frame if frame is not None else c.encode_frame(payload)
        self.last_answer = raw
        if self.silent:
            return
        if self.drop_next:
            self.drop_next -= 1
            return
        out = raw
        self.wire_log.append((time.monotonic(), "out", "corrupt" if self.corrupt_next else "answer"))
        self.last_frame_end = 0.0  # the host may answer this frame (ACK/NAK) at once
        if self.corrupt_next:
            self.corrupt_next -= 1
            out = raw[:-1] + bytes([raw[-1] ^ 0x5A])
        elif self.truncate_next:
            self.truncate_next -= 1
            out = raw[: max(1, len(raw) // 2)]
        if self.garbage_next:
            self.garbage_next -= 1
            out = os.urandom(7).replace(b"\x02", b"\x07") + out
        self.send_later(self.response_delay_s, out)

    def _handle(self, frame: c.Frame) -> None:
        command = frame.command
        names = {c.ACK: "ACK", c.NAK: "NAK", **c.COMMAND_NAMES}
        self.commands.append(names.get(command, f"0x{command:02x}"))
        self.wire_log.append((time.monotonic(), "in", self.commands[-1]))
        if self.ack_only:
            if command not in (c.ACK, c.NAK):
                self._answer(bytes([c.ACK]))
            return
        if command == c.ACK:
            if self.sticky is not None and self.sticky_polled:
                if self.lose_acks:
                    self.lose_acks -= 1
                else:
                    self.sticky = None
            return
        if command == c.NAK:
            if self.last_answer and not self.silent:
                self.wire_log.append((time.monotonic(), "out", "repeat"))
                self.send_later(self.response_delay_s, self.last_answer)
            return
        if command == c.POLL and self.refuse_poll:
            self._answer(bytes([c.ILLEGAL_COMMAND]))
        elif command == c.POLL:
            state = self.state
            if self.sticky is not None and state == self.sticky:
                self.sticky_polled = True
            self._answer(frame=c.encode_poll_answer(state))
        elif command == c.RESET:
            self._answer(bytes([c.ACK]))
            if not self.ignore_reset:
                self._reset()
        elif command == c.GET_STATUS:
            self._answer(c.encode_type_mask(self.enabled) + bytes(3))
        elif command == c.SET_SECURITY:
            self._answer(bytes([c.ACK]))
        elif command == c.IDENTIFICATION:
            fault = self.identification_fault
            if fault == "silent":
                return
            if fault == "illegal":
                self._answer(bytes([c.ILLEGAL_COMMAND]))
            elif fault == "ack":
                self._answer(bytes([c.ACK]))
            elif fault == "garbage":
                self._answer(bytes((0x80 + i * 37) & 0xFF or 1 for i in range(34)))
            elif fault == "nul_padded":  # valid, but padded with NULs instead of spaces
                raw = c.encode_identification(self.identification)
                self._answer(raw[:15].rstrip(b" ").ljust(15, b"\0")
                             + raw[15:27].rstrip(b" ").ljust(12, b"\0") + raw[27:])
            else:
                self._answer(c.encode_identification(self.identification))
        elif command == c.GET_BILL_TABLE:
            fault = self.bill_table_fault
            if fault == "garbage":
                self._answer(bytes((i * 53 + 7) & 0xFF or 1 for i in range(c.BILL_TYPES * c.BILL_TABLE_ENTRY)))
            elif fault == "short":
                self._answer(c.encode_bill_table(self.table_entries)[:40])
            elif fault == "ack":
                self._answer(bytes([c.ACK]))
            else:
                self._answer(c.encode_bill_table(self.table_entries))
        elif command == c.ENABLE_BILL_TYPES and len(frame.data) == 6:
            self.enabled = c.decode_type_mask(frame.data[:3])
            self.escrow_types = c.decode_type_mask(frame.data[3:])
            self._answer(bytes([c.ACK]))
            if self.base.code in (c.IDLING, c.UNIT_DISABLED):
                self._set(self._settle())
        elif command in (c.STACK, c.RETURN, c.HOLD) and self.base.code in (c.ESCROW, c.HOLDING):
            self._answer(bytes([c.ACK]))
            if command == c.STACK:
                self._set(c.PollState(c.STACKING), self.stack_time_s, "stacked")
                self.escrow_deadline = None
            elif command == c.RETURN:
                self._set(c.PollState(c.RETURNING), self.return_time_s, "returned")
                self.escrow_deadline = None
            else:
                self._set(c.PollState(c.HOLDING))
                self.escrow_deadline = time.monotonic() + self.escrow_timeout_s
        else:
            self._answer(bytes([c.ILLEGAL_COMMAND]))

    def _reset(self) -> None:
        code = self.base.code
        if code == c.POWER_UP_BILL_IN_STACKER and self.bill:
            # the interrupted stack completes during initialisation: money is in the cassette
            self.cassette.append(self.bill["amount_kop"])
        elif code == c.POWER_UP_BILL_IN_VALIDATOR and self.bill:
            self.returned_to_customer.append(self.bill["amount_kop"])
        elif self.bill and code in (c.ACCEPTING, c.ESCROW, c.HOLDING, c.RETURNING):
            self.returned_to_customer.append(self.bill["amount_kop"])
        elif self.bill and code == c.STACKING:
            self.cassette.append(self.bill["amount_kop"])
        self.bill = None
        self.enabled, self.escrow_types = set(), set()
        self.sticky = None
        self.escrow_deadline = None
        self._set(c.PollState(c.INITIALIZE), self.init_time_s, "settle")
