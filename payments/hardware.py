"""Glue between settings and devices: builds the drivers (starting the built-in simulators for
URLs set to 'sim'), the journal and the till, runs start-up recovery, and hands the host its
health checks and shutdown hook (``start_runtime``). It knows nothing of the app hosting it."""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from payments import retention
from payments.journal import Journal, JournalError
from payments.recovery import recover
from payments.till import Till, TillConfig

log = logging.getLogger("cnap.payments")

CARD_PING_EVERY_S = 5.0
RECOVERY_RETRY_S = 10.0


@dataclass
class Hardware:
    validator: object | None = None
    card: object | None = None
    printer: object | None = None
    simulators: dict = field(default_factory=dict)
    accepted_kop: set[int] = field(default_factory=set)
    cassette_capacity: int = 1000  # from the validator's profile

    def close(self) -> None:
        if self.validator is not None:
            self.validator.stop()
        if self.card is not None and hasattr(self.card, "close"):
            self.card.close()
        for sim in self.simulators.values():
            sim.stop()


def _profile(kind: str, model: str) -> dict:
    try:
        from devices.profiles import find_profile

        return find_profile(kind, model) or {}
    except Exception:
        log.exception("device profile %s/%s unreadable; using defaults", kind, model)
        return {}


class FilteredValidator:
    """The validator as the till sees it: its bill table limited to what the profile accepts."""

    def __init__(self, driver, accepted: set[int]):
        self._driver = driver
        self._accepted = accepted

    def __getattr__(self, name):
        return getattr(self._driver, name)

    @property
    def driver(self):
        """The wrapped driver."""
        return self._driver

    @property
    def bill_table(self) -> list[int]:
        table = list(self._driver.bill_table)
        return [b for b in table if not self._accepted or b in self._accepted]


class PingingCard:
    """The card driver, with an online flag refreshed by PingDevice now and then (its own
    status only changes when an operation talks to the terminal)."""

    def __init__(self, driver):
        self._driver = driver
        self._checked = 0.0
        self._online = False
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._driver, name)

    @property
    def driver(self):
        """The wrapped driver."""
        return self._driver

    def status(self):
        status = self._driver.status()
        now = time.monotonic()
        if status.state not in ("idle", "offline"):
            return status  # an operation is running: do not queue a ping behind it
        with self._lock:
            if now - self._checked > CARD_PING_EVERY_S or not self._online:
                if now - self._checked > 1.0:
                    self._checked = now
                    try:
                        self._online = bool(self._driver.ping())
                    except Exception:
                        self._online = False
        return type(status)(self._online, status.state if self._online else "offline", status.last_error,
                            status.detail)


def build_hardware(config) -> Hardware:
    from devices.bill_validator.driver import BillValidator
    from devices.card_terminal.driver import CardTerminal
    from devices.printer.driver import ReceiptPrinter, load_printer_profile

    hw = Hardware()
    url = config.get("BILL_VALIDATOR_URL", "")
    if url:
        profile = _profile("bill_validator", config.get("BILL_VALIDATOR_PROFILE", "cashcode-sm"))
        if url == "sim":
            from devices.bill_validator.simulator import BillValidatorSimulator

            sim = BillValidatorSimulator(cassette_capacity=profile.get("cassette_capacity", 1000))
            url = sim.start_tcp()
            hw.simulators["bill_validator"] = sim
        driver = BillValidator(url, poll_interval_s=profile.get("poll_interval_ms", 100) / 1000,
                               lost_after_polls=profile.get("lost_after_polls", 30),
                               response_timeout_s=profile.get("response_timeout_ms", 300) / 1000,
                               baudrate=profile.get("baudrate", 9600))
        hw.accepted_kop = set(profile.get("denominations_kop", ()))
        hw.cassette_capacity = profile.get("cassette_capacity", hw.cassette_capacity)
        hw.validator = FilteredValidator(driver, hw.accepted_kop)
    url = config.get("CARD_TERMINAL_URL", "")
    if url:
        timeouts = None
        if url == "sim":
            from devices.card_terminal.simulator import CardTerminalSimulator

            sim = CardTerminalSimulator()
            url = sim.start_tcp()
            hw.simulators["card_terminal"] = sim
            timeouts = {"purchase": 10.0, "last_result_total": 5.0}
        hw.card = PingingCard(CardTerminal(url, timeouts=timeouts))
    url = config.get("PRINTER_URL", "")
    profile = config.get("PRINTER_PROFILE", "generic-80mm")
    if url:
        if url == "sim":
            from devices.printer.simulator import PrinterSimulator

            # the simulated paper is as wide as the configured profile's
            sim = PrinterSimulator(width_dots=int(load_printer_profile(profile)["width_dots"]))
            url = sim.start_tcp()
            hw.simulators["printer"] = sim
        hw.printer = ReceiptPrinter(url, profile=profile)
    return hw


