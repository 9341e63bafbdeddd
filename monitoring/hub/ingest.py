"""The hub's ingest: a batch of MQTT messages in, one transaction of rows out.

    ingest = Ingest(open_store(url))
    result = ingest.handle_batch([(topic, payload_bytes, retained), ...])   # never raises on input

Everything a broker may deliver goes through ``topics.parse``; what it refuses lands in
``dropped`` with the parser's reason. The rest is written to the tables of ``schema.py``:

- ``sites``: created by the first stored message of a site; ``last_seen`` rewritten at most every
  ``SITE_TOUCH_S`` (each worker remembers what it wrote); ``status`` from ``cnap/<site>/online``,
  ``bridge`` ('up'/'down') from ``cnap/<site>/bridge``, ``skew_s`` = the agent's ``ts`` minus the
  hub's clock on live (not retained) state messages.
- ``entities``: the latest state per site and entity ('ventilation', 'air', 'power',
  'uplink/<name>', 'device/<device>', 'internet', 'guest_network'). A message older (by its ``ts``) than the stored one is not
  applied (counted ``stale``); one with the same ``ts`` is a ``duplicate``. A stored ``ts`` far in
  the future (an agent whose clock was fixed since) does not block newer messages.
- ``samples``: the numeric fields of each applied state, named by their path in the payload
  (see ``sample_metrics``), at the agent's ``ts`` unless that is implausible (more than
  ``topics.MAX_FUTURE_SKEW_S`` ahead of the hub, or older than the samples' retention), then at
  the hub's receive time: never a future-dated sample. Older rows are swept now and then.
- ``survey_answers``: exactly once per UUID.
- ``commands``: the result columns, from ``cmd_result`` topics. The hub's own ``cmd`` messages
  (the hub account reads the whole tree) are ignored.
- ``dropped``: topic, site and reason of what was refused, the newest ``dropped_keep`` rows.

A retained message whose ``ts`` is older than ``retained_max_age_s`` is the leftover of a site
that no longer reports (retained topics outlive their publisher): dropped as ``retained_old``, and
it creates no site. A retained status (``online``) has no ``ts``: for a site not known yet it is held
in memory until a stored message shows the site exists (``held`` in the counts), then applied.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from monitoring import topics
from monitoring.hub import schema
from monitoring.hub.db import HubStore

log = logging.getLogger(__name__)

STATE_KINDS = ("ventilation", "air", "power", "uplink", "device", "internet", "guest_network")
# Why browsing sessions ended (terminal/internet/store.py END_REASONS): the only `ended.<reason>`
# metrics, so a site cannot grow the samples' metric names with words of its own.
ENDED_REASONS = ("user", "session_limit", "idle", "stopped", "error")
MAX_BATCH = 5000                 # a caller's larger batch is split: one transaction stays short
MAX_DROPPED_TOPIC_CHARS = 160
SWEEP_EVERY_S = 300.0
SITE_TOUCH_S = 5.0               # a site's last_seen is rewritten at most this often …
SKEW_CHANGE_S = 1.0              # … unless its skew moved by more than this (or its status changed)
SITE_CACHE_MAX = 200000
HOLD_S = 600.0                   # a retained status of a site not (yet) known waits this long …
HOLD_MAX = 10000                 # … for a state that shows the site exists, for at most this many sites
ROWS_PER_INSERT = 250            # rows per multi-row INSERT (7 columns: far below both engines' limits)
_IN_CHUNK = 400                  # parameters per IN (…) list, far below both engines' limits


@dataclass
class BatchResult:
    """What one ``handle_batch`` did with its messages (each is counted exactly once)."""
    stored: int = 0
    duplicates: int = 0
    stale: int = 0
    ignored: int = 0                                        # the hub's own commands
    held: int = 0                                           # retained statuses of sites not known yet
    dropped: dict[str, int] = field(default_factory=dict)   # reason -> count
    sent_ats: list[float] = field(default_factory=list)     # ts of the live states applied (for lag figures)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def total(self) -> int:
        return self.stored + self.duplicates + self.stale + self.ignored + self.held + self.dropped_total

    def add(self, other: "BatchResult") -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.stale += other.stale
        self.ignored += other.ignored
        self.held += other.held
        for reason, count in other.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        self.sent_ats.extend(other.sent_ats)


def entity_name(message: topics.Message) -> str:
    """'ventilation', 'air', 'power', 'uplink/<name>', 'device/<device>', 'internet' or 'guest_network'."""
    return f"{message.kind}/{message.name}" if message.kind in ("uplink", "device") else message.kind


def sample_metrics(payload: topics.Payload) -> list[tuple[str, float]]:
    """The numeric fields worth a chart, named by their path in the payload: ``level``,
    ``sensors.<name>.co2_ppm`` (also temperature_c, humidity_pct), ``ups.charge_pct`` (runtime_s,
    load_pct, input_voltage_v), ``inputs.<name>.voltage_v``, ``latency_ms``, ``loss_pct``,
    ``cassette_bills``, ``fill_pct`` (percent of the cassette's capacity); browsing at the kiosk:
    ``sessions``, ``minutes``, ``blocked_hook``, ``blocked_proxy``, ``blocked`` (both layers),
    ``ended.<reason>`` (known reasons only); guest Wi-Fi: ``clients_now``, ``admitted_today``,
    ``bytes_up``, ``bytes_down``, ``blocked``, ``redirected``. A bounded set of names per entity."""
    found: list[tuple[str, Any]] = []
    if isinstance(payload, topics.VentilationState):
        found.append(("level", payload.level))
    elif isinstance(payload, topics.AirQualityState):
        for sensor in payload.sensors:
            for name in ("co2_ppm", "temperature_c", "humidity_pct"):
                found.append((f"sensors.{sensor.name}.{name}", getattr(sensor, name)))
    elif isinstance(payload, topics.PowerState):
        if payload.ups is not None:
            for name in ("charge_pct", "runtime_s", "load_pct", "input_voltage_v"):
                found.append((f"ups.{name}", getattr(payload.ups, name)))
        for power_input in payload.inputs:
            found.append((f"inputs.{power_input.name}.voltage_v", power_input.voltage_v))
    elif isinstance(payload, topics.UplinkState):
        found += [("latency_ms", payload.latency_ms), ("loss_pct", payload.loss_pct)]
    elif isinstance(payload, topics.BillValidatorState):
        found += [("cassette_bills", payload.cassette_bills),
                  ("fill_pct", 100.0 * payload.cassette_bills / payload.cassette_capacity)]
    elif isinstance(payload, topics.InternetState):
        # Counters only: the top blocked hosts stay in the entity (a host per metric name would
        # let any site add metric names without end).
        found += [("sessions", payload.sessions), ("minutes", payload.minutes),
                  ("blocked_hook", payload.blocked_hook), ("blocked_proxy", payload.blocked_proxy),
                  ("blocked", payload.blocked_hook + payload.blocked_proxy)]
        found += [(f"ended.{reason}", payload.ended[reason]) for reason in ENDED_REASONS if reason in payload.ended]
    elif isinstance(payload, topics.GuestNetworkState):
        found += [(name, getattr(payload, name)) for name in (
            "clients_now", "admitted_today", "bytes_up", "bytes_down", "blocked", "redirected")]
    return [(name, float(value)) for name, value in found
            if value is not None and not isinstance(value, bool) and math.isfinite(float(value))]


def _safe_text(value: Any, limit: int) -> str:
    """A topic as it can be shown: text, printable, bounded (it came from anyone on the broker)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value[:limit * 4]).decode("utf-8", "replace")
    elif not isinstance(value, str):
        value = f"<{type(value).__name__}>"
    cut = "".join(ch if ch.isprintable() else "?" for ch in value[:limit])
    return cut + ("…" if len(value) > limit else "")


