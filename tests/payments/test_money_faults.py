"""Money under faults: a journal that cannot be written (a real full file system, a journal file
made read-only), payments abandoned with credit, voucher code guessing, wall-clock steps.

The full and read-only file systems are real: a small tmpfs, and an ext4 image on a loop device
with the journal files made immutable (``chattr +i``: root ignores permission bits, and a
read-only remount is refused while SQLite holds the files open for writing)."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from devices.events import DeviceEvent
from payments.journal import JournalError, read_records
from payments.taxid import Payer
from tests.fsfaults import fill
from tests.helpers import service_login
from tests.payments.helpers import RNOKPP, SERVICE, Kiosk, make_app, wait_until
from terminal.state import state

STACKED = "bill_stacked"


# ============================================================================ file systems
def _run(*cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


@pytest.fixture
def small_fs(tmp_path):
    """A 8 MiB tmpfs for the journal alone (the rest of the instance stays on the normal disk)."""
    mount = tmp_path / "journal-fs"
    mount.mkdir()
    _run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount))
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture
def ext4_fs(tmp_path):
    """A small ext4 file system on a loop device (it supports the immutable attribute)."""
    image, mount = tmp_path / "journal.img", tmp_path / "journal-ext4"
    mount.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(16 * 1024 * 1024)
    _run("mkfs.ext4", "-q", "-F", str(image))
    _run("mount", "-o", "loop", str(image), str(mount))
    yield mount
    for name in os.listdir(mount):
        subprocess.run(["chattr", "-i", str(mount / name)], capture_output=True)
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def new_payment(kiosk, service=SERVICE) -> str:
    """A payment on the method screen, created the way the confirm view does."""
    return kiosk.till.create(state(kiosk.app).catalogue.service(service),
                             Payer("Шевченко", "rnokpp", RNOKPP))


def start_cash(kiosk) -> str:
    """A cash payment owned by ``kiosk.client``'s session."""
    pid = new_payment(kiosk)
    kiosk.till.choose_cash(pid)
    with kiosk.client.session_transaction() as session:
        session["pay_payment"] = pid
    return pid


def journal_kiosk(tmp_path, journal_dir, **extra) -> Kiosk:
    return Kiosk(make_app(tmp_path / "instance", JOURNAL_DB=str(journal_dir / "journal.sqlite"), **extra))


def credits(kiosk, pid, amount_kop=5000):
    """The journal's credits of ``amount_kop`` bills to ``pid``."""
    return [r for r in read_records(kiosk.till.journal.path)
            if r.payment_id == pid and r.kind == STACKED and r.data.get("amount_kop") == amount_kop]


def stack_slowly(kiosk):
    """The simulated validator keeps the next bill in its stacking state until released."""
    kiosk.validator.stack_time_s = 600.0


def release_stack(kiosk):
    with kiosk.validator.lock:
        kiosk.validator.until = time.monotonic()


def bill_stacked_unacknowledged(sim) -> bool:
    """The simulated validator still answers 0x81 (its 'stacked' has not been ACKed)."""
    return sim.sticky is not None and sim.sticky.name == "bill_stacked"


def bill_stacking(kiosk, amount):
    def check():
        p = kiosk.payment()
        return p.stack_pending_kop == amount and kiosk.validator.state.name == "stacking"
    wait_until(check, what="bill stacking")


def journal_health(kiosk):
    response = kiosk.client.get("/healthz")
    return response.status_code, response.get_json()["checks"]["journal"]


