"""The alert evaluator (monitoring/hub/evaluator.py) end to end, on SQLite and on a real
PostgreSQL: rows written as ingest writes them, staff requests as the web app queues them, a fake
clock; notifications delivered by the real notifier to a local webhook and SMTP server; restarts
from the same store forget nothing and re-send nothing."""
from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from monitoring import alerts
from monitoring.hub import evaluator as ev_module, notify, schema
from monitoring.hub.db import open_store
from monitoring.hub.evaluator import Evaluator
from tests.monitoring.test_hub_notify import Clock, smtp, webhook  # noqa: F401 - fixtures

T0 = 1_800_000_000.0
UPS = "ups_on_battery|kyiv-1|power"
PRINTER = "printer_paper_out|kyiv-1|device/printer"
UPLINK = "uplink_down|kyiv-1|uplink/lte"
OFFLINE = "site_offline|kyiv-1|"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = tmp_path / "hub.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    db = schema.ensure(open_store(url))
    yield db
    db.close()


# --- as ingest and the web app write -----------------------------------------------------------
def put_site(store, site: str, status: str, at: float, skew_s: float | None = None) -> None:
    with store.transaction() as tx:
        tx.execute("INSERT INTO sites (site, status, status_at, first_seen, last_seen, skew_s) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site) DO UPDATE SET status = excluded.status, "
                   "status_at = excluded.status_at, last_seen = excluded.last_seen, skew_s = excluded.skew_s",
                   (site, status, at, at, at, skew_s))


def put_entity(store, site: str, entity: str, kind: str, payload, at: float, sent_at: float | None = None) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    with store.transaction() as tx:
        tx.execute("INSERT INTO entities (site, entity, kind, payload, sent_at, received_at) VALUES (?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT (site, entity) DO UPDATE SET kind = excluded.kind, payload = excluded.payload, "
                   "sent_at = excluded.sent_at, received_at = excluded.received_at",
                   (site, entity, kind, text, at - 0.5 if sent_at is None else sent_at, at))


def ups(status: str, charge: float = 80.0) -> dict:
    return {"v": 1, "ts": "2027-01-15T08:00:00Z", "available": True, "state": status,
            "ups": {"status": status, "charge_pct": charge}}


def printer(paper: str) -> dict:
    return {"v": 1, "ts": "2027-01-15T08:00:00Z", "online": True, "state": "ok", "paper": paper}


def uplink(up: bool) -> dict:
    return {"v": 1, "ts": "2027-01-15T08:00:00Z", "available": True, "state": "up" if up else "down",
            "up": up, "active": up}


def request(store, kind: str, payload, who: str = "staff.olena", at: float = T0) -> int:
    with store.transaction() as tx:
        tx.execute("INSERT INTO alert_requests (kind, payload, who, at) VALUES (?, ?, ?, ?)",
                   (kind, payload if isinstance(payload, str) else json.dumps(payload), who, at))
        return tx.execute("SELECT MAX(id) FROM alert_requests").fetchone()[0]


def outcome(store, request_id: int) -> tuple:
    return store.query_one("SELECT done_at, error FROM alert_requests WHERE id = ?", (request_id,))


def alert_row(store, key: str) -> dict | None:
    names = ("serial", "status", "silenced", "inhibited", "summary")
    row = store.query_one(f"SELECT {', '.join(names)} FROM alerts WHERE key = ? ORDER BY serial DESC", (key,))
    if row is None:
        return None
    found = dict(zip(names, row))
    found["summary"] = json.loads(found["summary"])
    return found


def notes(store, key: str | None = None) -> list[tuple]:
    rows = store.query("SELECT key, serial, channel, event FROM notifications ORDER BY id")
    return [r for r in rows if key is None or r[0] == key]


