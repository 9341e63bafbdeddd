"""Hub web app bench: how long the all-sites page takes for a country's worth of sites, and one
site's page with a day of samples, over a real SQLite store (the hub's small-deployment engine).

    .venv/bin/python bench/hub_web.py [--sites 4070] [--rounds 10]

The last line is the result: ``sites=… overview_p50_ms=… overview_kb=… site_p50_ms=… samples=…``
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from monitoring.hub import schema  # noqa: E402
from monitoring.hub.db import open_store  # noqa: E402
from monitoring.hub.web import create_hub_app  # noqa: E402
from terminal.staff import StaffStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=4070)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="cnap-hub-web-bench-")
    store = schema.ensure(open_store(os.path.join(folder, "hub.db")))
    staff = StaffStore(os.path.join(folder, "staff.db"))
    member = staff.add("bench", "technician", "246810")
    now = time.time()
    with store.transaction() as tx:
        tx.executemany("INSERT INTO sites (site, status, first_seen, last_seen) VALUES (?, ?, ?, ?)",
                       [(f"site-{i:05d}", ("online", "online", "offline", "unknown")[i % 4], now - 86400, now - i)
                        for i in range(args.sites)])
        tx.executemany("INSERT INTO alerts (key, serial, rule, site, device, severity, status, active_since, "
                       "summary) VALUES (?, 1, 'co2_high', ?, '', ?, ?, ?, '{}')",
                       [(f"k{i}", f"site-{i:05d}", ("warning", "critical")[i % 2], ("firing", "pending")[i % 3 == 0],
                         now - 600) for i in range(0, args.sites, 5)])
        samples = [("site-00000", "power", "ups.charge_pct", now - 60 * m, 50 + m % 50) for m in range(1440)]
        samples += [("site-00000", "air", "sensors.hall.co2_ppm", now - 60 * m, 400 + m) for m in range(1440)]
        tx.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?)", samples)
        tx.execute("INSERT INTO entities VALUES ('site-00000', 'power', 'power', ?, ?, ?)",
                   (json.dumps({"v": 1, "ts": now, "available": True, "state": "online",
                                "ups": {"status": "online", "charge_pct": 99}}), now, now))
    app = create_hub_app({"SECRET_KEY": "bench"}, store, staff)
    client = app.test_client()
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    client.post("/login", data={"staff_id": str(member.id), "pin": "246810", "csrf_token": token})

    def timed(path: str) -> tuple[float, int]:
        times, size = [], 0
        for _ in range(args.rounds):
            start = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.status_code
            size = len(response.data)
        return statistics.median(times), size

    overview_ms, overview_size = timed("/")
    site_ms, _ = timed("/site/site-00000")
    staff.close()
    store.close()
    print(f"sites={args.sites} overview_p50_ms={overview_ms:.1f} overview_kb={overview_size / 1024:.0f} "
          f"site_p50_ms={site_ms:.1f} samples={len(samples)}")


if __name__ == "__main__":
    main()
