"""Two figures for the payment path.

1. stacked_to_screen: the kiosk app runs with its built-in simulators behind a real HTTP server
   on loopback; a visitor session starts a cash payment and long-polls the status endpoint the
   way pay.js does; bills are pushed into the simulated validator. For every bill: the time from
   the validator reaching "stacked" (simulator clock) to the status answer that shows the new
   credit. Target: p99 <= validator poll interval + 50 ms.
2. journal throughput: durable events per second through the journal's real writer thread
   (several callers, each waiting for its event to be on disk), beside a bare SQLite WAL
   synchronous=FULL single-row insert-and-commit loop on the same disk in the same run.
   Target: journal_ratio >= 0.5.

Last line: stacked_to_screen_p99_ms=… journal_commits_per_s=… raw_sqlite_commits_per_s=… journal_ratio=…
"""
from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SERVICE = "passport-abroad-urgent"  # the largest sample fee: many bills per payment


def percentile(values, q):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]


def measure_screen(bills: int, workdir: str) -> tuple[list[float], float]:
    from terminal import close_app, create_app
    from terminal.state import state as app_state
    from terminal.server import BackgroundServer

    app = create_app({"INSTANCE_PATH": os.path.join(workdir, "instance"), "SECRET_KEY": "bench",
                      "BILL_VALIDATOR_URL": "sim", "CARD_TERMINAL_URL": "", "PRINTER_URL": "sim"})
    till = app_state(app).till
    sim = app_state(app).hardware.simulators["bill_validator"]
    sim.accept_time_s, sim.stack_time_s = 0.02, 0.04  # a fast validator: more samples per second
    poll_interval_s = till.validator.poll_interval_s
    server = BackgroundServer(app)
    base = server.url
    latencies: list[float] = []
    rnd = random.Random(1)
    try:
        while len(latencies) < bills:
            jar = http.cookiejar.CookieJar()
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
            # Every POST carries the session's CSRF token, as the kiosk's forms and pay.js do.
            page = opener.open(f"{base}/pay/service/{SERVICE}").read().decode()
            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
            form = urllib.parse.urlencode({"surname": "Шевченко", "id_kind": "rnokpp", "id_value": "3652504575",
                                           "csrf_token": token})
            opener.open(f"{base}/pay/service/{SERVICE}", form.encode()).read()
            page = opener.open(f"{base}/pay/confirm").read().decode()
            draft = re.search(r'name="draft" value="([^"]+)"', page).group(1)
            response = opener.open(f"{base}/pay/confirm", urllib.parse.urlencode(
                {"draft": draft, "method": "cash", "csrf_token": token}).encode())
            pid = response.geturl().rstrip("/").split("/")[-1]
            response.read()
            status_url = f"{base}/pay/p/{pid}/status"
            state = json.loads(opener.open(status_url).read())
            version = state["version"]
            while not state["final"] and len(latencies) < bills:
                credited = state["credited_kop"]
                stacked_before = len(sim.stacked_at)
                # STACK leaves at a poll tick; a stacking time that varies (as real mechanics do)
                # keeps "stacked" from being phase-locked to the next poll
                sim.stack_time_s = rnd.uniform(0.02, 0.02 + 2 * poll_interval_s)
                deadline = time.monotonic() + 5
                while not sim.insert_bill(2000):
                    if time.monotonic() > deadline:
                        raise SystemExit("validator did not accept a bill")
                    time.sleep(0.002)
                while True:  # long poll, exactly as pay.js does
                    state = json.loads(opener.open(f"{status_url}?since={version}").read())
                    version = state["version"]
                    if state["credited_kop"] > credited:
                        seen = time.monotonic()
                        break
                latencies.append((seen - sim.stacked_at[stacked_before]) * 1000)
            if not state["final"]:
                opener.open(f"{base}/pay/p/{pid}/cancel", urllib.parse.urlencode({"csrf_token": token}).encode()).read()
            deadline = time.monotonic() + 10
            while not till.payment(pid).settled and time.monotonic() < deadline:
                time.sleep(0.01)
            opener.open(f"{base}/pay/finish", urllib.parse.urlencode({"csrf_token": token}).encode()).read()
    finally:
        server.stop()
        close_app(app)
    return latencies, poll_interval_s


def journal_rate(workdir: str, seconds: float, writers: int) -> float:
    from payments.journal import Journal

    journal = Journal(os.path.join(workdir, "bench-journal.sqlite")).start()
    stop = time.monotonic() + seconds
    counts = [0] * writers
    data = {"amount_kop": 2000, "currency": "UAH", "bill_type": 4}

    def writer(n):
        while time.monotonic() < stop:
            journal.append(f"p{n}", "bill_stacked", data)  # returns once durable
            counts[n] += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    journal.close()
    return sum(counts) / elapsed


def raw_rate(workdir: str, seconds: float) -> float:
    db = sqlite3.connect(os.path.join(workdir, "bench-raw.sqlite"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, at REAL, payment_id TEXT, kind TEXT, data TEXT)")
    payload = json.dumps({"amount_kop": 2000, "currency": "UAH", "bill_type": 4})
    n = 0
    started = time.monotonic()
    stop = started + seconds
    while time.monotonic() < stop:
        db.execute("INSERT INTO t(at, payment_id, kind, data) VALUES (?,?,?,?)", (time.time(), "p", "bill_stacked", payload))
        n += 1  # autocommit: one durable transaction per row
    elapsed = time.monotonic() - started
    db.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bills", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput run")
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="cnap-latency-")
    latencies, poll_s = measure_screen(args.bills, workdir)
    raw = raw_rate(workdir, args.seconds)
    journal = journal_rate(workdir, args.seconds, args.writers)
    p50, p99 = statistics.median(latencies), percentile(latencies, 99)
    target = poll_s * 1000 + 50
    print(f"bills={len(latencies)} poll_interval_ms={poll_s * 1000:.0f} stacked_to_screen_p50_ms={p50:.1f} "
          f"max_ms={max(latencies):.1f} target_p99_ms={target:.0f} writers={args.writers}")
    print(f"stacked_to_screen_p99_ms={p99:.1f} journal_commits_per_s={journal:.0f} "
          f"raw_sqlite_commits_per_s={raw:.0f} journal_ratio={journal / raw:.2f}")


if __name__ == "__main__":
    main()