# ============================================================================ journal faults
def test_disk_full_while_a_bill_stacks_no_ack_then_credited_once(tmp_path, small_fs):
    kiosk = journal_kiosk(tmp_path, small_fs)
    sim = kiosk.validator
    filler = None
    try:
        pid = start_cash(kiosk)
        kiosk.pay_bills(2000)
        waiting = kiosk.app.test_client()  # the next visitor, on the method screen already
        assert kiosk.payer(client=waiting).status_code == 302
        stack_slowly(kiosk)
        kiosk.insert(5000)
        bill_stacking(kiosk, 5000)  # the stack intent is on disk, the bill is on its way in
        filler = fill(small_fs)
        release_stack(kiosk)
        wait_until(lambda: kiosk.till.journal_fault, what="journal fault")
        # the bill is in the cassette, the journal could not take it: no ACK, the device repeats it
        assert kiosk.validator.snapshot()["cassette_kop"] == [2000, 5000]
        polls_before = kiosk.validator.commands.count("POLL")
        wait_until(lambda: kiosk.validator.commands.count("POLL") > polls_before + 2, timeout=20, what="repeated polls")
        assert bill_stacked_unacknowledged(sim)
        assert kiosk.payment().credited_kop == 2000
        # the kiosk says so: the visitor's screen, a new visitor, the health check, service mode
        status = kiosk.status()
        assert "не може приймати оплату" in status["fault"] and "cannot" not in status["fault"]
        code, check = journal_health(kiosk)
        assert code == 503 and check["ok"] is False and "full" in check["fault"]
        page = kiosk.app.test_client().get("/pay/service/" + SERVICE)
        assert page.status_code == 503 and "не може приймати оплату" in page.get_data(as_text=True)
        assert "Traceback" not in page.get_data(as_text=True)
        confirm = waiting.get("/pay/confirm").get_data(as_text=True)
        assert 'id="journal-fault"' in confirm and "не може приймати оплату" in confirm
        assert kiosk.begin("cash", client=waiting).status_code == 503
        assert kiosk.till.availability()["cash"] is False and kiosk.till.availability()["card"] is False
        staff = kiosk.app.test_client()
        assert service_login(staff, "111111").status_code == 302  # cashier
        svc = staff.get("/service/pay/payments").get_data(as_text=True)
        assert 'id="journal-fault"' in svc and "Журнал платежів не записується" in svc
        # space again: the repeated 0x81 is journaled, credited once, acknowledged
        os.remove(filler)
        filler = None
        wait_until(lambda: kiosk.payment().credited_kop == 7000, timeout=30, what="credit after the disk has space")
        wait_until(lambda: not bill_stacked_unacknowledged(sim), timeout=30, what="ACK")
        wait_until(lambda: kiosk.till.journal_fault is None, timeout=30, what="fault cleared")
        assert len(credits(kiosk, pid)) == 1 and kiosk.payment().bills == (2000, 5000)
        assert journal_health(kiosk)[1]["ok"] is True
        # the payment goes on: the validator takes the rest
        kiosk.validator.stack_time_s = 0.05
        kiosk.pay_bills(2000)
        kiosk.settle()
        p = kiosk.payment()
        assert p.status == "paid" and p.credited_kop == 9000 and p.voucher_out_kop == 1600
        assert sorted(kiosk.validator.snapshot()["cassette_kop"]) == sorted(p.bills)
    finally:
        if filler:
            os.remove(filler)
        kiosk.close()


def test_journal_made_read_only_mid_payment(tmp_path, ext4_fs):
    kiosk = journal_kiosk(tmp_path, ext4_fs)
    sim = kiosk.validator
    files = [str(ext4_fs / "journal.sqlite"), str(ext4_fs / "journal.sqlite-wal")]
    locked = False
    try:
        pid = start_cash(kiosk)
        kiosk.pay_bills(2000)
        stack_slowly(kiosk)
        kiosk.insert(5000)
        bill_stacking(kiosk, 5000)
        _run("chattr", "+i", *files)
        locked = True
        release_stack(kiosk)
        wait_until(lambda: kiosk.till.journal_fault, what="journal fault")
        polls_before = kiosk.validator.commands.count("POLL")
        wait_until(lambda: kiosk.validator.commands.count("POLL") > polls_before + 2, timeout=20, what="repeated polls")
        assert bill_stacked_unacknowledged(sim) and kiosk.payment().credited_kop == 2000
        assert journal_health(kiosk)[0] == 503
        # Cancel cannot be journaled either: refused, nothing changes
        with pytest.raises(JournalError):
            kiosk.till.cancel(pid)
        assert kiosk.payment().status == "cash"
        _run("chattr", "-i", *files)
        locked = False
        wait_until(lambda: kiosk.payment().credited_kop == 7000, timeout=30, what="credit once writable")
        wait_until(lambda: kiosk.till.journal_fault is None and not bill_stacked_unacknowledged(sim),
                   what="fault cleared and bill acknowledged")
        assert len(credits(kiosk, pid)) == 1
        kiosk.till.cancel(pid)
        kiosk.settle()
        assert kiosk.payment().status == "voucher" and kiosk.payment().voucher_out_kop == 7000
    finally:
        if locked:
            subprocess.run(["chattr", "-i", *files], capture_output=True)
        kiosk.close()


def test_bill_stacked_in_a_journal_fault_is_credited_by_recovery_after_restart(tmp_path, small_fs):
    """The kiosk stops while the journal is full and the validator still repeats the bill: the
    next start (disk freed) credits it exactly once."""
    kiosk = journal_kiosk(tmp_path, small_fs)
    sim = kiosk.validator
    filler = None
    try:
        pid = start_cash(kiosk)
        kiosk.pay_bills(2000)
        stack_slowly(kiosk)
        kiosk.insert(5000)
        bill_stacking(kiosk, 5000)
        filler = fill(small_fs)
        release_stack(kiosk)
        wait_until(lambda: kiosk.till.journal_fault and bill_stacked_unacknowledged(sim), what="fault")
        # the kiosk process ends; the validator (the hardware) keeps its state
        hw = state(kiosk.app).hardware
        hw.validator.stop()
        hw.simulators.pop("bill_validator")
        kiosk.close()
        assert bill_stacked_unacknowledged(sim)
        os.remove(filler)
        filler = None
        again = journal_kiosk(tmp_path, small_fs, BILL_VALIDATOR_URL=sim.url)
        try:
            wait_until(lambda: again.till.ready, what="recovery")
            p = again.till.payment(pid)
            assert p.final and p.credited_kop == 7000 and p.bills == (2000, 5000)
            assert len(credits(again, pid)) == 1
            wait_until(lambda: not bill_stacked_unacknowledged(sim), what="ACK by the new kiosk")
        finally:
            again.close()
    finally:
        if filler:
            os.remove(filler)
        sim.stop()


