"""Device benchmark: each driver against its simulator, then a long fuzz of every codec.

Last line: ccnet_polls_per_s=… ccnet_polls_per_s_line=… stacked_to_event_p99_ms=…
ecr_purchase_roundtrip_ms=… print_job_ms=… fuzz_frames=… fuzz_failures=0
ccnet_polls_per_s is free-running polling with no inter-frame gap (the simulator needs none),
bounded by the frames' transmit time at 9600 baud, which the driver models since the gap rule
(before: ~4,700/s, when the driver wrote the next command back to back with its ACK);
ccnet_polls_per_s_line adds the CCNET quiet-line gap a real device needs (20 ms before every
command), which bounds any real link to about 40 polls a second (profiles poll every 100–200 ms).
Targets: stacked_to_event_p99_ms <= poll interval (100 ms) + 20 ms; fuzz_frames >= 300000 with
0 failures (an unexpected exception, a feed over 1 s, or a stacked frame that was never sent).
"""
from __future__ import annotations

import logging
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devices.bill_validator import codec as ccnet  # noqa: E402
from devices.bill_validator.driver import INTER_FRAME_GAP_S, BillValidator  # noqa: E402
from devices.bill_validator.simulator import BillValidatorSimulator  # noqa: E402
from devices.card_terminal import codec as ecr  # noqa: E402
from devices.card_terminal.driver import CardTerminal  # noqa: E402
from devices.card_terminal.simulator import CardTerminalSimulator  # noqa: E402
from devices.printer import codec as escpos  # noqa: E402
from devices.printer.driver import ReceiptPrinter  # noqa: E402
from devices.printer.simulator import PrinterSimulator  # noqa: E402

POLL_INTERVAL_S = 0.1
BILLS = 60
FUZZ_PER_CODEC = 110_000


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def bench_poll_rate(seconds=2.0, gap_s=0.0):
    sim = BillValidatorSimulator()
    url = sim.start_tcp()
    bv = BillValidator(url, poll_interval_s=0.0, response_timeout_s=0.3, inter_frame_gap_s=gap_s)
    try:
        bv.start()
        start_polls, start = bv.counters["polls"], time.monotonic()
        time.sleep(seconds)
        return (bv.counters["polls"] - start_polls) / (time.monotonic() - start)
    finally:
        bv.stop()
        sim.stop()


def bench_stacked_latency():
    rng = random.Random(7)
    sim = BillValidatorSimulator(accept_time_s=0.02, stack_time_s=0.05, init_time_s=0.02)
    url = sim.start_tcp()
    bv = BillValidator(url, poll_interval_s=POLL_INTERVAL_S)
    stacked, escrow = [], threading.Event()

    def on_event(event):
        if event.kind == "escrow":
            escrow.set()
            bv.stack()
        elif event.kind == "stacked":
            stacked.append(event.at)

    bv.subscribe(on_event)
    try:
        bv.start()
        bv.enable(set(bv.bill_table))
        time.sleep(0.3)
        for i in range(BILLS):
            sim.stack_time_s = 0.05 + rng.random() * POLL_INTERVAL_S  # random phase vs the poll
            deadline = time.monotonic() + 3
            while not sim.insert_bill(rng.choice(bv.bill_table)) and time.monotonic() < deadline:
                time.sleep(0.005)
            deadline = time.monotonic() + 3
            while len(stacked) <= i and time.monotonic() < deadline:
                time.sleep(0.005)
        latencies = [(event_at - stacked_at) * 1000 for event_at, stacked_at in zip(stacked, sim.stacked_at)]
        if len(stacked) != BILLS or len(sim.cassette) != BILLS:
            raise SystemExit(f"lost bills: {len(stacked)} events, {len(sim.cassette)} in cassette")
        return percentile(latencies, 99)
    finally:
        bv.stop()
        sim.stop()


def bench_purchase(n=40):
    sim = CardTerminalSimulator(processing_s=0.0)
    url = sim.start_tcp()
    terminal = CardTerminal(url)
    times = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            result = terminal.purchase(20000)
            times.append((time.perf_counter() - start) * 1000)
            assert result.status == "approved"
        return statistics.median(times)
    finally:
        terminal.close()
        sim.stop()


def bench_print(n=15):
    sim = PrinterSimulator()
    url = sim.start_tcp()
    printer = ReceiptPrinter(url)
    job = [("text", "ЦНАП: квитанція", {"bold": True, "align": "center", "double": True})]
    job += [("text", f"Послуга {i}: ґ ї є і ............ 100.00 грн", {}) for i in range(12)]
    job += [("qr", "https://bank.gov.ua/qr/QkNECjAwMgoxClVDVAoKVUE="), ("cut",)]
    times = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            result = printer.print_job(job)
            times.append((time.perf_counter() - start) * 1000)
            assert result.ok, result.error
        return statistics.median(times)
    finally:
        sim.stop()


# ---------------------------------------------------------------------------- fuzz
def mutate(rng, frame: bytes) -> tuple[bytes, bool]:
    """Return (bytes, still_intact)."""
    roll = rng.random()
    if roll < 0.55:
        return frame, True
    if roll < 0.65:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 12))).replace(b"\x02", b"") + frame, True
    if roll < 0.75:
        i = rng.randrange(len(frame))
        return frame[:i] + bytes([frame[i] ^ (1 << rng.randrange(8))]) + frame[i + 1 :], False
    if roll < 0.85:
        return frame[: rng.randrange(1, len(frame))], False
    if roll < 0.95:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40))), False
    return bytes([0x02, 0x03, 0x00, 0xFF, 0xFF]), False  # oversized length