# --- end to end ----------------------------------------------------------------------------------
def test_ups_on_battery_from_row_to_ack_to_resolved_with_restarts(store, webhook, smtp):
    clock = Clock(T0)
    channels = notify.NotifySettings(
        webhook=notify.WebhookChannel(webhook.url, secret="k"),
        email=notify.EmailChannel(host="127.0.0.1", port=smtp.port, sender="hub@cnap.example",
                                  recipients=("duty@cnap.example",)))
    evaluator = Evaluator(store, clock=clock, notify_channels=channels.channels)
    notifier = notify.Notifier(store, channels, clock)
    put_site(store, "kyiv-1", "online", T0)
    put_entity(store, "kyiv-1", "power", "power", ups("on_battery"), T0)
    evaluator.step()
    assert alert_row(store, UPS)["status"] == "pending" and notes(store) == []

    clock.now = T0 + 299
    evaluator.step()
    assert alert_row(store, UPS)["status"] == "pending"
    evaluator = Evaluator(store, clock=clock, notify_channels=channels.channels)   # restart while pending
    clock.now = T0 + 300
    evaluator.step()
    assert alert_row(store, UPS)["status"] == "firing"
    assert notes(store) == [(UPS, 1, "webhook", "firing"), (UPS, 1, "email", "firing")]
    assert notifier.send_due() == 2
    (_, body), = webhook.received
    assert json.loads(body)["event"] == "firing" and json.loads(body)["summary_en"] == "UPS on battery"
    (_, _, mail), = smtp.messages
    assert "ДБЖ працює від батареї" in mail.get_content() and "Site: kyiv-1" in mail.get_content()

    evaluator = Evaluator(store, clock=clock, notify_channels=channels.channels)   # restart while firing
    clock.now = T0 + 400
    evaluator.step()
    assert len(notes(store)) == 2                      # nothing re-notified
    ack = request(store, "ack", {"key": UPS, "serial": 1, "comment": "Генератор запущено"}, at=T0 + 400)
    refused = request(store, "ack", {"key": PRINTER, "serial": 1, "comment": "?"}, at=T0 + 400)
    clock.now = T0 + 401
    evaluator.step()
    assert outcome(store, ack) == (T0 + 401, None)
    assert outcome(store, refused) == (T0 + 401, "no_open_alert")
    assert store.query("SELECT key, serial, at, who, comment FROM alert_acks") == [
        (UPS, 1, T0 + 401, "staff.olena", "Генератор запущено")]
    assert alert_row(store, UPS)["summary"]["acks"] == [
        {"who": "staff.olena", "at": T0 + 401, "comment": "Генератор запущено"}]

    evaluator = Evaluator(store, clock=clock, notify_channels=channels.channels)   # restart after the ack
    assert evaluator.state.alerts[UPS].acked
    clock.now = T0 + 300 + 5 * 3600                   # past the repeat interval: acked, so no repeat
    evaluator.step()
    assert len(notes(store)) == 2

    back = T0 + 300 + 5 * 3600 + 10
    put_entity(store, "kyiv-1", "power", "power", ups("online"), back)
    clock.now = back
    evaluator.step()
    assert alert_row(store, UPS)["status"] == "firing"   # keep-firing: 120 s
    evaluator = Evaluator(store, clock=clock, notify_channels=channels.channels)   # restart while clearing
    clock.now = back + 120
    evaluator.step()
    resolved = alert_row(store, UPS)
    assert resolved["status"] == "resolved" and resolved["summary"]["resolved_at"] == back + 120
    assert notes(store)[2:] == [(UPS, 1, "webhook", "resolved"), (UPS, 1, "email", "resolved")]
    assert notifier.send_due() == 2
    assert json.loads(webhook.received[-1][1])["event"] == "resolved"
    text = smtp.messages[-1][2].get_content()
    assert "Status: RESOLVED" in text and "Генератор запущено" in text
    clock.now = back + 1000
    Evaluator(store, clock=clock, notify_channels=channels.channels).step()
    assert len(notes(store)) == 4


def air(co2: float) -> dict:
    return {"v": 1, "ts": "2027-01-15T08:00:00Z", "available": True, "state": "ok",
            "sensors": [{"name": "hall", "online": True, "co2_ppm": co2}]}


def cassette(bills: int) -> dict:
    return {"v": 1, "ts": "2027-01-15T08:00:00Z", "online": True, "state": "ok", "cassette_bills": bills,
            "cassette_capacity": 1000}


RULE_CASES = {   # rule → (rows (entity, kind, payload, sent_at offset), alert key, for_s)
    "ups_low_battery": ([("power", "power", ups("online", charge=20), -0.5)], "ups_low_battery|kyiv-1|power", 0),
    "co2_high": ([("air", "air", air(1500), -0.5)], "co2_high|kyiv-1|air/hall", 600),
    "cassette_full": ([("device/bill_validator", "device", cassette(900), -0.5)],
                      "cassette_full|kyiv-1|device/bill_validator", 0),
    "all_uplinks_down": ([("uplink/lte", "uplink", uplink(False), -0.5), ("uplink/wan", "uplink", uplink(False), -0.5)],
                         "all_uplinks_down|kyiv-1|", 60),
    "agent_clock_skew": ([("device/printer", "device", printer("ok"), 500)], "agent_clock_skew|kyiv-1|", 300),
}