class FailingJournal:
    """A journal whose disk has gone: every write raises."""

    def __init__(self, journal):
        self.journal = journal
        self.path = journal.path

    def append(self, *a, **kw):
        from payments.journal import JournalError
        raise JournalError("journal write failed: disk I/O error")

    def __getattr__(self, name):
        return getattr(self.journal, name)


def test_validator_event_that_cannot_be_journaled_raises_and_redelivery_credits_once(tmp_path):
    kiosk = Kiosk(make_app(tmp_path / "instance", BILL_VALIDATOR_URL=""))
    try:
        till = kiosk.till
        pid = new_payment(kiosk)
        till.cash_id = pid
        till.dispatch(pid, "choose_cash", {"bill_table": [2000, 5000]})
        till.dispatch(pid, "stack_intent", {"amount_kop": 5000})
        event = DeviceEvent(41, "bill_validator", "stacked", {"amount_kop": 5000, "bill_type": 3}, 0.0)
        real = till.journal
        till.journal = FailingJournal(real)
        with pytest.raises(Exception):
            till.on_validator_event(event)  # the driver must not ACK
        assert till.payment(pid).credited_kop == 0 and till.journal_fault
        assert till.availability()["cash"] is False
        till.journal = real
        till.on_validator_event(event)  # the repeat, same seq: now durable
        till.on_validator_event(event)  # a second repeat of the same seq changes nothing
        assert till.payment(pid).credited_kop == 5000
        assert len(credits(kiosk, pid)) == 1 and not till.payment(pid).incidents
        wait_until(lambda: till.journal_fault is None, what="fault cleared")
        # an event this till does not know (a 'stacked' without bill type): incident, no credit
        till.on_validator_event(DeviceEvent(42, "bill_validator", "stacked_unknown", {"bill_type": None}, 0.0))
        assert till.payment(pid).credited_kop == 5000
        assert [r.kind for r in read_records(real.path) if r.payment_id == "device"][-1] == "validator_stacked_unknown"
    finally:
        kiosk.close()


def test_kiosk_started_on_an_unwritable_journal_takes_no_money_until_it_writes(tmp_path, ext4_fs):
    """The journal cannot be written when the kiosk starts (here: its files immutable): it
    starts anyway, takes no money, says why, and recovers once the journal writes again."""
    kiosk = journal_kiosk(tmp_path, ext4_fs)
    pid = start_cash(kiosk)
    kiosk.pay_bills(2000)
    kiosk.close()  # the kiosk stops with the payment open
    # the database and its WAL; not the -shm index, which SQLite maps into memory (a write to an
    # immutable mapping is a SIGBUS, not an error SQLite could report)
    files = [str(ext4_fs / name) for name in ("journal.sqlite", "journal.sqlite-wal") if (ext4_fs / name).exists()]
    _run("chattr", "+i", *files)
    locked = True
    again = journal_kiosk(tmp_path, ext4_fs)
    try:
        till = again.till
        assert till.journal_fault and not till.ready
        code, check = journal_health(again)
        assert code == 503 and check["ok"] is False
        page = again.client.get("/pay/service/" + SERVICE)
        assert page.status_code == 503 and "не може приймати оплату" in page.get_data(as_text=True)
        assert till.payment(pid).status == "cash"  # nothing settled without the journal
        _run("chattr", "-i", *files)
        locked = False
        wait_until(lambda: till.ready, timeout=30, what="recovery once the journal writes")
        p = till.payment(pid)
        assert p.status == "partial" and p.voucher_out_kop == 2000 and p.credited_kop == 2000
        assert journal_health(again)[1]["ok"] is True
        boots = [r.boot for r in read_records(till.journal.path)]
        assert boots == sorted(boots) and boots[-1] == till.journal.boot == 2
    finally:
        if locked:
            subprocess.run(["chattr", "-i", *files], capture_output=True)
        again.close()


