"""The hub's MQTT side: workers that read every site's messages off the central broker into the
store, and send the staff's commands back down.

    worker = IngestWorker(host="127.0.0.1", port=1883, username="hub.central", password=…,
                          store_url="postgresql://hub@db/cnap", client_id="hub-1")
    worker.start(); …; worker.stop()            # stop() drains what was received, then closes
    pool = run_workers(4, host=…, store_url=…)  # the same in 4 processes, one shared group

Each worker subscribes to the shared subscription ``$share/<group>/cnap/+/#`` (QoS 1, MQTT 5):
the broker hands each message to one member of the group, so workers on one or several machines
split the stream. Retained states (each site's current state, and the leftovers of sites long
gone, which ingest drops as ``retained_old``): Mosquitto 2.0 sends them to every new member of a
shared subscription, so each worker gets them at (re)connect and ingest stores them once. MQTT 5
itself says a shared subscription gets none; on a broker that follows it, start a worker (the
first of a pool) with ``retained_snapshot=True``: after each connect it also subscribes to
``cnap/+/#`` plainly, takes the retained messages, ignores the live copies that subscription
brings (told apart by an MQTT 5 subscription identifier), and unsubscribes once the burst is over.
The group is ``hub`` by default because that is the one the hub account may
read (monitoring/brokerconf.py writes ``topic read $share/hub/cnap/+/#`` into the ACL).

Delivery is at least once into the store: messages are acknowledged (manual PUBACK) only after
the transaction holding them committed, and every write of ``Ingest`` is idempotent (state by
``ts``, survey answers by UUID, command results once), so a redelivery changes nothing.

A paho network thread puts messages on a queue; one writer thread takes them in batches (up to
``batch_max`` messages or ``batch_wait_s``) into ``Ingest.handle_batch`` and, every
``commands_every_s``, publishes the pending rows of ``commands`` (``sent_at`` unset, not
expired), claiming each row first so that two workers never send one command twice.
"""
from __future__ import annotations

import bisect
import contextlib
import json
import logging
import multiprocessing
import queue
import struct
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from monitoring import topics
from monitoring.hub.db import open_store
from monitoring.hub.ingest import BatchResult, Ingest

log = logging.getLogger(__name__)

DEFAULT_GROUP = "hub"             # the share group the hub account's ACL allows
QUEUE_MAX = 20000                 # received, not yet stored; the broker holds the rest (QoS 1)
RECEIVE_MAXIMUM = 2000            # unacknowledged messages the broker may send us at once
COMMANDS_PER_ROUND = 100
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0
# Ingest lag (the agent's ts of a live state -> the hub's commit) in buckets 10 % apart, 1 ms..~7 min:
# small enough to report every half second, fine enough for a p99.
LAG_BUCKETS_MS = tuple(round(1.1 ** n, 3) for n in range(136))
SNAPSHOT_ID = 7                   # subscription identifier of the retained-state snapshot
SNAPSHOT_QUIET_S = 2.0            # the snapshot ends when no retained message came for this long
SNAPSHOT_MAX_S = 120.0


PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


def subscription(group: str = DEFAULT_GROUP) -> str:
    """The shared subscription; without a group (an MQTT 3.1.1 broker such as the demo's embedded
    one, which has no shared subscriptions) the plain filter, for a single worker."""
    return f"$share/{group}/{topics.HUB_FILTER}" if group else topics.HUB_FILTER


_PUBACK = struct.Struct("!BBH")


