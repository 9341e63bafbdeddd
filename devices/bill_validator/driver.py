"""CCNET bill validator driver: one poll thread owns the port; callers get typed events.

Money rules kept here: the driver never stacks on its own (an escrowed bill waits, held with
HOLD, until ``stack()`` or ``return_bill()``), a credit ("stacked") is emitted only for a
0x81 answer whose bill type is in the device's table, a 0x81 repeated because our ACK was lost
is one bill (events fire on state *transitions* between consecutive answers), a power-up with a
bill inside is an incident, and a 0x81 without a known bill type is an incident
("stacked_unknown") that raises an alarm and switches acceptance off, never a credit.

Host contract (the till relies on it)
-------------------------------------
A subscriber callback that raises means the host could not make the event durable. For an event
that needs acknowledgement (any poll answer the driver would ACK, above all "stacked") the driver
then does NOT send ACK; the device keeps reporting the same state, and the driver re-delivers the
same event (same seq, same data) on the device's repeat, with a back-off between attempts
(``delivery_backoff_s``, 0.5 s doubling to 5 s), until a delivery succeeds; only then ACK. Events
are delivered in order: nothing newer is delivered before an older one has been. While deliveries
fail, ``status()`` says so (state "host_error", online False, last_error naming the event and the
exception text, detail["host_error"] = the exception text, detail["undelivered"] = [[seq, kind]])
and the driver sends nothing but POLL: no ACK, no STACK, RETURN, HOLD, ENABLE or RESET (an
escrowed bill is given back by the device's own escrow timeout). It never crashes its thread.
Every subscriber is called on every attempt, so a subscriber that succeeded before may see the
same seq again: it must treat it as the same event (a subscriber that raised may also have done
part of its work before raising).

Link rules (CCNET): a command goes out only after the line has been quiet for
``inter_frame_gap_s`` (20 ms, CashCode's own SDK delay between commands) since the last frame in
either direction; ACK and NAK answer a device frame at once. A frame that fails its CRC (or a
length check, or stops mid-frame for ``inter_byte_timeout_s``) is NAKed at once, and the device's
repeat is awaited before anything else is written; if no repeat comes the transaction ends and the
next one starts after a quiet response timeout. A device whose identification or bill table cannot
be read, or that answers everything with a bare ACK, is reported "unavailable" (event and status)
and RESET again only after a back-off (``reset_backoff_s``, 1 s doubling to 30 s).
"""
from __future__ import annotations

import collections
import logging
import queue
import threading
import time

import serial

from devices.bill_validator import codec as c
from devices.events import DeliveryError, DeviceEvent, DeviceStatus, EventEmitter
from devices.transport import open_url, read_some, safe_close

log = logging.getLogger(__name__)

DEVICE = "bill_validator"
HOLD_EVERY_S = 3.0  # a validator returns an escrowed bill after ~10 s without HOLD
ACTION_COOLDOWN_S = 0.5
RECONNECT_S = 1.0
BILL_IN_FLIGHT = {c.ACCEPTING, c.ESCROW, c.HOLDING, c.STACKING, c.RETURNING, c.BILL_STACKED,
                  c.BILL_RETURNED}
# CCNET timing (see docs/devices.md): the peripheral answers within 10 ms and keeps a frame's
# bytes within 5 ms of each other; the controller leaves the line quiet between its frames.
# CashCode's SDK waits 20 ms after each ACK/NAK before the next command: the default gap.
INTER_FRAME_GAP_S = 0.02
INTER_BYTE_TIMEOUT_S = 0.05  # 10 x the spec: USB-serial adapters deliver bytes in 16 ms chunks
RESET_BACKOFF_S = (1.0, 30.0)  # first wait after a failed initialisation, and the cap
DELIVERY_BACKOFF_S = (0.5, 5.0)  # between re-deliveries of an event the host failed to record
POWER_UP_STATES = {c.POWER_UP, c.POWER_UP_BILL_IN_VALIDATOR, c.POWER_UP_BILL_IN_STACKER}
ACK_ONLY_POLLS = 3
STUCK_IN_POWER_UP = "stays in power-up after RESET"
NO_STATE_ACK = "answers ACK only (to POLL)"
NO_STATE_ILLEGAL = "refuses POLL (ILLEGAL COMMAND)"  # bare ACKs in a row to POLL before the device is reported