@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_each_rule_from_the_rows_ingest_writes(store, rule):
    rows, key, for_s = RULE_CASES[rule]
    clock = Clock(T0)
    evaluator = Evaluator(store, clock=clock)
    put_site(store, "kyiv-1", "online", T0)
    for entity, kind, payload, offset in rows:
        put_entity(store, "kyiv-1", entity, kind, payload, T0, sent_at=T0 + offset)
    evaluator.step()
    if for_s:
        assert alert_row(store, key)["status"] == "pending"
        clock.now = T0 + for_s - 1
        evaluator.step()
        assert alert_row(store, key)["status"] == "pending"
        clock.now = T0 + for_s
        evaluator.step()
    assert alert_row(store, key)["status"] == "firing"
    assert [n[3] for n in notes(store, key)] == ["firing"] * (1 if rule == "agent_clock_skew" else 2)
    if rule == "all_uplinks_down":   # the bigger outage says it all
        assert alert_row(store, "uplink_down|kyiv-1|uplink/lte")["inhibited"] == 1
        assert notes(store, "uplink_down|kyiv-1|uplink/lte") == []


def test_a_site_offline_by_last_will_inhibits_its_device_alerts(store):
    clock = Clock(T0)
    evaluator = Evaluator(store, clock=clock)
    put_site(store, "kyiv-1", "online", T0)
    put_entity(store, "kyiv-1", "device/printer", "device", printer("out"), T0)
    evaluator.step()
    assert alert_row(store, PRINTER)["status"] == "firing"          # for 0 s
    assert [n[3] for n in notes(store, PRINTER)] == ["firing", "firing"]

    put_site(store, "kyiv-1", "offline", T0 + 10)                     # the broker publishes the last will
    put_entity(store, "kyiv-1", "uplink/lte", "uplink", uplink(False), T0 + 10)
    clock.now = T0 + 10
    evaluator.step()
    assert alert_row(store, OFFLINE)["status"] == "pending"
    clock.now = T0 + 70
    evaluator.step()
    assert alert_row(store, OFFLINE)["status"] == "firing"
    assert alert_row(store, PRINTER)["inhibited"] == 1 and alert_row(store, UPLINK)["inhibited"] == 1
    assert alert_row(store, UPLINK)["status"] == "firing"            # tracked, fired, not told
    assert notes(store, UPLINK) == [] and [n[3] for n in notes(store, OFFLINE)] == ["firing", "firing"]

    evaluator = Evaluator(store, clock=clock)                          # a restart keeps the inhibition
    clock.now = T0 + 80
    evaluator.step()
    assert alert_row(store, PRINTER)["inhibited"] == 1 and notes(store, UPLINK) == []
    put_site(store, "kyiv-1", "online", T0 + 100)
    put_entity(store, "kyiv-1", "uplink/lte", "uplink", uplink(True), T0 + 100)
    clock.now = T0 + 100
    evaluator.step()
    clock.now = T0 + 220
    evaluator.step()
    assert alert_row(store, OFFLINE)["status"] == "resolved" and alert_row(store, UPLINK)["status"] == "resolved"
    assert alert_row(store, PRINTER)["inhibited"] == 0 and alert_row(store, PRINTER)["status"] == "firing"
    assert notes(store, UPLINK) == []     # fired and resolved under the inhibition: never news
    assert len(notes(store, PRINTER)) == 2  # told firing once, not again


