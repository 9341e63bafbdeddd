"""Power bench: how long one reading of upsd takes (the kiosk's gate and the agent do one every
POWER_POLL_S), and how soon the kiosk's gate closes after the UPS reports short runtime.

    .venv/bin/python bench/power.py [--reads 300]

1. Reads ``LIST VAR`` from the embedded NUT simulator through facility/power/io.py (aionut, one
   connection per reading, as the poller does) and, when NUT is installed, from a real upsd with
   the dummy-ups driver in a temporary folder.
2. Starts a kiosk app on the simulator (POWER_POLL_S 0.2), switches the UPS to OB with 240 s left
   and measures until the gate refuses new payments: bounded by one poll interval plus a read.

Target: a read well under the 2 s poll interval (p99 ≤ 50 ms on loopback). The last line is the
result: ``sim_read_p50_ms=… sim_read_p99_ms=… upsd_read_p50_ms=… upsd_read_p99_ms=… gate_close_ms=…``
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facility.power.io import NutTarget, read_ups  # noqa: E402
from facility.power.simulator import NutSimulator  # noqa: E402


def timed_reads(target: NutTarget, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        read_ups(target)
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)


def p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=300)
    args = parser.parse_args()
    result = {}
    sim = NutSimulator(ups="bench")
    try:
        sim_times = timed_reads(NutTarget(sim.host, sim.port, "bench"), args.reads)
        result["sim_read_p50_ms"] = statistics.median(sim_times)
        result["sim_read_p99_ms"] = p(sim_times, 0.99)

        from tests.payments.helpers import make_app
        from terminal import close_app
        from terminal.state import state

        folder = Path(tempfile.mkdtemp(prefix="cnap-bench-power-"))
        app = make_app(folder / "instance", **sim.settings, POWER_POLL_S=0.2, BILL_VALIDATOR_URL="",
                       CARD_TERMINAL_URL="", PRINTER_URL="")
        try:
            gate = state(app).power_gate
            while gate.assessment is None:
                time.sleep(0.005)
            started = time.perf_counter()
            sim.set_state("OB_SHORT")
            while not gate.assessment.stop_new_payments:
                time.sleep(0.001)
            result["gate_close_ms"] = (time.perf_counter() - started) * 1000
        finally:
            close_app(app)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        sim.stop()

    if Path("/lib/nut/upsd").exists():
        from tests.facility.power.conftest import _start

        upsd = _start()
        try:
            upsd_times = timed_reads(upsd.target, args.reads)
            result["upsd_read_p50_ms"] = statistics.median(upsd_times)
            result["upsd_read_p99_ms"] = p(upsd_times, 0.99)
        finally:
            upsd.close()
            shutil.rmtree(upsd.folder, ignore_errors=True)
    else:
        print("NUT is not installed: no upsd figures", file=sys.stderr)

    order = ("sim_read_p50_ms", "sim_read_p99_ms", "upsd_read_p50_ms", "upsd_read_p99_ms", "gate_close_ms")
    print(" ".join(f"{k}={result[k]:.1f}" for k in order if k in result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