class Backoff:
    """Exponential back-off: ``first``, doubling, capped at ``limit``; ``reset`` starts over."""

    def __init__(self, first: float, limit: float, factor: float = 2.0) -> None:
        if not 0 < first <= limit:
            raise ValueError("back-off needs 0 < first <= limit")
        self.first, self.limit, self.factor = first, limit, factor
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.limit, self._next * self.factor)
        return delay

    def reset(self) -> None:
        self._next = self.first


def bill_table_problem(payload: bytes, currency: str) -> str | None:
    """Why a GET BILL TABLE answer cannot be trusted, or None."""
    if payload == bytes([c.ACK]):
        return "answers ACK only (to GET BILL TABLE)"
    if len(payload) < c.BILL_TYPES * c.BILL_TABLE_ENTRY:
        return f"bill table unreadable ({len(payload)} bytes)"
    for index in range(c.BILL_TYPES):
        entry = payload[index * 5 : index * 5 + 5]
        if entry[0] == 0:
            continue
        country = entry[1:4]
        if not (all(0x41 <= b <= 0x5A for b in country) and (entry[4] & 0x7F) <= 9):
            return f"bill table unreadable (entry {index}: {entry.hex(' ')})"
    if not any(b.currency == currency for b in c.parse_bill_table(payload)):
        return f"bill table has no {currency} bills"
    return None


def identification_problem(answer: c.Frame | None) -> str | None:
    if answer is None:
        return "no answer to IDENTIFICATION"
    payload = answer.payload
    if payload == bytes([c.ACK]):
        return "answers ACK only (to IDENTIFICATION)"
    if payload == bytes([c.ILLEGAL_COMMAND]):
        return "identification refused (ILLEGAL COMMAND)"
    # part and serial number are ASCII, padded with spaces (some firmware pads with NULs)
    text = payload[:27]
    if len(payload) < 27 or not all(b == 0 or 0x20 <= b <= 0x7E for b in text) \
            or not any(chr(b).isalnum() for b in text[:15]):
        return f"identification unreadable ({len(payload)} bytes)"
    return None