class _IngestClient(mqtt.Client):
    """paho's client with two changes for a stream of thousands of messages a second (profiled:
    they were most of a worker's CPU): it reads the socket 64 KiB at a time instead of paho's
    three or four ``recv`` calls per packet (one byte of type, the length byte by byte, the body),
    and ``ack_many`` queues the PUBACKs of a whole batch as one write instead of one ``send`` and
    one wake-up of the network thread each. Both rest on paho 2.x internals (``_sock_recv``,
    ``_packet_read``, ``_packet_queue``), pinned in pyproject.toml; tests/monitoring run them."""

    READ_CHUNK = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_pos = 0
        self._read_from: Any = None   # the socket the buffer came from (a reconnect drops it)

    def _buffered(self) -> bool:
        return self._read_from is not None and self._read_from is self._sock and self._read_pos < len(self._read_buffer)

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._buffered():
            data = super()._sock_recv(max(bufsize, self.READ_CHUNK))
            if len(data) <= bufsize:
                return data
            self._read_buffer, self._read_pos, self._read_from = data, 0, self._sock
        start = self._read_pos
        self._read_pos = start + bufsize
        return self._read_buffer[start:start + bufsize]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        # Packets already read into the buffer: select() would not wake for them.
        while rc == mqtt.MQTT_ERR_SUCCESS and self._sock is not None and self._buffered():
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == mqtt.MQTT_ERR_AGAIN:
                return mqtt.MQTT_ERR_SUCCESS
        return rc

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK (success) for these QoS 1 messages, in one write."""
        if mids:
            self._packet_queue(mqtt.PUBACK, b"".join(_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids), 0, 1)


class IngestWorker:
    def __init__(self, *, store_url: str, host: str = "127.0.0.1", port: int = 1883, username: str | None = None,
                 password: str | None = None, ca_file: str | None = None, group: str = DEFAULT_GROUP,
                 client_id: str = "hub-ingest", batch_max: int = 500, batch_wait_s: float = 0.05,
                 commands_every_s: float = 1.0, keepalive_s: int = 30, reconnect_max_s: float = BACKOFF_MAX_S,
                 retained_snapshot: bool = False, protocol: str = "5", clock: Callable[[], float] = time.time,
                 ingest_options: dict[str, Any] | None = None) -> None:
        self.host, self.port, self.group, self.client_id = host, port, group, client_id
        self.batch_max, self.batch_wait_s = max(1, batch_max), batch_wait_s
        self.commands_every_s, self.keepalive_s = commands_every_s, keepalive_s
        self.clock = clock
        self.retained_snapshot = retained_snapshot
        self._snapshot_since: float | None = None    # monotonic time of the snapshot's last activity
        self._snapshot_started = 0.0
        self.store = open_store(store_url)
        self.ingest = Ingest(self.store, clock=clock, **(ingest_options or {}))
        self.queue: queue.Queue = queue.Queue(QUEUE_MAX)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()
        self._counters: dict[str, Any] = {
            "messages": 0, "stored": 0, "duplicates": 0, "stale": 0, "ignored": 0, "held": 0, "dropped": {},
            "batches": 0, "batch_seconds_sum": 0.0, "batch_seconds_max": 0.0, "store_errors": 0,
            "commands_sent": 0, "connects": 0, "retained": 0,
            "lag_ms_counts": [0] * (len(LAG_BUCKETS_MS) + 1)}
        if protocol not in PROTOCOLS:
            raise ValueError(f"MQTT protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
        self.protocol = protocol
        if protocol != "5":
            self.group, self.retained_snapshot = "", False   # no shared subscriptions, no identifiers
        self.client = _IngestClient(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=PROTOCOLS[protocol],
                                  manual_ack=True)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.reconnect_delay_set(min(1.0, reconnect_max_s), reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "IngestWorker":
        # connect_async + loop_start: paho's thread connects and reconnects with back-off.
        if self.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
            self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s, clean_start=True,
                                      properties=properties)
        else:
            self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self.client.loop_start()
        self._writer = threading.Thread(target=self._write_loop, name=f"ingest-{self.client_id}", daemon=True)
        self._writer.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stops taking messages, stores and acknowledges what was received, then closes."""
        if self.connected.is_set():
            with contextlib.suppress(Exception):
                self.client.unsubscribe(subscription(self.group))
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(timeout)
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
        self.store.close()

    def counters(self) -> dict[str, Any]:
        """For /metrics: messages received, their outcomes, batches and their latency."""
        with self._lock:
            snapshot = dict(self._counters)
            snapshot["dropped"] = dict(self._counters["dropped"])
            snapshot["lag_ms_counts"] = list(self._counters["lag_ms_counts"])
        snapshot["queued"] = self.queue.qsize()
        snapshot["connected"] = self.connected.is_set()
        snapshot["subscribed"] = self.subscribed.is_set()
        return snapshot

    # --- paho callbacks (its network thread) -------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("hub ingest %s: broker refused the connection: %s", self.client_id, reason_code)
            return
        self.connected.set()
        with self._lock:
            self._counters["connects"] += 1
        client.subscribe(subscription(self.group), qos=1)
        if self.retained_snapshot:
            properties = Properties(PacketTypes.SUBSCRIBE)
            properties.SubscriptionIdentifier = SNAPSHOT_ID
            self._snapshot_started = self._snapshot_since = time.monotonic()
            client.subscribe(topics.HUB_FILTER, options=SubscribeOptions(qos=1), properties=properties)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if reason_codes and not reason_codes[0].is_failure:
            self.subscribed.set()
        else:
            log.error("hub ingest %s: subscription to %s refused: %s", self.client_id, subscription(self.group),
                      reason_codes)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.subscribed.clear()

    def _on_message(self, client, userdata, message) -> None:
        ids = getattr(message.properties, "SubscriptionIdentifier", None) or []
        if SNAPSHOT_ID in ids:
            if not message.retain:   # a live copy: the shared subscription brings it to one worker
                with contextlib.suppress(Exception):
                    client.ack(message.mid, message.qos)
                return
            self._snapshot_since = time.monotonic()
            with self._lock:
                self._counters["retained"] += 1
        try:
            topic_name: Any = message.topic
        except UnicodeDecodeError:   # the broker should refuse such a topic; ingest drops it anyway
            topic_name = b"<not utf-8>"
        # Blocks when the writer is far behind: paho then stops reading and the broker keeps the rest.
        self.queue.put((topic_name, message.payload, bool(message.retain), message.mid, message.qos))
        with self._lock:
            self._counters["messages"] += 1

    # --- the writer thread -----------------------------------------------------------------------
    def _write_loop(self) -> None:
        next_commands = 0.0
        while True:
            batch = self._take_batch()
            if batch:
                self._store_batch(batch)
            elif self._stopping.is_set():
                return
            self._maybe_end_snapshot()
            if self.commands_every_s and time.monotonic() >= next_commands and not self._stopping.is_set():
                next_commands = time.monotonic() + self.commands_every_s
                try:
                    self.send_pending_commands()
                except Exception:
                    log.exception("hub ingest %s: sending commands failed", self.client_id)

    def _maybe_end_snapshot(self) -> None:
        since = self._snapshot_since
        now = time.monotonic()
        if since is not None and (now - since > SNAPSHOT_QUIET_S or now - self._snapshot_started > SNAPSHOT_MAX_S):
            self._snapshot_since = None
            with contextlib.suppress(Exception):
                self.client.unsubscribe(topics.HUB_FILTER)

    def _take_batch(self) -> list[tuple]:
        try:
            first = self.queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.batch_max:
            left = deadline - time.monotonic()
            try:
                batch.append(self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _store_batch(self, batch: list[tuple]) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            started = time.monotonic()
            try:
                result = self.ingest.handle_batch([item[:3] for item in batch])
                break
            except Exception as exc:   # the store is down or full: keep the batch, unacknowledged
                with self._lock:
                    self._counters["store_errors"] += 1
                if self._stopping.is_set():   # the broker keeps unacknowledged messages of a kept session
                    log.error("hub ingest %s: store failed while stopping; %d messages not stored",
                              self.client_id, len(batch))
                    return
                log.warning("hub ingest %s: store failed (%s), retrying in %.1f s", self.client_id,
                            type(exc).__name__, backoff)
                time.sleep(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
        elapsed = time.monotonic() - started
        committed_at = float(self.clock())
        with contextlib.suppress(Exception):
            self.client.ack_many([mid for *_, mid, qos in batch if qos == 1])
        for *_, mid, qos in batch:
            if qos == 2:   # the subscription is QoS 1; kept for a broker that sends more
                with contextlib.suppress(Exception):
                    self.client.ack(mid, qos)
        self._count(result, elapsed, committed_at)

    def _count(self, result: BatchResult, elapsed: float, committed_at: float) -> None:
        lags = [bisect.bisect_left(LAG_BUCKETS_MS, max(0.0, 1000 * (committed_at - sent_at))) for sent_at in result.sent_ats]
        with self._lock:
            c = self._counters
            for name in ("stored", "duplicates", "stale", "ignored", "held"):
                c[name] += getattr(result, name)
            for reason, count in result.dropped.items():
                c["dropped"][reason] = c["dropped"].get(reason, 0) + count
            c["batches"] += 1
            c["batch_seconds_sum"] += elapsed
            c["batch_seconds_max"] = max(c["batch_seconds_max"], elapsed)
            for bucket in lags:
                c["lag_ms_counts"][bucket] += 1

    # --- commands, hub → site -------------------------------------------------------------------
    def send_pending_commands(self) -> int:
        """Publishes the commands not yet sent and not expired; the number sent."""
        if not self.connected.is_set():
            return 0
        now = float(self.clock())
        rows = self.store.query(
            "SELECT id, site, controller, action, args, requested_by, expires_at FROM commands "
            "WHERE sent_at IS NULL AND expires_at > ? ORDER BY requested_at LIMIT ?", (now, COMMANDS_PER_ROUND))
        sent = 0
        for command_id, site, controller, action, args, requested_by, expires_at in rows:
            with self.store.transaction() as tx:   # claim it: only one worker sends a command
                tx.execute("UPDATE commands SET sent_at = ? WHERE id = ? AND sent_at IS NULL", (now, command_id))
                if tx.rowcount != 1:
                    continue
                try:
                    command = topics.Command(
                        ts=datetime.fromtimestamp(now, timezone.utc), id=command_id, action=action,
                        args=_json_object(args), by=requested_by,
                        ttl_s=max(1, min(topics.COMMAND_TTL_MAX_S, int(expires_at - now))))
                    out = topics.outgoing(site, command, controller)
                except (ValueError, TypeError) as exc:   # a row the site would refuse: answer it here
                    tx.execute("UPDATE commands SET result_ok = 0, result_message = ?, result_at = ? WHERE id = ?",
                               (f"not sent: invalid command ({type(exc).__name__})", now, command_id))
                    continue
            self.client.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)
            sent += 1
        with self._lock:
            self._counters["commands_sent"] += sent
        return sent


def _json_object(text: Any) -> dict:
    value = json.loads(text) if isinstance(text, str) else text
    if not isinstance(value, dict):
        raise ValueError("command args are not an object")
    return value


# --- several processes ---------------------------------------------------------------------------
def _worker_process(options: dict[str, Any], stats: Any, stop: Any, report_every_s: float) -> None:
    logging.basicConfig(level=logging.WARNING)
    worker = IngestWorker(**options).start()
    try:
        while not stop.wait(report_every_s):
            stats.put((options["client_id"], worker.counters()))
    finally:
        worker.stop()
        stats.put((options["client_id"], worker.counters() | {"stopped": True}))


def lag_quantile_ms(counts: list[int], quantile: float) -> float:
    """The upper bound of the bucket holding ``quantile`` of the lags counted (nan when none)."""
    total = sum(counts)
    if not total:
        return float("nan")
    rank, seen = quantile * total, 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return LAG_BUCKETS_MS[index] if index < len(LAG_BUCKETS_MS) else float("inf")
    return float("inf")


def merged_lag_counts(snapshots: dict[str, dict[str, Any]]) -> list[int]:
    merged = [0] * (len(LAG_BUCKETS_MS) + 1)
    for counters in snapshots.values():
        for index, count in enumerate(counters.get("lag_ms_counts", ())):
            merged[index] += count
    return merged


class WorkerPool:
    """``n`` worker processes (spawned), each its own client id in the same share group."""

    def __init__(self, n: int, options: dict[str, Any], report_every_s: float = 0.5) -> None:
        context = multiprocessing.get_context("spawn")
        self._stats = context.Queue()
        self._stop = context.Event()
        self._latest: dict[str, dict[str, Any]] = {}
        prefix = options.pop("client_id", "hub-ingest")
        snapshot = options.pop("retained_snapshot", False)
        self.client_ids = [f"{prefix}-{index}" for index in range(n)]
        self.processes = [   # one retained snapshot is enough: the first worker takes it
            context.Process(target=_worker_process, name=client_id, daemon=True,
                            args=(options | {"client_id": client_id, "retained_snapshot": snapshot and index == 0},
                                  self._stats, self._stop, report_every_s))
            for index, client_id in enumerate(self.client_ids)]
        for process in self.processes:
            process.start()
        # Read the reports as they come: a pipe nobody reads fills up, and the workers' reports
        # would then arrive long after they were made.
        self._latest_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_reports, name="hub-pool-reports", daemon=True)
        self._reader.start()

    def _read_reports(self) -> None:
        while True:
            try:
                client_id, counters = self._stats.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set() and not any(p.is_alive() for p in self.processes):
                    return
                continue
            except (EOFError, OSError):
                return
            with self._latest_lock:
                self._latest[client_id] = counters

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """The latest counters each worker reported, by client id."""
        with self._latest_lock:
            return dict(self._latest)

    def total(self, name: str) -> int:
        return sum(c.get(name, 0) for c in self.snapshots().values())

    def alive(self) -> bool:
        return all(p.is_alive() for p in self.processes)

    def stop(self, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
        """Asks every worker to drain and stop; their final counters."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(5)
        self._reader.join(max(1.0, deadline - time.monotonic()))
        return self.snapshots()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_workers(n: int, **options: Any) -> WorkerPool:
    """Starts ``n`` ingest worker processes with IngestWorker's keyword arguments (``client_id``
    is the prefix: each process gets ``<client_id>-<i>``); ``stop()`` the pool when done."""
    if n < 1:
        raise ValueError("at least one worker")
    return WorkerPool(n, dict(options))


__all__ = ["IngestWorker", "WorkerPool", "run_workers", "subscription", "DEFAULT_GROUP", "lag_quantile_ms",
           "merged_lag_counts", "LAG_BUCKETS_MS"]


def main(argv: list[str] | None = None) -> int:
    """``python -m monitoring.hub.worker --store URL [--workers N] …``: runs the ingest until
    interrupted. The MQTT password comes from $CNAP_HUB_MQTT_PASSWORD (never the command line,
    which ps shows)."""
    import argparse
    import os
    import signal

    parser = argparse.ArgumentParser(prog="python -m monitoring.hub.worker", description="The hub's MQTT ingest.")
    parser.add_argument("--store", required=True, help="sqlite:///path or postgresql://…")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--username", default=None, help="the hub account, e.g. hub.central")
    parser.add_argument("--ca-file", default=None, help="CA certificate: connect with TLS")
    parser.add_argument("--group", default=DEFAULT_GROUP)
    parser.add_argument("--client-id", default="hub-ingest")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pool = run_workers(args.workers, store_url=args.store, host=args.host, port=args.port, username=args.username,
                       password=os.environ.get("CNAP_HUB_MQTT_PASSWORD"), ca_file=args.ca_file, group=args.group,
                       client_id=args.client_id)
    try:
        while not stop.wait(1.0) and pool.alive():
            pass
    except KeyboardInterrupt:
        pass
    finally:
        pool.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
