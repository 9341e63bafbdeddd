"""PrivatBank ECR protocol (JSON based). Pure: bytes <-> dicts; no I/O, no clock.

Each message is one UTF-8 JSON object terminated by a 0x00 byte, the same over serial and TCP:
``{"method": ..., "step": 0, "params": {...}, "error": false, "errorDescription": ""}``.
Service messages (deviceBusy, interrupt, getLastResult) travel as
``{"method": "ServiceMessage", "params": {"msgType": ...}}``.
Amounts travel as decimal strings ("200.00"); inside the kiosk they are integer kopiykas.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

TERMINATOR = b"\x00"
MAX_MESSAGE = 64 * 1024

PING = "PingDevice"
PURCHASE = "Purchase"
WITHDRAWAL = "Withdrawal"  # void of an earlier purchase by invoice number
AUDIT = "Audit"  # X report
VERIFY = "Verify"  # Z report / reconciliation
SERVICE = "ServiceMessage"

MSG_DEVICE_BUSY = "deviceBusy"
MSG_INTERRUPT = "interrupt"
MSG_INTERRUPT_TRANSMITTED = "interruptTransmitted"
MSG_GET_LAST_RESULT = "getLastResult"

APPROVED_CODES = {"0000", "000", "00"}
RESPONSE_TEXTS = {
    "0000": "approved",
    "0005": "do not honour",
    "0025": "no such transaction",
    "0051": "insufficient funds",
    "0055": "wrong PIN",
    "1000": "general error",
    "1001": "transaction interrupted",
    "1002": "timeout at the terminal",
    "1004": "no connection to the bank",
    "1005": "no paper",
}


def encode_message(message: dict) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + TERMINATOR


def request(method: str, params: dict | None = None) -> dict:
    return {"method": method, "step": 0, "params": params or {}}


def service(msg_type: str, **params) -> dict:
    return {"method": SERVICE, "step": 0, "params": {"msgType": msg_type, **params}}


def kop_to_amount(kop: int) -> str:
    if kop < 0:
        raise ValueError("negative amount")
    return f"{kop // 100}.{kop % 100:02d}"


_AMOUNT = re.compile(r"^\s*(\d{1,12})(?:[.,](\d{1,2}))?\s*$")


def amount_to_kop(text) -> int | None:
    """'200.00' -> 20000; integers are taken as hryvnias; anything else -> None (never a float)."""
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, int):
        return text * 100 if text >= 0 else None
    match = _AMOUNT.match(str(text))
    if not match:
        return None
    whole, frac = match.groups()
    return int(whole) * 100 + int((frac or "0").ljust(2, "0"))


def purchase(amount_kop: int, merchant_id: str | None = None) -> dict:
    return request(PURCHASE, {"amount": kop_to_amount(amount_kop), "discount": "",
                              "merchantId": merchant_id or "0"})


@dataclass(frozen=True)
class DecodeError:
    reason: str  # "invalid_utf8" | "invalid_json" | "not_object" | "oversized"
    raw: bytes


@dataclass
class MessageDecoder:
    buffer: bytearray = field(default_factory=bytearray)
    _skipping: bool = False

    def feed(self, data: bytes) -> list[dict | DecodeError]:
        out: list[dict | DecodeError] = []
        self.buffer += data
        while True:
            end = self.buffer.find(TERMINATOR)
            if end < 0:
                if len(self.buffer) > MAX_MESSAGE:
                    if not self._skipping:
                        out.append(DecodeError("oversized", bytes(self.buffer[:64])))
                    self._skipping = True  # drop until the next terminator
                    self.buffer.clear()
                return out
            raw = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            if not raw.strip():
                continue  # stray terminators are harmless
            if len(raw) > MAX_MESSAGE:
                out.append(DecodeError("oversized", raw[:64]))
                continue
            out.append(decode_one(raw))

    def reset(self) -> None:
        self.buffer.clear()
        self._skipping = False


def decode_one(raw: bytes) -> dict | DecodeError:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return DecodeError("invalid_utf8", raw[:64])
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return DecodeError("invalid_json", raw[:64])
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return DecodeError("not_object", raw[:64])
    if not isinstance(message.get("params", {}), dict):
        return DecodeError("not_object", raw[:64])
    return message


def _text(value) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        return None
    return str(value)


def mask_pan(pan: str | None) -> str | None:
    """Never let a full card number through, whatever the terminal sends."""
    if not pan:
        return None
    digits = re.sub(r"[^0-9*Xx]", "", pan)
    if len(digits) < 10:
        return "*" * len(digits)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:] if "*" not in digits and "x" not in digits.lower() else digits


def classify(message: dict) -> dict:
    """Normalise a result message to the fields the kiosk keeps; never raises."""
    params = message.get("params") if isinstance(message.get("params"), dict) else {}
    code = _text(params.get("responseCode"))
    error = message.get("error") is True
    if message.get("method") == SERVICE and params.get("msgType") == MSG_DEVICE_BUSY:
        status = "busy"
    elif code in APPROVED_CODES and not error:
        status = "approved"
    elif code and code.isdigit() and int(code) >= 1000:
        status = {"1001": "cancelled", "1002": "timeout", "1004": "offline"}.get(code, "error")
    elif code and code.isdigit():
        status = "declined"
    elif error:
        status = "error"
    else:
        status = "unknown"
    text = _text(message.get("errorDescription")) or _text(params.get("responseText")) \
        or RESPONSE_TEXTS.get(code or "")
    return {
        "status": status,
        "amount_kop": amount_to_kop(params.get("amount")),
        "approval_code": _text(params.get("approvalCode")),
        "rrn": _text(params.get("rrn")),
        "masked_pan": mask_pan(_text(params.get("pan"))),
        "card_type": _text(params.get("paymentSystem")),
        "terminal_id": _text(params.get("terminalId")),
        "merchant_id": _text(params.get("merchant")),
        "invoice_number": _text(params.get("invoiceNumber")),
        "response_code": code,
        "text": text,
    }
