"""Guest Wi-Fi benchmark (root: network namespaces). Last line:
``guest_admit_ms= guest_cap_ratio= guest_cap_ratio_down=``.

A guest Wi-Fi in namespaces (facility/guestnet/lab.py) with the real agent controller, dnsmasq,
nftables, tc and the kiosk's portal listener, the shipped defaults (5000 kbit/s total cap).

* guest_admit_ms — median over ROUNDS of: from sending the portal's Accept POST (page and CSRF
  token already loaded, as on the phone) until the guest's first TCP connection to the fake
  internet goes through (retried every 20 ms). The client is expelled between rounds.
* guest_cap_ratio — the guest's upload to the internet over SECONDS s (after a 0.5 s warm-up),
  divided by GUEST_TOTAL_RATE_KBIT; guest_cap_ratio_down the same for a download. Target
  0.8–1.05 (payload bytes against the configured on-wire rate, so ~0.95 is the ideal).
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROUNDS = int(os.environ.get("CNAP_BENCH_GUEST_ROUNDS", "5"))
SECONDS = float(os.environ.get("CNAP_BENCH_GUEST_SECONDS", "3"))


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def first_packet_ms(lab, started: float, limit_s: float = 5.0) -> float:
    from facility.guestnet.lab import INTERNET
    while time.perf_counter() - started < limit_s:
        if lab.reaches(1, INTERNET, 5001, timeout=0.02):
            return (time.perf_counter() - started) * 1000
    raise RuntimeError("the admitted guest never got through")


def measure() -> dict:
    from facility.guestnet.lab import GuestLab, Site, usable

    why = usable()
    if why:
        raise RuntimeError(f"bench/internet_guest.py: {why}")
    lab = GuestLab(guests=1)
    try:
        with tempfile.TemporaryDirectory(prefix="cnap-bench-guest-") as folder:
            site = Site(lab, folder)
            try:
                guest = lab.dhcp(1)["ip"]
                admits = []
                for _ in range(ROUNDS):
                    prepared = site.accept_request(1)
                    started = time.perf_counter()
                    status, _ = site.accept(1, prepared)
                    if status != 200:
                        raise RuntimeError(f"Accept gave {status}")
                    admits.append(first_packet_ms(lab, started))
                    site.agent.runner.command("guestnet", "expel", {"ip": guest})
                log(f"admit latency ms: {', '.join(f'{a:.0f}' for a in admits)}")
                assert site.agent.runner.command("guestnet", "admit", {"ip": guest})["ok"]
                cap = site.settings["GUEST_TOTAL_RATE_KBIT"]
                up = lab.upload_rate_kbit(1, SECONDS)
                down = lab.download_rate_kbit(1, SECONDS)
                log(f"cap {cap} kbit/s: upload {up:.0f}, download {down:.0f} kbit/s")
            finally:
                site.close()
    finally:
        lab.close()
    return {"guest_admit_ms": round(statistics.median(admits)), "guest_cap_ratio": round(up / cap, 3),
            "guest_cap_ratio_down": round(down / cap, 3)}


def main() -> int:
    try:
        figures = measure()
    except RuntimeError as exc:
        log(str(exc))
        return 2
    print(" ".join(f"{key}={value}" for key, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
