"""The hub's alert runtime: feeds the pure machine (monitoring/alerts.py) from the hub's tables and
stores what it decides.

Ingest workers write ``entities`` and ``sites``; the web app queues staff actions in
``alert_requests``. One evaluator process runs ``step()`` every second:

1. the entity and site rows changed since its watermark (re-read ``margin_s`` back, because several
   ingest workers commit out of order; a row version already fed is skipped) become observations
   and site-status events (monitoring/hub/observe.py), in hub-time order;
2. pending staff requests become ack / silence / expire_silence events; a refused one gets the
   machine's reason in ``error``, every one gets ``done_at``;
3. a tick at the evaluator's clock lets time alone fire, resolve and repeat;
4. one transaction stores the outcome: ``alerts`` rows (status, silenced / inhibited flags, the
   summary), ``alert_acks``, ``silences``, ``alert_tracks`` (what was told about each key) and one
   ``notifications`` row per configured channel for each notify command (notify.py sends them).

The machine is pure, so a step that cannot be stored is simply forgotten and done again: the state,
the watermark and the request queue move on only when the transaction commits.

On start the machine's state is rebuilt from the tables (open alerts with their acks, tracks,
active silences, recent history), then every entity and site row is fed once more: a restarted hub
forgets no acknowledgement and re-sends nothing it already sent. Run one evaluator per store.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping

from monitoring import alerts
from monitoring.alerts import (Ack, Alert, AlertConfig, Command, Event, HubState, KeyTrack, Rejected,
                               Silence, finite_number)
from monitoring.hub import notify, observe, schema
from monitoring.hub.db import HubStore

log = logging.getLogger(__name__)

CHANNELS = ("webhook", "email")
MAX_PAYLOAD_CHARS = 65536      # an entities payload (ingest caps them far lower) or a request
MAX_REQUESTS_PER_STEP = 200
FAILED_ROUNDS_BEFORE_SETTING_ASIDE = 3
OPEN = ("pending", "firing")
SILENCE_ID_PREFIX = "silence-"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False, default=str)


def _storable(value: Any) -> bool:
    """Text both engines store and pages show: printable (line breaks allowed), no NUL or lone
    surrogate, which PostgreSQL refuses, so a request with one would fail every round."""
    if isinstance(value, str):
        return all(ch.isprintable() or ch in "\n\r\t" for ch in value)
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


def _load_json(text: Any) -> Any:
    if not isinstance(text, str) or len(text) > MAX_PAYLOAD_CHARS:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


class Evaluator:
    """See the module's docstring. ``notify_channels``: the channels notifications are queued for
    (those configured in notify.py); a rule's channel not listed here is not queued."""

    def __init__(self, store: HubStore, config: AlertConfig = AlertConfig(), *,
                 clock: Callable[[], float] = time.time, notify_channels: Iterable[str] = CHANNELS,
                 margin_s: float = 5.0, rules: tuple[alerts.Rule, ...] | None = None,
                 inhibits: tuple[alerts.InhibitRule, ...] = alerts.DEFAULT_INHIBITS) -> None:
        self.store = schema.ensure(store)
        self.config = config
        self.clock = clock
        self.notify_channels = tuple(c for c in notify_channels if c in CHANNELS)
        self.margin_s = margin_s
        self.counters: Counter[str] = Counter()
        self._fed_entities: dict[tuple[str, str], tuple] = {}   # (site, entity) → row version fed
        self._fed_sites: dict[str, tuple] = {}                   # site → (status, status_at) fed
        self._site_skew: dict[str, float] = {}                   # ingest's skew per site
        self._watermark = -math.inf
        self._failed_rounds = 0
        self._stored_alerts: dict[tuple[str, int], tuple] = {}   # (key, serial) → row last stored
        self._stored_tracks: dict[str, tuple] = {}
        self._seen_alerts: dict[tuple[str, int], tuple] = {}     # (key, serial) → (Alert, flags) stored
        self._seen_tracks: dict[str, tuple] = {}                 # key → (KeyTrack, clear_since) stored
        self.state = self._rebuild(alerts.new_state(config, rules, inhibits))

    @classmethod
    def from_settings(cls, store: HubStore, settings: Mapping[str, Any], *,
                      clock: Callable[[], float] = time.time) -> "Evaluator":
        """The evaluator as the hub runs it: HUB_ALERT_* numbers, rows queued for the channels
        HUB_NOTIFY_* configures (ValueError names a bad setting)."""
        return cls(store, alerts.config_from_settings(settings), clock=clock,
                   notify_channels=notify.settings_from(settings).channels)

    # --- start ---------------------------------------------------------------------------------
    def _rebuild(self, state: HubState) -> HubState:
        rules = state.rule_by_name
        tracks: dict[str, KeyTrack] = {}
        clear_since: dict[str, float] = {}
        for (key, rule, site, device, severity, serial, notified, notified_serial, last_sent_at,
             fire_times, flap_told, clear) in self.store.query(
                "SELECT key, rule, site, device, severity, serial, notified, notified_serial, "
                "last_sent_at, fire_times, flap_told, clear_since FROM alert_tracks"):
            if rule not in rules:
                continue
            times = _load_json(fire_times)
            tracks[key] = KeyTrack(
                labels={"rule": rule, "site": site, "device": device, "severity": severity},
                serial=int(serial), notified=notified, notified_serial=int(notified_serial),
                last_sent_at=last_sent_at, flap_told=bool(flap_told),
                fire_times=tuple(t for t in (times if isinstance(times, list) else [])
                                 if finite_number(t) is not None))
            if clear is not None:
                clear_since[key] = clear
            self._stored_tracks[key] = self._track_row(tracks[key], clear)
        acks: dict[tuple[str, int], list[Ack]] = {}
        for key, serial, at, who, comment in self.store.query(
                "SELECT k.key, k.serial, k.at, k.who, k.comment FROM alert_acks k JOIN alerts a "
                "ON a.key = k.key AND a.serial = k.serial WHERE a.status IN ('pending', 'firing') "
                "ORDER BY k.id"):
            acks.setdefault((key, serial), []).append(Ack(who=who, at=at, comment=comment))
        open_alerts: dict[str, Alert] = {}
        for (key, serial, rule, site, device, severity, status, active_since, fired_at, flaps,
             silenced, inhibited, summary) in self.store.query(
                "SELECT key, serial, rule, site, device, severity, status, active_since, fired_at, "
                "flaps, silenced, inhibited, summary FROM alerts WHERE status IN ('pending', 'firing') "
                "ORDER BY serial"):
            if rule not in rules:
                continue
            alert = Alert(key=key, rule=rule, site=site, device=device, severity=severity,
                          serial=int(serial), status=status, active_since=active_since,
                          fired_at=fired_at, clear_since=clear_since.get(key), flaps=int(flaps),
                          acks=tuple(acks.get((key, serial), ())))
            open_alerts[key] = alert   # the highest serial wins should a key have two open rows
            track = tracks.get(key)
            if track is None or track.serial < alert.serial:
                tracks[key] = replace(track or KeyTrack(labels=alert.labels), serial=alert.serial)
            self._stored_alerts[(key, alert.serial)] = (status, active_since, fired_at, None, int(flaps),
                                                        int(silenced), int(inhibited), summary)
        history = tuple(
            Alert(key=key, rule=rule, site=site, device=device, severity=severity, serial=int(serial),
                  status="resolved", active_since=active_since, fired_at=fired_at, resolved_at=resolved_at,
                  flaps=int(flaps))
            for key, serial, rule, site, device, severity, active_since, fired_at, resolved_at, flaps
            in reversed(self.store.query(
                "SELECT key, serial, rule, site, device, severity, active_since, fired_at, resolved_at, "
                "flaps FROM alerts WHERE status = 'resolved' ORDER BY resolved_at DESC LIMIT ?",
                (alerts.MAX_HISTORY,)))
            if rule in rules)
        now = self.clock()
        silences = {}
        for sid, matchers, starts_at, ends_at, creator, comment in self.store.query(
                "SELECT id, matchers, starts_at, ends_at, creator, comment FROM silences "
                "WHERE ended_at IS NULL AND ends_at > ?", (now,)):
            found = _load_json(matchers)
            if isinstance(found, dict):
                silences[sid] = Silence(id=sid, matchers=tuple(sorted(found.items())), starts_at=starts_at,
                                        ends_at=ends_at, creator=creator, comment=comment)
        self.counters["rebuilt_alerts"] = len(open_alerts)
        # wake_at -inf: the first step (which feeds every row again) reconciles every key.
        return replace(state, now=max(state.now, now), alerts=open_alerts, tracks=tracks,
                       silences=silences, history=history, wake_at=-math.inf)

    # --- one round -----------------------------------------------------------------------------
    def step(self) -> list[Command]:
        """One round (see the module's docstring). Returns the machine's commands it stored;
        never raises for bad rows or a store that is down (counted, retried next round)."""
        self.counters["steps"] += 1
        now = self.clock()
        try:
            since = self._watermark - self.margin_s
            entity_rows = self.store.query(
                "SELECT site, entity, kind, payload, sent_at, received_at FROM entities "
                "WHERE received_at > ? ORDER BY received_at", (since,))
            site_rows = self.store.query(
                "SELECT site, status, status_at, skew_s, last_seen FROM sites "
                "WHERE status_at > ? OR last_seen > ?", (since, since))
            requests = self.store.query(
                "SELECT id, kind, payload, who, at FROM alert_requests WHERE done_at IS NULL "
                "ORDER BY id LIMIT ?", (MAX_REQUESTS_PER_STEP,))
        except Exception:
            self.counters["store_errors"] += 1
            log.exception("alert evaluator: cannot read the hub store")
            return []
        state = self.state
        commands: list[Command] = []
        fed_entities, fed_sites, site_skew = {}, {}, {}
        watermark = self._watermark
        timed: list[tuple[float, int, Event]] = []
        for row in site_rows:
            try:
                site, status, status_at, skew_s, last_seen = row
                skew = finite_number(skew_s)
                if isinstance(site, str) and skew is not None:
                    site_skew[site] = skew
                watermark = max(watermark, finite_number(last_seen) or -math.inf,
                                finite_number(status_at) or -math.inf)
                version = (status, status_at)
                if self._fed_sites.get(site) == version:
                    continue
                fed_sites[site] = version
                event = observe.site_status_event(site, status, status_at)
                if event is not None:
                    timed.append((event.data["at"], len(timed), event))
            except Exception:
                self.counters["bad_rows"] += 1
        skews = {**self._site_skew, **site_skew}
        for row in entity_rows:
            try:
                site, entity, kind, payload, sent_at, received_at = row
                watermark = max(watermark, finite_number(received_at) or -math.inf)
                version = (received_at, sent_at, hash(payload))
                if self._fed_entities.get((site, entity)) == version:
                    continue
                fed_entities[(site, entity)] = version
                found = observe.observations(site, entity, kind, _load_json(payload), sent_at, received_at,
                                             replayed=self._replayed(skews.get(site), sent_at, received_at))
                if not found:
                    self.counters["rows_without_observation"] += 1
                for obs in found:
                    timed.append((obs.received_at, len(timed), Event("observe", {"observation": obs})))
            except Exception:
                self.counters["bad_rows"] += 1
        # An ingest host whose clock runs ahead must not push the watermark past rows to come.
        watermark = max(self._watermark, min(watermark, now))
        timed.sort(key=lambda item: item[:2])
        for _, _, event in timed:
            state, out = self._handle(state, event)
            commands += out
        self.counters["events"] += len(timed)
        outcomes: list[tuple[int, str | None]] = []
        who_of_silence_end: dict[str, str] = {}
        for request in requests:
            state, out, error = self._request(state, request, now, who_of_silence_end)
            commands += out
            outcomes.append((request[0], error))
        state, out = self._handle(state, Event("tick", {"at": now}))
        commands += out
        try:
            self._store(state, commands, outcomes, who_of_silence_end, now)
        except Exception:
            self.counters["store_errors"] += 1
            self._failed_rounds += 1
            log.exception("alert evaluator: cannot store a round; it is done again next round")
            if self._failed_rounds >= FAILED_ROUNDS_BEFORE_SETTING_ASIDE and outcomes:
                self._set_aside([request_id for request_id, _ in outcomes], now)
            return []
        self._failed_rounds = 0
        self.state = state
        self._fed_entities.update(fed_entities)
        self._fed_sites.update(fed_sites)
        self._site_skew = skews
        self._watermark = watermark
        self.counters["requests_done"] += sum(1 for _, e in outcomes if e is None)
        self.counters["requests_refused"] += sum(1 for _, e in outcomes if e is not None)
        return commands

    def _set_aside(self, request_ids: list[int], now: float) -> None:
        """Rounds keep failing while requests are pending: one of them may be what the store
        refuses. They are answered ``not_stored`` (staff can try again) so alerting goes on."""
        try:
            with self.store.transaction() as tx:
                tx.executemany("UPDATE alert_requests SET done_at = ?, error = 'not_stored' WHERE id = ?",
                               [(now, request_id) for request_id in request_ids])
            self.counters["requests_set_aside"] += len(request_ids)
        except Exception:
            log.exception("alert evaluator: cannot set the pending requests aside either")

    def run(self, stop_event: threading.Event, interval_s: float = 1.0) -> None:
        """``step()`` every ``interval_s`` until ``stop_event`` is set."""
        while not stop_event.is_set():
            try:
                self.step()
            except Exception:   # a bug in one round must not end the hub's alerting
                self.counters["step_errors"] += 1
                log.exception("alert evaluator: round failed")
            stop_event.wait(interval_s)

    def metrics(self) -> dict[str, float]:
        """Counters for /metrics: the evaluator's, the machine's (``machine_*``) and open alerts."""
        values: dict[str, float] = dict(self.counters)
        values.update({f"machine_{name}": n for name, n in self.state.counters.items()})
        by_status = Counter(a.status for a in self.state.alerts.values())
        values["alerts_pending"] = by_status["pending"]
        values["alerts_firing"] = by_status["firing"]
        values["silences_active"] = sum(1 for s in self.state.silences.values() if s.active(self.state.now))
        return values

    # --- pieces ----------------------------------------------------------------------------------
    def _replayed(self, site_skew: float | None, sent_at: Any, received_at: Any) -> bool:
        """A row whose agent time disagrees with the skew ingest measures for the site live (a
        retained state re-delivered at ingest's reconnect, an outbox replay) tells nothing about
        the agent's clock; without ingest's measure the machine's own step logic judges."""
        sent, received = finite_number(sent_at), finite_number(received_at)
        if site_skew is None or sent is None or received is None:
            return False
        return abs((sent - received) - site_skew) > self.config.clock_skew_max_s / 2

    def _handle(self, state: HubState, event: Event) -> tuple[HubState, list[Command]]:
        try:
            return alerts.handle(state, event)
        except Exception:   # observations and ticks never raise by contract; a bug must not stop us
            self.counters["event_errors"] += 1
            log.exception("alert evaluator: the machine failed on a %s event", event.kind)
            return state, []

    def _request(self, state: HubState, request: tuple, now: float,
                 who_of_silence_end: dict[str, str]) -> tuple[HubState, list[Command], str | None]:
        request_id, kind, payload, who, _at = request
        data = _load_json(payload)
        if not isinstance(data, dict):
            return state, [], "bad_payload"
        if not _storable(data) or not _storable(who):
            return state, [], "bad_text"   # NUL, lone surrogates, control characters: never stored
        if kind == "ack":
            event = Event("ack", {"key": data.get("key"), "serial": data.get("serial"), "who": who,
                                  "comment": data.get("comment", ""), "at": now})
        elif kind == "silence":
            starts_at = now if data.get("starts_at") is None else data["starts_at"]
            event = Event("silence", {"id": f"{SILENCE_ID_PREFIX}{request_id}", "matchers": data.get("matchers"),
                                      "starts_at": starts_at, "ends_at": data.get("ends_at"),
                                      "creator": who, "comment": data.get("comment"), "at": now})
        elif kind == "end_silence":
            event = Event("expire_silence", {"id": data.get("id"), "at": now})
        else:
            return state, [], "unknown_kind"
        try:
            state, out = alerts.handle(state, event)
        except Rejected as exc:
            return state, [], exc.reason
        except Exception:
            self.counters["event_errors"] += 1
            log.exception("alert evaluator: the machine failed on request %s", request_id)
            return state, [], "internal_error"
        if kind == "end_silence" and isinstance(who, str):
            who_of_silence_end[data["id"]] = who
        return state, out, None

    @staticmethod
    def _track_row(track: KeyTrack, clear_since: float | None) -> tuple:
        labels = track.labels
        return (labels["rule"], labels["site"], labels["device"], labels["severity"], track.serial,
                track.notified, track.notified_serial, track.last_sent_at, _json(list(track.fire_times)),
                int(track.flap_told), clear_since)

    @staticmethod
    def _flags(state: HubState) -> Callable[[Alert], tuple[int, int]]:
        """silenced / inhibited of an alert now, with the machine's inhibitor index built once."""
        inhibitors = state.inhibitor_index()

        def flags(alert: Alert) -> tuple[int, int]:
            labels = alert.labels
            silenced = bool(state.silences) and bool(state.silenced_by(labels))
            return int(silenced), int(bool(state.inhibited_by(labels, inhibitors)))
        return flags

    def _store(self, state: HubState, commands: list[Command], outcomes: list[tuple[int, str | None]],
               who_of_silence_end: dict[str, str], now: float) -> None:
        flags = self._flags(state)
        alert_rows: dict[tuple[str, int], tuple] = {}
        deleted: list[tuple[str, int]] = []
        for cmd in commands:
            if cmd.name != "transition":
                continue
            key, serial = cmd.args["key"], cmd.args["serial"]
            if cmd.args["to"] == "inactive":
                deleted.append((key, serial))   # a pending that cleared: never news, never history
                alert_rows.pop((key, serial), None)
            elif cmd.args["to"] == "resolved":
                summary = cmd.args["alert"]
                resolved = Alert(key=key, rule=summary["rule"], site=summary["site"], device=summary["device"],
                                 severity=summary["severity"], serial=serial, status="resolved",
                                 active_since=summary["active_since"], fired_at=summary["fired_at"],
                                 resolved_at=summary["resolved_at"], flaps=summary["flaps"])
                alert_rows[(key, serial)] = self._alert_row(summary, *flags(resolved))
        # The machine replaces what it changes: an object seen last round is unchanged (cheap at
        # thousands of open alerts and tracks); only its flags can move without it.
        seen_alerts: dict[tuple[str, int], tuple] = {}
        for alert in state.alerts.values():
            ident, alert_flags = (alert.key, alert.serial), flags(alert)
            seen_alerts[ident] = (alert, alert_flags)
            before = self._seen_alerts.get(ident)
            if before is None or before[0] is not alert or before[1] != alert_flags:
                alert_rows[ident] = self._alert_row(alert.summary(), *alert_flags)
        changed_alerts = {k: row for k, row in alert_rows.items() if self._stored_alerts.get(k) != row}
        open_keys = state.alerts
        track_rows = {}
        seen_tracks: dict[str, tuple] = {}
        for key, track in state.tracks.items():
            alert = open_keys.get(key)
            clear = alert.clear_since if alert is not None else None
            seen_tracks[key] = (track, clear)
            before = self._seen_tracks.get(key)
            if before is not None and before[0] is track and before[1] == clear:
                continue
            row = self._track_row(track, clear)
            if self._stored_tracks.get(key) != row:
                track_rows[key] = row
        notifications = []
        rules = state.rule_by_name
        for cmd in commands:
            if cmd.name != "notify":
                continue
            notifications += self._notification_rows(state, rules, cmd, now)
        with self.store.transaction() as tx:
            for key, serial in deleted:
                tx.execute("DELETE FROM alerts WHERE key = ? AND serial = ?", (key, serial))
            tx.executemany(
                "INSERT INTO alerts (key, serial, rule, site, device, severity, status, active_since, fired_at, "
                "resolved_at, flaps, silenced, inhibited, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key, serial) DO UPDATE SET status = excluded.status, "
                "active_since = excluded.active_since, fired_at = excluded.fired_at, "
                "resolved_at = excluded.resolved_at, flaps = excluded.flaps, silenced = excluded.silenced, "
                "inhibited = excluded.inhibited, summary = excluded.summary",
                [(key, serial, *self._labels_of(row), *row) for (key, serial), row in changed_alerts.items()])
            tx.executemany(
                "INSERT INTO alert_tracks (key, rule, site, device, severity, serial, notified, notified_serial, "
                "last_sent_at, fire_times, flap_told, clear_since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET serial = excluded.serial, notified = excluded.notified, "
                "notified_serial = excluded.notified_serial, last_sent_at = excluded.last_sent_at, "
                "fire_times = excluded.fire_times, flap_told = excluded.flap_told, "
                "clear_since = excluded.clear_since",
                [(key, *row) for key, row in track_rows.items()])
            for cmd in commands:
                a = cmd.args
                if cmd.name == "acked":
                    tx.execute("INSERT INTO alert_acks (key, serial, at, who, comment) VALUES (?, ?, ?, ?, ?)",
                               (a["key"], a["serial"], a["at"], a["who"], a["comment"]))
                elif cmd.name == "silenced":
                    tx.execute("INSERT INTO silences (id, matchers, starts_at, ends_at, creator, comment, "
                               "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                               (a["id"], _json(a["matchers"]), a["starts_at"], a["ends_at"], a["creator"],
                                a["comment"], now))
                elif cmd.name == "silence_expired":
                    tx.execute("UPDATE silences SET ended_at = ?, ended_by = ? WHERE id = ?",
                               (a["at"], who_of_silence_end.get(a["id"], ""), a["id"]))
            tx.executemany(
                "INSERT INTO notifications (key, serial, channel, event, payload, created_at, next_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", notifications)
            tx.executemany("UPDATE alert_requests SET done_at = ?, error = ? WHERE id = ?",
                           [(now, error, request_id) for request_id, error in outcomes])
        for key, serial in deleted:
            self._stored_alerts.pop((key, serial), None)
        self._stored_alerts.update(changed_alerts)
        for key in [k for k, row in self._stored_alerts.items() if row[0] == "resolved"]:
            del self._stored_alerts[key]   # resolved rows never change again
        self._stored_tracks.update(track_rows)
        self._seen_alerts, self._seen_tracks = seen_alerts, seen_tracks
        self.counters["notifications_queued"] += len(notifications)
        self.counters["transitions"] += sum(1 for c in commands if c.name == "transition")

    @staticmethod
    def _alert_row(summary: dict, silenced: int, inhibited: int) -> tuple:
        return (summary["status"], summary["active_since"], summary["fired_at"], summary["resolved_at"],
                int(summary["flaps"]), silenced, inhibited, _json(summary))

    @staticmethod
    def _labels_of(row: tuple) -> tuple:
        summary = json.loads(row[7])
        return summary["rule"], summary["site"], summary["device"], summary["severity"]

    def _notification_rows(self, state: HubState, rules: dict, cmd: Command, now: float) -> list[tuple]:
        a = cmd.args
        key = a["key"]
        track = state.tracks.get(key)
        labels = dict(track.labels) if track is not None else {}
        summary = dict(a.get("alert") or {})
        rule = rules.get(labels.get("rule") or summary.get("rule"))
        serial = summary.get("serial") or (track.serial if track is not None else 0)
        payload = {"event": a["kind"], "key": key, "serial": serial, "at": now, **labels,
                   "summary_uk": rule.summary_uk if rule else "", "summary_en": rule.summary_en if rule else "",
                   "alert": summary}
        text = _json(payload)
        return [(key, serial, channel, a["kind"], text, now, now)
                for channel in a.get("channels", ()) if channel in self.notify_channels]