@dataclass
class _Parsed:
    message: topics.Message
    retained: bool
    sent_at: float | None


class Ingest:
    def __init__(self, store: HubStore, *, clock: Callable[[], float] = time.time,
                 retained_max_age_s: float = 7 * 86400, dropped_keep: int = 10000,
                 samples_max_age_s: float = 30 * 86400, ensure_schema: bool = True) -> None:
        self.store = store
        self.clock = clock
        self.retained_max_age_s = retained_max_age_s
        self.dropped_keep = max(1, int(dropped_keep))
        self.samples_max_age_s = samples_max_age_s
        self._next_sweep = 0.0
        # site -> (when its row was last written, the skew written): most messages then need no
        # sites write at all (a site sends ~30 states per period).
        self._site_written: dict[str, tuple[float, float | None]] = {}
        # site -> {"status"|"bridge": (value, received_at)}: retained statuses held back (below).
        self._held: dict[str, dict[str, tuple[str, float]]] = {}
        if ensure_schema:
            schema.ensure(store)

    # --- the public entry ------------------------------------------------------------------------
    def handle_batch(self, messages: Iterable[Any]) -> BatchResult:
        """Store a batch, one transaction per (at most MAX_BATCH) messages. Never raises because of
        what the messages hold; a store that fails (down, full) raises its own error, and the
        caller keeps the batch to try again (every write here is idempotent)."""
        total = BatchResult()
        try:
            items = list(messages) if not isinstance(messages, list) else messages
        except TypeError:   # not a list of messages at all
            items = [None]
        for start in range(0, len(items), MAX_BATCH):
            total.add(self._handle(items[start:start + MAX_BATCH]))
        if not items:
            self._maybe_sweep()
        return total

    # --- one transaction -------------------------------------------------------------------------
    def _handle(self, items: list[Any]) -> BatchResult:
        now = float(self.clock())
        result = BatchResult()
        dropped_rows: list[tuple] = []
        accepted: list[_Parsed] = []
        for item in items:
            parsed = self._classify(item, now, result, dropped_rows)
            if parsed is not None:
                accepted.append(parsed)
        for attempt in range(3):
            try:
                outcome = BatchResult(dropped=dict(result.dropped), ignored=result.ignored)
                held = {site: dict(kinds) for site, kinds in self._held.items()}
                with self.store.transaction() as tx:
                    written = self._write(tx, accepted, now, outcome, list(dropped_rows), held)
                break
            except Exception as exc:   # deadlock or serialization failure between two workers: retry
                if attempt == 2 or not _retryable(exc):
                    raise
                log.info("ingest batch retried after %s", type(exc).__name__)
        if len(self._site_written) > SITE_CACHE_MAX:
            self._site_written.clear()
        self._site_written.update(written)   # only once committed
        self._held = {site: kinds for site, kinds in held.items()
                      if kinds and max(at for _, at in kinds.values()) > now - HOLD_S}
        if len(self._held) > HOLD_MAX:
            self._held = dict(sorted(self._held.items(), key=lambda kv: -max(at for _, at in kv[1].values()))[:HOLD_MAX])
        self._maybe_sweep(now)
        return outcome

    def _classify(self, item: Any, now: float, result: BatchResult, dropped_rows: list[tuple]) -> _Parsed | None:
        def drop(reason: str, site: str | None, topic_name: Any) -> None:
            result.dropped[reason] = result.dropped.get(reason, 0) + 1
            dropped_rows.append((now, site, _safe_text(topic_name, MAX_DROPPED_TOPIC_CHARS), reason))

        try:
            topic_name, payload, retained = item
        except Exception:
            drop("malformed", None, item if isinstance(item, (str, bytes)) else "")
            return None
        retained = retained is True or (type(retained) is int and retained == 1)
        message = topics.parse(topic_name, payload)   # no `now`: a skewed agent is stored, its skew noted
        if isinstance(message, topics.Rejected):
            ref = topics.parse_topic(topic_name)
            drop(message.reason, ref.site if isinstance(ref, topics.TopicRef) else None, topic_name)
            return None
        if message.kind == "cmd":
            result.ignored += 1
            return None
        sent_at = None
        if isinstance(message.payload, topics.Payload):
            sent_at = message.payload.ts.timestamp()
        if retained and sent_at is not None and sent_at < now - self.retained_max_age_s:
            drop("retained_old", message.site, topic_name)
            return None
        return _Parsed(message, retained, sent_at)

    def _write(self, tx, accepted: list[_Parsed], now: float, result: BatchResult, dropped_rows: list[tuple],
               held: dict[str, dict[str, tuple[str, float]]]) -> dict[str, tuple[float, float | None]]:
        sites: dict[str, dict[str, Any]] = {}
        states = [p for p in accepted if p.message.kind in STATE_KINDS]
        answers = [p for p in accepted if p.message.kind == "survey"]
        results = [p for p in accepted if p.message.kind == "cmd_result"]
        future_limit = now + topics.MAX_FUTURE_SKEW_S

        # Entities: compare with what is stored and with earlier messages of this batch.
        known = self._stored_sent_at(tx, sorted({(p.message.site, entity_name(p.message)) for p in states}))
        latest: dict[tuple[str, str], tuple[float, _Parsed]] = {}
        samples: list[tuple] = []
        for p in states:
            key = (p.message.site, entity_name(p.message))
            have = latest[key][0] if key in latest else known.get(key)
            if have is not None and have <= future_limit:
                if p.sent_at < have:
                    result.stale += 1
                    continue
                if p.sent_at == have:
                    result.duplicates += 1
                    continue
            latest[key] = (p.sent_at, p)
            result.stored += 1
            at = p.sent_at if now - self.samples_max_age_s <= p.sent_at <= future_limit else now
            samples += [(key[0], key[1], metric, at, value) for metric, value in sample_metrics(p.message.payload)]
            site = sites.setdefault(p.message.site, {})
            if not p.retained:
                site["skew_s"] = p.sent_at - now
                result.sent_ats.append(p.sent_at)

        # Survey answers: exactly once by UUID, in this batch and against the table.
        fresh: dict[str, _Parsed] = {}
        have_uuids = self._existing(tx, "survey_answers", "uuid", sorted({p.message.payload.uuid for p in answers}))
        for p in answers:
            uuid = p.message.payload.uuid
            if uuid in have_uuids or uuid in fresh:
                result.duplicates += 1
            else:
                fresh[uuid] = p
                result.stored += 1
                sites.setdefault(p.message.site, {})

        # Command results: only for a command this hub sent to that site, once.
        command_updates = []
        for p in results:
            row = tx.execute("SELECT result_at FROM commands WHERE id = ? AND site = ?",
                             (p.message.payload.id, p.message.site)).fetchone()
            if row is None:
                result.dropped["unknown_command"] = result.dropped.get("unknown_command", 0) + 1
                dropped_rows.append((now, p.message.site, topics.topic("cmd_result", p.message.site, p.message.name),
                                     "unknown_command"))
                continue
            if row[0] is not None or any(u[3] == p.message.payload.id for u in command_updates):
                result.duplicates += 1
                continue
            payload = p.message.payload
            command_updates.append((1 if payload.ok else 0, payload.message, now, payload.id, p.message.site))
            result.stored += 1
            sites.setdefault(p.message.site, {})

        # A retained online/offline carries no ts to judge its age by: a long-gone site's last will
        # looks like any other. It is applied when the site is known or shows itself with a stored
        # message (now or within HOLD_S); until then it is held, not written.
        statuses = [p for p in accepted if p.message.kind in ("online", "bridge")]
        unknown = sorted({p.message.site for p in statuses if p.retained and p.message.site not in sites
                          and p.message.site not in self._site_written})
        known_sites = self._existing(tx, "sites", "site", unknown) if unknown else set()
        for p in statuses:
            column = "status" if p.message.kind == "online" else "bridge"
            value = p.message.payload if column == "status" else ("up" if p.message.payload == "1" else "down")
            if p.retained and p.message.site in unknown and p.message.site not in known_sites:
                held.setdefault(p.message.site, {})[column] = (value, now)
                result.held += 1
                continue
            sites.setdefault(p.message.site, {})[column] = value
            result.stored += 1
        for site in [name for name in sites if name in held]:
            for column, (value, _) in held.pop(site).items():
                sites[site].setdefault(column, value)   # a status in this batch is newer

        # Writes in a fixed order (sites, then entities, each sorted) so that two workers' batches on
        # PostgreSQL take row locks in the same order and cannot deadlock each other.
        site_names = sorted(name for name, change in sites.items() if self._needs_write(name, change, now))
        _insert_rows(
            tx, "INSERT INTO sites (site, status, first_seen, last_seen, skew_s)", "(?, 'unknown', ?, ?, ?)",
            [(name, now, now, sites[name].get("skew_s")) for name in site_names],
            "ON CONFLICT (site) DO UPDATE SET last_seen = CASE WHEN excluded.last_seen > sites.last_seen "
            "THEN excluded.last_seen ELSE sites.last_seen END, skew_s = COALESCE(excluded.skew_s, sites.skew_s)")
        tx.executemany("UPDATE sites SET status = ?, status_at = ? WHERE site = ? AND (status_at IS NULL OR status_at <= ?)",
                       [(sites[n]["status"], now, n, now) for n in site_names if "status" in sites[n]])
        tx.executemany("UPDATE sites SET bridge = ? WHERE site = ?",
                       [(sites[n]["bridge"], n) for n in site_names if "bridge" in sites[n]])
        _insert_rows(
            tx, "INSERT INTO entities (site, entity, kind, payload, sent_at, received_at)", "(?, ?, ?, ?, ?, ?)",
            [(site, entity, p.message.kind, topics.encode(p.message.payload).decode(), sent_at, now)
             for (site, entity), (sent_at, p) in sorted(latest.items(), key=lambda kv: kv[0])],
            "ON CONFLICT (site, entity) DO UPDATE SET kind = excluded.kind, payload = excluded.payload, "
            "sent_at = excluded.sent_at, received_at = excluded.received_at "
            "WHERE entities.sent_at IS NULL OR entities.sent_at < excluded.sent_at OR entities.sent_at > ?",
            (future_limit,))
        _insert_rows(tx, "INSERT INTO samples (site, entity, metric, at, value)", "(?, ?, ?, ?, ?)", samples)
        _insert_rows(
            tx, "INSERT INTO survey_answers (uuid, site, answered_at, received_at, payload)", "(?, ?, ?, ?, ?)",
            [(uuid, p.message.site, p.sent_at, now, topics.encode(p.message.payload).decode())
             for uuid, p in sorted(fresh.items())],
            "ON CONFLICT (uuid) DO NOTHING")
        tx.executemany("UPDATE commands SET result_ok = ?, result_message = ?, result_at = ? "
                       "WHERE id = ? AND site = ? AND result_at IS NULL", command_updates)
        if dropped_rows:
            _insert_rows(tx, "INSERT INTO dropped (at, site, topic, reason)", "(?, ?, ?, ?)", dropped_rows)
            top = tx.execute("SELECT max(id) FROM dropped").fetchone()
            if top and top[0] is not None and top[0] > self.dropped_keep:
                tx.execute("DELETE FROM dropped WHERE id <= ?", (top[0] - self.dropped_keep,))
        return {name: (now, sites[name].get("skew_s", self._site_written.get(name, (0, None))[1]))
                for name in site_names}

    def _needs_write(self, site: str, change: dict[str, Any], now: float) -> bool:
        if "status" in change or "bridge" in change or site not in self._site_written:
            return True
        written_at, skew = self._site_written[site]
        if now - written_at >= SITE_TOUCH_S or now < written_at:
            return True
        new_skew = change.get("skew_s")
        return new_skew is not None and (skew is None or abs(new_skew - skew) > SKEW_CHANGE_S)

    def _stored_sent_at(self, tx, keys: list[tuple[str, str]]) -> dict[tuple[str, str], float | None]:
        """The stored ``ts`` of these (site, entity) rows: primary-key lookups, not whole sites."""
        known: dict[tuple[str, str], float | None] = {}
        for start in range(0, len(keys), _IN_CHUNK // 2):
            chunk = keys[start:start + _IN_CHUNK // 2]
            # A join with the keys (not `(site, entity) IN (VALUES …)`, which SQLite runs as a scan).
            rows = tx.execute(f"WITH wanted (site, entity) AS (VALUES {','.join(['(?, ?)'] * len(chunk))}) "
                              "SELECT e.site, e.entity, e.sent_at FROM wanted JOIN entities e "
                              "ON e.site = wanted.site AND e.entity = wanted.entity",
                              [value for key in chunk for value in key]).fetchall()
            known.update({(site, entity): sent_at for site, entity, sent_at in rows})
        return known

    def _existing(self, tx, table: str, column: str, values: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(values), _IN_CHUNK):
            chunk = values[start:start + _IN_CHUNK]
            rows = tx.execute(f"SELECT {column} FROM {table} WHERE {column} IN ({','.join('?' * len(chunk))})",
                              chunk).fetchall()
            found.update(row[0] for row in rows)
        return found

    # --- retention -------------------------------------------------------------------------------
    def _maybe_sweep(self, now: float | None = None) -> None:
        now = float(self.clock()) if now is None else now
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_S
        self.sweep(now)

    def sweep(self, now: float | None = None) -> int:
        """Deletes samples older than the retention; the number deleted."""
        now = float(self.clock()) if now is None else now
        with self.store.transaction() as tx:
            tx.execute("DELETE FROM samples WHERE at < ?", (now - self.samples_max_age_s,))
            return max(0, tx.rowcount)


def _insert_rows(tx, head: str, row: str, rows: list[tuple], tail: str = "", tail_params: tuple = ()) -> None:
    """``head VALUES row, row, … tail``, one statement per ROWS_PER_INSERT rows: psycopg sends each
    row of an executemany as a statement of its own, which made PostgreSQL batches three times
    slower. Rows must not repeat a conflict key (the callers' rows are keyed dicts)."""
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start:start + ROWS_PER_INSERT]
        tx.execute(f"{head} VALUES {', '.join([row] * len(chunk))} {tail}",
                   [value for item in chunk for value in item] + list(tail_params))


def _retryable(exc: Exception) -> bool:
    name = type(exc).__name__
    return name in ("DeadlockDetected", "SerializationFailure") or "database is locked" in str(exc)


__all__ = ["Ingest", "BatchResult", "entity_name", "sample_metrics", "STATE_KINDS"]
