"""The app's shared runtime objects, typed: one ``KioskState`` per app, stored once under
``app.extensions["cnap"]``. Each area's ``init_app`` fills its fields; views read them through
``current_state()`` (inside a request or app context) or ``state(app)``. No area reads another's
objects through string keys, so a rename or a missing area fails loudly at one place."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Callable

from flask import Flask, current_app

if TYPE_CHECKING:  # type names only: the areas import this module, not the reverse
    from prometheus_client import CollectorRegistry

    from payments.hardware import Hardware
    from payments.till import Till
    from terminal.views.power import PaymentGate
    from terminal.catalogue.search import SearchIndex
    from terminal.internet.port import WindowPort
    from terminal.out_of_service import OutOfServiceSwitch
    from terminal.catalogue.store import Catalogue
    from terminal.staff import StaffStore
    from terminal.surveys.store import SurveyStore
    from terminal.views.service import Section

EXTENSION_KEY = "cnap"

HealthCheck = Callable[[], "tuple[bool, dict]"]


@dataclass(eq=False)
class KioskState:
    # app-wide (terminal/__init__.py): shutdown hooks, run newest first by close_app
    closers: list[Callable[[], None]] = field(default_factory=list)
    # name -> callable returning (ok, detail); read by /healthz and, later, the agent
    health: dict[str, HealthCheck] = field(default_factory=dict)
    # core: the Prometheus registry behind /metrics; endpoint -> {filename: content hash}
    metrics: CollectorRegistry | None = None
    static_versions: dict[str, dict[str, str]] = field(default_factory=dict)
    # catalogue: the loaded snapshot and its search index (swapped together by load_catalogue)
    catalogue: Catalogue | None = None
    search: SearchIndex | None = None
    clock: Callable[[], datetime] | None = None
    # service mode
    staff: StaffStore | None = None
    service_sections: list[Section] = field(default_factory=list)
    # set by `cnap kiosk` only: asks the running kiosk to stop (service mode's "Stop the kiosk")
    kiosk_stop: Callable[[str], None] | None = None
    # internet: the kiosk window's browsing sessions (set by `cnap kiosk` when a window runs;
    # None without a display)
    internet_window: WindowPort | None = None
    # payments
    till: Till | None = None
    hardware: Hardware | None = None
    pay_drafts: dict[str, dict] = field(default_factory=dict)
    pay_drafts_lock: threading.Lock = field(default_factory=threading.Lock)
    # surveys
    surveys: SurveyStore | None = None
    # power: the UPS/ATS poller that gates new payments (None: not configured)
    power_gate: PaymentGate | None = None
    # the hub's "out of service" switch (terminal/out_of_service.py)
    out_of_service: OutOfServiceSwitch | None = None
    # THE list of payment gates: each returns why no new payment may start now (text in the
    # visitor's language) or None; the UPS gate and the out-of-service switch are on it
    payment_gates: list[Callable[[], "str | None"]] = field(default_factory=list)


def install(app: Flask) -> KioskState:
    """Give ``app`` its (empty) state; ``create_app`` calls it before any area's init_app."""
    kiosk_state = KioskState()
    app.extensions[EXTENSION_KEY] = kiosk_state
    return kiosk_state


def state(app: Flask) -> KioskState:
    return app.extensions[EXTENSION_KEY]


def current_state() -> KioskState:
    return current_app.extensions[EXTENSION_KEY]


def payment_refusal() -> str | None:
    """Why no new payment may start now (the first gate that refuses), or None. Payments in
    flight are not asked: they finish and print."""
    for gate in current_state().payment_gates:
        refusal = gate()
        if refusal:
            return refusal
    return None