def timed_feed(decoder, data, failures):
    start = time.perf_counter()
    try:
        items = decoder.feed(data)
    except Exception as exc:  # any exception is a failure
        failures.append(repr(exc))
        decoder.reset() if hasattr(decoder, "reset") else None
        return []
    if time.perf_counter() - start > 1.0:
        failures.append("hang")
    return items


def fuzz_ccnet(rng, n, failures):
    decoder = ccnet.FrameDecoder()
    intact_stacked = decoded_stacked = 0
    for _ in range(n):
        code = rng.choice(sorted(ccnet.STATE_NAMES))
        payload = bytes([code, rng.randrange(24)]) if code in ccnet.STATES_WITH_SUBCODE else bytes([code])
        if rng.random() < 0.05:
            payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
        data, intact = mutate(rng, ccnet.encode_frame(payload))
        if intact and payload[:1] == bytes([ccnet.BILL_STACKED]) and len(payload) == 2:
            intact_stacked += 1
        for item in timed_feed(decoder, data, failures):
            if isinstance(item, ccnet.Frame) and item.payload[:1] == bytes([ccnet.BILL_STACKED]) and len(item.payload) == 2:
                decoded_stacked += 1
        if len(decoder.buffer) > ccnet.MAX_FRAME:
            failures.append("unbounded buffer")
        if rng.random() < 0.01:
            decoder.reset()  # the driver resets per transaction
    # a stacked frame that was never sent whole would be a credit without a stacked frame
    if decoded_stacked > intact_stacked:
        failures.append(f"credit without stacked frame: {decoded_stacked} > {intact_stacked}")


def fuzz_ecr(rng, n, failures):
    decoder = ecr.MessageDecoder()
    for _ in range(n):
        message = {"method": rng.choice(["Purchase", "PingDevice", "ServiceMessage"]), "step": 0,
                   "params": {"responseCode": rng.choice(["0000", "0051", "1001", "x"]),
                              "amount": rng.choice(["1.00", "-3", "1e9", 5, None]), "pan": "4149620012345678"}}
        data, _ = mutate(rng, ecr.encode_message(message))
        for item in timed_feed(decoder, data, failures):
            if isinstance(item, dict):
                try:
                    fields = ecr.classify(item)
                    if fields["masked_pan"] and "4149620012345678" in fields["masked_pan"]:
                        failures.append("unmasked PAN")
                except Exception as exc:
                    failures.append(repr(exc))


def fuzz_escpos(rng, n, failures):
    parser = escpos.EscPosParser()
    samples = [b"\x1b@", b"\x1bt\x2e", b"\x1bE\x01", b"\x1ba\x01", b"\x1b!\x30", b"\x1dV\x00",
               b"\x1dv0\x00\x02\x00\x02\x00\xff\x00\xff\x00", b"\x10\x04\x01", "Сума".encode("cp1251") + b"\n",
               b"\x1dVA\x03", b"\x1d(k\x03\x001A2"]
    for _ in range(n):
        data, _ = mutate(rng, rng.choice(samples))
        timed_feed(parser, data, failures)
        if len(parser.buffer) > escpos.MAX_RASTER_BYTES + 16:
            failures.append("unbounded buffer")
        if rng.random() < 0.001:
            parser.buffer.clear()


def main():
    logging.basicConfig(level=logging.ERROR)
    polls = bench_poll_rate()
    print(f"ccnet poll rate (free running, no gap): {polls:.0f}/s", flush=True)
    line_polls = bench_poll_rate(gap_s=INTER_FRAME_GAP_S)
    print(f"ccnet poll rate (free running, {INTER_FRAME_GAP_S * 1000:.0f} ms gap): {line_polls:.0f}/s", flush=True)
    p99 = bench_stacked_latency()
    print(f"stacked -> event p99 over {BILLS} bills at {POLL_INTERVAL_S * 1000:.0f} ms polls: {p99:.1f} ms "
          f"(target <= {POLL_INTERVAL_S * 1000 + 20:.0f})", flush=True)
    purchase = bench_purchase()
    print(f"ECR purchase round trip (median): {purchase:.1f} ms", flush=True)
    print_ms = bench_print()
    print(f"print job with QR (median): {print_ms:.1f} ms", flush=True)
    rng = random.Random(20240601)
    failures: list[str] = []
    start = time.monotonic()
    fuzz_ccnet(rng, FUZZ_PER_CODEC, failures)
    fuzz_ecr(rng, FUZZ_PER_CODEC, failures)
    fuzz_escpos(rng, FUZZ_PER_CODEC, failures)
    frames = FUZZ_PER_CODEC * 3
    print(f"fuzz: {frames} frames in {time.monotonic() - start:.1f} s; failures: {failures[:5]}", flush=True)
    print(f"ccnet_polls_per_s={polls:.0f} ccnet_polls_per_s_line={line_polls:.0f} stacked_to_event_p99_ms={p99:.1f} "
          f"ecr_purchase_roundtrip_ms={purchase:.1f} print_job_ms={print_ms:.1f} "
          f"fuzz_frames={frames} fuzz_failures={len(failures)}")


if __name__ == "__main__":
    main()
