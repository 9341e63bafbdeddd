"""Topic schema bench: how many delivered messages `monitoring.topics.parse` checks per second, the
hub's per-message cost before it stores anything.

    .venv/bin/python bench/topics.py [--messages 20000]

Parses a realistic mix (power, uplink, device states, survey answers, commands; a tenth of them
malformed) and the encoding side (`topics.outgoing`). The last line is the result:
``messages=… parse_per_s=… parse_us=… outgoing_per_s=… rejected=…``
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from monitoring import topics as t  # noqa: E402


def samples() -> list[tuple[t.Payload, str | None]]:
    now = datetime.now(timezone.utc)
    return [
        (t.PowerState(ts=now, available=True, state="online", ups=t.Ups(status="online", charge_pct=100,
                                                                        runtime_s=1800, load_pct=23.5),
                      inputs=[t.PowerInput(name="mains", live=True, voltage_v=229.7)], active_input="mains"), None),
        (t.UplinkState(ts=now, available=True, state="ok", up=True, active=True, interface="eth0",
                       latency_ms=21.4, loss_pct=0), "fibre"),
        (t.BillValidatorState(ts=now, online=True, state="idling", cassette_bills=412, cassette_capacity=1000), None),
        (t.PrinterState(ts=now, online=True, state="ok", paper="near_end"), None),
        (t.SurveyAnswer(ts=now, uuid=str(uuid.uuid4()), tablet_id=3, branch_id="kyiv-1", desk="3", survey_id="main",
                        version=2, main="q1", score=4, scale=5, path=[("why", "queue")], comment="Довго чекали"), None),
        (t.Command(ts=now, id=str(uuid.uuid4()), action="set_level", args={"level": 3}, by="hub.central"),
         "ventilation"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    built = samples()
    wire = [t.outgoing(f"site-{i % 50}", payload, name) for i, (payload, name) in enumerate(built * 50)]
    bad = [(w.topic, w.payload[:-3] + b"x}") for w in wire[:len(wire) // 10]]
    stream = [(w.topic, w.payload) for w in wire] + bad
    now = time.time()
    start = time.perf_counter()
    rejected = 0
    for i in range(args.messages):
        topic_name, payload = stream[i % len(stream)]
        rejected += isinstance(t.parse(topic_name, payload, now=now), t.Rejected)
    parse_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(args.messages):
        payload, name = built[i % len(built)]
        t.outgoing("kyiv-1", payload, name)
    outgoing_s = time.perf_counter() - start
    print(f"messages={args.messages} parse_per_s={args.messages / parse_s:.0f} "
          f"parse_us={parse_s / args.messages * 1e6:.1f} outgoing_per_s={args.messages / outgoing_s:.0f} "
          f"rejected={rejected}")


if __name__ == "__main__":
    main()
