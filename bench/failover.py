"""Uplink failover benchmark (root: network namespaces). Last line:
``cuts= detect_ms_p50= detect_ms_max= false_failovers= failback_s= loss_pct=``.

Three providers in namespaces (facility/uplinks/netlab.py), the controller in gateway mode in
the appliance namespace with the shipped probing defaults (500 ms interval, 800 ms timeout,
3 silent rounds, six probe paths) and a short stable period so the run stays short.

* cuts, detect_ms_* — CUTS total cuts of the active uplink, each at a random moment of the probe
  cycle; detection = from the nftables cut until the kernel's active table points elsewhere.
* failback_s — after healing, the time until traffic is back on the first uplink; the target is
  the configured stable period (STABLE_S) ± one probe interval. The median is printed, the
  range too.
* false_failovers — uplinks declared down that were never cut: during the cuts (the other
  uplinks) and during LOSS_S seconds of LOSS_PCT % random loss *each way* on the active uplink
  (about 28 % of probes lost) plus a rate-limiting ICMP target and a slow HTTP target on it.

Targets: detection ≤ 3000 ms, zero false failovers, failback within STABLE_S ± interval.
Takes about CUTS × (STABLE_S + 3 s) + LOSS_S, near 6 minutes by default.
"""
from __future__ import annotations

import os
import random
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from facility.uplinks import build  # noqa: E402
from facility.uplinks.netlab import NetLab, usable  # noqa: E402
from facility.uplinks.policy import DOWN, Transition  # noqa: E402

CUTS = int(os.environ.get("CUTS", 20))
LOSS_S = float(os.environ.get("LOSS_S", 180))
LOSS_PCT = int(os.environ.get("LOSS_PCT", 15))
STABLE_S = float(os.environ.get("STABLE_S", 5))


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def wait_for(predicate, timeout: float, step: float = 0.001) -> float:
    """Time when ``predicate`` first held (monotonic); raises after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(step)
    raise TimeoutError


def main() -> int:
    why = usable()
    if why:
        print(f"failover bench: {why}", file=sys.stderr)
        return 1
    # A SIGTERM (timeout, Ctrl+C from a parent) still removes the namespaces in ``finally``.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lab = NetLab()
    downs: list[Transition] = []
    try:
        settings = lab.settings(UPLINKS_MODE="gateway", UPLINKS_PROBE_INTERVAL_MS=500,
                                UPLINKS_PROBE_TIMEOUT_MS=800, UPLINKS_WINDOW_S=30.0,
                                UPLINKS_STABLE_S=STABLE_S)
        controller = build(settings)
        # Count every down decision as it is made (the status keeps only the recent events).
        original = controller._transition

        def record(t: Transition) -> None:
            if t.new == DOWN:
                downs.append(t)
            original(t)

        controller._transition = record
        controller.start()
        interval = controller.cfg.interval_s

        def routed(name: str):
            return lambda: controller._applied.get("main") == name

        wait_for(lambda: all(r["rounds"] >= 5 for r in controller.status()["uplinks"]), 30, 0.05)
        wait_for(routed("up1"), 10)

        detect_ms, failback_s = [], []
        for n in range(CUTS):
            time.sleep(random.uniform(0, interval))          # a random phase of the probe cycle
            cut_at = time.monotonic()
            lab.cut(1)
            switched = wait_for(routed("up2"), 15)
            detect_ms.append((switched - cut_at) * 1000)
            time.sleep(0.5)
            healed_at = time.monotonic()
            lab.heal(1)
            back = wait_for(routed("up1"), STABLE_S + 20)
            failback_s.append(back - healed_at)
            log(f"cut {n + 1}/{CUTS}: detected in {detect_ms[-1]:.0f} ms, failback after {failback_s[-1]:.2f} s")
            time.sleep(random.uniform(0.5, 1.5))
        false_during_cuts = sum(1 for t in downs if t.uplink != "up1")

        # Random loss on the active uplink, one target rate-limiting ICMP, one answering slowly.
        wait_for(lambda: controller.status()["uplinks"][0]["state"] == "up", 30, 0.05)
        lab.faults(1, [f"numgen random mod 100 < {LOSS_PCT} drop",
                       "input:ip daddr 192.0.2.1 icmp type echo-request limit rate over 1/second drop"])
        lab.http_delay[1] = 2.0
        downs_before = len(downs)
        started = time.monotonic()
        worst_loss = 0.0
        while time.monotonic() - started < LOSS_S:
            time.sleep(5)
            row = controller.status()["uplinks"][0]
            worst_loss = max(worst_loss, row["loss_pct"] or 0)
            log(f"loss run {time.monotonic() - started:.0f}/{LOSS_S:.0f} s: up1 {row['state']}, "
                f"loss {row['loss_pct']} % (median of paths), rtt {row['rtt_ms']} ms, "
                f"paths {[p['loss_pct'] for p in row['paths'].values()]}")
        false_during_loss = len(downs) - downs_before
        controller.close()
    finally:
        lab.close()

    log(f"false failovers: {false_during_cuts} during cuts, {false_during_loss} during the loss run; "
        f"worst median path loss {worst_loss} %")
    log(f"failback: min {min(failback_s):.2f} s, max {max(failback_s):.2f} s "
        f"(stable period {STABLE_S} s, interval {interval} s)")
    print(f"cuts={CUTS} detect_ms_p50={statistics.median(detect_ms):.0f} detect_ms_max={max(detect_ms):.0f} "
          f"false_failovers={false_during_cuts + false_during_loss} "
          f"failback_s={statistics.median(failback_s):.2f} loss_pct={LOSS_PCT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