class BillValidator:
    def __init__(self, url: str, *, poll_interval_s: float = 0.1, lost_after_polls: int = 30,
                 baudrate: int = 9600, response_timeout_s: float = 0.3,
                 currency: str = "UAH", parity: str = "none",
                 inter_frame_gap_s: float = INTER_FRAME_GAP_S,
                 inter_byte_timeout_s: float = INTER_BYTE_TIMEOUT_S,
                 reset_backoff_s: tuple[float, float] = RESET_BACKOFF_S,
                 delivery_backoff_s: tuple[float, float] = DELIVERY_BACKOFF_S) -> None:
        if not 0.0 <= poll_interval_s <= 5.0:
            raise ValueError("poll_interval_s out of range")
        if not 0.0 <= inter_frame_gap_s <= 1.0:
            raise ValueError("inter_frame_gap_s out of range")
        self.url = url
        self.poll_interval_s = poll_interval_s
        self.lost_after_polls = max(1, int(lost_after_polls))
        self.baudrate = baudrate
        self.parity = parity
        self.response_timeout_s = response_timeout_s
        self.inter_frame_gap_s = inter_frame_gap_s
        self.inter_byte_timeout_s = min(inter_byte_timeout_s, response_timeout_s)
        self.currency = currency
        self._events = EventEmitter(DEVICE)
        self._commands: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._port = None
        self._decoder = c.FrameDecoder()
        self._line_quiet_from = 0.0  # monotonic end of the last frame on the wire
        self._quiet_until = 0.0
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
        self._last_payload = b""
        self._last_error: str | None = None
        self._unanswered = 0
        self._need_init = True
        self._escrow: dict | None = None  # bill waiting for a decision or being stacked
        self._decision: str | None = None
        self._last_hold = 0.0
        self._last_action: dict[str, float] = {}
        self._cassette_out = False
        # a device we cannot trust: why, and when RESET may be tried again
        self._unavailable: str | None = None
        self._reset_backoff = Backoff(*reset_backoff_s)
        self._next_init_at = 0.0
        self._resets_unconfirmed = 0  # RESETs not yet followed by a state after power-up
        self._ack_only_polls = 0
        # an incident that needs a person (stacked without a known bill type)
        self._alarm: dict | None = None
        # events the host has not recorded yet, oldest first
        self._undelivered: collections.deque[DeviceEvent] = collections.deque()
        self._delivery_backoff = Backoff(*delivery_backoff_s)
        self._redeliver_at = 0.0
        self._host_error: str | None = None
        self._host_error_message = ""
        self._alarm_message = ""
        self.counters = {"polls": 0, "answers": 0, "timeouts": 0, "bad_crc": 0, "garbage": 0,
                         "bad_length": 0, "oversized": 0, "illegal": 0, "port_errors": 0,
                         "unknown_states": 0, "resets": 0, "naks": 0, "ack_only": 0,
                         "delivery_failures": 0}

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ccnet-poll", daemon=True)
        self._thread.start()
        # give the first RESET / IDENTIFICATION / GET BILL TABLE a chance; never raise
        self._ready.wait(timeout=(self.response_timeout_s + self.inter_frame_gap_s) * 6 + 0.5)

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

    def clear_alarm(self) -> None:
        """An operator has reconciled a "stacked_unknown" incident: accept bills again."""
        self._commands.put("clear_alarm")

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
                "host_error": self._host_error,
                "undelivered": [[e.seq, e.kind] for e in list(self._undelivered)],
                "unavailable": self._unavailable,
                "alarm": dict(self._alarm) if self._alarm else None,
            }
            if self._identification:
                detail["part_number"] = self._identification.part_number
                detail["serial_number"] = self._identification.serial_number
            # a standing condition is reported over the latest transient wire error
            last_error = self._last_error
            if self._host_error is not None:
                state, last_error = "host_error", self._host_error_message
            elif self._alarm is not None:
                state, last_error = "alarm", self._alarm_message
            elif self._unavailable is not None:
                state, last_error = "unavailable", f"device unavailable: {self._unavailable}"
            elif self._online:
                state = self._state_name
            else:
                state = "offline"
            detail["wire_error"] = self._last_error
            online = self._online and state not in ("host_error", "alarm", "unavailable")
            return DeviceStatus(online, state, last_error, detail)

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
                if self._undelivered:
                    self._retry_delivery()
                    self._ready.set()
                else:
                    if self._need_init:
                        self._initialise()
                        self._ready.set()
                    if not self._undelivered:  # nothing but the back-off POLL while the host fails
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

    # ------------------------------------------------------------------ events to the host
    def _emit(self, kind: str, data: dict | None = None) -> DeviceEvent:
        """Queue an event and deliver what is queued (unless a failed delivery is backing off)."""
        event = self._events.make(kind, data)
        with self._lock:
            self._undelivered.append(event)
        if self._host_error is None:
            self._flush()
        return event

    def _flush(self) -> bool:
        """Deliver queued events oldest first; False if the host failed one (it stays queued)."""
        while self._undelivered:
            event = self._undelivered[0]
            try:
                self._events.deliver(event)
            except DeliveryError as exc:
                self.counters["delivery_failures"] += 1
                delay = self._delivery_backoff.next()
                self._redeliver_at = time.monotonic() + delay
                message = (f"host could not record {event.kind} #{event.seq}: {exc} "
                           f"(not acknowledged; next try in {delay:.1f} s)")
                with self._lock:
                    self._host_error = str(exc)
                    self._host_error_message = message
                self._error(message)
                return False
            with self._lock:
                self._undelivered.popleft()
        if self._host_error is not None:
            log.warning("bill validator: host records events again")
            with self._lock:
                self._host_error = None
                self._last_error = None
            self._delivery_backoff.reset()
        return True

    def _retry_delivery(self) -> None:
        """Host error: after the back-off, POLL (the device repeats its un-ACKed answer), deliver
        the queued events again and ACK only if every one of them is now recorded."""
        if time.monotonic() < self._redeliver_at:
            return
        self.counters["polls"] += 1
        answer = self._transact(c.POLL_FRAME)
        if not self._flush():
            return
        if answer is None:
            self._missed("no answer to POLL")
            return
        self._handle_poll_answer(answer)

    # ------------------------------------------------------------------ wire
    def _write(self, frame: bytes, *, reply: bool = False) -> None:
        """Write a frame. A command waits until the line has been quiet for the inter-frame gap;
        ACK/NAK answer the device's frame at once."""
        if not reply:
            while True:
                if self._stop.is_set():
                    return  # stopping: no command goes out, and none without its gap
                left = self._line_quiet_from + self.inter_frame_gap_s - time.monotonic()
                if left <= 0:
                    break
                self._stop.wait(left)
        self._port.write(frame)
        # write() returns once the bytes are queued; the line is busy until they are sent
        self._line_quiet_from = time.monotonic() + len(frame) * 10 / max(1, self.baudrate)

    def _transact(self, frame: bytes, *, naks: int = 2) -> c.Frame | None:
        """Send one frame, return the device's answer frame (None if none arrived).
        A corrupt answer is NAKed at once and the device's repeat awaited; nothing else is
        written in between. No repeat: None (the command is not sent again in this burst)."""
        port = self._port
        # after a silence, let a late answer to the old command land before flushing it,
        # so it is never taken for the answer to this one
        quiet = self._quiet_until - time.monotonic()
        if quiet > 0:
            self._stop.wait(quiet)
        port.reset_input_buffer()
        self._decoder.reset()
        self._write(frame)
        for attempt in range(naks + 1):
            answer, corrupt = self._read_frame()
            if answer is not None:
                return answer
            if not corrupt or attempt == naks:
                break
            port.reset_input_buffer()  # the rest of the bad frame is not the repeat
            self._decoder.reset()
            self.counters["naks"] += 1
            self._write(c.NAK_FRAME, reply=True)
        self._quiet_until = time.monotonic() + self.response_timeout_s
        return None

    def _read_frame(self) -> tuple[c.Frame | None, bool]:
        """(frame, False) | (None, True) as soon as a corrupt frame is seen | (None, False)."""
        now = time.monotonic()
        deadline = now + self.response_timeout_s
        last_byte_at = now
        while True:
            data = read_some(self._port, deadline)
            now = time.monotonic()
            if data:
                last_byte_at = now
            elif self._decoder.buffer and now - last_byte_at >= self.inter_byte_timeout_s or (
                    now >= deadline and self._decoder.buffer):
                self.counters["garbage"] += 1
                self._error("truncated frame")
                self._decoder.reset()
                return None, True
            elif now >= deadline:
                return None, False
            for item in self._decoder.feed(data):
                if isinstance(item, c.FrameError):
                    self.counters[item.reason] = self.counters.get(item.reason, 0) + 1
                    self._error(f"{item.reason} on the wire ({len(item.raw)} bytes)")
                    if item.reason in ("bad_crc", "bad_length", "oversized"):
                        return None, True
                    continue
                self._decoder.reset()  # one answer per command; drop anything after it
                self._line_quiet_from = now
                return item, False

    def _command(self, command: int, data: bytes = b"") -> c.Frame | None:
        if command == c.RESET:
            self.counters["resets"] += 1
        answer = self._transact(c.encode_command(command, data))
        if answer is not None and answer.payload[:1] == bytes([c.ILLEGAL_COMMAND]) and len(answer.payload) == 1:
            self.counters["illegal"] += 1
            self._error(f"device refused {c.COMMAND_NAMES.get(command, hex(command))}")
        return answer

    def _ack(self) -> None:
        self._write(c.ACK_FRAME, reply=True)

    # ------------------------------------------------------------------ init
    def _initialise(self) -> None:
        if time.monotonic() < self._next_init_at:
            return  # backing off: a device that fails initialisation is not RESET every poll
        if self._last_state is None and self._bill_in_flight_at_start():
            return
        if self._undelivered:
            return  # an at-start event the host could not record: no RESET before it is
        problem = self._reset_and_read()
        # every RESET, even one that went well, waits its back-off: a device that ACKs RESET
        # but stays in power-up must not be RESET once a second for ever. The back-off starts
        # over when the device reports a state after power-up (_handle_poll_answer).
        self._next_init_at = time.monotonic() + self._reset_backoff.next()
        if problem is None:
            self._resets_unconfirmed += 1
            self._need_init = False
            self._answered()
            if self._unavailable != STUCK_IN_POWER_UP:  # that one clears when a state shows it
                self._set_available()
            log.info("bill validator %s: table %s", self._identification, self.bill_table)
            return
        if problem != "no answer to RESET":
            self._set_unavailable(problem)

    def _reset_and_read(self) -> str | None:
        """RESET, IDENTIFICATION, GET BILL TABLE; the reason it failed, or None."""
        if self._command(c.RESET) is None:
            self._missed("no answer to RESET")
            return "no answer to RESET"
        ident = self._command(c.IDENTIFICATION)
        problem = identification_problem(ident)
        if ident is not None and ident.payload not in (bytes([c.ACK]), bytes([c.ILLEGAL_COMMAND])):
            self._ack()  # a data answer is ACKed even when we cannot use it
        if problem:
            return problem
        self._identification = c.parse_identification(ident.payload)
        table = self._command(c.GET_BILL_TABLE)
        if table is None:
            return "no answer to GET BILL TABLE"
        problem = bill_table_problem(table.payload, self.currency)
        if table.payload not in (bytes([c.ACK]), bytes([c.ILLEGAL_COMMAND])):
            self._ack()
        if problem:
            return problem
        with self._lock:
            self._table = c.parse_bill_table(table.payload)
        return None

    def _set_unavailable(self, reason: str) -> None:
        self._error(f"device unavailable: {reason}")
        if self._unavailable != reason:
            first = self._unavailable is None
            with self._lock:
                self._unavailable = reason
            if first:
                self._emit("unavailable", {"reason": reason})

    def _set_available(self) -> None:
        if self._unavailable is not None:
            with self._lock:
                self._unavailable = None
                self._last_error = None
            self._last_action.pop("enable", None)
            self._emit("available")

    def _bill_in_flight_at_start(self) -> bool:
        """A host restart must not erase a bill the validator is still handling (a RESET would
        finish or return it silently: credit lost). POLL first; with a bill in flight, read the
        table without RESET and leave the answer un-ACKed so the poll loop reports it."""
        # No ACK anywhere here: an ACK would also acknowledge a 0x81 the previous host polled
        # but never acknowledged, and the credit would vanish.
        table = self._command(c.GET_BILL_TABLE)
        if table is None or bill_table_problem(table.payload, self.currency):
            return False
        self._answered()
        answer = self._transact(c.POLL_FRAME)
        state = c.parse_poll_answer(answer.payload) if answer is not None else None
        if state is not None and state.code in (c.POWER_UP_BILL_IN_VALIDATOR, c.POWER_UP_BILL_IN_STACKER):
            # powered up with a bill inside while no host was listening: report before RESET
            where = "validator" if state.code == c.POWER_UP_BILL_IN_VALIDATOR else "stacker"
            self._emit("powerup_with_bill", {"where": where, "amount_kop": None, "stack_sent": False,
                                             "at_start": True})
            return False
        if state is not None and state.code == c.POWER_UP:
            # powered up while no host listened: a bill the last host had sent to the stacker
            # may have been stacked and its 0x81 lost with the power; the caller's journal knows
            self._emit("power_up_at_start", {"where": "unknown"})
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
            elif command == "clear_alarm":
                if self._alarm is not None:
                    with self._lock:
                        self._alarm = None
                        self._last_error = None
                    self._last_action.pop("enable", None)
                    self._emit("alarm_cleared")
            elif command in ("stack", "return"):
                if self._escrow is None or self._escrow.get("decided"):
                    self._error(f"{command} ignored: no bill in escrow")
                    continue
                self._decision = command
                self._last_action.pop("decide", None)
        # the rest is level-triggered from _act()

    def _wanted_types(self) -> set[int]:
        with self._lock:
            if not self._enabled_wanted or self._alarm is not None:
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
        self._handle_poll_answer(answer)

    def _handle_poll_answer(self, answer: c.Frame) -> None:
        state = c.parse_poll_answer(answer.payload)
        if state is None or (state.code == c.NAK and state.sub is None):
            self._missed("POLL not understood (NAK)")
            return
        if state.code in (c.ACK, c.ILLEGAL_COMMAND) and state.sub is None:
            # a device that acknowledges or refuses POLL instead of telling its state is not
            # working: reported after a few, not polled in silence
            self.counters["ack_only" if state.code == c.ACK else "illegal"] += 1
            self._ack_only_polls += 1
            self._unanswered = 0
            if self._ack_only_polls >= ACK_ONLY_POLLS:
                self._set_unavailable(NO_STATE_ACK if state.code == c.ACK else NO_STATE_ILLEGAL)
            return
        if self._unavailable in (NO_STATE_ACK, NO_STATE_ILLEGAL):
            self._set_available()
        self._ack_only_polls = 0
        if state.code not in POWER_UP_STATES and not self._need_init and self._resets_unconfirmed:
            self._resets_unconfirmed = 0  # the RESET took: the device left power-up
            self._reset_backoff.reset()
            self._next_init_at = 0.0
            if self._unavailable == STUCK_IN_POWER_UP:
                self._set_available()
        elif state.code in POWER_UP_STATES and self._resets_unconfirmed >= 3:
            self._set_unavailable(STUCK_IN_POWER_UP)
        self._answered()
        previous, self._last_state = self._last_state, state
        self._last_payload = answer.payload
        with self._lock:
            self._state_name = state.name
        if state != previous:
            self._on_transition(previous, state)
        # ACK only after subscribers have recorded every event: a host that could not (disk
        # full) or died first leaves the device repeating its answer, e.g. 0x81, so the bill
        # is reported again rather than lost.
        if self._undelivered:
            return
        self._ack()
        self._act(state)

    def _answered(self) -> None:
        self.counters["answers"] += 1
        self._unanswered = 0
        if not self._online:
            with self._lock:
                self._online = True
            self._emit("online", {"recovered": self._ever_online})
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
            self._emit("lost", {"unanswered_polls": self._unanswered,
                                "escrow_kop": self._escrow["amount_kop"] if self._escrow else None})

    def _bill(self, bill_type: int | None) -> dict:
        for bill in self._table:
            if bill.index == bill_type:
                return {"amount_kop": bill.amount_kop, "currency": bill.currency, "bill_type": bill_type}
        return {"amount_kop": None, "currency": None, "bill_type": bill_type}

    def _stacked_unknown(self, state: c.PollState, why: str) -> None:
        """A 0x81 without a bill type in the table: money went into the cassette but we do
        not know how much. An incident and an alarm, never a credit; acceptance goes off."""
        escrow = self._escrow or {}
        data = {"bill_type": state.sub, "raw": self._last_payload.hex(" "), "why": why,
                "escrow_kop": escrow.get("amount_kop"), "currency": escrow.get("currency"),
                "stack_sent": escrow.get("stack_sent", False)}
        what = "no bill type" if state.sub is None else f"bill type {state.sub} ({why})"
        message = f"bill stacked with {what}: incident, acceptance off until the alarm is cleared"
        with self._lock:
            self._alarm = dict(data, kind="stacked_unknown")
            self._alarm_message = message
        self._last_action.pop("enable", None)  # switch acceptance off now
        self._error(message)
        self._emit("stacked_unknown", data)

    def _on_transition(self, previous: c.PollState | None, state: c.PollState) -> None:
        code = state.code
        emit = self._emit
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
            escrow = self._escrow or {}
            if bill["amount_kop"] is None or bill["currency"] != self.currency:
                self._stacked_unknown(state, "not in the bill table" if bill["amount_kop"] is None
                                      else f"a {bill['currency']} bill")
            elif escrow.get("stack_sent") and escrow.get("bill_type") != state.sub:
                # the device can only stack the bill it held: which of its two answers is true?
                self._stacked_unknown(state, f"not the escrowed type {escrow.get('bill_type')}")
            else:
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
        if self._unavailable is not None and self._need_init:
            return  # not initialised: nothing but POLL until the back-off allows a RESET
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