def test_silence_requests(store):
    clock = Clock(T0)
    evaluator = Evaluator(store, clock=clock, notify_channels=("webhook",))
    silence = request(store, "silence", {"matchers": {"site": "kyiv-1", "rule": "printer_paper_out"},
                                         "ends_at": T0 + 3600, "comment": "Заміна принтера"})
    bad = request(store, "silence", {"matchers": {"colour": "red"}, "ends_at": T0 + 3600, "comment": "x"})
    evaluator.step()
    assert outcome(store, silence) == (T0, None) and outcome(store, bad) == (T0, "bad_matchers")
    sid = f"silence-{silence}"
    assert store.query("SELECT id, creator, comment, ends_at, ended_at FROM silences") == [
        (sid, "staff.olena", "Заміна принтера", T0 + 3600, None)]
    put_entity(store, "kyiv-1", "device/printer", "device", printer("out"), T0 + 5)
    clock.now = T0 + 5
    evaluator.step()
    assert alert_row(store, PRINTER)["status"] == "firing" and alert_row(store, PRINTER)["silenced"] == 1
    assert notes(store) == []
    evaluator = Evaluator(store, clock=clock, notify_channels=("webhook",))   # the silence survives a restart
    clock.now = T0 + 6
    evaluator.step()
    assert notes(store) == []
    end = request(store, "end_silence", {"id": sid}, who="staff.ivan")
    again = request(store, "end_silence", {"id": sid}, who="staff.ivan")
    clock.now = T0 + 7
    evaluator.step()
    assert outcome(store, end) == (T0 + 7, None) and outcome(store, again) == (T0 + 7, "no_such_silence")
    assert store.query("SELECT ended_at, ended_by FROM silences") == [(T0 + 7, "staff.ivan")]
    assert alert_row(store, PRINTER)["silenced"] == 0
    assert notes(store) == [(PRINTER, 1, "webhook", "firing")]   # owed once the silence ended


def test_rows_committed_out_of_order_are_applied_once(store):
    clock = Clock(T0 + 10)
    evaluator = Evaluator(store, clock=clock, margin_s=5.0)
    put_entity(store, "kyiv-1", "device/printer", "device", printer("ok"), T0 + 10)
    evaluator.step()
    events = evaluator.counters["events"]
    # another ingest worker commits a row it received 3 s ago, after the watermark passed it
    put_entity(store, "kyiv-1", "uplink/lte", "uplink", uplink(False), T0 + 7)
    clock.now = T0 + 11
    evaluator.step()
    assert evaluator.counters["events"] == events + 1 and alert_row(store, UPLINK)["status"] == "pending"
    clock.now = T0 + 12
    evaluator.step()
    assert evaluator.counters["events"] == events + 1      # re-read in the margin, not fed again


def test_bad_rows_and_requests_never_stop_it(store):
    clock = Clock(T0)
    evaluator = Evaluator(store, clock=clock)
    put_entity(store, "kyiv-1", "device/printer", "device", "{not json", T0)
    put_entity(store, "kyiv-1", "power", "power", json.dumps([1, 2]), T0)
    put_entity(store, "kyiv-1", "air", "air", json.dumps({"sensors": [{"name": "x" * 200, "co2_ppm": 5000}]}), T0)
    put_entity(store, "kyiv-1", "uplink/lte", "uplink", json.dumps({"up": "yes"}), T0, sent_at=float("1e308"))
    put_entity(store, "bad site\n", "device/printer", "device", printer("out"), T0)
    put_site(store, "kyiv-1", "sideways", T0)
    requests = [request(store, "ack", "nope"), request(store, "reboot", {}), request(store, "ack", {"key": 5}),
                request(store, "silence", {"matchers": "all", "ends_at": "tomorrow", "comment": "x"}),
                request(store, "end_silence", {"id": ["x"]}), request(store, "ack", {"key": PRINTER}, who=""),
                request(store, "silence", {"matchers": {"site": "kyiv-1"}, "ends_at": T0 + 60,
                                           "comment": "nul \u0000 and a lone \ud800"})]
    evaluator.step()
    errors = [outcome(store, r)[1] for r in requests]
    assert errors == ["bad_payload", "unknown_kind", "no_open_alert", "bad_matchers", "no_such_silence",
                      "no_open_alert", "bad_text"]
    assert store.query("SELECT COUNT(*) FROM alerts") == [(0,)]
    assert evaluator.metrics()["requests_refused"] == 7


def test_requests_are_set_aside_when_rounds_keep_failing(store, monkeypatch):
    clock = Clock(T0)
    evaluator = Evaluator(store, clock=clock)
    pending = request(store, "silence", {"matchers": {"site": "kyiv-1"}, "ends_at": T0 + 60, "comment": "x"})

    def broken(*args, **kwargs):
        raise RuntimeError("the store refuses something in this round")
    monkeypatch.setattr(evaluator, "_store", broken)
    for _ in range(2):
        evaluator.step()
        assert outcome(store, pending) == (None, None)    # a passing hiccup: still pending
    evaluator.step()
    assert outcome(store, pending) == (T0, "not_stored")
    assert evaluator.counters["requests_set_aside"] == 1


