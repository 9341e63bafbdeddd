"""Survey benchmark. Last line: ``answers_per_s=… sync_10000_s=… report_p99_ms=…``.

* answers_per_s — sustained ingestion over real HTTP on loopback: 100 simulated tablets (threads,
  keep-alive connections) against the kiosk app served by waitress (as `cnap kiosk` serves it)
  in a separate process. Like tablet.js, each request carries what queued up since the last
  confirmation: under this load that is 10 answers a request (BATCH). With one answer per
  request the same setup manages about 330 answers/s (printed too): each request costs ~1.4 ms
  of Python in the server (HTTP, Flask, one SQLite transaction; measured in-process) on one core
  under the GIL, on a 2-core machine shared with the 100 simulated tablets.
* sync_10000_s — one tablet that was offline flushes 10,000 queued answers in batches of 500 (the
  batch size tablet.js uses), over HTTP.
* report_p99_ms — the report page (HTML with charts) over a year of data (≥ 500,000 answers in
  the same SQLite file), 200 requests with varied filters, 99th percentile.

Targets: ≥ 1,000 answers/s, sync ≤ 10 s, report p99 ≤ 200 ms. Runs in about a minute.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TABLETS = 100
PER_TABLET = 60
BATCH = 10
SYNC_ANSWERS = 10_000
YEAR_ANSWERS = 520_000
FACES = ["very_bad", "bad", "neutral", "good", "very_good"]
PATHS = {"very_bad": [["why_bad", "waiting"], ["waiting_where", "queue"]], "bad": [["why_bad", "politeness"]],
         "neutral": [["improve", "speed"]], "good": [["liked", "comfort"]], "very_good": [["liked", "speed"]]}
CONFIG = {"TESTING": False, "SECRET_KEY": "bench", "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "",
          "PRINTER_URL": "", "SURVEY_REPEAT_WINDOW_S": 5}


def serve(instance: str, port_queue) -> None:
    from terminal import create_app
    from terminal.server import BackgroundServer

    app = create_app({**CONFIG, "INSTANCE_PATH": instance})
    server = BackgroundServer(app, threads=app.config["HTTP_THREADS"])
    port_queue.put(server.port)
    threading.Event().wait()


def answer(rng: random.Random, at: float) -> dict:
    face = rng.choice(FACES)
    return {"uuid": str(uuid.uuid4()), "survey": "desk", "version": 1, "answered_at": at, "main": face,
            "path": PATHS[face], "nps": rng.randint(0, 10), "comment": None, "lang": "uk"}


def post(conn: http.client.HTTPConnection, token: str, answers: list[dict]) -> list[dict]:
    body = json.dumps({"sent_at": time.time(), "answers": answers})
    conn.request("POST", "/api/survey/answers", body=body,
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
    return json.loads(data)["results"]


def bench_ingestion(port: int, tokens: list[str], batch: int = BATCH, per_tablet: int = PER_TABLET) -> float:
    errors: list[str] = []
    stored = [0]
    lock = threading.Lock()
    start_gate = threading.Barrier(len(tokens) + 1)

    def tablet(i: int, token: str) -> None:
        rng = random.Random(i * 1000 + batch)
        base = 0 if batch > 1 else 1000   # later on the clock than the batched run
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start_gate.wait()
        now = time.time()
        try:
            for k in range(0, per_tablet, batch):
                # 10 s apart on the tablet's clock: no repeat filtering, every answer counted.
                results = post(conn, token, [answer(rng, now - 3 * 86400 + (base + k + j) * 10)
                                             for j in range(batch)])
                with lock:
                    stored[0] += sum(r["status"] == "stored" for r in results)
        except Exception as exc:  # reported below; a bench must not hide failures
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=tablet, args=(i, t)) for i, t in enumerate(tokens)]
    for th in threads:
        th.start()
    start_gate.wait()
    started = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - started
    if errors or stored[0] != len(tokens) * per_tablet:
        raise SystemExit(f"ingestion failed: stored {stored[0]}, errors {errors[:3]}")
    return stored[0] / elapsed


def bench_sync(port: int, token: str) -> float:
    rng = random.Random(99)
    now = time.time()
    queue = [answer(rng, now - 86400 + i * 6) for i in range(SYNC_ANSWERS)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    confirmed = 0
    for i in range(0, len(queue), 500):
        results = post(conn, token, queue[i:i + 500])
        confirmed += sum(r["status"] in ("stored", "duplicate") for r in results)
    elapsed = time.perf_counter() - started
    conn.close()
    if confirmed != SYNC_ANSWERS:
        raise SystemExit(f"sync confirmed only {confirmed}")
    return elapsed


def load_year(store, tablets, admins) -> None:
    """A year of answers written straight into the table, then the roll-ups rebuilt from them."""
    rng = random.Random(2025)
    now = time.time()
    start = now - 365 * 86400
    rows = []
    for i in range(YEAR_ANSWERS):
        tablet = tablets[i % len(tablets)]
        at = start + rng.random() * 365 * 86400
        face = rng.choice(FACES)
        score = FACES.index(face) + 1
        rows.append((str(uuid.UUID(int=rng.getrandbits(128), version=4)), tablet.id, tablet.branch_id, tablet.desk,
                     "desk", 1, None, admins[tablet.branch_id], at, store.day_of(at), at, face, score, 5,
                     json.dumps(PATHS[face][:rng.randint(0, 2)]), rng.choice([None, *range(11)]),
                     "Коментар" if rng.random() < 0.03 else None, "uk", 1, None, None))
    store.write(lambda db: db.executemany(
        "INSERT INTO answers(uuid, tablet_id, branch_id, desk, survey_id, version, shift_id, admin_id, answered_at, "
        "day, received_at, main, score, scale, path, nps, comment, lang, counted, flag, repeat_of) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows))
    store.rebuild_rollups()


def bench_reports(instance: str) -> float:
    from datetime import date, timedelta
    from terminal import close_app, create_app
    from terminal.state import state as app_state

    # the test client sends no CSRF token: this in-process app measures the report, not the form
    app = create_app({**CONFIG, "INSTANCE_PATH": instance, "WTF_CSRF_ENABLED": False})
    store = app_state(app).surveys
    manager = app_state(app).staff.add("Bench manager", "manager", "333333")
    branches = sorted({t.branch_id for t in store.tablets()})
    admins = {b: store.add_administrator(f"Адміністратор {b}", b, str(100000 + i)).id for i, b in enumerate(branches)}
    tablets = store.tablets()
    load_year(store, tablets, admins)
    assert store.count_answers() >= 500_000
    client = app.test_client()
    client.post("/service/login", data={"staff_id": str(manager.id), "pin": "333333"})
    today = date.today()
    rng = random.Random(5)
    timings = []
    for i in range(220):
        days = rng.choice([7, 30, 90, 365])
        args = {"from": (today - timedelta(days=days)).isoformat(), "to": today.isoformat(),
                "group": rng.choice(["desk", "admin", "branch"])}
        kind = i % 4
        if kind == 1:
            args["branch"] = rng.choice(branches)
        elif kind == 2:
            tablet = rng.choice(tablets)
            args["branch"], args["desk"] = tablet.branch_id, tablet.desk
        elif kind == 3:
            args["admin"] = str(rng.choice(list(admins.values())))
        started = time.perf_counter()
        response = client.get("/service/surveys/reports", query_string=args)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"report failed: {response.status_code}")
        if i >= 20:  # the first requests warm the caches
            timings.append(elapsed * 1000)
    close_app(app)
    timings.sort()
    return timings[int(len(timings) * 0.99) - 1]


def main() -> None:
    from terminal import close_app, create_app
    from terminal.state import state as app_state

    instance = tempfile.mkdtemp(prefix="cnap-survey-bench-")
    app = create_app({**CONFIG, "INSTANCE_PATH": instance})
    store = app_state(app).surveys
    branch_ids = [b.id for b in app_state(app).catalogue.branches] or ["central"]
    tokens = [store.register_tablet(f"T{i}", branch_ids[i % len(branch_ids)], f"Вікно {i // len(branch_ids) + 1}",
                                    "desk")[1] for i in range(TABLETS)]
    sync_token = store.register_tablet("Offline", branch_ids[0], "Вікно 99", "desk")[1]
    close_app(app)

    ports = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(instance, ports), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=60)
        answers_per_s = bench_ingestion(port, tokens)
        print(f"ingestion: {TABLETS} tablets x {PER_TABLET} answers in batches of {BATCH}: "
              f"{answers_per_s:.0f} answers/s", flush=True)
        single = bench_ingestion(port, tokens, batch=1, per_tablet=10)
        print(f"ingestion, one answer per request (informational): {single:.0f} answers/s", flush=True)
        sync_s = bench_sync(port, sync_token)
        print(f"sync: {SYNC_ANSWERS} queued answers in {sync_s:.2f} s", flush=True)
    finally:
        server.terminate()
        server.join(10)
    report_p99 = bench_reports(instance)
    print(f"report: p99 {report_p99:.1f} ms over {YEAR_ANSWERS} answers", flush=True)
    print(f"answers_per_s={answers_per_s:.0f} sync_10000_s={sync_s:.2f} report_p99_ms={report_p99:.1f}")


if __name__ == "__main__":
    main()
