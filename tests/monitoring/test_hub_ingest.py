"""monitoring/hub/ingest.py on real SQLite files and a real PostgreSQL: what is stored, what is
refused and why, and that no input makes it raise."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring import topics as t
from monitoring.hub.db import open_store
from monitoring.hub.ingest import Ingest, sample_metrics
from tests.monitoring import strategies

NOW = 1_790_000_000.0   # 2026-09, well inside the models' 2020..2100 window


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path}/hub.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    db = open_store(url)
    yield db
    db.close()


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def uplink(site: str, sent_at: float, latency_ms: float = 20.0, name: str = "lte", retain: bool = False):
    out = t.outgoing(site, t.UplinkState(ts=at(sent_at), available=True, state="ok", up=True, active=True,
                                         latency_ms=latency_ms, loss_pct=1.5), name)
    return out.topic, out.payload, retain


def air(site: str, sent_at: float, co2: float, retain: bool = False):
    out = t.outgoing(site, t.AirQualityState(ts=at(sent_at), available=True, state="ok", sensors=[
        t.AirSensor(name="hall", online=True, co2_ppm=co2)]))
    return out.topic, out.payload, retain


def answer(site: str, answer_uuid: str, sent_at: float = NOW - 5):
    out = t.outgoing(site, t.SurveyAnswer(ts=at(sent_at), uuid=answer_uuid, tablet_id=3, branch_id="b1", desk="3",
                                          survey_id="s1", version=1, main="q1", score=4, scale=5))
    return out.topic, out.payload, False


def rows(store, sql, params=()):
    return store.query(sql, params)


def test_states_make_sites_entities_and_samples(store):
    ingest = Ingest(store, clock=Clock())
    online = (t.topic("online", "kyiv-1"), b"online", True)
    result = ingest.handle_batch([online, uplink("kyiv-1", NOW - 2), air("kyiv-1", NOW - 1, 812.0),
                                  (t.topic("bridge", "kyiv-1"), b"1", True)])
    assert (result.stored, result.dropped_total, result.stale) == (4, 0, 0)
    site = rows(store, "SELECT status, status_at, first_seen, last_seen, skew_s, bridge FROM sites")
    assert site == [("online", NOW, NOW, NOW, -1.0, "up")]   # skew from the last live state
    entities = dict(rows(store, "SELECT entity, payload FROM entities WHERE site = 'kyiv-1'"))
    assert sorted(entities) == ["air", "uplink/lte"]
    assert json.loads(entities["air"])["sensors"][0]["co2_ppm"] == 812.0
    samples = rows(store, "SELECT entity, metric, at, value FROM samples ORDER BY entity, metric")
    assert samples == [("air", "sensors.hall.co2_ppm", NOW - 1, 812.0),
                       ("uplink/lte", "latency_ms", NOW - 2, 20.0), ("uplink/lte", "loss_pct", NOW - 2, 1.5)]


def test_an_older_message_does_not_replace_a_newer_one(store):
    clock = Clock()
    ingest = Ingest(store, clock=clock)
    assert ingest.handle_batch([uplink("kyiv-1", NOW - 10, latency_ms=50)]).stored == 1
    # Shared subscriptions and reconnects deliver out of order: the late one is stale, not an error.
    result = ingest.handle_batch([uplink("kyiv-1", NOW - 20, latency_ms=99), uplink("kyiv-1", NOW - 10, latency_ms=50)])
    assert (result.stored, result.stale, result.duplicates, result.dropped_total) == (0, 1, 1, 0)
    # Within one batch too: the later message in the list but older by ts loses.
    result = ingest.handle_batch([uplink("kyiv-1", NOW - 5, latency_ms=7), uplink("kyiv-1", NOW - 8, latency_ms=8)])
    assert (result.stored, result.stale) == (1, 1)
    payload, sent_at = rows(store, "SELECT payload, sent_at FROM entities")[0]
    assert (json.loads(payload)["latency_ms"], sent_at) == (7, NOW - 5)
    assert sorted(v for (v,) in rows(store, "SELECT value FROM samples WHERE metric = 'latency_ms'")) == [7.0, 50.0]
    assert rows(store, "SELECT count(*) FROM dropped") == [(0,)]


def test_an_old_retained_message_is_dropped_and_makes_no_site(store):
    ingest = Ingest(store, clock=Clock(), retained_max_age_s=86400)
    result = ingest.handle_batch([uplink("gone-1", NOW - 2 * 86400, retain=True)])
    assert result.dropped == {"retained_old": 1} and result.stored == 0
    assert rows(store, "SELECT count(*) FROM sites") == [(0,)]
    assert rows(store, "SELECT count(*) FROM entities") == [(0,)]
    assert rows(store, "SELECT site, topic, reason FROM dropped") == [("gone-1", "cnap/gone-1/uplink/lte", "retained_old")]
    # A recent retained state is the site's current state: stored, but it says nothing of the clock.
    assert ingest.handle_batch([uplink("kyiv-1", NOW - 3600, retain=True)]).stored == 1
    assert rows(store, "SELECT site, skew_s FROM sites") == [("kyiv-1", None)]


def test_a_skewed_agent_is_stored_with_its_skew_and_no_future_samples(store):
    clock = Clock()
    ingest = Ingest(store, clock=clock)
    ahead = NOW + 3 * 3600   # the agent's clock is three hours fast
    assert ingest.handle_batch([air("kyiv-1", ahead, 700.0)]).stored == 1
    assert rows(store, "SELECT skew_s FROM sites") == [(3 * 3600.0,)]
    assert rows(store, "SELECT at FROM samples") == [(NOW,)]   # the hub's receive time, not the future
    assert rows(store, "SELECT sent_at FROM entities") == [(ahead,)]
    # Its clock gets fixed: the next message is older by ts, and still applied.
    clock.now += 10
    assert ingest.handle_batch([air("kyiv-1", clock.now - 1, 650.0)]).stored == 1
    assert rows(store, "SELECT sent_at FROM entities") == [(clock.now - 1,)]
    assert rows(store, "SELECT skew_s FROM sites") == [(-1.0,)]
    assert all(a <= clock.now for (a,) in rows(store, "SELECT at FROM samples"))


@pytest.mark.parametrize("message, reason", [
    ((t.topic("air", "kyiv-1"), b"{" + b" " * 9000 + b"}", False), "too_large"),
    ((t.topic("air", "kyiv-1"), b"{not json", False), "json"),
    ((t.topic("air", "kyiv-1"), b'{"v": 1, "ts": "2026-09-01T00:00:00Z", "available": "yes", "state": "ok"}', False),
     "schema"),
    ((t.topic("online", "kyiv-1"), b"maybe", True), "schema"),
    ((t.topic("air", "kyiv-1"), b"\xff\xfe", False), "encoding"),
    ((t.topic("air", "kyiv-1"), b"", True), "empty"),
    (("cnap/kyiv-1/telemetry", b"{}", False), "topic"),
    (("cnap/Bad Site/air", b"{}", False), "site"),
    (("cnap/kyiv-1/device/toaster", b"{}", False), "name"),
    (("elsewhere/x", b"{}", False), "topic"),
])
def test_what_does_not_fit_goes_to_dropped_with_the_reason(store, message, reason):
    ingest = Ingest(store, clock=Clock())
    result = ingest.handle_batch([message])
    assert result.dropped == {reason: 1} and result.total == 1
    assert [r for (r,) in rows(store, "SELECT reason FROM dropped")] == [reason]
    for table in ("sites", "entities", "samples", "survey_answers"):
        assert rows(store, f"SELECT count(*) FROM {table}") == [(0,)], table


def test_survey_answers_are_stored_exactly_once(store):
    ingest = Ingest(store, clock=Clock())
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    result = ingest.handle_batch([answer("kyiv-1", first), answer("kyiv-1", first), answer("kyiv-1", second)])
    assert (result.stored, result.duplicates) == (2, 1)
    result = ingest.handle_batch([answer("kyiv-1", second), answer("lviv-2", first)])   # an agent's re-send
    assert (result.stored, result.duplicates) == (0, 2)
    stored = rows(store, "SELECT uuid, site, answered_at, received_at FROM survey_answers ORDER BY uuid")
    assert stored == sorted([(first, "kyiv-1", NOW - 5, NOW), (second, "kyiv-1", NOW - 5, NOW)])


def test_command_results_fill_their_command_once_and_own_commands_are_ignored(store):
    ingest = Ingest(store, clock=Clock())
    command_id, stranger = str(uuid.uuid4()), str(uuid.uuid4())
    with store.transaction() as tx:
        tx.execute("INSERT INTO commands (id, site, controller, action, args, requested_by, requested_at, expires_at) "
                   "VALUES (?, 'kyiv-1', 'ventilation', 'set_level', '{}', 'staff.olena', ?, ?)",
                   (command_id, NOW - 10, NOW + 50))

    def result_for(site, cid, ok=True):
        out = t.outgoing(site, t.CommandResult(ts=at(NOW - 1), id=cid, ok=ok, message="level 3"), "ventilation")
        return out.topic, out.payload, False

    own = t.outgoing("kyiv-1", t.Command(ts=at(NOW), id=command_id, action="set_level", by="hub.central"), "ventilation")
    result = ingest.handle_batch([result_for("kyiv-1", command_id), result_for("kyiv-1", command_id, ok=False),
                                  result_for("kyiv-1", stranger), result_for("lviv-2", command_id),
                                  (own.topic, own.payload, False)])
    assert (result.stored, result.duplicates, result.ignored, result.dropped) == (1, 1, 1, {"unknown_command": 2})
    assert rows(store, "SELECT result_ok, result_message, result_at FROM commands") == [(1, "level 3", NOW)]


def test_dropped_keeps_only_the_newest_rows(store):
    clock = Clock()
    ingest = Ingest(store, clock=clock, dropped_keep=5)
    for index in range(4):
        clock.now += 1
        ingest.handle_batch([(f"cnap/kyiv-1/junk{index}-{n}", b"x", False) for n in range(3)])
    kept = rows(store, "SELECT topic FROM dropped ORDER BY id")
    assert [topic for (topic,) in kept] == ["cnap/kyiv-1/junk2-1", "cnap/kyiv-1/junk2-2", "cnap/kyiv-1/junk3-0",
                                            "cnap/kyiv-1/junk3-1", "cnap/kyiv-1/junk3-2"]


def test_old_samples_are_swept(store):
    clock = Clock()
    ingest = Ingest(store, clock=clock, samples_max_age_s=3600)
    ingest.handle_batch([air("kyiv-1", NOW - 60, 500.0)])
    clock.now += 7200
    ingest.handle_batch([air("kyiv-1", clock.now - 60, 600.0)])
    assert rows(store, "SELECT value FROM samples") == [(600.0,)]


def test_sample_metrics_name_the_numbers_by_their_path():
    power = t.PowerState(ts=at(NOW), available=True, state="ok", ups=t.Ups(status="online", charge_pct=90, runtime_s=1200),
                         inputs=[t.PowerInput(name="mains", live=True, voltage_v=228.5)])
    assert sample_metrics(power) == [("ups.charge_pct", 90.0), ("ups.runtime_s", 1200.0),
                                     ("inputs.mains.voltage_v", 228.5)]
    bills = t.BillValidatorState(ts=at(NOW), online=True, state="ok", cassette_bills=250, cassette_capacity=1000)
    assert sample_metrics(bills) == [("cassette_bills", 250.0), ("fill_pct", 25.0)]


# --- visitor internet at the kiosk and the guest Wi-Fi ------------------------------------------------
def internet_payload(sent_at: float = NOW - 3, **changes) -> dict:
    payload = {"v": 1, "ts": at(sent_at).isoformat(), "enabled": True, "available": True, "state": "ok",
               "session_open": True, "day": "2026-09-21", "sessions": 12, "minutes": 95.5,
               "ended": {"user": 7, "idle": 3, "session_limit": 1},
               "blocked_hook": 30, "blocked_proxy": 4,
               "top_blocked": [{"host": f"site{n}.example", "attempts": 10 - n} for n in range(10)]}
    return {**payload, **changes}


def guest_payload(sent_at: float = NOW - 2, **changes) -> dict:
    payload = {"v": 1, "ts": at(sent_at).isoformat(), "available": True, "state": "ok", "alerts": [],
               "interface": "wlan1", "dhcp": True, "clients_now": 5, "admitted_today": 41,
               "bytes_up": 120_000_000, "bytes_down": 3_400_000_000, "blocked": 77, "redirected": 19,
               "total_rate_kbit": 5000, "admit_minutes": 60}
    return {**payload, **changes}


def state_message(kind: str, payload: dict, site: str = "kyiv-1", retain: bool = False):
    return t.topic(kind, site), json.dumps(payload).encode(), retain


def test_internet_and_guest_network_are_stored_with_a_bounded_set_of_samples(store):
    ingest = Ingest(store, clock=Clock())
    result = ingest.handle_batch([state_message("internet", internet_payload()),
                                  state_message("guest_network", guest_payload())])
    assert (result.stored, result.dropped_total) == (2, 0)
    entities = {entity: (kind, json.loads(payload)) for entity, kind, payload in rows(
        store, "SELECT entity, kind, payload FROM entities WHERE site = 'kyiv-1'")}
    assert set(entities) == {"internet", "guest_network"}
    assert entities["internet"][0] == "internet" and len(entities["internet"][1]["top_blocked"]) == 10
    assert entities["guest_network"][1]["bytes_down"] == 3_400_000_000
    samples = {(entity, metric): (sampled_at, value) for entity, metric, sampled_at, value in rows(
        store, "SELECT entity, metric, at, value FROM samples")}
    assert {metric: value for (entity, metric), (_, value) in samples.items() if entity == "internet"} == {
        "sessions": 12.0, "minutes": 95.5, "blocked_hook": 30.0, "blocked_proxy": 4.0, "blocked": 34.0,
        "ended.user": 7.0, "ended.idle": 3.0, "ended.session_limit": 1.0}
    assert {metric: value for (entity, metric), (_, value) in samples.items() if entity == "guest_network"} == {
        "clients_now": 5.0, "admitted_today": 41.0, "bytes_up": 120e6, "bytes_down": 3.4e9, "blocked": 77.0,
        "redirected": 19.0}
    assert samples[("guest_network", "clients_now")][0] == NOW - 2


def test_blocked_hosts_and_unknown_end_reasons_never_become_metric_names(store):
    ingest = Ingest(store, clock=Clock())
    for index in range(30):   # a site (or a forger with its account) sending ever new hosts and reasons
        payload = internet_payload(NOW - 100 + index, ended={f"reason{index}": 1, "user": index},
                                   top_blocked=[{"host": f"h{index}-{n}.example", "attempts": 1} for n in range(10)])
        assert ingest.handle_batch([state_message("internet", payload)]).stored == 1
    metrics = {metric for (metric,) in rows(store, "SELECT DISTINCT metric FROM samples")}
    assert metrics == {"sessions", "minutes", "blocked_hook", "blocked_proxy", "blocked", "ended.user"}


def test_the_end_reasons_are_the_kiosks():
    from monitoring.hub.ingest import ENDED_REASONS
    from terminal.internet.store import END_REASONS
    assert ENDED_REASONS == END_REASONS


@pytest.mark.parametrize("kind, payload, reason", [
    ("internet", json.dumps(internet_payload()).encode()[:-1], "json"),
    ("guest_network", b"[1, 2", "json"),
    ("guest_network", b'{"v": 1, "ts": NaN}', "json"),
    ("internet", json.dumps(internet_payload(padding="x" * 9000)).encode(), "too_large"),
    ("guest_network", json.dumps(guest_payload(alerts=["a" * 40] * 200)).encode(), "too_large"),
    ("internet", json.dumps(internet_payload(sessions="12")).encode(), "schema"),
    ("internet", json.dumps(internet_payload(minutes=-1)).encode(), "schema"),
    ("internet", json.dumps(internet_payload(available=1)).encode(), "schema"),
    ("internet", json.dumps(internet_payload(day="21.09.2026")).encode(), "schema"),
    ("internet", json.dumps(internet_payload(top_blocked=[{"host": "h.example", "attempts": 1}] * 11)).encode(),
     "schema"),
    ("internet", json.dumps(internet_payload(top_blocked=[{"host": "<script>", "attempts": 1}])).encode(), "schema"),
    ("internet", json.dumps(internet_payload(ended={"Bad Word": 1})).encode(), "schema"),
    ("internet", json.dumps({k: v for k, v in internet_payload().items() if k != "sessions"}).encode(), "schema"),
    ("guest_network", json.dumps(guest_payload(clients_now=True)).encode(), "schema"),
    ("guest_network", json.dumps(guest_payload(bytes_up=-5)).encode(), "schema"),
    ("guest_network", json.dumps(guest_payload(bytes_down=2 ** 60)).encode(), "schema"),
    ("guest_network", json.dumps(guest_payload(blocked=1.5)).encode(), "schema"),
    ("guest_network", json.dumps(guest_payload(interface="wlan 1")).encode(), "schema"),
    ("guest_network", json.dumps(guest_payload(state="OK")).encode(), "schema"),
    ("guest_network", json.dumps([guest_payload()]).encode(), "schema"),
])
def test_internet_and_guest_network_that_do_not_fit_are_dropped_with_the_reason(store, kind, payload, reason):
    ingest = Ingest(store, clock=Clock())
    result = ingest.handle_batch([(t.topic(kind, "kyiv-1"), payload, False)])
    assert result.dropped == {reason: 1} and result.total == 1
    assert rows(store, "SELECT site, topic, reason FROM dropped") == [("kyiv-1", f"cnap/kyiv-1/{kind}", reason)]
    for table in ("sites", "entities", "samples"):
        assert rows(store, f"SELECT count(*) FROM {table}") == [(0,)], table


def test_an_unknown_field_in_the_new_payloads_is_dropped_not_the_message(store):
    ingest = Ingest(store, clock=Clock())
    result = ingest.handle_batch([state_message("guest_network", guest_payload(ssid="Free-CNAP", clients_now=2))])
    assert (result.stored, result.dropped_total) == (1, 0)
    payload = json.loads(rows(store, "SELECT payload FROM entities")[0][0])
    assert "ssid" not in payload and payload["clients_now"] == 2


# --- no input makes it raise ------------------------------------------------------------------------
_topic_parts = st.sampled_from(["cnap", "kyiv-1", "air", "power", "uplink", "device", "printer", "survey", "answer",
                                "online", "bridge", "cmd", "cmd_result", "x", "", "+", "#", "$share", "Київ"])
fuzz_topics = st.one_of(st.text(max_size=140), st.lists(_topic_parts, max_size=5).map("/".join),
                        st.binary(max_size=40))
fuzz_payloads = st.one_of(st.binary(max_size=300), strategies.json_values.map(lambda v: json.dumps(v).encode()),
                          st.sampled_from([b"online", b"offline", b"1", b"0", b"NaN", b'{"ts": 1e999}']))


@st.composite
def near_valid(draw):
    """A valid message of any kind with one field replaced, removed or added."""
    topic_name, payload = draw(strategies.valid_messages())
    key = draw(st.sampled_from(sorted(payload) + ["extra"]))
    action = draw(st.sampled_from(["replace", "remove", "keep"]))
    if action == "replace":
        payload[key] = draw(strategies.finite_json_values)
    elif action == "remove":
        payload.pop(key, None)
    return topic_name, json.dumps(payload).encode(), draw(st.booleans())


fuzz_messages = st.lists(st.one_of(st.tuples(fuzz_topics, fuzz_payloads, st.booleans()), near_valid(),
                                   st.tuples(st.integers(), st.none(), st.text(max_size=3)), st.none()),
                         max_size=12)


@pytest.fixture(params=["sqlite", "postgresql"])
def fuzz_store(request, tmp_path):
    url = f"sqlite:///{tmp_path}/fuzz.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    db = open_store(url)
    yield db
    db.close()


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=fuzz_messages)
def test_no_batch_makes_ingest_raise_or_store_nonsense(fuzz_store, batch):
    clock = Clock()
    ingest = Ingest(fuzz_store, clock=clock, dropped_keep=50)
    result = ingest.handle_batch(batch)
    assert result.total == len(batch)   # every message accounted for exactly once
    assert rows(fuzz_store, "SELECT count(*) FROM dropped")[0][0] <= 50
    assert all(when <= clock.now + t.MAX_FUTURE_SKEW_S for (when,) in rows(fuzz_store, "SELECT at FROM samples"))
    for site, in rows(fuzz_store, "SELECT site FROM sites"):
        assert t.valid_site_id(site)
    for site, entity, kind, payload in rows(fuzz_store, "SELECT site, entity, kind, payload FROM entities"):
        topic_name = f"cnap/{site}/{entity}"
        assert isinstance(t.parse(topic_name, payload.encode()), t.Message), topic_name


def test_a_retained_status_waits_for_a_sign_that_the_site_exists(store):
    clock = Clock()
    ingest = Ingest(store, clock=clock)
    online, offline = (t.topic("online", "kyiv-1"), b"online", True), (t.topic("online", "gone-1"), b"offline", True)
    old_state = uplink("gone-1", NOW - 30 * 86400, retain=True)
    result = ingest.handle_batch([online, offline, old_state])
    assert (result.held, result.dropped, result.stored) == (2, {"retained_old": 1}, 0)
    assert rows(store, "SELECT count(*) FROM sites") == [(0,)]
    clock.now += 1
    assert ingest.handle_batch([uplink("kyiv-1", NOW - 3600, retain=True)]).stored == 1
    assert rows(store, "SELECT site, status FROM sites") == [("kyiv-1", "online")]
    # A live status (the agent connecting) needs no such sign, nor does one of a known site.
    assert ingest.handle_batch([(t.topic("online", "lviv-2"), b"online", False), offline]).stored == 1
    assert ingest.handle_batch([(t.topic("online", "kyiv-1"), b"offline", True)]).stored == 1
    assert rows(store, "SELECT site, status FROM sites ORDER BY site") == [("kyiv-1", "offline"), ("lviv-2", "online")]


def test_a_batch_that_is_not_a_list_of_messages_is_dropped_not_raised(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/hub.db") as db:
        ingest = Ingest(db, clock=Clock())
        assert ingest.handle_batch(None).dropped == {"malformed": 1}
        assert ingest.handle_batch([("cnap/kyiv-1/online", b"online")]).dropped == {"malformed": 1}
        assert ingest.handle_batch([]).total == 0
