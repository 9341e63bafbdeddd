"""The topic tree and payload schemas: valid payloads round-trip, anything else is rejected with a
reason, and no bytes or topic can make the parser raise."""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from monitoring import topics as t
from tests.monitoring import strategies as s

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
TS = "2026-12-05T12:00:00Z"


def dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def printer(**extra) -> dict:
    return {"v": 1, "ts": TS, "online": True, "state": "idle", "paper": "near_end"} | extra


# --- site ids and topics ---------------------------------------------------------------------------
@pytest.mark.parametrize("site", ["kyiv-1", "a", "0", "lviv_centre-2", "x" * 32])
def test_good_site_ids(site):
    assert t.valid_site_id(site)
    assert t.parse_topic(t.topic("online", site)) == t.TopicRef("online", site, None)


@pytest.mark.parametrize("site", ["", "x" * 33, "Kyiv", "kyiv/1", "+", "#", "kyiv+", "ky#iv", "$sys", "-kyiv",
                                  "kyiv-", "київ", "kyiv 1", "kyiv.1", "kyiv\x00", None, 7])
def test_bad_site_ids_are_refused_by_builders_and_parser(site):
    assert not t.valid_site_id(site)
    with pytest.raises(ValueError):
        t.topic("online", site)
    if isinstance(site, str):
        assert isinstance(t.parse(f"cnap/{site}/online", b"online"), t.Rejected)


@pytest.mark.parametrize("topic_name, reason", [
    ("cnap/kyiv-1/#", "topic"), ("cnap/+/online", "site"), ("cnap/kyiv-1/uplink/+", "name"),
    ("cnap/kyiv-1/uplink/LTE", "name"), ("cnap/kyiv-1/device/toaster", "name"), ("cnap/kyiv-1", "topic"),
    ("other/kyiv-1/online", "topic"), ("cnap/kyiv-1/online/extra", "topic"), ("/cnap/kyiv-1/online", "topic"),
    ("cnap/kyiv-1/" + "x" * 200, "topic"), ("", "topic"),
])
def test_topics_outside_the_tree_are_rejected(topic_name, reason):
    result = t.parse(topic_name, b"online")
    assert isinstance(result, t.Rejected) and result.reason == reason


def test_every_topic_kind_is_built_and_parsed_back():
    for spec in t.TOPICS:
        name = {"device": "printer"}.get(spec.kind, "main") if "{name}" in spec.pattern else None
        built = t.topic(spec.kind, "kyiv-1", name)
        assert t.parse_topic(built) == t.TopicRef(spec.kind, "kyiv-1", name)
    assert t.site_filter("kyiv-1") == "cnap/kyiv-1/#"
    assert t.command_filter("kyiv-1") == "cnap/kyiv-1/cmd/+"


def test_qos_and_retain_follow_the_tree():
    state = t.outgoing("kyiv-1", t.UplinkState(ts=NOW, available=True, state="ok", up=True, active=True), "lte")
    assert (state.topic, state.qos, state.retain) == ("cnap/kyiv-1/uplink/lte", 1, True)
    survey = t.outgoing("kyiv-1", t.SurveyAnswer(ts=NOW, uuid=str(uuid.uuid4()), tablet_id=1, branch_id="b1",
                                                 desk="3", survey_id="main", version=1, main="q1", score=5, scale=5))
    assert (survey.topic, survey.qos, survey.retain) == ("cnap/kyiv-1/survey/answer", 1, False)
    online = t.outgoing("kyiv-1", False)
    assert (online.topic, online.payload, online.retain) == ("cnap/kyiv-1/online", b"offline", True)
    device = t.outgoing("kyiv-1", t.PrinterState(ts=NOW, online=True, state="idle", paper="out"))
    assert device.topic == "cnap/kyiv-1/device/printer"


# --- payloads -----------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(s.valid_messages())
def test_valid_payloads_are_accepted_and_round_trip(message):
    topic_name, payload = message
    first = t.parse(topic_name, dumps(payload))
    assert isinstance(first, t.Message), first
    assert first.dropped == ()
    again = t.outgoing(first.site, first.payload, None if first.kind == "device" else first.name)
    assert again.topic == topic_name
    second = t.parse(again.topic, again.payload)
    assert isinstance(second, t.Message) and second.payload == first.payload


