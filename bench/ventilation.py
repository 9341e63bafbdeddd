"""Ventilation benchmark: one simulated day of a branch's waiting hall. Last line:
``co2_overshoot_ppm=… fan_changes_per_h=… hours_simulated=…``.

The controller (demand mode, default settings) polls the simulated unit over Modbus TCP on
loopback every 30 simulated seconds; the room model advances by the same step, so the day runs
in well under a minute. Opening hours come from the sample catalogue (the central branch, a
Monday: 08:00–17:00), read through the catalogue store like on a real site. Occupancy follows a
realistic curve for a service centre: a queue at opening, a morning peak, a lunch dip, an
afternoon peak, with visitors arriving in groups (steps) — seeded, so every run is the same.

* co2_overshoot_ppm — the most the room's CO2 went over the top band (1400 ppm), not counting
  the 10 minutes after a step up in occupancy (ventilation cannot undo a crowd walking in at
  once); 0 means it stayed under. Target: 0.
* fan_changes_per_h — level changes in the busiest hour of the day. Target: ≤ 6.
* hours_simulated — how much of the day was simulated (24).
"""
from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from facility.ventilation import build  # noqa: E402
from facility.ventilation.policy import changes_per_hour  # noqa: E402
from facility.ventilation.simulator import Room, start  # noqa: E402
from terminal import settings as settings_module  # noqa: E402
from terminal.catalogue.io import SAMPLE_FOLDER, import_folder  # noqa: E402

STEP_S = 30.0
GRACE_S = 600.0        # after a step up in occupancy
DAY = datetime(2026, 12, 7, tzinfo=ZoneInfo("Europe/Kyiv"))   # a Monday


def occupancy_plan(seed: int = 7) -> list[tuple[float, int]]:
    """(seconds since midnight, people in the hall) every 5 minutes."""
    rng = random.Random(seed)
    shape = [(8.0, 25), (9.0, 45), (10.5, 65), (12.0, 55), (12.5, 30), (13.5, 35), (14.5, 60),
             (16.0, 45), (16.75, 20), (17.0, 0)]
    plan = []
    for minute in range(0, 24 * 60, 5):
        hour = minute / 60
        if hour < 8 or hour >= 17:
            people = 0
        else:
            # piecewise-linear curve between the shape points, plus groups coming and going
            people = 0.0
            for (h0, p0), (h1, p1) in zip(shape, shape[1:]):
                if h0 <= hour < h1:
                    people = p0 + (p1 - p0) * (hour - h0) / (h1 - h0)
            people += rng.choice([-6, -3, 0, 0, 3, 6, 10])
        plan.append((minute * 60.0, max(0, int(people))))
    return plan


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as instance:
        import_folder(SAMPLE_FOLDER, Path(instance) / "catalogue.sqlite")
        simulator = start({}, realtime=False, room=Room(volume_m3=400.0, co2_ppm=430.0))
        settings = settings_module.defaults()
        settings.update(simulator.settings)
        settings.update({"INSTANCE_PATH": instance, "VENT_MODE": "demand"})
        controller = build(settings)
        top_band = max(int(b) for b in settings["VENT_CO2_BANDS_PPM"])
        plan = dict(occupancy_plan())
        room = simulator.room
        changes, level = [], None
        overshoot, peak, last_step_up = 0.0, 0.0, -1e9
        minutes_over = 0.0
        t = 0.0
        try:
            while t < 24 * 3600:
                if t in plan:
                    if plan[t] > room.occupancy:
                        last_step_up = t
                    room.occupancy = plan[t]
                simulator.advance(STEP_S)
                t += STEP_S
                now = (DAY + timedelta(seconds=t)).timestamp()
                controller.poll(now)
                if level is not None and room.level != level:
                    changes.append(now)
                level = room.level
                peak = max(peak, room.co2_ppm)
                if room.co2_ppm > top_band:
                    minutes_over += STEP_S / 60
                    if t - last_step_up > GRACE_S:
                        overshoot = max(overshoot, room.co2_ppm - top_band)
            status = controller.status()
        finally:
            controller.close()
            simulator.stop()
    hours = t / 3600
    print(f"peak CO2 {peak:.0f} ppm, {minutes_over:.1f} min above {top_band} ppm in all; "
          f"{len(changes)} level changes in the day; alerts at the end: {status['alerts']}; "
          f"filter dp added {room.filter_dirt_pa:.1f} Pa; wall time {time.perf_counter() - started:.1f} s",
          flush=True)
    print(f"co2_overshoot_ppm={overshoot:.0f} fan_changes_per_h={changes_per_hour(changes)} "
          f"hours_simulated={hours:.0f}")


if __name__ == "__main__":
    main()
