"""Hypothesis strategies for valid payloads of every topic kind (as the JSON a publisher sends)."""
from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import strategies as st

from monitoring import topics as t

sites = st.from_regex(t.SITE_ID_RE, fullmatch=True)
names = st.from_regex(t.NAME_RE, fullmatch=True)
words = st.from_regex(r"[a-z0-9_]{1,40}", fullmatch=True)
idents = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
uuids = st.uuids().map(str)
plain_chars = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn"))


def texts(max_size):
    return st.text(plain_chars, max_size=max_size)


def numbers(low, high):
    return st.one_of(st.integers(int(low), int(high)), st.floats(low, high, allow_nan=False))


def maybe(strategy):
    return st.one_of(st.none(), strategy)


timestamps = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2099, 12, 31),
                          timezones=st.just(timezone.utc)).map(lambda d: d.isoformat().replace("+00:00", "Z"))


def _obj(required: dict, optional: dict | None = None):
    """Dicts with every required key and any subset of the optional ones (None values left out)."""
    return st.fixed_dictionaries(required, optional=optional or {}).map(
        lambda d: {k: v for k, v in d.items() if v is not None})


def _controller(**fields):
    return _obj({"v": st.just(1), "ts": timestamps, "available": st.booleans(), "state": words},
                {"alerts": st.lists(words, max_size=32), **fields})


ventilation = st.integers(1, 100).flatmap(lambda top: _controller(
    level=maybe(st.integers(0, top)), max_level=st.just(top), override_until=maybe(timestamps)))
air = _controller(sensors=st.lists(_obj({"name": names, "online": st.booleans()}, {
    "co2_ppm": maybe(numbers(0, 10000)), "temperature_c": maybe(numbers(-40, 85)),
    "humidity_pct": maybe(numbers(0, 100))}), max_size=16))
power = _controller(
    ups=maybe(_obj({"status": words}, {"charge_pct": maybe(numbers(0, 100)), "runtime_s": maybe(st.integers(0, 604800)),
                                       "load_pct": maybe(numbers(0, 200)), "input_voltage_v": maybe(numbers(0, 400))})),
    inputs=st.lists(_obj({"name": names, "live": st.booleans()}, {"voltage_v": maybe(numbers(0, 400))}), max_size=8),
    active_input=maybe(names))
uplink = _obj({"v": st.just(1), "ts": timestamps, "available": st.booleans(), "state": words, "up": st.booleans(),
               "active": st.booleans()},
              {"alerts": st.lists(words, max_size=5), "interface": maybe(names),
               "latency_ms": maybe(numbers(0, 60000)), "loss_pct": maybe(numbers(0, 100))})


def _device(**fields):
    required = {"v": st.just(1), "ts": timestamps, "online": st.booleans(), "state": words}
    return _obj(required | {k: v for k, v in fields.items() if not k.startswith("opt_")},
                {"alerts": st.lists(words, max_size=5), **{k[4:]: v for k, v in fields.items() if k.startswith("opt_")}})


bill_validator = st.integers(1, 100000).flatmap(lambda cap: _device(
    cassette_capacity=st.just(cap), cassette_bills=st.integers(0, cap)))
printer = _device(paper=st.sampled_from(["ok", "near_end", "out", "unknown"]), opt_cover_open=st.booleans())
card_terminal = _device()
survey = st.integers(2, 10).flatmap(lambda scale: _obj(
    {"v": st.just(1), "ts": timestamps, "uuid": uuids, "tablet_id": st.integers(1, 2 ** 31), "branch_id": idents,
     "desk": texts(64), "survey_id": idents, "version": st.integers(1, 100000), "main": idents,
     "score": st.integers(0, scale), "scale": st.just(scale)},
    {"path": st.lists(st.tuples(idents, idents).map(list), max_size=16), "nps": maybe(st.integers(0, 10)),
     "comment": maybe(texts(300)), "lang": maybe(st.sampled_from(["uk", "en"])), "counted": st.booleans(),
     "flag": maybe(words), "review": maybe(words)}))
command = _obj({"v": st.just(1), "ts": timestamps, "id": uuids, "action": words, "by": st.from_regex(
    r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True)},
    {"args": st.dictionaries(words, st.one_of(st.booleans(), st.integers(-2 ** 53, 2 ** 53),
                                              st.floats(allow_nan=False, allow_infinity=False), texts(100), st.none()),
                             max_size=8),
     "ttl_s": st.integers(1, 3600)})
command_result = _obj({"v": st.just(1), "ts": timestamps, "id": uuids, "ok": st.booleans()},
                      {"message": texts(300)})

internet = _obj({"v": st.just(1), "ts": timestamps, "enabled": st.booleans(), "available": st.booleans(),
                 "state": words, "day": st.dates().map(lambda d: d.isoformat()),
                 "sessions": st.integers(0, 10 ** 7), "minutes": numbers(0, 10 ** 7),
                 "blocked_hook": st.integers(0, 10 ** 9), "blocked_proxy": st.integers(0, 10 ** 9)},
                {"session_open": st.booleans(),
                 "ended": st.dictionaries(words, st.integers(0, 10 ** 7), max_size=8),
                 "top_blocked": st.lists(_obj({"host": st.from_regex(r"[a-z0-9.-]{1,60}", fullmatch=True),
                                               "attempts": st.integers(1, 10 ** 9)}), max_size=10)})
guest_network = _controller(
    interface=maybe(st.from_regex(r"[A-Za-z0-9_.@-]{1,15}", fullmatch=True)), dhcp=maybe(st.booleans()),
    clients_now=st.integers(0, 100000), admitted_today=st.integers(0, 10 ** 7),
    bytes_up=st.integers(0, 2 ** 53), bytes_down=st.integers(0, 2 ** 53), blocked=st.integers(0, 2 ** 53),
    redirected=st.integers(0, 2 ** 53), total_rate_kbit=maybe(st.integers(1, 10 ** 7)),
    client_rate_kbit=maybe(st.integers(1, 10 ** 7)), admit_minutes=maybe(st.integers(1, 7 * 24 * 60)))

# (topic for a site, strategy of its JSON payload)
BY_TOPIC = {
    "ventilation": (lambda s: t.topic("ventilation", s), ventilation),
    "air": (lambda s: t.topic("air", s), air),
    "power": (lambda s: t.topic("power", s), power),
    "uplink": (lambda s: t.topic("uplink", s, "lte"), uplink),
    "bill_validator": (lambda s: t.topic("device", s, "bill_validator"), bill_validator),
    "printer": (lambda s: t.topic("device", s, "printer"), printer),
    "card_terminal": (lambda s: t.topic("device", s, "card_terminal"), card_terminal),
    "survey": (lambda s: t.topic("survey", s), survey),
    "cmd": (lambda s: t.topic("cmd", s, "ventilation"), command),
    "cmd_result": (lambda s: t.topic("cmd_result", s, "ventilation"), command_result),
    "internet": (lambda s: t.topic("internet", s), internet),
    "guest_network": (lambda s: t.topic("guest_network", s), guest_network),
}


@st.composite
def valid_messages(draw):
    """(topic, payload dict) of any kind, for any site."""
    kind = draw(st.sampled_from(sorted(BY_TOPIC)))
    make_topic, payloads = BY_TOPIC[kind]
    return make_topic(draw(sites)), draw(payloads)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=20)

# The same, standard JSON only (no NaN or Infinity, which the parser rejects as not JSON).
finite_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=20)