def test_card_approval_during_a_journal_fault_is_booked_once_when_it_writes(tmp_path, small_fs):
    """The bank approved while the journal could not take the result: the result is kept and
    journaled once the journal writes (never lost, never a second Purchase)."""
    kiosk = journal_kiosk(tmp_path, small_fs)
    filler = None
    try:
        pid = new_payment(kiosk)
        with kiosk.client.session_transaction() as session:
            session["pay_payment"] = pid
        kiosk.card.processing_s = 600.0
        kiosk.till.choose_card(pid)
        wait_until(lambda: kiosk.payment().card_pending and kiosk.card.pending, what="purchase in the terminal")
        filler = fill(small_fs)
        with kiosk.card.lock:
            kiosk.card.pending["due"] = time.monotonic()  # the visitor's card is approved now
        wait_until(lambda: kiosk.till.journal_fault, what="journal fault")
        wait_until(lambda: kiosk.card.purchases("approved"), what="approval")
        assert kiosk.payment().status == "card" and kiosk.payment().card_pending
        assert kiosk.status()["fault"]
        os.remove(filler)
        filler = None
        kiosk.settle()
        p = kiosk.payment()
        assert p.status == "paid" and p.card["invoice_number"] == kiosk.card.purchases("approved")[0]["invoice"]
        results = [r for r in read_records(kiosk.till.journal.path) if r.payment_id == pid and r.kind == "card_result"]
        assert [r.data["status"] for r in results] == ["approved"]
        assert len(kiosk.card.purchases("approved")) == 1 and len(kiosk.card.purchases("failed")) == 0
        wait_until(lambda: kiosk.till.journal_fault is None, timeout=30, what="fault cleared")
    finally:
        if filler:
            os.remove(filler)
        kiosk.close()


class FlakyJournal(FailingJournal):
    """Lets ``passes`` writes through, then the disk goes."""

    def __init__(self, journal, passes):
        super().__init__(journal)
        self.passes = passes

    def append(self, *a, **kw):
        if self.passes > 0:
            self.passes -= 1
            return self.journal.append(*a, **kw)
        return super().append(*a, **kw)


def test_orphan_bill_whose_journaling_failed_midway_is_completed_by_its_repeat(tmp_path):
    """A stacked bill no payment owns (seen at start-up) becomes an "unassigned cash" record in
    three journal writes; the disk fails after two. The repeat completes that record: one
    record, one credit, one recovery case, one voucher."""
    kiosk = Kiosk(make_app(tmp_path / "instance", BILL_VALIDATOR_URL=""))
    try:
        till = kiosk.till
        real = till.journal
        event = DeviceEvent(7, "bill_validator", "stacked", {"amount_kop": 20000, "bill_type": 4}, 0.0)
        till.journal = FlakyJournal(real, passes=2)
        with pytest.raises(Exception):
            till.on_validator_event(event)
        till.journal = real
        till.on_validator_event(event)
        orphans = [pid for pid in till.order if not till.payments[pid].service_id]
        assert len(orphans) == 1
        p = till.payments[orphans[0]]
        assert p.credited_kop == 20000 and p.bills == (20000,) and p.voucher_out_kop == 20000 and p.final
        assert len(credits(kiosk, orphans[0], 20000)) == 1
        assert [c["rule"] for c in till.recovery_cases] == ["orphan_bill"]
        assert till.vouchers[p.voucher_code].amount_kop == 20000
    finally:
        kiosk.close()


def test_card_purchase_whose_intent_cannot_be_journaled_is_never_sent(tmp_path):
    """choose_card is on disk, then the disk goes: the Purchase must not reach the terminal; the
    attempt ends "nothing charged" once the journal writes, and the terminal is free again."""
    kiosk = Kiosk(make_app(tmp_path / "instance"))
    try:
        till = kiosk.till
        real = till.journal
        till.journal = FailingJournal(real)
        with pytest.raises(JournalError):
            new_payment(kiosk)  # a payment that could not be created takes no receipt number
        till.journal = real
        wait_until(lambda: till.journal_fault is None, timeout=30, what="fault cleared")
        pid = new_payment(kiosk)
        with kiosk.client.session_transaction() as session:
            session["pay_payment"] = pid
        till.journal = FlakyJournal(real, passes=1)  # choose_card passes, card_intent does not
        till.choose_card(pid)
        wait_until(lambda: till.journal_fault, what="journal fault")
        assert kiosk.status()["fault"] and till.payment(pid).status == "card"
        till.journal = real
        wait_until(lambda: till.payment(pid).status == "new", timeout=30, what="attempt ended")
        p = till.payment(pid)
        assert p.card_error == "error" and p.card is None and not p.card_pending
        assert [j for j in kiosk.card.journal if j["method"] == "Purchase"] == []  # never sent
        wait_until(lambda: till.journal_fault is None, timeout=30, what="fault cleared")
        assert [r.data["receipt_seq"] for r in read_records(real.path) if r.kind == "created"] == [1]
    finally:
        kiosk.close()
