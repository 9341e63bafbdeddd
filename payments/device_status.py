"""Each device's verdict by the one rule in payments/health.py, as the screens, /healthz and the
technician's self-test see it. Nothing here moves money."""
from __future__ import annotations

from typing import Callable

from payments import health
from payments.health import DeviceHealth
from payments.printing import Printing
from payments.streams import DEVICE_STREAM
from payments.validator_events import ValidatorState


class DeviceStatus:
    def __init__(self, *, validator, card, printing: Printing, validator_state: ValidatorState,
                 write: Callable[[str, str, dict], int], terminal_id: str) -> None:
        self.validator = validator
        self.card = card
        self._printing = printing
        self._validator_state = validator_state
        self._write = write
        self._terminal_id = terminal_id

    def health(self, *, probe: bool = False) -> dict[str, DeviceHealth]:
        """``probe`` also asks the card terminal actively (PingDevice; the self-test does,
        screens and /healthz don't)."""
        result = {}
        if self.validator is None:
            result["bill_validator"] = health.not_configured("bill_validator")
        else:
            try:
                result["bill_validator"] = health.validator_health(
                    self.validator.status(), list(self.validator.bill_table), self._validator_state.fault)
            except Exception as exc:
                result["bill_validator"] = health.DeviceHealth("bill_validator", True, False, "error",
                                                               {"error": type(exc).__name__})
        if self.card is None:
            result["card_terminal"] = health.not_configured("card_terminal")
        else:
            try:
                pinged = bool(self.card.ping()) if probe else None
                result["card_terminal"] = health.card_health(self.card.status(), pinged)
            except Exception as exc:
                result["card_terminal"] = health.DeviceHealth("card_terminal", True, False, "error",
                                                              {"error": type(exc).__name__})
        result["printer"] = (health.printer_health(self._printing.status()) if self._printing.printer is not None
                             else health.not_configured("printer"))
        return result

    def self_test(self, print_page: bool = False) -> list[dict]:
        """Each configured device asked what it knows (the card terminal actively), judged by the
        same rule as /healthz and the screens; journaled on the ``device`` stream."""
        results = []
        for name, verdict in self.health(probe=True).items():
            if not verdict.configured:
                continue
            ok = verdict.ok
            if name == "printer" and ok and print_page:
                ok = self._printing.print_report("SELF-TEST", {"terminal": self._terminal_id})
            detail = "; ".join([verdict.state] + [f"{k} {v}" for k, v in verdict.detail.items()
                                                  if v not in (None, "", [])])
            results.append({"device": name, "ok": ok, "detail": detail})
        self._write(DEVICE_STREAM, "self_test", {"results": results})
        return results