def receipt_key(instance_path: str) -> bytes:
    """The key behind receipt check codes: created once, kept in the instance folder."""
    path = os.path.join(instance_path, "receipt.key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    with open(path) as fh:
        return bytes.fromhex(fh.read().strip())


def till_config(config, instance_path: str, branch_name: str = "") -> TillConfig:
    return TillConfig(terminal_id=config.get("TERMINAL_ID", "KIOSK-01"),
                      branch=branch_name or config.get("BRANCH_ID", ""),
                      merchant_id=config.get("CARD_MERCHANT_ID") or None,
                      verify_url=config.get("RECEIPT_VERIFY_URL", ""),
                      max_payment_kop=int(config.get("MAX_PAYMENT_KOP", 5_000_000)),
                      receipt_key=receipt_key(instance_path),
                      timezone=config.get("TIMEZONE", "Europe/Kyiv"),
                      # the screen's idle reset (timeout + warning) settles an abandoned payment;
                      # past that plus a margin, a silent visitor's payment is settled too
                      abandon_after_s=float(config.get("IDLE_TIMEOUT_S", 90)) + float(config.get("IDLE_WARNING_S", 30)) + 60)


def start_payments(config, instance_path: str, *, branch_name: str = "", hardware: Hardware | None = None,
                   run_recovery: bool = True) -> tuple[Till, Hardware]:
    """Journal, drivers, till, recovery — in the order that keeps money safe: the till listens
    to the validator before its first poll, and recovery finishes before anyone is served."""
    hw = hardware or build_hardware(config)
    journal = Journal(os.path.join(instance_path, config.get("JOURNAL_DB", "journal.sqlite"))).start()
    try:  # before the till replays: personal data past its retention never reaches memory
        retention.redact(journal, days=int(config.get("PERSONAL_DATA_RETENTION_DAYS", 90)), by="kiosk start")
    except Exception:  # never a reason to refuse payments; the hourly run tries again
        log.exception("retention: redaction at start failed")
    till = Till(journal, till_config(config, instance_path, branch_name),
                validator=hw.validator, card=hw.card, printer=hw.printer)
    till.start()
    if hw.validator is not None:
        hw.validator.start()
    if journal.failing is not None:
        till.enter_journal_fault(journal.failing)  # the journal could not be written at start
    if run_recovery:
        try:
            recover(till)
        except JournalError as exc:
            # not ready: the pay screens say why, /healthz fails, and recovery runs again once
            # the journal writes (start_runtime's retry loop)
            log.error("start-up recovery stopped by a journal fault: %s", exc)
            till.mark_not_ready()
    return till, hw


def stop_payments(till: Till, hw: Hardware) -> None:
    try:
        if hw.validator is not None:
            try:
                hw.validator.disable()
            except Exception:
                pass
        till.close()
    finally:
        hw.close()
        till.journal.close()


@dataclass
class PaymentsRuntime:
    """The running payment side: the till, its devices, the health checks the host reports and
    the one shutdown hook. The host app (terminal/views/pay.py) wires these into itself."""
    till: Till
    hardware: Hardware
    close: Callable[[], None]
    health_checks: dict[str, Callable[[], tuple[bool, dict]]]


def start_runtime(config, instance_path: str, *, branch_name: str = "") -> PaymentsRuntime:
    """Start the payment runtime: the till and its devices, start-up recovery (retried in the
    background while the till is not ready) and the personal-data retention timer."""
    till, hw = start_payments(config, instance_path, branch_name=branch_name)
    stop_retry = threading.Event()

    def retry_recovery():
        # a card result that could not be read at start (terminal offline) is asked again
        while not till.ready and not stop_retry.wait(1.0 if till.journal_fault is not None else RECOVERY_RETRY_S):
            if till.journal_fault is not None:
                continue  # recovery writes: wait until the journal takes writes again
            try:
                recover(till)
            except Exception:
                log.exception("recovery retry failed")

    if not till.ready:
        threading.Thread(target=retry_recovery, name="recovery-retry", daemon=True).start()

    stop_retention = retention.start_timer(till, days=int(config.get("PERSONAL_DATA_RETENTION_DAYS", 90)))

    def close():
        stop_retry.set()
        stop_retention()
        stop_payments(till, hw)

    return PaymentsRuntime(till, hw, close, health_checks(till))


def health_checks(till: Till) -> dict[str, Callable[[], tuple[bool, dict]]]:
    """name -> callable returning (ok, detail), for the host's health endpoint."""

    def payments_health():
        avail = till.availability()
        ok = avail["ready"] and avail["unsettled"] == 0 and avail["journal_fault"] is None
        return ok, {"ready": avail["ready"], "unsettled": avail["unsettled"], "busy": avail["busy"]}

    def journal_health():
        # a failed journal write stops all money taking until the journal writes again
        return till.journal_fault is None, {"fault": till.journal_fault, "faults": till.journal_faults,
                                            "undelivered_device_events": till.undelivered_device_events}

    def device_check(name):
        # the one device verdict (payments/health.py), as the screens and the self-test see it
        return lambda: till.device_health()[name].as_check()

    checks = {"payments": payments_health, "journal": journal_health}
    for name in ("bill_validator", "card_terminal", "printer"):
        checks[name] = device_check(name)
    return checks
