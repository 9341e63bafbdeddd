"""Helpers shared by the payment tests: an app wired to the built-in simulators, and waiting on
conditions (never on sleeps)."""
from __future__ import annotations

import re
import time

from terminal import close_app, create_app
from terminal.state import state

SERVICE = "residence-registration"   # 74,00 UAH, no commission
RNOKPP = "3652504575"


def wait_until(predicate, timeout=8.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def make_app(instance, **extra):
    config = {"INSTANCE_PATH": str(instance), "TESTING": True, "SECRET_KEY": "test",
              "BILL_VALIDATOR_URL": "sim", "CARD_TERMINAL_URL": "sim", "PRINTER_URL": "sim"}
    config.update(extra)
    return create_app(config)


class Kiosk:
    """The app, its till and the simulators, driven the way a visitor and the hardware would."""

    def __init__(self, app):
        self.app = app
        self.till = state(app).till
        self.sims = state(app).hardware.simulators
        self.client = app.test_client()

    @property
    def validator(self):
        return self.sims["bill_validator"]

    @property
    def card(self):
        return self.sims["card_terminal"]

    @property
    def printer(self):
        return self.sims["printer"]

    def payer(self, service=SERVICE, surname="Шевченко", kind="rnokpp", value=RNOKPP, client=None):
        client = client or self.client
        return client.post(f"/pay/service/{service}", data={"surname": surname, "id_kind": kind, "id_value": value})

    def draft(self, client=None):
        client = client or self.client
        page = client.get("/pay/confirm").get_data(as_text=True)
        return re.search(r'name="draft" value="([^"]+)"', page).group(1)

    def begin(self, method, client=None, **form):
        client = client or self.client
        return client.post("/pay/confirm", data={"draft": self.draft(client), "method": method, **form})

    def payment_id(self, client=None):
        client = client or self.client
        with client.session_transaction() as s:
            return s.get("pay_payment")

    def payment(self, client=None):
        return self.till.payment(self.payment_id(client))

    def status(self, client=None):
        client = client or self.client
        return client.get(f"/pay/p/{self.payment_id(client)}/status").get_json()

    def insert(self, amount_kop):
        # as a visitor does: once the validator accepts this bill (the till re-enables the
        # denominations after every credit; a bill pushed in between is rightly rejected)
        wait_until(lambda: self.validator.insert_bill(amount_kop, when_enabled=True),
                   what=f"validator to take {amount_kop}")

    def pay_bills(self, *amounts):
        for amount in amounts:
            before = self.payment().credited_kop
            self.insert(amount)
            wait_until(lambda: self.payment().credited_kop == before + amount, what=f"credit of {amount}")

    def settle(self):
        wait_until(lambda: self.payment().settled, what="payment settled")
        self.till.wait_idle()

    def close(self):
        close_app(self.app)


def drop_subscribers(driver) -> None:
    """Forget every subscriber of a device driver's events (a test replaces the till's own with a
    filtered one; drivers have no public way to unsubscribe, a host never needs one)."""
    driver._events._subscribers.clear()