def test_a_round_that_cannot_be_stored_is_done_again(store, monkeypatch):
    clock = Clock(T0)
    evaluator = Evaluator(store, clock=clock)
    put_entity(store, "kyiv-1", "device/printer", "device", printer("out"), T0)
    real = evaluator._store

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(evaluator, "_store", broken)
    assert evaluator.step() == [] and evaluator.counters["store_errors"] == 1
    assert store.query("SELECT COUNT(*) FROM notifications") == [(0,)] and evaluator.state.alerts == {}
    monkeypatch.setattr(evaluator, "_store", real)
    evaluator.step()
    assert alert_row(store, PRINTER)["status"] == "firing" and len(notes(store)) == 2


def test_skew_from_ingest_judges_replayed_rows(store):
    """A retained state re-delivered at ingest's reconnect carries an old agent time: with ingest's
    live skew for the site it is no clock step and no skew alert."""
    clock = Clock(T0)
    evaluator = Evaluator(store, clock=clock)
    put_site(store, "kyiv-1", "online", T0, skew_s=0.2)
    put_entity(store, "kyiv-1", "device/printer", "device", printer("ok"), T0, sent_at=T0 - 7200)
    put_entity(store, "kyiv-1", "uplink/lte", "uplink", uplink(True), T0, sent_at=T0 - 7000)
    evaluator.step()
    clock.now = T0 + 1000
    evaluator.step()
    assert alert_row(store, "agent_clock_skew|kyiv-1|") is None
    # and a site whose agent clock really is 10 minutes ahead (ingest measures it so) does alert
    put_site(store, "lviv-2", "online", T0 + 1000, skew_s=600.0)
    put_entity(store, "lviv-2", "device/printer", "device", printer("ok"), T0 + 1000, sent_at=T0 + 1600)
    evaluator.step()
    clock.now = T0 + 1400
    evaluator.step()
    assert alert_row(store, "agent_clock_skew|lviv-2|")["status"] == "firing"


