"""A PrivatBank ECR JSON terminal on the device side of the wire, sharing the driver's codec."""
from __future__ import annotations

import itertools
import logging
import time

from devices.card_terminal import codec as c
from devices.simwire import SimulatorBase

log = logging.getLogger(__name__)

BEHAVIOURS = ("approve", "decline", "timeout", "lost_response", "customer_cancel", "no_paper",
              "busy", "no_host", "lost_request")


class CardTerminalSimulator(SimulatorBase):
    name = "card_terminal"

    def __init__(self, *, processing_s: float = 0.2, terminal_id: str = "S1KV0001",
                 merchant_id: str = "1000000001") -> None:
        super().__init__()
        self.processing_s = processing_s
        self.terminal_id = terminal_id
        self.merchant_id = merchant_id
        self.behaviour = "approve"
        self.decoder = c.MessageDecoder()
        self.received: list[dict] = []  # every well-formed request, in order
        self.decode_errors: list[str] = []
        self.journal: list[dict] = []  # completed operations as the bank sees them
        self.last_result: dict | None = None
        self.pending: dict | None = None  # operation in progress: {"due", "message"}
        self._invoice = itertools.count(1)
        self._rrn = itertools.count(412345000001)
        self.garbage_next = 0
        self.silent = False

    # ------------------------------------------------------------------ scripting API
    def set_behaviour(self, behaviour: str) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {BEHAVIOURS}")
        with self.lock:
            self.behaviour = behaviour

    def garbage_before_next_answers(self, count: int = 1) -> None:
        with self.lock:
            self.garbage_next = count

    def set_silent(self, silent: bool = True) -> None:
        with self.lock:
            self.silent = silent

    def purchases(self, status: str = "approved") -> list[dict]:
        with self.lock:
            return [j for j in self.journal if j["method"] == c.PURCHASE and j["status"] == status]

    def snapshot(self) -> dict:
        with self.lock:
            return {"behaviour": self.behaviour, "busy": self.pending is not None,
                    "journal": list(self.journal), "url": self.url}

    # ------------------------------------------------------------------ wire
    def on_connect(self) -> None:
        self.decoder.reset()

    def _reply(self, message: dict) -> None:
        if self.silent:
            return
        out = c.encode_message(message)
        if self.garbage_next:
            self.garbage_next -= 1
            out = b"\xff\xfe{\"method\":\x00{not json}\x00" + out
        self.send(out)

    def on_data(self, data: bytes) -> None:
        for item in self.decoder.feed(data):
            if isinstance(item, c.DecodeError):
                self.decode_errors.append(item.reason)
                continue
            self.received.append(item)
            self._handle(item)

    def _handle(self, message: dict) -> None:
        method = message.get("method")
        params = message.get("params") or {}
        if method == c.SERVICE:
            kind = params.get("msgType")
            if kind == c.MSG_GET_LAST_RESULT:
                if self.pending is not None:
                    self._reply(c.service(c.MSG_DEVICE_BUSY))
                else:
                    self._reply(c.service(c.MSG_GET_LAST_RESULT, lastResult=self.last_result))
            elif kind == c.MSG_INTERRUPT:
                self._reply(c.service(c.MSG_INTERRUPT_TRANSMITTED))
                if self.pending is not None:
                    pending, self.pending = self.pending, None
                    self._complete(pending["message"], "1001", deliver=True)
            return
        if self.pending is not None:
            self._reply(c.service(c.MSG_DEVICE_BUSY))
            return
        if method == c.PING:
            self._reply(self._answer(message, "0000", {"code": "00"}))
        elif method == c.PURCHASE:
            if self.behaviour == "busy":
                self._reply(c.service(c.MSG_DEVICE_BUSY))
                return
            if self.behaviour == "lost_request":
                return  # the request never reached the terminal's application
            amount = c.amount_to_kop(params.get("amount"))
            if amount is None or amount <= 0:
                self._reply(self._answer(message, "1000", {}, "bad amount"))
                return
            self.pending = {"due": time.monotonic() + self.processing_s, "message": message,
                            "behaviour": self.behaviour}
        elif method == c.WITHDRAWAL:
            self._void(message, str(params.get("invoiceNumber")))
        elif method in (c.AUDIT, c.VERIFY):
            approved = [j for j in self.journal if j["method"] == c.PURCHASE and j["status"] == "approved"]
            total = sum(j["amount_kop"] for j in approved)
            self._reply(self._answer(message, "0000", {"totalAmount": c.kop_to_amount(total),
                                                       "totalCount": len(approved)}))
            if method == c.VERIFY:
                for j in approved:
                    j["status"] = "settled"
        else:
            self._reply({"method": method, "step": 0, "params": {"responseCode": "1000"},
                         "error": True, "errorDescription": "unsupported method"})

    def tick(self, now: float) -> None:
        if self.pending is None or now < self.pending["due"]:
            return
        pending, self.pending = self.pending, None
        behaviour = pending["behaviour"]
        code = {"approve": "0000", "lost_response": "0000", "decline": "0051",
                "customer_cancel": "1001", "no_paper": "1005", "timeout": "1002",
                "no_host": "1004"}[behaviour]
        # "timeout": the terminal gives up on its own and never answers the host
        self._complete(pending["message"], code, deliver=behaviour not in ("lost_response", "timeout"))

    def _complete(self, message: dict, code: str, *, deliver: bool) -> None:
        amount_kop = c.amount_to_kop((message.get("params") or {}).get("amount")) or 0
        extra = {"amount": c.kop_to_amount(amount_kop)}
        if code == "0000":
            invoice = str(next(self._invoice))
            extra.update(approvalCode=f"{next(self._rrn) % 1000000:06d}", rrn=str(next(self._rrn)),
                         pan="414962******1234", paymentSystem="VISA", invoiceNumber=invoice,
                         bankAcquirer="PrivatBank", date=time.strftime("%d.%m.%Y"),
                         time=time.strftime("%H:%M:%S"))
        answer = self._answer(message, code, extra)
        self.journal.append({"method": c.PURCHASE, "amount_kop": amount_kop,
                             "status": "approved" if code == "0000" else "failed",
                             "invoice": extra.get("invoiceNumber"), "code": code})
        self.last_result = answer
        if deliver:
            self._reply(answer)

    def _void(self, message: dict, invoice: str) -> None:
        for j in self.journal:
            if j["method"] == c.PURCHASE and j["invoice"] == invoice and j["status"] == "approved":
                j["status"] = "voided"
                answer = self._answer(message, "0000", {"amount": c.kop_to_amount(j["amount_kop"]),
                                                        "invoiceNumber": invoice,
                                                        "rrn": str(next(self._rrn))})
                self.last_result = answer
                self._reply(answer)
                return
        self._reply(self._answer(message, "0025", {"invoiceNumber": invoice}))

    def _answer(self, message: dict, code: str, extra: dict, text: str | None = None) -> dict:
        ok = code == "0000"
        return {"method": message.get("method"), "step": 0,
                "params": {"responseCode": code, "terminalId": self.terminal_id,
                           "merchant": self.merchant_id, **extra},
                "error": not ok, "errorDescription": "" if ok else (text or c.RESPONSE_TEXTS.get(code, ""))}