@settings(max_examples=100, deadline=None)
@given(s.valid_messages(), st.dictionaries(st.text(max_size=12).filter(lambda k: k not in t.Command.model_fields
                                                                        and k not in t.SurveyAnswer.model_fields),
                                          s.finite_json_values, min_size=1, max_size=3))
def test_unknown_fields_are_dropped_and_reported(message, unknown):
    topic_name, payload = message
    known = set(payload)
    unknown = {k: v for k, v in unknown.items() if k not in known and k not in t.SPECS}
    result = t.parse(topic_name, dumps(payload | unknown))
    if isinstance(result, t.Rejected):          # only because the extra bytes went over the limit
        assert result.reason == "too_large"
        return
    assert {key for key in unknown if key.isprintable() and len(key) <= 60} <= set(result.dropped)
    assert len(result.dropped) == min(len(unknown), t.MAX_DROPPED_REPORTED)
    assert result.payload == t.parse(topic_name, dumps(payload)).payload
    assert not (set(json.loads(t.encode(result.payload))) & set(unknown))


def test_unknown_nested_field_is_reported_with_its_path():
    raw = {"v": 1, "ts": TS, "available": True, "state": "ok",
           "ups": {"status": "online", "charge_pct": 80, "brand": "x"}, "inputs": [{"name": "mains", "live": True, "phase": 3}]}
    result = t.parse("cnap/kyiv-1/power", dumps(raw))
    assert isinstance(result, t.Message)
    assert set(result.dropped) == {"ups.brand", "inputs.0.phase"}
    assert "brand" not in t.encode(result.payload).decode()


@pytest.mark.parametrize("change, reason", [
    ({"online": 1}, "schema"),                       # no int for a bool
    ({"online": "true"}, "schema"),
    ({"paper": "plenty"}, "schema"),
    ({"state": "Idle"}, "schema"),                   # words are lower-case ASCII
    ({"state": "x" * 41}, "schema"),
    ({"v": 2}, "schema"),                            # a newer schema is not guessed at
    ({"ts": "2026-12-05T12:00:00"}, "schema"),       # no time zone
    ({"ts": 1796474062}, "schema"),                  # ISO-8601 only
    ({"ts": "1999-12-31T23:00:00Z"}, "schema"),
    ({"ts": "2200-01-01T00:00:00Z"}, "schema"),
    ({"alerts": ["ok"] * 33}, "schema"),
])
def test_wrong_types_and_values_are_rejected(change, reason):
    result = t.parse("cnap/kyiv-1/device/printer", dumps(printer() | change))
    assert isinstance(result, t.Rejected) and result.reason == reason
    assert next(iter(change)) in result.detail


@pytest.mark.parametrize("payload, reason", [
    (b"", "empty"), (b"\xff\xfe{}", "encoding"), (b"{", "json"), (b"[]", "schema"), (b"null", "schema"),
    (b'{"v":1,"ts":"2026-12-05T12:00:00Z","online":true,"state":"idle","paper":"ok","x":NaN}', "json"),
    (b"[" * 5000, "json"), (b" " * (t.MAX_STATE_BYTES + 1), "too_large"),
])
def test_bad_bytes_are_rejected(payload, reason):
    result = t.parse("cnap/kyiv-1/device/printer", payload)
    assert isinstance(result, t.Rejected) and result.reason == reason, result


def test_ranges_and_cross_field_rules():
    base = {"v": 1, "ts": TS, "available": True, "state": "ok"}
    assert t.parse("cnap/k/ventilation", dumps(base | {"level": 4, "max_level": 3})).reason == "schema"
    assert t.parse("cnap/k/air", dumps(base | {"sensors": [{"name": "hall", "online": True, "co2_ppm": -1}]})).reason == "schema"
    assert t.parse("cnap/k/air", dumps(base | {"sensors": [{"name": "hall", "online": True, "co2_ppm": 1e400}]})).reason in ("schema", "json")
    dev = {"v": 1, "ts": TS, "online": True, "state": "idling"}
    assert t.parse("cnap/k/device/bill_validator", dumps(dev | {"cassette_bills": 1001, "cassette_capacity": 1000})).reason == "schema"
    assert isinstance(t.parse("cnap/k/device/bill_validator", dumps(dev | {"cassette_bills": 1000, "cassette_capacity": 1000})), t.Message)
    answer = {"v": 1, "ts": TS, "uuid": str(uuid.uuid4()), "tablet_id": 1, "branch_id": "b", "desk": "1",
              "survey_id": "s", "version": 1, "main": "q", "score": 6, "scale": 5}
    assert t.parse("cnap/k/survey/answer", dumps(answer)).reason == "schema"
    assert t.parse("cnap/k/survey/answer", dumps(answer | {"score": 5, "uuid": "NOT-A-UUID"})).reason == "schema"
    assert t.parse("cnap/k/survey/answer", dumps(answer | {"score": 5, "comment": "a\u202eb"})).reason == "schema"
    assert isinstance(t.parse("cnap/k/survey/answer", dumps(answer | {"score": 5, "comment": "Дякую!"})), t.Message)


