"""PrivatBank ECR JSON card terminal driver.

Blocking calls, one operation at a time. The rule that protects the customer's money: a
Purchase is sent exactly once. If its answer does not come (timeout, broken link, garbage) the
driver asks the terminal for its last result and reports what that says, or "unknown".
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import serial

from devices.card_terminal import codec as c
from devices.events import DeviceStatus
from devices.transport import open_url, read_some, safe_close

log = logging.getLogger(__name__)

DEFAULT_TIMEOUTS = {
    "connect": 3.0,
    "ping": 3.0,
    "purchase": 120.0,  # the customer reads the screen, finds the card, types the PIN
    "last_result": 5.0,
    "last_result_total": 30.0,  # keep asking while the terminal is still busy finishing
    "void": 60.0,
    "audit": 30.0,
    "reconcile": 120.0,
}


@dataclass(frozen=True)
class CardResult:
    status: str  # approved | declined | cancelled | timeout | busy | offline | error | unknown
    amount_kop: int | None = None
    approval_code: str | None = None
    rrn: str | None = None
    masked_pan: str | None = None
    card_type: str | None = None
    terminal_id: str | None = None
    merchant_id: str | None = None
    invoice_number: str | None = None
    response_code: str | None = None
    text: str | None = None
    raw: dict = field(default_factory=dict)


def _result(message: dict, **overrides) -> CardResult:
    fields = c.classify(message)
    fields.update(overrides)
    raw = dict(message)
    params = raw.get("params")
    if isinstance(params, dict) and params.get("pan"):
        raw["params"] = dict(params, pan=fields["masked_pan"])  # no full PAN in any journal
    return CardResult(raw=raw, **fields)


def _plain(status: str, text: str, **extra) -> CardResult:
    return CardResult(status=status, text=text, raw=dict(extra))


class _NoAnswer(Exception):
    pass


class CardTerminal:
    def __init__(self, url: str, *, timeouts: dict | None = None, baudrate: int = 115200) -> None:
        self.url = url
        self.baudrate = baudrate
        self.timeouts = {**DEFAULT_TIMEOUTS, **(timeouts or {})}
        self._op_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._port = None
        self._decoder = c.MessageDecoder()
        self._online = False
        self._state = "idle"
        self._last_error: str | None = None
        self._last_status: str | None = None
        self._terminal_id: str | None = None
        self._known_invoices: set[str] = set()
        self.counters = {"invalid_utf8": 0, "invalid_json": 0, "not_object": 0, "oversized": 0,
                         "unexpected": 0, "timeouts": 0, "port_errors": 0}

    # ------------------------------------------------------------------ public API
    def flush_line(self) -> None:
        """Send an empty frame (a lone NUL), which ends whatever the terminal had half-read; used
        before identifying an unknown device. Raises the transport's error if the line is dead."""
        with self._write_lock:
            self._connect().write(b"\x00")

    def ping(self) -> bool:
        with self._op_lock:
            try:
                answer = self._exchange(c.request(c.PING), c.PING, self.timeouts["ping"])
            except _NoAnswer:
                self._online = False
                return False
            fields = c.classify(answer)
            self._terminal_id = fields["terminal_id"] or self._terminal_id
            return fields["status"] == "approved" or answer.get("error") is False

    def purchase(self, amount_kop: int, merchant_id: str | None = None) -> CardResult:
        if not isinstance(amount_kop, int) or isinstance(amount_kop, bool) or amount_kop <= 0:
            return _plain("error", f"bad amount {amount_kop!r}")
        with self._op_lock:
            self._state = "purchase"
            try:
                return self._purchase(amount_kop, merchant_id)
            finally:
                self._state = "idle"

    def last_result(self) -> CardResult:
        with self._op_lock:
            return self._last_result()

    def void(self, invoice_number: str) -> CardResult:
        return self._simple(c.request(c.WITHDRAWAL, {"invoiceNumber": str(invoice_number)}),
                            c.WITHDRAWAL, "void")

    def audit(self) -> CardResult:
        return self._simple(c.request(c.AUDIT), c.AUDIT, "audit")

    def reconcile(self) -> CardResult:
        return self._simple(c.request(c.VERIFY), c.VERIFY, "reconcile")

    def interrupt(self) -> None:
        """Ask the terminal to abandon the running operation (callable from another thread)."""
        try:
            self._send(c.service(c.MSG_INTERRUPT))
        except (serial.SerialException, OSError, _NoAnswer) as exc:
            self._note_error(f"interrupt not sent: {exc}")

    def status(self) -> DeviceStatus:
        return DeviceStatus(
            online=self._online,
            state=self._state if self._online or self._state != "idle" else "offline",
            last_error=self._last_error,
            detail={"url": self.url, "terminal_id": self._terminal_id,
                    "last_status": self._last_status, "counters": dict(self.counters)},
        )

    def close(self) -> None:
        with self._write_lock:
            safe_close(self._port)
            self._port = None

    # ------------------------------------------------------------------ operations
    def _purchase(self, amount_kop: int, merchant_id: str | None) -> CardResult:
        try:
            self._send(c.purchase(amount_kop, merchant_id))  # sent once, never again
        except _NoAnswer as exc:
            return self._finish(_plain("offline", str(exc)))
        try:
            answer = self._receive(c.PURCHASE, self.timeouts["purchase"])
        except _NoAnswer as exc:
            self._note_error(f"Purchase answer lost ({exc}); asking for the last result")
            recovered = self._last_result(expect_amount_kop=amount_kop)
            if recovered.status == "busy":
                recovered = _plain("unknown", "terminal still busy", **recovered.raw)
            if recovered.status == "unknown":
                self._note_error(f"Purchase outcome unknown: {recovered.text}")
            return recovered
        return self._finish(_result(answer))

    def _last_result(self, expect_amount_kop: int | None = None) -> CardResult:
        deadline = time.monotonic() + self.timeouts["last_result_total"]
        while True:
            try:
                answer = self._exchange(c.service(c.MSG_GET_LAST_RESULT), c.SERVICE,
                                        self.timeouts["last_result"])
            except _NoAnswer as exc:
                if time.monotonic() >= deadline:
                    return _plain("unknown", f"no last result: {exc}")
                time.sleep(min(0.5, self.timeouts["last_result"]))
                continue
            params = answer.get("params") if isinstance(answer.get("params"), dict) else {}
            if params.get("msgType") == c.MSG_DEVICE_BUSY:
                if time.monotonic() >= deadline:
                    return _plain("unknown", "terminal busy, last result unavailable")
                time.sleep(0.2)
                continue
            last = params.get("lastResult")
            if not isinstance(last, dict):
                return _plain("unknown", "terminal has no last result")
            result = _result(last, )
            if expect_amount_kop is not None:
                invoice = result.invoice_number
                ours = (last.get("method") == c.PURCHASE and result.amount_kop == expect_amount_kop
                        and (invoice is None or invoice not in self._known_invoices))
                if not ours:
                    return CardResult(status="unknown", text="last result is not this purchase",
                                      raw={"lastResult": result.raw})
            return self._finish(result)

    def _simple(self, message: dict, method: str, state: str) -> CardResult:
        with self._op_lock:
            self._state = state
            try:
                answer = self._exchange(message, method, self.timeouts[state])
                return self._finish(_result(answer))
            except _NoAnswer as exc:
                if self._port is not None:
                    self._online = False
                    return _plain("timeout", str(exc))
                return _plain("offline", str(exc))
            finally:
                self._state = "idle"

    def _finish(self, result: CardResult) -> CardResult:
        self._last_status = result.status
        if result.invoice_number:
            self._known_invoices.add(result.invoice_number)
        if result.terminal_id:
            self._terminal_id = result.terminal_id
        return result

    # ------------------------------------------------------------------ wire
    def _connect(self):
        if self._port is None:
            try:
                self._port = open_url(self.url, baudrate=self.baudrate)
                self._decoder.reset()
            except (serial.SerialException, OSError, ValueError) as exc:
                self._online = False
                self._note_error(f"cannot open {self.url}: {exc}")
                raise _NoAnswer(f"terminal unreachable: {exc}") from None
        return self._port

    def _drop(self, why: str) -> None:
        self.counters["port_errors"] += 1
        self._note_error(why)
        self._online = False
        with self._write_lock:
            safe_close(self._port)
            self._port = None

    def _send(self, message: dict) -> None:
        with self._write_lock:
            port = self._connect()
            try:
                port.write(c.encode_message(message))
            except (serial.SerialException, OSError) as exc:
                raise _NoAnswer(f"write failed: {exc}") from None

    def _exchange(self, message: dict, method: str, timeout: float) -> dict:
        port = self._connect()
        try:
            port.reset_input_buffer()  # a stale answer must not pass for this one
        except (serial.SerialException, OSError):
            pass
        self._decoder.reset()
        self._send(message)
        return self._receive(method, timeout)

    def _receive(self, method: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            port = self._port
            if port is None:
                raise _NoAnswer("link closed")
            try:
                data = read_some(port, deadline)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                self._drop(f"link broken: {exc}")
                raise _NoAnswer(f"link broken: {exc}") from None
            if not data:
                if time.monotonic() >= deadline:
                    self.counters["timeouts"] += 1
                    self._note_error(f"no {method} answer in {timeout:g} s")
                    raise _NoAnswer("timeout")
                continue
            for item in self._decoder.feed(data):
                if isinstance(item, c.DecodeError):
                    self.counters[item.reason] += 1
                    self._note_error(f"{item.reason} from terminal")
                    continue
                self._online = True
                params = item.get("params") if isinstance(item.get("params"), dict) else {}
                if item.get("method") == method and (method != c.SERVICE or params.get("msgType") != c.MSG_INTERRUPT_TRANSMITTED):
                    return item
                if item.get("method") == c.SERVICE and params.get("msgType") == c.MSG_DEVICE_BUSY:
                    return item  # classify() turns it into "busy"
                self.counters["unexpected"] += 1
                log.info("card terminal: ignoring %s while waiting for %s", item.get("method"), method)

    def _note_error(self, message: str) -> None:
        log.warning("card terminal: %s", message)
        self._last_error = message
