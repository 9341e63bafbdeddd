"""The receipt printer as the till uses it: its status in one shape, receipts (an intent
journaled before the job, the outcome after; a failure never blocks a payment, the screen is
then the receipt) and service reports (X, Z, encashment, self-test page)."""
from __future__ import annotations

from typing import Callable

from payments import receipts
from payments.journal import JournalError
from payments.machine import Payment
from payments.reports import report_blocks
from payments.streams import DEVICE_STREAM


class Printing:
    def __init__(self, printer, config, *, payment: Callable[[str], Payment | None],
                 dispatch: Callable[[str, str, dict], Payment], dispatch_durably: Callable[[str, str, dict], Payment],
                 write: Callable[[str, str, dict], int], now: Callable[[], float]) -> None:
        self.printer = printer
        self._config = config
        self._payment = payment                    # current state of a payment
        self._dispatch = dispatch                  # a payment event (raises JournalError)
        self._dispatch_durably = dispatch_durably  # a payment event, retried until journaled
        self._write = write                        # an event on another stream
        self._now = now

    def receipt_context(self) -> receipts.ReceiptContext:
        c = self._config
        return receipts.ReceiptContext(c.terminal_id, c.branch, c.verify_url, c.receipt_key, c.timezone)

    def status(self) -> dict:
        """online, paper (ok/near_end/out/unknown/none), cover_open, error — never raises."""
        if self.printer is None:
            return {"online": False, "paper": "none", "cover_open": False, "error": "no printer"}
        try:
            status = self.printer.status()
            return {"online": bool(status.online), "paper": status.paper, "cover_open": bool(status.cover_open),
                    "error": status.error}
        except Exception as exc:
            return {"online": False, "paper": "unknown", "cover_open": False, "error": type(exc).__name__}

    def print_receipt(self, payment_id: str, kind: str = "receipt") -> bool:
        """Runs on the till's worker thread (printing blocks)."""
        status = self.status()
        if not status["online"] or status["paper"] == "out" or status["cover_open"]:
            self._dispatch_durably(payment_id, "print_intent", {"kind": kind, "skipped": True})
            self._dispatch_durably(payment_id, "print_failed", {"error": status.get("error") or
                                                                ("paper_out" if status["paper"] == "out" else "offline")})
            return False
        try:
            self._dispatch(payment_id, "print_intent", {"kind": kind})
        except JournalError:
            # nothing is printed that the journal does not know of: once it writes, the screen's
            # receipt (number and QR) stands as the electronic receipt
            self._dispatch_durably(payment_id, "print_intent", {"kind": kind, "skipped": True})
            self._dispatch_durably(payment_id, "print_failed", {"error": "journal_fault"})
            return False
        blocks = receipts.build_blocks(self._payment(payment_id), self.receipt_context(), kind=kind, when=self._now())
        try:
            result = self.printer.print_job(blocks)
            ok, error = bool(result.ok), getattr(result, "error", None)
        except Exception as exc:
            ok, error = False, type(exc).__name__
        if ok:
            self._dispatch_durably(payment_id, "print_done", {})
        else:
            self._dispatch_durably(payment_id, "print_failed", {"error": error or "print failed"})
        return ok

    def print_report(self, title: str, report: dict) -> bool:
        """Service reports (X, Z, encashment) on paper; journaled like every device command."""
        if self.printer is None:
            return False
        self._write(DEVICE_STREAM, "device_command", {"device": "printer", "name": f"report {title}"})
        try:
            result = self.printer.print_job(report_blocks(f"{title}-ЗВІТ" if len(title) == 1 else title, report,
                                                          self._config.terminal_id))
            ok = bool(result.ok)
        except Exception:
            ok = False
        self._write(DEVICE_STREAM, "device_command_done", {"device": "printer", "ok": ok})
        return ok
