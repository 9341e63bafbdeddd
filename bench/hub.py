"""Hub ingest throughput: simulated sites publish their states through a real Mosquitto on
loopback into the hub's ingest workers, while ``mosquitto_sub`` reads the same stream as the
yardstick of what one plain subscriber can take on this machine.

    PYTHONPATH=. .venv/bin/python bench/hub.py [--seconds 60] [--sites 4070] [--workers 2]
                                              [--batch 500] [--connections 4] [--store postgresql://…]

Every site publishes 30 retained QoS 1 states every 10 s (4,070 sites = 12,210 msg/s), spread
evenly over the period. The simulated sites are one process writing pre-encoded MQTT 5 PUBLISH
packets (QoS 1, retain, packet ids, the broker's Receive Maximum respected, PUBACKs read and
counted) over ``--connections`` raw sockets, a batch every 5 ms: the agents live on 4,070 other
machines, so their cost must not come out of the hub's two cores here. (Earlier the bench
used three paho publisher processes; they reached only ~7,700 of the 12,210 msg/s and competed
with the workers for the two cores, so the figures measured the bench as much as the hub.) Each
payload's ``ts`` is the time its batch was built, before it is written to the socket. A slot more
than 1 s late is skipped, not sent late; the detail line says how many
(``skipped_by_publishers``), the rate offered and the rate actually published, how many PUBACKs came back, and the CPU of the workers,
the broker, the publisher and ``mosquitto_sub`` over the run with the load average. Figures:

- msgs_per_s: states the hub stored (``Ingest`` applied them) per second of the run;
- raw_sub_msgs_per_s: messages ``mosquitto_sub`` received per second in the same run;
- ratio: msgs_per_s / raw_sub_msgs_per_s;
- staleness_p99_ms: p99 of publish → stored: the worker's commit time minus the payload's ts, for
  every state applied (the workers' lag histogram, 10 % buckets; one machine, one clock);
- agent_rss_mb, agent_cpu_pct: one `cnap agent` publishing at 1 Hz, measured after the hub run
  (bench/mqtt_agent_rss.py; --agent-seconds 0 skips it and prints nan).

Measured (2 cores shared with other work; docs/monitoring.md "Scaling, measured here" has the
table): 4,070 sites, SQLite, 2 workers: all 12,210 msg/s published and stored, ratio 1.00,
staleness p99 0.12–0.23 s in five runs, the two workers using 0.8 of a core between them (1.0 before the
worker's paho reads and acknowledgements were batched). One worker alone keeps up too (0.67 of a
core, p99 88 ms). At twice the national rate (8,140 sites, 24,420 msg/s) two SQLite workers store
about 14,000–15,000 msg/s and fall behind. On PostgreSQL (its server on the same two cores) the
workers store 7,900–9,100 msg/s of the 12,210: ratio 0.65–0.75, staleness p99 24–30 s.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import select
import socket
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
from tests.monitoring.mqtt import Broker, utf8_string, varint  # noqa: E402

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


class RawPublisher:
    """One MQTT 5 connection that writes pre-encoded PUBLISH packets (QoS 1, retain) in batches and
    counts the broker's PUBACKs: a few microseconds a message, where paho's per-message Python path
    (and its network thread) cost the bench most of a core. At most the broker's Receive Maximum
    messages are in flight; a message due when that window is full is skipped, not queued."""

    def __init__(self, port: int, client_id: str) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = utf8_string("MQTT") + bytes([5, 0x02]) + (60).to_bytes(2, "big") + b"\x00" + utf8_string(client_id)
        self.sock.sendall(b"\x10" + varint(len(body)) + body)
        self._buffer = b""
        kind, connack = self._read_packet()
        if kind != 0x20 or connack[1] != 0:
            raise RuntimeError(f"broker refused the bench publisher: {connack[:2]!r}")
        properties = Properties(PacketTypes.CONNACK)
        properties.unpack(connack[2:])
        self.receive_maximum = getattr(properties, "ReceiveMaximum", 65535)
        self.sock.setblocking(False)
        self.next_id = 1
        self.in_flight = 0
        self.acked = 0

    def _read_packet(self) -> tuple[int, bytes]:
        while True:
            packet = self._split()
            if packet is not None:
                return packet
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            self._buffer += chunk

    def _split(self) -> tuple[int, bytes] | None:
        buf, index, length, shift = self._buffer, 1, 0, 0
        while True:
            if index >= len(buf):
                return None
            length |= (buf[index] & 0x7F) << shift
            shift += 7
            index += 1
            if not buf[index - 1] & 0x80:
                break
        if len(buf) < index + length:
            return None
        self._buffer = buf[index + length:]
        return buf[0] & 0xF0, buf[index:index + length]

    def read_acks(self) -> None:
        try:
            while True:
                chunk = self.sock.recv(262144)
                if not chunk:
                    raise ConnectionError("broker closed the connection")
                self._buffer += chunk
        except BlockingIOError:
            pass
        while (packet := self._split()) is not None:
            if packet[0] == 0x40:   # PUBACK
                self.in_flight -= 1
                self.acked += 1

    def packet(self, head: bytes, body: bytes) -> bytes | None:
        """One PUBLISH: ``head`` is the fixed header, remaining length and topic; None when the
        in-flight window is full."""
        if self.in_flight >= self.receive_maximum:
            return None
        packet_id = self.next_id
        self.next_id = packet_id % 65535 + 1
        self.in_flight += 1
        return head + packet_id.to_bytes(2, "big") + b"\x00" + body

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:   # the broker reads slower than we write: wait, taking acks
                select.select([self.sock], [self.sock], [], 0.05)
                self.read_acks()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.setblocking(True)
            self.sock.sendall(b"\xe0\x00")   # DISCONNECT
        self.sock.close()


def publish_packets(messages: list[tuple[str, str]]) -> list[tuple[bytes, bytes, bytes]]:
    """(fixed header + remaining length + topic, payload before ts, payload after ts) per message."""
    out = []
    for topic_name, template in messages:
        before, after = (part.encode() for part in template.split("{ts}"))
        variable = len(utf8_string(topic_name)) + 2 + 1 + len(before) + TS_CHARS + len(after)
        out.append((b"\x33" + varint(variable) + utf8_string(topic_name), before, after))
    return out


TS_CHARS = len(datetime.now(timezone.utc).isoformat(timespec="microseconds"))
TICK_S = 0.005
MAX_BEHIND_S = 1.0


def publisher(port: int, sites: list[str], start_at: float, end_at: float, counts, connections: int = 4) -> None:
    """Every site's 30 states, spread evenly over the period, from one process. Each tick takes the
    messages due by then, stamps them with the time of that tick (``ts``: the staleness clock starts
    before they are written to the socket) and writes them in one send per connection. Slots more
    than MAX_BEHIND_S late are skipped (counted), as an agent's next state replaces an unsent one."""
    clients = [RawPublisher(port, f"bench-pub-{os.getpid()}-{index}") for index in range(connections)]
    packets = publish_packets([m for site in sites for m in site_entities(site)])
    step = PERIOD_S / len(packets)
    sent = skipped = 0
    while time.time() < start_at:
        time.sleep(0.01)
    slot = 0
    total_slots = int((end_at - start_at) / step)
    while slot < total_slots:
        now = time.time()
        due = min(total_slots, int((now - start_at) / step) + 1)
        if due - slot > MAX_BEHIND_S / step:
            skipped += due - slot - int(MAX_BEHIND_S / step)
            slot = due - int(MAX_BEHIND_S / step)
        ts = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="microseconds").encode()
        chunks: list[list[bytes]] = [[] for _ in clients]
        for index in range(slot, due):
            head, before, after = packets[index % len(packets)]
            which = index % len(clients)
            data = clients[which].packet(head, before + ts + after)
            if data is None:
                skipped += 1
            else:
                chunks[which].append(data)
                sent += 1
        slot = due
        for client, chunk in zip(clients, chunks):
            if chunk:
                client.send(b"".join(chunk))
            client.read_acks()
        pause = start_at + slot * step - time.time()
        time.sleep(max(TICK_S, pause))
    deadline = time.monotonic() + 5.0   # let the last PUBACKs come in
    while any(c.in_flight for c in clients) and time.monotonic() < deadline:
        time.sleep(0.05)
        for client in clients:
            client.read_acks()
    counts.put((sent, skipped, sum(c.acked for c in clients)))
    for client in clients:
        client.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return math.nan


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
    parser.add_argument("--connections", type=int, default=4, help="publisher MQTT connections (one process)")
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
        start_at = time.time() + 3.0
        end_at = start_at + args.seconds
        publishers = [context.Process(target=publisher,
                                      args=(broker.local_port, sites, start_at, end_at, counts, args.connections))]
        for process in publishers:
            process.start()
        while time.time() < start_at:
            time.sleep(0.01)
        stored_0, raw_0, t0 = pool.total("stored"), raw.count, time.monotonic()
        watched = {"workers": [p.pid for p in pool.processes], "broker": [broker.process.pid],
                   "publisher": [p.pid for p in publishers], "mosquitto_sub": [raw.process.pid]}
        cpu_0 = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in watched.items()}
        while time.time() < end_at:
            time.sleep(0.2)
        time.sleep(0.6)   # the workers report every 0.5 s
        stored_1, raw_1, t1 = pool.total("stored"), raw.count, time.monotonic()
        cpu_pct = {name: 100 * (sum(cpu_seconds(pid) for pid in pids) - cpu_0[name]) / (t1 - t0)
                   for name, pids in watched.items()}
        sent_skipped = [counts.get(timeout=60) for _ in publishers]
        published, skipped, acked = (sum(column) for column in zip(*sent_skipped))
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
        print(f"published={published} acked={acked} skipped_by_publishers={skipped} "
              f"offered_msgs_per_s={args.sites * ENTITIES_PER_SITE / PERIOD_S:.0f} "
              f"published_msgs_per_s={published / args.seconds:.0f} "
              f"stored_total={stored_total} stale={sum(c['stale'] for c in final.values())} "
              f"duplicates={sum(c['duplicates'] for c in final.values())} raw_total={raw.count} workers={args.workers} "
              f"per_worker={[c['messages'] for c in final.values()]} batches={batches} "
              f"batch_ms_mean={1000 * batch_s / max(1, batches):.1f} "
              f"dropped={sum(sum(c['dropped'].values()) for c in final.values())} "
              f"store={'postgresql' if store_url.startswith('postgres') else 'sqlite'} "
              f"cpu_pct={','.join(f'{name}:{value:.0f}' for name, value in cpu_pct.items())} "
              f"cores={os.cpu_count()} loadavg_1m={os.getloadavg()[0]:.2f}")
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
