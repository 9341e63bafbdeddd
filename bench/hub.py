"""Hub ingest throughput: simulated sites publish their states through a real Mosquitto on
loopback into the hub's ingest workers, while ``mosquitto_sub`` reads the same stream as the
yardstick of what one plain subscriber can take on this machine.

    PYTHONPATH=. .venv/bin/python bench/hub.py [--seconds 60] [--sites 4070] [--workers 2]
                                              [--store postgresql://…]

Every site publishes 30 retained QoS 1 states every 10 s (4,070 sites = 12,210 msg/s), spread
evenly, from several publisher processes; each payload's ``ts`` is its publish time. Figures:

- msgs_per_s: states the hub stored (``Ingest`` applied them) per second of the run;
- raw_sub_msgs_per_s: messages ``mosquitto_sub`` received per second in the same run;
- ratio: msgs_per_s / raw_sub_msgs_per_s;
- staleness_p99_ms: p99 of publish → stored: the worker's commit time minus the payload's ts, for
  every state applied (the workers' lag histogram, 10 % buckets; one machine, one clock);
- agent_rss_mb, agent_cpu_pct: one `cnap agent` publishing at 1 Hz, measured after the hub run
  (bench/mqtt_agent_rss.py; --agent-seconds 0 skips it and prints nan).
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitoring import topics  # noqa: E402
from monitoring.hub.db import open_store  # noqa: E402
from monitoring.hub.worker import lag_quantile_ms, merged_lag_counts, run_workers  # noqa: E402
from tests.monitoring.mqtt import Broker  # noqa: E402

ENTITIES_PER_SITE = 30
PERIOD_S = 10.0


def broker_conf(broker: Broker) -> str:
    # Anonymous loopback only: the benchmark measures ingest, not the ACL (tests cover that).
    return "\n".join([
        "per_listener_settings false", "allow_anonymous true", "persistence false",
        "max_queued_messages 1000000", "max_inflight_messages 0", "max_packet_size 65536",
        "log_dest stderr", "log_type error", "log_type warning",
        f"listener {broker.local_port} 127.0.0.1", f"listener {broker.tls_port} 127.0.0.1", ""])


def site_entities(site: str) -> list[tuple[str, str]]:
    """30 (topic, payload template with {ts}) for one site: the real kinds, the rest uplinks."""
    state = '"v":1,"ts":"{ts}","available":true,"state":"ok"'
    device = '"v":1,"ts":"{ts}","online":true,"state":"ok"'
    items = [
        (topics.topic("ventilation", site), "{" + state + ',"level":3,"max_level":5}'),
        (topics.topic("air", site), "{" + state + ',"sensors":[{"name":"hall","online":true,"co2_ppm":812.5}]}'),
        (topics.topic("power", site), "{" + state + ',"ups":{"status":"online","charge_pct":97.0,"runtime_s":1800}}'),
        (topics.topic("device", site, "bill_validator"), "{" + device + ',"cassette_bills":120,"cassette_capacity":1000}'),
        (topics.topic("device", site, "printer"), "{" + device + ',"paper":"ok"}'),
        (topics.topic("device", site, "card_terminal"), "{" + device + "}"),
    ]
    for index in range(ENTITIES_PER_SITE - len(items)):
        items.append((topics.topic("uplink", site, f"u{index:02d}"),
                      "{" + state + ',"up":true,"active":false,"latency_ms":23.5,"loss_pct":0.5}'))
    return items


def publisher(port: int, sites: list[str], start_at: float, end_at: float, counts) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    # A bounded queue: when the machine cannot keep up, a state is skipped (the next one replaces
    # it, as an agent would), instead of piling up and being sent with an old ts.
    client.max_queued_messages_set(2000)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    messages = [(topic_name, template) for site in sites for topic_name, template in site_entities(site)]
    step = PERIOD_S / len(messages)
    sent = skipped = 0
    while time.time() < start_at:
        time.sleep(0.01)
    slot = 0
    while True:
        due = start_at + slot * step
        now = time.time()
        if due >= end_at:
            break
        if due > now:
            time.sleep(due - now)
        topic_name, template = messages[slot % len(messages)]
        ts = datetime.now(timezone.utc).isoformat()
        info = client.publish(topic_name, template.replace("{ts}", ts), qos=1, retain=True)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            sent += 1
        else:
            skipped += 1
        slot += 1
    counts.put((sent, skipped))
    time.sleep(1.0)   # let the last PUBACKs come in
    client.disconnect()
    client.loop_stop()


class RawSubscriber:
    """mosquitto_sub on the same stream; counts one byte per message."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topics.HUB_FILTER, "-q", "1",
             "-V", "mqttv5", "-F", ".", "-N", "-i", "bench-raw-sub"], stdout=subprocess.PIPE)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            chunk = self.process.stdout.read1(65536)
            if not chunk:
                return
            self.count += chunk.count(b".")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def agent_figures(seconds: float) -> str:
    """One agent's footprint (bench/mqtt_agent_rss.py), after the hub run so they do not share the CPU."""
    if seconds <= 0:
        return "agent_rss_mb=nan agent_cpu_pct=nan"
    import mqtt_agent_rss   # bench/ is the script's folder, first on sys.path

    figures, _ = mqtt_agent_rss.measure(seconds)
    return f"agent_rss_mb={figures['rss_mb']:.1f} agent_cpu_pct={figures['cpu_pct']:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sites", type=int, default=4070)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--publishers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--store", default="", help="postgresql://… (default: a temporary SQLite file)")
    parser.add_argument("--agent-seconds", type=float, default=30.0, help="agent footprint window (0: skip)")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="cnap-bench-hub-"))
    store_url = args.store or f"sqlite:///{tmp}/hub.db"
    open_store(store_url).close()
    broker = Broker("bench-hub", broker_conf, {"hub.bench": "unused"})   # the helper wants one account
    pool = raw = None
    try:
        from monitoring.hub import schema
        with open_store(store_url) as store:
            schema.ensure(store)
        pool = run_workers(args.workers, host="127.0.0.1", port=broker.local_port, store_url=store_url,
                           client_id="bench-hub", batch_max=args.batch, commands_every_s=0)
        deadline = time.monotonic() + 60
        while not (len(pool.snapshots()) == args.workers and all(c["subscribed"] for c in pool.snapshots().values())):
            if time.monotonic() > deadline or not pool.alive():
                raise SystemExit("the ingest workers did not subscribe")
            time.sleep(0.1)
        raw = RawSubscriber(broker.local_port)

        context = multiprocessing.get_context("spawn")
        counts = context.Queue()
        sites = [f"site-{n:05d}" for n in range(args.sites)]
        shares = [sites[i::args.publishers] for i in range(args.publishers)]
        start_at = time.time() + 3.0
        end_at = start_at + args.seconds
        publishers = [context.Process(target=publisher, args=(broker.local_port, share, start_at, end_at, counts))
                      for share in shares if share]
        for process in publishers:
            process.start()
        while time.time() < start_at:
            time.sleep(0.01)
        stored_0, raw_0, t0 = pool.total("stored"), raw.count, time.monotonic()
        while time.time() < end_at:
            time.sleep(0.2)
        time.sleep(0.6)   # the workers report every 0.5 s
        stored_1, raw_1, t1 = pool.total("stored"), raw.count, time.monotonic()
        sent_skipped = [counts.get(timeout=60) for _ in publishers]
        published, skipped = sum(s for s, _ in sent_skipped), sum(k for _, k in sent_skipped)
        for process in publishers:
            process.join(30)
        final = pool.stop()
        pool = None
        elapsed = t1 - t0
        msgs_per_s = (stored_1 - stored_0) / elapsed
        raw_per_s = (raw_1 - raw_0) / elapsed
        stored_total = sum(c["stored"] for c in final.values())
        batches = sum(c["batches"] for c in final.values())
        batch_s = sum(c["batch_seconds_sum"] for c in final.values())
        print(f"published={published} skipped_by_publishers={skipped} offered_msgs_per_s={args.sites * ENTITIES_PER_SITE / PERIOD_S:.0f} "
              f"stored_total={stored_total} stale={sum(c['stale'] for c in final.values())} "
              f"duplicates={sum(c['duplicates'] for c in final.values())} raw_total={raw.count} workers={args.workers} "
              f"per_worker={[c['messages'] for c in final.values()]} batches={batches} "
              f"batch_ms_mean={1000 * batch_s / max(1, batches):.1f} "
              f"dropped={sum(sum(c['dropped'].values()) for c in final.values())} "
              f"store={'postgresql' if store_url.startswith('postgres') else 'sqlite'}")
        print(f"sites={args.sites} entities={args.sites * ENTITIES_PER_SITE} msgs_per_s={msgs_per_s:.0f} "
              f"raw_sub_msgs_per_s={raw_per_s:.0f} ratio={msgs_per_s / raw_per_s if raw_per_s else math.nan:.2f} "
              f"staleness_p99_ms={lag_quantile_ms(merged_lag_counts(final), 0.99):.0f} {agent_figures(args.agent_seconds)}")
        return 0
    finally:
        if pool is not None:
            pool.stop()
        if raw is not None:
            raw.stop()
        broker.stop()
        for leftover in tmp.glob("*"):
            leftover.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    sys.exit(main())
