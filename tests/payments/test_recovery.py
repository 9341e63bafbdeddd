"""Crash and recover: a till is abandoned mid-payment (as a killed process would leave it), a new
one starts on the same journal file and the same (still running) simulators."""
import pytest

from devices.bill_validator.driver import BillValidator
from devices.bill_validator.simulator import BillValidatorSimulator
from devices.card_terminal.driver import CardTerminal
from devices.card_terminal.simulator import CardTerminalSimulator
from devices.printer.driver import ReceiptPrinter
from devices.printer.simulator import PrinterSimulator
from payments.hardware import FilteredValidator, Hardware, PingingCard, start_payments
from payments.journal import read_records
from payments.taxid import Payer
from terminal.catalogue.model import Commission, Fee, PaymentDetails, Service
from tests.payments.helpers import drop_subscribers, wait_until

SERVICE = Service(id="fee", name={"uk": "Збір", "en": "Fee"}, short={}, category="c", provider={}, documents=(),
                  term={}, result={}, receive_ways=(), legal_acts=(),
                  fee=Fee(7400, {"uk": "закон"}, PaymentDetails("ГУК у м.Києві", "37993783",
                                                               "UA583808050000026009702978805", "101",
                                                               {"uk": "Адмінпослуга"}), Commission()))
PAYER = Payer("Шевченко", "rnokpp", "3652504575")


class Rig:
    def __init__(self, tmp_path, **validator_args):
        self.path = tmp_path
        self.bv_sim = BillValidatorSimulator(**validator_args)
        self.card_sim = CardTerminalSimulator(processing_s=0.05)
        self.printer_sim = PrinterSimulator()
        self.urls = {"bv": self.bv_sim.start_tcp(), "card": self.card_sim.start_tcp(),
                     "printer": self.printer_sim.start_tcp()}
        self.till = self.hw = None

    def boot(self):
        hw = Hardware(validator=FilteredValidator(BillValidator(self.urls["bv"], poll_interval_s=0.05), set()),
                      card=PingingCard(CardTerminal(self.urls["card"], timeouts={"purchase": 2, "last_result_total": 2})),
                      printer=ReceiptPrinter(self.urls["printer"]))
        self.till, self.hw = start_payments({"TERMINAL_ID": "T1", "JOURNAL_DB": "journal.sqlite"}, str(self.path),
                                            hardware=hw)
        return self.till

    def crash(self):
        """What SIGKILL leaves: no settling, no closing of payments; the devices keep their state."""
        self.hw.validator.driver.stop()  # the poll thread ends; no command is sent to the device
        self.till.journal_guard.close()  # its retry and probe loops end, as the process's would
        self.till.journal.close()
        self.hw.card.close()

    def stop(self):
        if self.till is not None and not self.till.closed:
            from payments.hardware import stop_payments
            stop_payments(self.till, self.hw)
        for sim in (self.bv_sim, self.card_sim, self.printer_sim):
            sim.stop()

    def records(self, pid):
        return [r for r in read_records(str(self.path / "journal.sqlite")) if r.payment_id == pid]


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.stop()


def cash_payment(till):
    pid = till.create(SERVICE, PAYER)
    till.choose_cash(pid)
    return pid


def feed(rig, till, pid, amount):
    before = till.payment(pid).credited_kop
    wait_until(lambda: rig.bv_sim.insert_bill(amount), what="validator accepting")
    wait_until(lambda: till.payment(pid).credited_kop == before + amount, what="credit")


def test_crash_after_stacked_cash_gives_partial_with_recovered_copy(rig):
    till = rig.boot()
    pid = cash_payment(till)
    wait_until(lambda: till.availability()["cash"], what="cash")
    feed(rig, till, pid, 5000)
    rig.crash()
    till = rig.boot()
    payment = till.payment(pid)
    assert payment.status == "partial" and payment.voucher_out_kop == 5000 and payment.recovered
    assert payment.settled and till.ready
    text = rig.printer_sim.received_text()
    assert "КОПІЯ / RECOVERED" in text and payment.voucher_code in text
    assert [c["rule"] for c in till.recovery_cases] == ["settle_open"]


def test_crash_while_stacking_credits_the_bill_when_it_lands(tmp_path):
    rig = Rig(tmp_path, stack_time_s=1.5)
    try:
        till = rig.boot()
        pid = cash_payment(till)
        wait_until(lambda: rig.bv_sim.insert_bill(5000), what="accepting")
        wait_until(lambda: till.payment(pid).stack_pending_kop == 5000, what="stack intent journaled")
        wait_until(lambda: rig.bv_sim.snapshot()["state"] == "stacking", what="device stacking")
        rig.crash()
        till = rig.boot()
        payment = till.payment(pid)
        assert rig.bv_sim.snapshot()["cassette_kop"] == [5000]
        assert payment.credited_kop == 5000 and payment.status == "partial"
        kinds = [r.kind for r in rig.records(pid)]
        assert kinds.count("bill_stacked") == 1
    finally:
        rig.stop()


