"""The kiosk's own view of its power: a small poller reads upsd (and the transfer switch) through
facility/power's client code — never through the agent, which is a separate process that may be
down — and keeps the latest assessment. It gates new payments and stops the kiosk in order.

- runtime on battery under POWER_RUNTIME_MARGIN_S (or a silent UPS last seen on battery): no
  new payment starts (the gate is on ``KioskState.payment_gates``, which pay.py asks through
  ``terminal.state.payment_refusal`` where a payment starts; the screen
  says why); payments in flight go on to their receipt.
- low battery or FSD: the kiosk is stopped through `cnap kiosk`'s own stop path
  (``state(app).kiosk_stop``), which closes the web server, the devices and the journal.
- NUT_HOST empty and no ATS: nothing runs and the gate is open.
"""
from __future__ import annotations

import logging
import threading
import time

from flask import Blueprint, Flask

from facility.power import PowerMonitor
from facility.power.policy import Assessment
from terminal import i18n
from terminal.state import state

log = logging.getLogger("cnap.power")

bp = Blueprint("power", __name__)

# Interface strings looked up under names built at run time (in templates or from variables),
# listed so that pybabel extracts them; their texts are in terminal/translations/.
RUNTIME_KEYS = (
    i18n.N_("power.why.fsd"),
    i18n.N_("power.why.low_battery"),
    i18n.N_("power.why.power_unknown"),
    i18n.N_("power.why.runtime_short"),
)


class PaymentGate:
    """Polls in its own daemon thread every ``interval_s``; :meth:`refusal` is what pay.py asks."""

    def __init__(self, app: Flask, monitor: PowerMonitor, interval_s: float):
        self.app, self.monitor, self.interval_s = app, monitor, interval_s
        self.assessment: Assessment | None = None   # None until the first reading
        self._stop = threading.Event()
        self._shutdown_requested = False
        self._warned_no_stop_path = False
        self._thread = threading.Thread(target=self._run, name="power-gate", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll(time.time())
            self._stop.wait(self.interval_s)

    def poll(self, now: float) -> Assessment:
        assessment = self.monitor.poll(now)  # never raises
        before = self.assessment
        self.assessment = assessment
        if before is None or before.state != assessment.state or before.stop_new_payments != assessment.stop_new_payments:
            log.info("power: %s (new payments %s)", assessment.state,
                     "refused: " + assessment.why if assessment.stop_new_payments else "allowed")
        if assessment.shutdown and not self._shutdown_requested:
            # retried on every poll until a stop path exists: `cnap kiosk` sets it only after
            # create_app, and an LB already present at start must still stop the kiosk
            self._shutdown_requested = self._request_kiosk_stop(f"power: {assessment.state}")
        elif not assessment.shutdown:
            self._shutdown_requested = self._warned_no_stop_path = False
        return assessment

    def _request_kiosk_stop(self, reason: str) -> bool:
        stop = state(self.app).kiosk_stop
        if stop is None:  # not (yet) under `cnap kiosk`: tests, a WSGI host; upsmon stops the machine
            if not self._warned_no_stop_path:
                log.warning("%s, but no kiosk stop path (yet): retried on the next poll", reason)
                self._warned_no_stop_path = True
            return False
        log.warning("%s: stopping the kiosk (journal closed on the way out)", reason)
        try:
            stop(reason)
        except Exception:
            log.exception("power: kiosk stop failed")
        return True

    def refusal(self) -> str | None:
        a = self.assessment
        if a is None or not a.stop_new_payments:
            return None
        minutes = max(1, int((a.runtime_s or 0) // 60))
        return i18n.gettext(f"power.why.{a.why}", minutes=minutes)

    def health(self) -> tuple[bool, dict]:
        a = self.assessment
        if a is None:
            return True, {"configured": True, "state": "starting"}
        return a.state == "online", {
            "configured": True, "state": a.state, "alerts": list(a.alerts), "source": a.source,
            "runtime_s": a.runtime_s, "charge_pct": a.charge_pct,
            "new_payments": "refused" if a.stop_new_payments else "allowed"}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(self.monitor.target.timeout_s * 4 + 1 if self.monitor.target else 5)
        self.monitor.close()


def init_app(app: Flask) -> None:
    kiosk_state = state(app)
    monitor = PowerMonitor.from_settings(app.config)
    if monitor is None:
        kiosk_state.health["power"] = lambda: (True, {"configured": False})
        return
    gate = PaymentGate(app, monitor, float(app.config["POWER_POLL_S"]))
    kiosk_state.power_gate = gate
    kiosk_state.payment_gates.append(gate.refusal)
    kiosk_state.health["power"] = gate.health
    kiosk_state.closers.append(gate.close)