def test_clock_checks_with_now():
    now = NOW.timestamp()
    ahead = (NOW + timedelta(seconds=t.MAX_FUTURE_SKEW_S + 5)).isoformat()
    assert isinstance(t.parse("cnap/k/device/printer", dumps(printer(ts=ahead))), t.Message)   # no clock, no check
    assert t.parse("cnap/k/device/printer", dumps(printer(ts=ahead)), now=now).reason == "schema"
    command = {"v": 1, "ts": TS, "id": str(uuid.uuid4()), "action": "set_level", "args": {"level": 2},
               "by": "hub.central", "ttl_s": 30}
    assert isinstance(t.parse("cnap/k/cmd/ventilation", dumps(command), now=now + 30), t.Message)
    expired = t.parse("cnap/k/cmd/ventilation", dumps(command), now=now + 31)
    assert expired.reason == "expired"
    assert t.parse("cnap/k/cmd/ventilation", dumps(command | {"args": {"level": 2 ** 60}})).reason == "schema"
    assert t.parse("cnap/k/cmd/ventilation", dumps(command | {"args": {"x": [1]}})).reason == "schema"


def test_text_topics():
    assert t.parse("cnap/k/online", b"online").payload == "online"
    assert t.parse("cnap/k/online", b"offline").payload == "offline"
    assert t.parse("cnap/k/bridge", b"0").payload == "0"
    assert t.parse("cnap/k/online", b"ONLINE").reason == "schema"
    assert t.parse("cnap/k/online", b"").reason == "empty"


def test_builders_refuse_bad_values():
    with pytest.raises(ValidationError):
        t.PrinterState(ts=NOW, online=True, state="idle", paper="plenty")
    with pytest.raises(ValidationError):
        t.VentilationState(ts=NOW, available=True, state="ok", level=5, max_level=3)
    with pytest.raises(ValueError):
        t.topic("uplink", "kyiv-1")                           # needs its name
    with pytest.raises(ValueError):
        t.topic("device", "kyiv-1", "toaster")
    with pytest.raises(ValueError):
        t.outgoing("kyiv-1", t.CommandResult(ts=NOW, id=str(uuid.uuid4()), ok=True), "bad/name")


# --- fuzz: nothing raises -------------------------------------------------------------------------------
@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=80), st.text(max_size=80), st.none(), st.integers()),
       st.one_of(st.binary(max_size=300), st.text(max_size=100), st.none(), st.integers()))
def test_arbitrary_topics_and_bytes_never_raise(topic_name, payload):
    assert isinstance(t.parse(topic_name, payload, now=time.time()), (t.Message, t.Rejected))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([spec.pattern.format(site="kyiv-1", name="printer" if spec.kind == "device" else "lte")
                        for spec in t.TOPICS]), st.binary(max_size=400))
def test_arbitrary_bytes_on_every_real_topic_never_raise(topic_name, payload):
    assert isinstance(t.parse(topic_name, payload), (t.Message, t.Rejected))


@settings(max_examples=300, deadline=None)
@given(s.valid_messages(), st.data())
def test_any_field_replaced_by_any_json_never_raises(message, data):
    topic_name, payload = message
    key = data.draw(st.sampled_from(sorted(payload)))
    payload = payload | {key: data.draw(s.json_values)}
    result = t.parse(topic_name, json.dumps(payload).encode(), now=data.draw(st.floats()))
    if isinstance(result, t.Message):       # accepted: then it must still be a valid message
        again = t.parse(topic_name, t.encode(result.payload))
        assert isinstance(again, t.Message) and again.payload == result.payload
