"""Card operations on the till's worker thread: Purchase (its intent journaled before it is
sent), resolving a lost answer by the terminal's last result (never a second Purchase), and
voiding an approval that is not ours. Every outcome is journaled, retried until the journal
takes it: losing it would lose the record of real money."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

from payments.journal import JournalError
from payments.ledger import Ledger
from payments.machine import Payment

log = logging.getLogger("cnap.payments")


def plain_result(result: Any) -> dict:
    """A driver's answer as plain journal data (scalars only, without the raw message)."""
    if result is None:
        return {"status": "unknown"}
    if dataclasses.is_dataclass(result):
        data = dataclasses.asdict(result)
    elif isinstance(result, dict):
        data = dict(result)
    else:
        data = dict(vars(result))
    data.pop("raw", None)  # the terminal's raw message may carry more than we may keep
    return {k: v for k, v in data.items() if isinstance(v, (str, int, float, bool, type(None)))}


class CardPayments:
    def __init__(self, card, *, merchant_id: str | None, ledger: Ledger,
                 dispatch: Callable[[str, str, dict], Payment], dispatch_durably: Callable[[str, str, dict], Payment],
                 write: Callable[[str, str, dict], int]) -> None:
        self.card = card
        self._merchant_id = merchant_id or None
        self._ledger = ledger
        self._dispatch = dispatch
        self._dispatch_durably = dispatch_durably
        self._write = write

    @property
    def can_interrupt(self) -> bool:
        return self.card is not None and hasattr(self.card, "interrupt")

    def interrupt(self) -> None:
        self.card.interrupt()

    def purchase(self, payment_id: str, amount_kop: int) -> None:
        amount = int(amount_kop)
        try:
            self._dispatch(payment_id, "card_intent", {"amount_kop": amount})  # durable before Purchase
        except JournalError:
            # no intent on disk, so no Purchase is sent: the attempt ends "nothing charged"
            # as soon as the journal writes again (until then the screen shows the fault)
            self._dispatch_durably(payment_id, "card_result", {"status": "error", "text": "journal_fault"})
            return
        if self.card is None:
            result = {"status": "offline"}
        else:
            try:
                result = plain_result(self.card.purchase(amount, merchant_id=self._merchant_id))
            except Exception as exc:  # a driver bug must not leave money unrecorded
                log.exception("card purchase raised")
                result = {"status": "unknown", "text": type(exc).__name__}
        self._dispatch_durably(payment_id, "card_result", result)

    def settle_lost_answer(self, payment_id: str) -> None:
        """The Purchase's answer was lost or timed out: journal what the terminal says now."""
        self._dispatch_durably(payment_id, "card_result", self.resolve(payment_id))

    def resolve(self, payment_id: str, *, recovery: bool = False) -> dict:
        """Ask the terminal for its last result (never a second Purchase). Approved, for this
        amount and not already booked to another payment: it is ours; anything else: nothing
        was charged (a stray approval is voided)."""
        payment = self._ledger.get(payment_id)
        result = {"status": "unknown"}
        if self.card is not None:
            try:
                result = plain_result(self.card.last_result())
            except Exception:
                log.exception("card last_result raised")
        ours = (result.get("status") == "approved" and result.get("amount_kop") == payment.remaining_kop
                and result.get("invoice_number") not in self._ledger.used_invoices(payment_id))
        if ours:
            return dict(result, resolution=True, recovery=recovery)
        return {"status": "unknown", "resolution": True, "recovery": recovery,
                "text": f"last result: {result.get('status')}"}

    def void(self, payment_id: str, invoice_number: str | None) -> None:
        """Withdraw an approval we did not ask for (wrong amount)."""
        result = {"status": "skipped"}
        if self.card is not None and invoice_number:
            self._write(payment_id, "device_command", {"device": "card_terminal", "name": "void",
                                                       "invoice_number": invoice_number})
            result = plain_result(self.card.void(invoice_number))
        self._dispatch_durably(payment_id, "card_void_result", {"status": result.get("status")})