def test_crash_with_unacknowledged_stacked_answer(rig):
    """The device says 0x81 but the host dies before journaling it (so before its ACK): the next
    host still gets the credit, because the driver ACKs only after the journal has the bill."""
    till = rig.boot()
    pid = cash_payment(till)
    driver = rig.hw.validator.driver
    drop_subscribers(driver)
    # this host "dies" at the stacked event: it never journals it, and its ACKs are lost with it
    driver.subscribe(lambda e: till.on_validator_event(e) if e.kind != "stacked" else None)
    rig.bv_sim.lose_next_acks(1000)
    wait_until(lambda: rig.bv_sim.insert_bill(2000), what="accepting")
    wait_until(lambda: till.payment(pid).stack_pending_kop == 2000, what="stack intent")
    wait_until(lambda: rig.bv_sim.snapshot()["cassette_kop"] == [2000], what="bill in cassette")
    rig.crash()
    rig.bv_sim.lose_next_acks(0)
    till = rig.boot()
    assert till.payment(pid).credited_kop == 2000
    assert [r.kind for r in rig.records(pid)].count("bill_stacked") == 1


def test_crash_during_card_purchase_resolved_from_last_result(rig):
    till = rig.boot()
    pid = till.create(SERVICE, PAYER)
    # the intent is journaled, the terminal approves, the kiosk dies before the answer is journaled
    till.dispatch(pid, "choose_card", {})
    till.wait_idle()
    wait_until(lambda: till.payment(pid).settled, what="paid")
    # a second payment is killed after its intent: the terminal never got that Purchase
    pid2 = till.create(SERVICE, PAYER)
    till.journal.append(pid2, "choose_card", {})
    till.journal.append(pid2, "card_intent", {"amount_kop": 7400})
    rig.crash()
    till = rig.boot()
    assert till.payment(pid).status == "paid"
    second = till.payment(pid2)
    assert second.status == "voided" and second.recovered and second.credited_kop == 0
    assert len(rig.card_sim.purchases("approved")) == 1  # no second Purchase from recovery
    assert len([m for m in rig.card_sim.received if m.get("method") == "Purchase"]) == 1


def test_crash_after_approval_before_result_is_journaled(rig):
    till = rig.boot()
    pid = till.create(SERVICE, PAYER)
    till.journal.append(pid, "choose_card", {})
    till.journal.append(pid, "card_intent", {"amount_kop": 7400})
    result = CardTerminal(rig.urls["card"]).purchase(7400)  # the terminal approves; the kiosk never hears
    assert result.status == "approved"
    rig.crash()
    till = rig.boot()
    payment = till.payment(pid)
    assert payment.status == "paid" and payment.card["rrn"] == result.rrn and payment.recovered
    assert "КОПІЯ / RECOVERED" in rig.printer_sim.received_text()


def test_interrupted_print_is_reprinted_as_copy(rig):
    till = rig.boot()
    rig.printer_sim.set_silent(True)
    pid = till.create(SERVICE, PAYER)
    till.journal.append(pid, "choose_card", {})
    till.journal.append(pid, "card_intent", {"amount_kop": 7400})
    till.journal.append(pid, "card_result", {"status": "approved", "amount_kop": 7400, "rrn": "1", "invoice_number": "x1"})
    till.journal.append(pid, "print_intent", {"kind": "receipt"})
    rig.crash()
    rig.printer_sim.set_silent(False)
    till = rig.boot()
    payment = till.payment(pid)
    assert payment.receipt == "printed" and payment.prints == 2
    assert "КОПІЯ / RECOVERED" in rig.printer_sim.received_text()
    assert till.recovery_cases[-1]["rule"] == "reprint"


def test_validator_power_cycle_with_bill_in_stacker_is_credited(tmp_path):
    rig = Rig(tmp_path, stack_time_s=1.0)
    try:
        till = rig.boot()
        pid = cash_payment(till)
        wait_until(lambda: rig.bv_sim.insert_bill(5000), what="accepting")
        wait_until(lambda: rig.bv_sim.snapshot()["state"] == "stacking", what="stacking")
        rig.bv_sim.power_cycle(off_s=0.2)
        wait_until(lambda: till.payment(pid).credited_kop == 5000, what="credit after power-up", timeout=10)
        wait_until(lambda: rig.bv_sim.snapshot()["cassette_kop"] == [5000], what="RESET finishes the stack")
        assert any("powerup_bill_in_stacker" in i for i in till.payment(pid).incidents)
    finally:
        rig.stop()


def test_every_journal_event_replays(rig):
    till = rig.boot()
    pid = cash_payment(till)
    feed(rig, till, pid, 5000)
    feed(rig, till, pid, 5000)
    wait_until(lambda: till.payment(pid).settled, what="settled")
    live = till.payment(pid)
    from payments.hardware import stop_payments
    stop_payments(till, rig.hw)
    till = rig.boot()
    assert till.payment(pid) == live
    assert till.recovery_cases == []
