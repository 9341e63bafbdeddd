"""CCNET bill validator driver: one poll thread owns the port; callers get typed events.

Money rules kept here: the driver never stacks on its own (an escrowed bill waits, held with
HOLD, until ``stack()`` or ``return_bill()``), a credit ("stacked") is emitted only for a
0x81 answer, a 0x81 repeated because our ACK was lost is one bill (events fire on state
*transitions* between consecutive answers), and a power-up with a bill inside is an incident.
"""
from __future__ import annotations

import logging
import queue
import threading
import time

import serial

from devices.bill_validator import codec as c
from devices.events import DeviceStatus, EventEmitter
from devices.transport import open_url, read_some, safe_close

log = logging.getLogger(__name__)

DEVICE = "bill_validator"
HOLD_EVERY_S = 3.0  # a validator returns an escrowed bill after ~10 s without HOLD
ACTION_COOLDOWN_S = 0.5
RECONNECT_S = 1.0
BILL_IN_FLIGHT = {c.ACCEPTING, c.ESCROW, c.HOLDING, c.STACKING, c.RETURNING, c.BILL_STACKED,
                  c.BILL_RETURNED}


class BillValidator:
    def __init__(self, url: str, *, poll_interval_s: float = 0.1, lost_after_polls: int = 30,
                 baudrate: int = 9600, response_timeout_s: float = 0.3,
                 currency: str = "UAH", parity: str = "none") -> None:
        if not 0.0 <= poll_interval_s <= 5.0:
            raise ValueError("poll_interval_s out of range")
        self.url = url
        self.poll_interval_s = poll_interval_s
        self.lost_after_polls = max(1, int(lost_after_polls))
        self.baudrate = baudrate
        self.parity = parity
        self.response_timeout_s = response_timeout_s
        self.currency = currency
        self._events = EventEmitter(DEVICE)
        self._commands: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._port = None
        self._decoder = c.FrameDecoder()
        # what the caller wants
        self._wanted_kop: set[int] = set()
        self._enabled_wanted = False
        # what we know about the device
        self._table: list[c.BillType] = []
        self._identification: c.Identification | None = None
        self._online = False
        self._ever_online = False
        self._state_name = "offline"
        self._last_state: c.PollState | None = None
        self._last_error: str | None = None
        self._unanswered = 0
        self._need_init = True
        self._escrow: dict | None = None  # bill waiting for a decision or being stacked
        self._decision: str | None = None
        self._last_hold = 0.0
        self._last_action: dict[str, float] = {}
        self._cassette_out = False
        self.counters = {"polls": 0, "answers": 0, "timeouts": 0, "bad_crc": 0, "garbage": 0,
                         "bad_length": 0, "oversized": 0, "illegal": 0, "port_errors": 0,
                         "unknown_states": 0}

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ccnet-poll", daemon=True)
        self._thread.start()
        # give the first RESET / IDENTIFICATION / GET BILL TABLE a chance; never raise
        self._ready.wait(timeout=self.response_timeout_s * 6 + 0.5)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=3)
        self._thread = None
        safe_close(self._port)
        self._port = None

    def subscribe(self, callback) -> None:
        self._events.subscribe(callback)

    def enable(self, denominations_kop: set[int]) -> None:
        with self._lock:
            self._wanted_kop = {int(d) for d in denominations_kop}
            self._enabled_wanted = True
        self._commands.put("apply_enable")

    def disable(self) -> None:
        with self._lock:
            self._enabled_wanted = False
        self._commands.put("apply_enable")

    def stack(self) -> None:
        self._commands.put("stack")

    def return_bill(self) -> None:
        self._commands.put("return")

    @property
    def bill_table(self) -> list[int]:
        return [bill.amount_kop for bill in self._table]

    def status(self) -> DeviceStatus:
        with self._lock:
            detail = {
                "url": self.url,
                "bill_table_kop": self.bill_table,
                "currency": self.currency,
                "enabled_kop": sorted(self._wanted_kop) if self._enabled_wanted else [],
                "unanswered_polls": self._unanswered,
                "escrow_kop": self._escrow["amount_kop"] if self._escrow else None,
                "counters": dict(self.counters),
            }
            if self._identification:
                detail["part_number"] = self._identification.part_number
                detail["serial_number"] = self._identification.serial_number
            return DeviceStatus(self._online, self._state_name if self._online else "offline",
                                self._last_error, detail)

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        next_poll = time.monotonic()
        while not self._stop.is_set():
            try:
                if self._port is None and not self._open():
                    self._missed(None)  # keep the "cannot open" reason in status
                    self._ready.set()
                    self._stop.wait(RECONNECT_S)
                    continue
                if self._need_init:
                    self._initialise()
                    self._ready.set()
                self._run_commands()
                self._poll_once()
            except (serial.SerialException, OSError) as exc:
                self.counters["port_errors"] += 1
                self._error(f"port error: {exc}")
                safe_close(self._port)
                self._port = None
                self._missed(None)
                self._stop.wait(RECONNECT_S)
                continue
            except Exception as exc:  # never let a surprise kill the poll thread
                log.exception("bill validator loop failed")
                self._error(f"internal error: {exc!r}")
            next_poll += self.poll_interval_s
            delay = next_poll - time.monotonic()
            if delay < 0:
                next_poll = time.monotonic()
            else:
                self._stop.wait(delay)
        self._ready.set()

    def _open(self) -> bool:
        try:
            self._port = open_url(self.url, baudrate=self.baudrate, parity=self.parity)
            self._decoder.reset()
            return True
        except (serial.SerialException, OSError, ValueError) as exc:
            self._error(f"cannot open {self.url}: {exc}")
            self._port = None
            return False

    def _error(self, message: str) -> None:
        if message != self._last_error:
            log.warning("bill validator: %s", message)
        with self._lock:
            self._last_error = message

    # ------------------------------------------------------------------ transactions
    def _transact(self, frame: bytes, *, retries: int = 2) -> c.Frame | None:
        """Send one frame, return the device's answer frame (None if none arrived).
        A corrupt answer is NAKed: the device repeats it; else we send the command again."""
        port = self._port
        # after a silence, let a late answer to the old command land before flushing it,
        # so it is never taken for the answer to this one
        quiet = self._quiet_until - time.monotonic()
        if quiet > 0:
            self._stop.wait(quiet)
        for attempt in range(retries + 1):
            if attempt == 0 or self._nak_unanswered:
                port.reset_input_buffer()
                self._decoder.reset()
                port.write(frame)
            self._nak_unanswered = False
            answer, corrupt = self._read_frame()
            if answer is not None:
                return answer
            if corrupt:
                port.write(c.NAK_FRAME)
                self._nak_unanswered = True  # if the repeat does not come, resend the command
                continue
            break
        self._quiet_until = time.monotonic() + self.response_timeout_s
        return None

    _nak_unanswered = False
    _quiet_until = 0.0

    def _read_frame(self) -> tuple[c.Frame | None, bool]:
        deadline = time.monotonic() + self.response_timeout_s
        corrupt = False
        while True:
            data = read_some(self._port, deadline)
            if not data and time.monotonic() >= deadline:
                if self._decoder.buffer:
                    self.counters["garbage"] += 1
                    self._error("truncated frame")
                    self._decoder.reset()
                    corrupt = True
                return None, corrupt
            for item in self._decoder.feed(data):
                if isinstance(item, c.FrameError):
                    self.counters[item.reason] = self.counters.get(item.reason, 0) + 1
                    self._error(f"{item.reason} on the wire ({len(item.raw)} bytes)")
                    if item.reason in ("bad_crc", "bad_length", "oversized"):
                        corrupt = True
                    continue
                self._decoder.reset()  # one answer per command; drop anything after it
                return item, False

    def _command(self, command: int, data: bytes = b"") -> c.Frame | None:
        answer = self._transact(c.encode_command(command, data))
        if answer is not None and answer.payload[:1] == bytes([c.ILLEGAL_COMMAND]) and len(answer.payload) == 1:
            self.counters["illegal"] += 1
            self._error(f"device refused {c.COMMAND_NAMES.get(command, hex(command))}")
        return answer

    def _ack(self) -> None:
        self._port.write(c.ACK_FRAME)

    # ------------------------------------------------------------------ init
    def _initialise(self) -> None:
        if self._last_state is None and self._bill_in_flight_at_start():
            return
        if self._command(c.RESET) is None:
            self._missed("no answer to RESET")
            return
        ident = self._command(c.IDENTIFICATION)
        if ident is not None and len(ident.payload) >= 27:
            self._ack()
            self._identification = c.parse_identification(ident.payload)
        table = self._command(c.GET_BILL_TABLE)
        if table is None or len(table.payload) < c.BILL_TYPES * c.BILL_TABLE_ENTRY:
            self._missed("no bill table")
            return
        self._ack()
        with self._lock:
            self._table = c.parse_bill_table(table.payload)
        self._need_init = False
        self._answered()
        log.info("bill validator %s: table %s", self._identification, self.bill_table)

    def _bill_in_flight_at_start(self) -> bool:
        """A host restart must not erase a bill the validator is still handling (a RESET would
        finish or return it silently: credit lost). POLL first; with a bill in flight, read the
        table without RESET and leave the answer un-ACKed so the poll loop reports it."""
        # No ACK anywhere here: an ACK would also acknowledge a 0x81 the previous host polled
        # but never acknowledged, and the credit would vanish.
        table = self._command(c.GET_BILL_TABLE)
        if table is None or len(table.payload) < c.BILL_TYPES * c.BILL_TABLE_ENTRY:
            return False
        self._answered()
        answer = self._transact(c.POLL_FRAME)
        state = c.parse_poll_answer(answer.payload) if answer is not None else None
        if state is not None and state.code in (c.POWER_UP_BILL_IN_VALIDATOR, c.POWER_UP_BILL_IN_STACKER):
            # powered up with a bill inside while no host was listening: report before RESET
            where = "validator" if state.code == c.POWER_UP_BILL_IN_VALIDATOR else "stacker"
            self._events.emit("powerup_with_bill", {"where": where, "amount_kop": None, "stack_sent": False,
                                                    "at_start": True})
            return False
        if state is not None and state.code == c.POWER_UP:
            # powered up while no host listened: a bill the last host had sent to the stacker
            # may have been stacked and its 0x81 lost with the power; the caller's journal knows
            self._events.emit("power_up_at_start", {"where": "unknown"})
            return False
        if state is None or state.code not in BILL_IN_FLIGHT:
            return False
        log.warning("bill validator: bill in flight at start (%s): not resetting", state.name)
        with self._lock:
            self._table = c.parse_bill_table(table.payload)
        self._need_init = False
        self._answered()
        return True

    # ------------------------------------------------------------------ caller commands
    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            if command == "apply_enable":
                self._last_action.pop("enable", None)
            elif command in ("stack", "return"):
                if self._escrow is None or self._escrow.get("decided"):
                    self._error(f"{command} ignored: no bill in escrow")
                    continue
                self._decision = command
                self._last_action.pop("decide", None)
        # the rest is level-triggered from _act()

    def _wanted_types(self) -> set[int]:
        with self._lock:
            if not self._enabled_wanted:
                return set()
            return {b.index for b in self._table
                    if b.amount_kop in self._wanted_kop and b.currency == self.currency}

    def _cooldown(self, action: str, seconds: float = ACTION_COOLDOWN_S) -> bool:
        now = time.monotonic()
        if now - self._last_action.get(action, -1e9) < seconds:
            return False
        self._last_action[action] = now
        return True

    # ------------------------------------------------------------------ polling
    def _poll_once(self) -> None:
        self.counters["polls"] += 1
        answer = self._transact(c.POLL_FRAME)
        if answer is None:
            self._missed("no answer to POLL")
            return
        state = c.parse_poll_answer(answer.payload)
        if state is None or state.code in (c.ACK, c.NAK):
            self._missed("empty POLL answer")
            return
        if state.code == c.ILLEGAL_COMMAND and state.sub is None:
            self.counters["illegal"] += 1
            return
        self._answered()
        previous, self._last_state = self._last_state, state
        with self._lock:
            self._state_name = state.name
        if state != previous:
            self._on_transition(previous, state)
        # ACK only after subscribers have handled the event: a host killed before it journaled
        # a credit leaves the device repeating 0x81, so the next host still sees the bill.
        self._ack()
        self._act(state)

    def _answered(self) -> None:
        self.counters["answers"] += 1
        self._unanswered = 0
        if not self._online:
            with self._lock:
                self._online = True
            self._events.emit("online", {"recovered": self._ever_online})
            self._ever_online = True

    def _missed(self, why: str | None) -> None:
        self.counters["timeouts"] += 1
        self._unanswered += 1
        if why:
            self._error(why)
        if self._online and self._unanswered >= self.lost_after_polls:
            with self._lock:
                self._online = False
                self._state_name = "offline"
            self._events.emit("lost", {"unanswered_polls": self._unanswered,
                                       "escrow_kop": self._escrow["amount_kop"] if self._escrow else None})

    def _bill(self, bill_type: int | None) -> dict:
        for bill in self._table:
            if bill.index == bill_type:
                return {"amount_kop": bill.amount_kop, "currency": bill.currency, "bill_type": bill_type}
        return {"amount_kop": None, "currency": None, "bill_type": bill_type}

    def _on_transition(self, previous: c.PollState | None, state: c.PollState) -> None:
        code = state.code
        emit = self._events.emit
        if self._cassette_out and code != c.CASSETTE_OUT:
            self._cassette_out = False
            emit("cassette_replaced")
        if code == c.ESCROW:
            bill = self._bill(state.sub)
            self._escrow = dict(bill, decided=False)
            self._decision = None
            self._last_hold = time.monotonic()
            if bill["bill_type"] not in self._wanted_types():
                # inhibited meanwhile or unknown type: never keep money we were not asked for
                self._escrow["decided"] = True
                self._decision = "return"
                self._error(f"escrow of a bill not enabled ({bill['amount_kop']}): returning")
                return
            emit("escrow", bill)
        elif code == c.BILL_STACKED:
            bill = self._bill(state.sub)
            if bill["amount_kop"] is None and self._escrow:
                bill = {k: self._escrow[k] for k in ("amount_kop", "currency", "bill_type")}
            emit("stacked", bill)
            self._escrow = None
            self._decision = None
        elif code == c.BILL_RETURNED:
            emit("returned", self._bill(state.sub))
            self._escrow = None
            self._decision = None
        elif code == c.REJECTING:
            emit("rejected", {"reason": state.reason, "code": state.sub})
            self._escrow = None
            self._decision = None
        elif code in (c.POWER_UP_BILL_IN_VALIDATOR, c.POWER_UP_BILL_IN_STACKER):
            where = "validator" if code == c.POWER_UP_BILL_IN_VALIDATOR else "stacker"
            data = {"where": where, "amount_kop": None, "stack_sent": False}
            if self._escrow:
                data.update(amount_kop=self._escrow["amount_kop"], currency=self._escrow["currency"],
                            stack_sent=self._escrow.get("stack_sent", False))
            self._escrow = None
            self._decision = None
            emit("powerup_with_bill", data)
        elif code == c.POWER_UP:
            if self._escrow:
                # the bill we were holding vanished with the power: report for reconciliation
                emit("powerup_with_bill", {"where": "unknown", "amount_kop": self._escrow["amount_kop"],
                                           "currency": self._escrow["currency"],
                                           "stack_sent": self._escrow.get("stack_sent", False)})
                self._escrow = None
                self._decision = None
            emit("power_up")
        elif code == c.IDLING:
            emit("idle")
        elif code == c.UNIT_DISABLED:
            emit("disabled")
        elif code == c.CASSETTE_FULL:
            emit("cassette_full")
        elif code == c.CASSETTE_OUT:
            self._cassette_out = True
            emit("cassette_removed")
        elif code in (c.VALIDATOR_JAMMED, c.CASSETTE_JAMMED):
            emit("jammed", {"where": "validator" if code == c.VALIDATOR_JAMMED else "cassette"})
        elif code == c.CHEATED:
            emit("cheated")
        elif code == c.FAILURE:
            emit("failure", {"code": state.sub, "reason": state.reason})
        elif code not in c.STATE_NAMES:
            self.counters["unknown_states"] += 1
            self._error(f"unknown state 0x{code:02x}")

    def _act(self, state: c.PollState) -> None:
        """Level-triggered actions: what the device should be doing given what we want."""
        code = state.code
        if code in (c.POWER_UP, c.POWER_UP_BILL_IN_VALIDATOR, c.POWER_UP_BILL_IN_STACKER):
            if self._cooldown("reset", 1.0):
                self._need_init = True  # RESET, and re-read the table: the model may differ
            return
        if code in (c.ESCROW, c.HOLDING) and self._escrow is not None:
            decision = self._decision
            if decision and self._cooldown("decide", 0.3):
                if decision == "stack":
                    self._escrow["stack_sent"] = True  # caller journalled before calling stack()
                answer = self._command(c.STACK if decision == "stack" else c.RETURN)
                if answer is not None and answer.payload == bytes([c.ACK]):
                    self._escrow["decided"] = True
            elif not decision and time.monotonic() - self._last_hold >= HOLD_EVERY_S:
                self._last_hold = time.monotonic()
                self._command(c.HOLD)
            return
        if code in (c.IDLING, c.UNIT_DISABLED, c.CASSETTE_FULL):
            wanted = self._wanted_types()
            enabled_now = code != c.UNIT_DISABLED
            if code == c.CASSETTE_FULL:
                return
            if bool(wanted) != enabled_now or self._last_action.get("enable") is None:
                if self._cooldown("enable", 1.0):
                    self._command(c.ENABLE_BILL_TYPES,
                                  c.encode_type_mask(wanted) + c.encode_type_mask(wanted))