# --- property: random rows, requests and restarts -------------------------------------------------
DEVICE_ROWS = {
    "printer": ("device/printer", "device", lambda bad: printer("out" if bad else "ok"), "printer_paper_out"),
    "ups": ("power", "power", lambda bad: ups("on_battery" if bad else "online"), "ups_on_battery"),
    "uplink": ("uplink/lte", "uplink", lambda bad: uplink(not bad), "uplink_down"),
}
SITES = ("kyiv-1", "lviv-2")
steps_strategy = st.lists(st.one_of(
    st.tuples(st.just("row"), st.sampled_from(sorted(DEVICE_ROWS)), st.sampled_from(SITES), st.booleans()),
    st.tuples(st.just("site"), st.sampled_from(SITES), st.booleans()),
    st.tuples(st.just("junk"), st.sampled_from(SITES), st.sampled_from(["{", "[]", "null", '{"paper": 7}'])),
    st.tuples(st.just("ack"), st.sampled_from(sorted(DEVICE_ROWS) + ["site"]), st.sampled_from(SITES),
              st.integers(0, 3)),
    st.tuples(st.just("silence"), st.sampled_from(SITES), st.integers(-100, 4000)),
    st.tuples(st.just("end_silence"), st.integers(0, 5)),
    st.tuples(st.just("wait"), st.sampled_from([1, 30, 61, 119, 121, 301, 5000])),
    st.tuples(st.just("restart"),),
), max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(plan=steps_strategy)
def test_random_rows_requests_and_restarts(plan):
    with tempfile.TemporaryDirectory() as folder:
        store = schema.ensure(open_store(Path(folder) / "hub.db"))
        try:
            _play(store, plan)
        finally:
            store.close()


def _play(store, plan) -> None:
    clock = Clock(T0)
    evaluator = Evaluator(store, clock=clock)
    bad_now: dict[str, bool] = {}     # alert key → its fire condition is true now (the test's own model)
    for number, action in enumerate(plan):
        kind = action[0]
        sent_at = clock.now - 0.5 + number / 1000   # the agent's clock moves on between messages
        if kind == "row":
            _, name, site, bad = action
            entity, row_kind, payload, rule = DEVICE_ROWS[name]
            put_entity(store, site, entity, row_kind, payload(bad), clock.now, sent_at=sent_at)
            bad_now[alerts.alert_key(rule, site, entity)] = bad
            if name == "uplink":   # the site's only uplink
                bad_now[alerts.alert_key("all_uplinks_down", site, "")] = bad
        elif kind == "site":
            _, site, online = action
            put_site(store, site, "online" if online else "offline", clock.now)
            bad_now[alerts.alert_key("site_offline", site, "")] = not online
        elif kind == "junk":
            put_entity(store, action[1], "device/printer", "device", action[2], clock.now, sent_at=sent_at)
        elif kind == "ack":
            _, name, site, serial = action
            key = (alerts.alert_key("site_offline", site, "") if name == "site"
                   else alerts.alert_key(DEVICE_ROWS[name][3], site, DEVICE_ROWS[name][0]))
            request(store, "ack", {"key": key, "serial": serial or None, "comment": "ok"}, at=clock.now)
        elif kind == "silence":
            request(store, "silence", {"matchers": {"site": action[1]}, "ends_at": clock.now + action[2],
                                       "comment": "works"}, at=clock.now)
        elif kind == "end_silence":
            request(store, "end_silence", {"id": f"silence-{action[1]}"}, at=clock.now)
        elif kind == "wait":
            clock.now += action[1]
        else:
            evaluator = Evaluator(store, clock=clock)
        evaluator.step()
        _flags_agree(evaluator.state)
    assert store.query("SELECT COUNT(*) FROM alert_requests WHERE done_at IS NULL") == [(0,)]
    # long after the last row, every firing alert's condition is true, every true one fires
    keep = alerts.AlertConfig().keep_firing_for_s
    longest_for = max(r.for_s for r in alerts.default_rules())
    clock.now += keep + longest_for + 1
    evaluator.step()
    clock.now += 1
    evaluator.step()
    open_rows = dict(store.query("SELECT key, status FROM alerts WHERE status IN ('pending', 'firing')"))
    for key, bad in bad_now.items():
        assert open_rows.get(key) == ("firing" if bad else None), key
    assert set(open_rows) <= {k for k, bad in bad_now.items() if bad}
    # restarts never told the same occurrence 'firing' twice on a channel
    firing = store.query("SELECT key, serial, channel, COUNT(*) FROM notifications WHERE event = 'firing' "
                         "GROUP BY key, serial, channel")
    assert all(count == 1 for *_, count in firing), firing
    # and what the tables hold matches the evaluator's memory after one more restart
    again = Evaluator(store, clock=clock)
    assert {k: (a.status, a.serial, len(a.acks)) for k, a in again.state.alerts.items()} == \
        {k: (a.status, a.serial, len(a.acks)) for k, a in evaluator.state.alerts.items()}
    assert ev_module.OPEN == ("pending", "firing")


def test_from_settings(tmp_path):
    with schema.ensure(open_store(tmp_path / "hub.db")) as db:
        evaluator = Evaluator.from_settings(db, {"HUB_ALERT_CO2_HIGH_PPM": 1500,
                                                 "HUB_NOTIFY_WEBHOOK_URL": "http://127.0.0.1:9/hook"})
        assert evaluator.config.co2_high_ppm == 1500 and evaluator.notify_channels == ("webhook",)
        with pytest.raises(ValueError, match="HUB_ALERT_CO2_OK_PPM"):
            Evaluator.from_settings(db, {"HUB_ALERT_CO2_OK_PPM": 1500})


def _flags_agree(state: alerts.HubState) -> None:
    """The evaluator's indexed flags decide as the machine's own silenced_by / inhibited_by."""
    flags = Evaluator._flags(state)
    for alert in state.alerts.values():
        assert flags(alert) == (int(bool(state.silenced_by(alert.labels))),
                                int(bool(state.inhibited_by(alert.labels)))), alert.key


def wait_until(predicate, timeout_s: float = 30.0) -> bool:
    """Polls (generous, for a loaded CI machine); the caller asserts what it returns."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_run_loops_until_stopped_and_a_closed_store_is_counted(tmp_path, webhook):
    db = schema.ensure(open_store(tmp_path / "hub.db"))
    evaluator = Evaluator(db, notify_channels=("webhook",))
    notifier = notify.Notifier(db, notify.NotifySettings(webhook=notify.WebhookChannel(webhook.url)))
    stop = threading.Event()
    threads = [threading.Thread(target=evaluator.run, args=(stop, 0.05)),
               threading.Thread(target=notifier.run, args=(stop, 0.05))]
    for thread in threads:
        thread.start()
    try:
        put_entity(db, "kyiv-1", "device/printer", "device", printer("out"), time.time())
        assert wait_until(lambda: len(webhook.received) == 1)
        assert json.loads(webhook.received[0][1])["key"] == PRINTER
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    db.close()
    assert evaluator.step() == [] and evaluator.counters["store_errors"] == 1
    assert notifier.send_due() == 0 and notifier.counters["store_errors"] == 1
