"""Kill the kiosk at random moments while it takes cash and card payments; check that no
kopiyka is lost or doubled.

Three kinds of process:
* the simulators (bill validator, card terminal, printer) in one process that lives for the
  whole run and keeps the devices' own ledgers: every bill physically in the cassette, every
  purchase the "bank" approved;
* the kiosk (journal, drivers, till, start-up recovery) with a visitor loop that pays by cash
  (bills pushed into the simulated validator) and by card (approve, decline, lost answer,
  timeout, customer cancel), cancels sometimes; it is SIGKILLed at random moments and restarted;
* this driver, which also power-cycles the simulated validator while the kiosk runs, and in
  disk-full phases fills the file system that holds the journal (a tmpfs the bench mounts; it
  needs root) while the kiosk takes money: the journal cannot be written, the kiosk must stop
  taking money without acknowledging any bill, and either recover live once space is freed or
  be killed while full and recover at the next start.

At the end the kiosk starts once more (recovery only) and the invariants are checked against
the simulators' ledgers:
  every bill in the cassette is credited in exactly one payment (Σ stacked = Σ credited);
  every approved, non-voided card purchase is in exactly one paid payment; none twice;
  every payment is settled.
Last line: kills=… payments=… lost_kop=0 doubled=0 unsettled=0 disk_full_phases=…
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.fsfaults import fill  # noqa: E402  (the tests' real-ENOSPC helper)

AMOUNTS = [7400, 2000, 3500, 12000, 85, 62400]
BILLS = [2000, 5000, 10000, 20000, 50000, 100000]


# ============================================================================ simulators
def serve_simulators(url_file: str) -> None:
    from devices.sim import start_all

    sims = start_all("127.0.0.1", http_port=0,
                     bill_validator={"accept_time_s": 0.05, "stack_time_s": 0.12, "return_time_s": 0.08},
                     card_terminal={"processing_s": 0.1})
    with open(url_file + ".tmp", "w") as fh:
        json.dump({"urls": sims.urls, "http": sims.http_url}, fh)
    os.replace(url_file + ".tmp", url_file)
    signal.signal(signal.SIGTERM, lambda *a: (sims.stop(), os._exit(0)))
    while True:
        time.sleep(3600)


def control(http: str, device: str, action: str, **body):
    data = json.dumps(body).encode()
    request = urllib.request.Request(f"{http}/{device}/{action}", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]


def snapshot(http: str) -> dict:
    with urllib.request.urlopen(f"{http}/status", timeout=5) as response:
        return json.loads(response.read())


# ============================================================================ kiosk
def mark_journal_faults(till, directory: str) -> None:
    """One marker file (outside the journal's file system) per journal fault this kiosk saw, so
    the driver can tell a disk-full phase that hit a write from one the WAL's slack absorbed."""
    seen = False
    while True:
        fault = till.journal_fault is not None
        if fault and not seen:
            open(os.path.join(directory, f"journal-fault-{os.getpid()}-{time.monotonic_ns()}"), "w").close()
        seen = fault
        time.sleep(0.02)


def kiosk(instance: str, urls: dict, http: str, seed: int, settle_only: bool) -> None:
    from devices.bill_validator.driver import BillValidator
    from devices.card_terminal.driver import CardTerminal
    from devices.printer.driver import ReceiptPrinter
    from payments.hardware import FilteredValidator, Hardware, PingingCard, start_payments
    from payments.taxid import Payer
    from payments.till import Busy, Unavailable
    from terminal.catalogue.model import Commission, Fee, PaymentDetails, Service

    hw = Hardware(validator=FilteredValidator(BillValidator(urls["bill_validator"], poll_interval_s=0.05,
                                                            lost_after_polls=10), set(BILLS)),
                  card=PingingCard(CardTerminal(urls["card_terminal"],
                                                timeouts={"purchase": 1.0, "last_result_total": 10.0})),
                  printer=ReceiptPrinter(urls["printer"]))
    till, hw = start_payments({"TERMINAL_ID": "TORTURE", "JOURNAL_DB": "journal.sqlite"}, instance, hardware=hw)
    print("READY", flush=True)
    if settle_only:
        unsettled = till.unsettled_ids()
        print(json.dumps({"unsettled": unsettled}), flush=True)
        os._exit(0)
    threading.Thread(target=mark_journal_faults, args=(till, os.path.dirname(instance)), daemon=True).start()
    rnd = random.Random(seed)
    details = PaymentDetails("ГУК у м.Києві", "37993783", "UA583808050000026009702978805", "101", {"uk": "Збір"})
    payer = Payer("Шевченко", "rnokpp", "3652504575")
    n = 0
    while True:
        n += 1
        amount = rnd.choice(AMOUNTS)
        service = Service(id=f"s{amount}", name={"uk": "Збір"}, short={}, category="c", provider={}, documents=(),
                          term={}, result={}, receive_ways=(), legal_acts=(),
                          fee=Fee(amount, {"uk": "-"}, details, Commission()))
        try:
            pid = till.create(service, payer)
        except (Busy, Unavailable):
            time.sleep(0.05)
            continue
        use_card = rnd.random() < 0.4 and till.availability()["card"]
        try:
            if use_card:
                control(http, "card_terminal", "set_behaviour",
                        behaviour=rnd.choice(["approve"] * 5 + ["decline", "lost_response", "customer_cancel",
                                                                  "timeout"]))
                till.choose_card(pid)
                deadline = time.monotonic() + 20
                while not till.payment(pid).settled and time.monotonic() < deadline:
                    p = till.payment(pid)
                    if p.status == "new" and not p.card_pending and not p.card_resolving:
                        till.cancel(pid)
                    time.sleep(0.02)
            else:
                till.choose_cash(pid)
                cancel_after = rnd.choice([None, None, None, 1, 2])
                inserted = 0
                deadline = time.monotonic() + 30
                while not till.payment(pid).final and time.monotonic() < deadline:
                    p = till.payment(pid)
                    if cancel_after is not None and inserted >= cancel_after and not p.cancel_requested:
                        till.cancel(pid)
                        continue
                    if p.accepting_bills and not p.bill_in_flight:
                        wanted = sorted(p.wanted_bills())
                        if wanted and control(http, "bill_validator", "insert_bill", amount_kop=rnd.choice(wanted)):
                            inserted += 1
                    time.sleep(0.03)
                deadline = time.monotonic() + 10
                while not till.payment(pid).settled and time.monotonic() < deadline:
                    time.sleep(0.02)
                if not till.payment(pid).final:
                    till.cancel(pid)
        except Exception:  # faults (validator power-cycled, busy): try again with a new payment
            time.sleep(0.05)


# ============================================================================ driver
def check(instance: str, http: str) -> dict:
    from payments.journal import read_records
    from payments.machine import Event, handle

    states = {}
    faults_cleared = 0
    for record in read_records(os.path.join(instance, "journal.sqlite")):
        if record.kind == "journal_recovered":
            faults_cleared += 1
        if record.payment_id in ("device", "recovery", "encashment", "shift") or record.payment_id.startswith("voucher:"):
            continue
        try:
            states[record.payment_id], _ = handle(states.get(record.payment_id), Event(record.kind, record.data))
        except Exception as exc:
            print(f"replay error {record.id} {record.kind}: {exc}", file=sys.stderr)
    snap = snapshot(http)
    cassette = Counter(snap["bill_validator"]["cassette_kop"])
    credited = Counter(b for p in states.values() for b in p.bills)
    lost = sum(k * v for k, v in (cassette - credited).items())
    doubled = sum((credited - cassette).values())
    approved = [j for j in snap["card_terminal"]["journal"] if j["method"] == "Purchase" and j["status"] == "approved"]
    booked = Counter(p.card.get("invoice_number") for p in states.values() if p.card and p.status == "paid")
    for purchase in approved:
        if booked[purchase["invoice"]] == 0:
            lost += purchase["amount_kop"]
            print(f"approved purchase not booked: {purchase}", file=sys.stderr)
    doubled += sum(n - 1 for n in booked.values() if n > 1)
    approved_invoices = {p["invoice"] for p in approved}
    doubled += sum(1 for invoice in booked if invoice not in approved_invoices)  # booked but voided/unknown
    unsettled = sum(1 for p in states.values() if not p.settled)
    if lost or doubled:
        print(f"cassette={sorted(cassette.elements())} credited={sorted(credited.elements())}", file=sys.stderr)
    return {"payments": len(states), "lost_kop": lost, "doubled": doubled, "unsettled": unsettled,
            "bills": sum(cassette.values()), "card_approved": len(approved), "faults_cleared": faults_cleared}


def start_kiosk(instance, urls_file, seed, settle_only=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--role", "kiosk", "--instance", instance,
           "--urls", urls_file, "--seed", str(seed)] + (["--settle-only"] if settle_only else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)


def wait_ready(proc, timeout=60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            return False
        if line.strip() == "READY":
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-run-s", type=float, default=1.5, help="longest run between two kills")
    parser.add_argument("--power-cycle-every", type=int, default=4, help="power-cycle the validator every Nth run")
    parser.add_argument("--disk-full-every", type=int, default=3,
                        help="fill the journal's file system in every Nth run (0: never; needs root for the tmpfs)")
    parser.add_argument("--role", default="driver", choices=["driver", "sims", "kiosk"])
    parser.add_argument("--instance")
    parser.add_argument("--urls")
    parser.add_argument("--settle-only", action="store_true")
    args = parser.parse_args()
    if args.role == "sims":
        serve_simulators(args.urls)
        return
    if args.role == "kiosk":
        with open(args.urls) as fh:
            info = json.load(fh)
        kiosk(args.instance, info["urls"], info["http"], args.seed, args.settle_only)
        return

    rnd = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="cnap-torture-")
    instance = os.path.join(work, "instance")
    os.makedirs(instance)
    mounted = False
    if args.disk_full_every:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", instance],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"cannot mount a tmpfs for the disk-full phases (root needed; --disk-full-every 0 "
                             f"runs without them): {done.stderr.strip()}")
        mounted = True
    urls_file = os.path.join(work, "urls.json")
    sims = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", "sims", "--urls", urls_file],
                            cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(urls_file):
            if time.monotonic() > deadline:
                raise SystemExit("simulators did not start")
            time.sleep(0.05)
        with open(urls_file) as fh:
            http = json.load(fh)["http"]
        kills = 0
        disk_full_phases = 0
        started = time.monotonic()
        for i in range(args.kills):
            proc = start_kiosk(instance, urls_file, rnd.randrange(1 << 30))
            if not wait_ready(proc):
                proc.kill()
                proc.wait()
                raise SystemExit(f"kiosk did not start (run {i})")
            run_for = rnd.uniform(0.05, args.max_run_s)
            if args.power_cycle_every and i % args.power_cycle_every == 0:
                time.sleep(run_for * rnd.random())
                control(http, "bill_validator", "power_cycle", off_s=0.1)
                run_for *= rnd.random()
            filler = None
            if args.disk_full_every and i % args.disk_full_every == args.disk_full_every - 1:
                time.sleep(run_for * rnd.random())
                filler = fill(instance)
                disk_full_phases += 1
                time.sleep(rnd.uniform(0.2, 1.5))  # the kiosk takes money (or tries to) on a full disk
                if rnd.random() < 0.5:
                    os.remove(filler)  # space again while the kiosk runs: it must recover live
                    filler = None
                    run_for = rnd.uniform(0.3, 2.0)
                else:
                    run_for = rnd.uniform(0.0, 0.5)  # killed while the disk is still full
            time.sleep(run_for)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            if filler is not None:
                os.remove(filler)  # the next start needs a writable journal
            if (i + 1) % 50 == 0:
                print(f"... {i + 1} kills, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
        final = start_kiosk(instance, urls_file, 0, settle_only=True)
        if not wait_ready(final):
            raise SystemExit("final recovery did not start")
        final.communicate(timeout=120)
        result = check(instance, http)
        faults_seen = sum(1 for name in os.listdir(work) if name.startswith("journal-fault-"))
        print(f"bills={result['bills']} card_approved={result['card_approved']} journal_faults_seen={faults_seen} "
              f"journal_faults_cleared_live={result['faults_cleared']} seconds={time.monotonic() - started:.0f}")
        print(f"kills={kills} payments={result['payments']} lost_kop={result['lost_kop']} "
              f"doubled={result['doubled']} unsettled={result['unsettled']} disk_full_phases={disk_full_phases}")
    finally:
        sims.terminate()
        sims.wait(10)
        if mounted:
            subprocess.run(["umount", "-l", instance], capture_output=True)


if __name__ == "__main__":
    main()
