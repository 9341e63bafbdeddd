"""Alert machine benchmark. Last line: ``observations_per_s=… sites=… open_alerts=… p99_us=…``.

One hub state fed a stream of observations from SITES sites, each with six entities (two
uplinks, a UPS, a CO2 sensor, the printer, the bill validator) reporting every ~10 s of hub time,
values drawn so that a fair share of alerts is pending or firing at any moment; a few silences
are active. The machine is pure, so this measures Python only (one core): how many observations
one hub worker can judge per second, and the 99th percentile of one ``handle`` call.

Target: ≥ 2,000 observations/s at 200 sites (a site's agent reports its six entities about every
10 s: 120 observations/s for 200 sites, so one worker keeps up with a large margin).
"""
from __future__ import annotations

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from monitoring.alerts import Event, Observation, handle, new_state  # noqa: E402

SITES = 200
OBSERVATIONS = 40_000
ENTITIES = [("wan1", "uplink"), ("lte", "uplink"), ("ups", "ups"), ("hall", "co2"), ("printer", "printer"),
            ("validator", "bill_validator")]


def values(kind: str, rng: random.Random) -> dict:
    bad = rng.random() < 0.1
    if kind == "uplink":
        return {"up": not bad}
    if kind == "ups":
        return {"on_battery": bad, "battery_pct": 25 if bad and rng.random() < 0.3 else 90}
    if kind == "co2":
        return {"co2_ppm": 1500 if bad else 800}
    if kind == "printer":
        return {"paper_out": bad}
    return {"cassette_fill_pct": 95 if bad else 40}


def main() -> None:
    rng = random.Random(11)
    state = new_state()
    now = 1_000_000.0
    for i in range(5):
        state, _ = handle(state, Event("silence", {"id": f"m{i}", "matchers": {"site": f"site-{i}"},
                                                   "ends_at": now + 86400, "creator": "bench",
                                                   "comment": "bench", "at": now}))
    step = 10.0 / (SITES * len(ENTITIES))  # every entity reports about every 10 s of hub time
    durations = []
    notices = 0
    started = time.perf_counter()
    for _ in range(OBSERVATIONS):
        now += step
        site = f"site-{rng.randrange(SITES)}"
        entity, kind = rng.choice(ENTITIES)
        event = Event("observe", {"observation": Observation(site, entity, kind, values(kind, rng), now, now)})
        t0 = time.perf_counter()
        state, commands = handle(state, event)
        durations.append(time.perf_counter() - t0)
        notices += sum(1 for c in commands if c.name == "notify")
    elapsed = time.perf_counter() - started
    durations.sort()
    p99_us = durations[int(len(durations) * 0.99)] * 1e6
    print(f"notices={notices} tracked_keys={len(state.tracks)}")
    print(f"observations_per_s={OBSERVATIONS / elapsed:.0f} sites={SITES} open_alerts={len(state.alerts)} "
          f"p99_us={p99_us:.0f}")


if __name__ == "__main__":
    main()
