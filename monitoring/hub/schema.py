"""The hub's tables, in one place: what ingest writes, what the alert evaluator keeps, what the web
app reads and queues. Each component's migrations are applied by ``db.HubStore.ensure_schema``;
add a migration at the end of a list, never edit one that has shipped.

Times are Unix seconds (DOUBLE PRECISION) on the hub's clock unless a column says ``sent_at``
(the agent's clock, kept only for display and ordering one entity's messages). Payloads are the
JSON of the parsed, validated model (monitoring/topics.py), never the raw bytes received.
"""
from __future__ import annotations

from monitoring.hub.db import HubStore

INGEST = [[
    # One row per site ever heard from. status: online | offline (last will) | unknown.
    "CREATE TABLE sites (site TEXT PRIMARY KEY, status TEXT NOT NULL DEFAULT 'unknown', "
    "status_at DOUBLE PRECISION, first_seen DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL, "
    "skew_s DOUBLE PRECISION, bridge TEXT)",
    # Latest state of each entity: entity is 'ventilation', 'air', 'power', 'uplink/<name>' or
    # 'device/<bill_validator|printer|card_terminal>'; kind is the topic kind (ventilation, air,
    # power, uplink, device).
    "CREATE TABLE entities (site TEXT NOT NULL, entity TEXT NOT NULL, kind TEXT NOT NULL, "
    "payload {json} NOT NULL, sent_at DOUBLE PRECISION, received_at DOUBLE PRECISION NOT NULL, "
    "PRIMARY KEY (site, entity))",
    # Numeric history for charts: metric names as in the payload (co2_ppm, charge_pct, runtime_s,
    # loss_pct, rtt_ms, fill_pct, …), at = the agent's sent_at when plausible, else received_at.
    "CREATE TABLE samples (site TEXT NOT NULL, entity TEXT NOT NULL, metric TEXT NOT NULL, "
    "at DOUBLE PRECISION NOT NULL, value DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX samples_series ON samples (site, entity, metric, at)",
    # Survey answers, exactly once by their UUID (the agent may send one again after a restart).
    "CREATE TABLE survey_answers (uuid TEXT PRIMARY KEY, site TEXT NOT NULL, answered_at DOUBLE PRECISION, "
    "received_at DOUBLE PRECISION NOT NULL, payload {json} NOT NULL)",
    "CREATE INDEX survey_answers_site ON survey_answers (site, answered_at)",
    # What ingest refused, and why (bounded: the oldest rows go first).
    "CREATE TABLE dropped ({id}, at DOUBLE PRECISION NOT NULL, site TEXT, topic TEXT NOT NULL, "
    "reason TEXT NOT NULL)",
    "CREATE INDEX dropped_at ON dropped (at)",
    # Commands from the hub to a site (ventilation override, kiosk out of service): the web app
    # inserts a row; the hub's MQTT side publishes it (sent_at) and stores the site's answer.
    "CREATE TABLE commands (id TEXT PRIMARY KEY, site TEXT NOT NULL, controller TEXT NOT NULL, "
    "action TEXT NOT NULL, args {json} NOT NULL, requested_by TEXT NOT NULL, "
    "requested_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL, sent_at DOUBLE PRECISION, "
    "result_ok BIGINT, result_message TEXT, result_at DOUBLE PRECISION)",
], [
    # Ingest's retention sweep deletes samples by age: without this it scans the whole history.
    "CREATE INDEX samples_at ON samples (at)",
]]

ALERTS = [[
    # Occurrences as the alert machine (monitoring/alerts.py) last left them: open ones
    # (pending, firing) and resolved ones (kept for the history pages). key = alerts.alert_key.
    "CREATE TABLE alerts (key TEXT NOT NULL, serial BIGINT NOT NULL, rule TEXT NOT NULL, site TEXT NOT NULL, "
    "device TEXT NOT NULL, severity TEXT NOT NULL, status TEXT NOT NULL, active_since DOUBLE PRECISION NOT NULL, "
    "fired_at DOUBLE PRECISION, resolved_at DOUBLE PRECISION, flaps BIGINT NOT NULL DEFAULT 0, "
    "silenced BIGINT NOT NULL DEFAULT 0, inhibited BIGINT NOT NULL DEFAULT 0, summary {json} NOT NULL, "
    "PRIMARY KEY (key, serial))",
    "CREATE INDEX alerts_open ON alerts (status, site)",
    "CREATE TABLE alert_acks ({id}, key TEXT NOT NULL, serial BIGINT NOT NULL, at DOUBLE PRECISION NOT NULL, "
    "who TEXT NOT NULL, comment TEXT NOT NULL)",
    "CREATE TABLE silences (id TEXT PRIMARY KEY, matchers {json} NOT NULL, starts_at DOUBLE PRECISION NOT NULL, "
    "ends_at DOUBLE PRECISION NOT NULL, creator TEXT NOT NULL, comment TEXT NOT NULL, "
    "created_at DOUBLE PRECISION NOT NULL, ended_at DOUBLE PRECISION, ended_by TEXT)",
    # Staff actions queued by the web app for the evaluator, which alone changes the machine's
    # state: kind ack {key, serial, comment} | silence {matchers, starts_at, ends_at, comment} |
    # end_silence {id}. done_at and error are written by the evaluator.
    "CREATE TABLE alert_requests ({id}, kind TEXT NOT NULL, payload {json} NOT NULL, who TEXT NOT NULL, "
    "at DOUBLE PRECISION NOT NULL, done_at DOUBLE PRECISION, error TEXT)",
    # Notifications to send (webhook, e-mail), retried with back-off until sent or given up.
    "CREATE TABLE notifications ({id}, key TEXT NOT NULL, serial BIGINT NOT NULL, channel TEXT NOT NULL, "
    "event TEXT NOT NULL, payload {json} NOT NULL, created_at DOUBLE PRECISION NOT NULL, "
    "next_at DOUBLE PRECISION NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, sent_at DOUBLE PRECISION, "
    "gave_up_at DOUBLE PRECISION, last_error TEXT)",
    "CREATE INDEX notifications_due ON notifications (sent_at, gave_up_at, next_at)",
], [
    # What the evaluator last told about each label set (alerts.KeyTrack) and since when an open
    # alert's resolve condition holds: a restarted hub neither re-notifies nor forgets a flap.
    "CREATE TABLE alert_tracks (key TEXT PRIMARY KEY, rule TEXT NOT NULL, site TEXT NOT NULL, "
    "device TEXT NOT NULL, severity TEXT NOT NULL, serial BIGINT NOT NULL, notified TEXT, "
    "notified_serial BIGINT NOT NULL, last_sent_at DOUBLE PRECISION, fire_times {json} NOT NULL, "
    "flap_told BIGINT NOT NULL, clear_since DOUBLE PRECISION)",
    "CREATE INDEX alert_requests_todo ON alert_requests (done_at, id)",
    # The evaluator reads the entities changed since its watermark every second.
    "CREATE INDEX entities_received ON entities (received_at)",
]]


def ensure(store: HubStore) -> HubStore:
    """All of the hub's tables, created or brought up to date."""
    store.ensure_schema("ingest", INGEST)
    store.ensure_schema("alerts", ALERTS)
    return store
