"""Any sequence of observations, site status changes, acks, silences and time steps keeps the alert
machine's promises. A small model built only from the machine's own commands checks each one."""
import math
from collections import defaultdict
from dataclasses import replace

from hypothesis import event, given, settings
from hypothesis import strategies as st

from monitoring.alerts import AlertConfig, Event, Observation, Rejected, handle, new_state

CONFIG = AlertConfig(ups_on_battery_for_s=120, co2_for_s=120, uplink_down_for_s=30, site_offline_for_s=30,
                     keep_firing_for_s=60, repeat_interval_s=1800, flap_window_s=600, flap_limit=2,
                     clock_skew_max_s=100)
SITES = ("s1", "s1", "s2")
ENTITIES = {  # entity -> (kind, strategy of its values)
    "printer": ("printer", st.fixed_dictionaries({"paper_out": st.booleans()})),
    "wan1": ("uplink", st.fixed_dictionaries({"up": st.booleans()})),
    "lte": ("uplink", st.fixed_dictionaries({"up": st.booleans()})),
    "hall": ("co2", st.fixed_dictionaries({"co2_ppm": st.sampled_from([500, 1350, 1500])})),
    "ups": ("ups", st.fixed_dictionaries({}, optional={"on_battery": st.booleans(),
                                                       "battery_pct": st.sampled_from([20, 35, 60])})),
    "validator": ("bill_validator", st.fixed_dictionaries({"cassette_fill_pct": st.sampled_from([50, 85, 95])})),
}
MATCHERS = [{"site": "s1"}, {"site": "s2", "rule": "printer_paper_out"}, {"device": "printer"},
            {"rule": "site_offline"}, {"severity": "critical"}, {"rule": "uplink_down", "site": "s1"}]
STEPS = [0, 1, 5, 29, 30, 31, 59, 60, 61, 61, 61, 119, 120, 300, 601, 1800]

# the printer (no for-duration) comes up most, so one key often fires, resolves and flaps
WEIGHTED_ENTITIES = ["printer"] * 6 + sorted(ENTITIES)
entity_values = st.sampled_from(WEIGHTED_ENTITIES).flatmap(lambda e: st.tuples(st.just(e), ENTITIES[e][1]))
observe = st.tuples(st.just("observe"), st.sampled_from(SITES), entity_values,
                    st.sampled_from([0] * 8 + [-5, 500]), st.sampled_from([False] * 5 + [True]))
status = st.tuples(st.just("status"), st.sampled_from(SITES), st.booleans())
tick = st.tuples(st.just("tick"), st.sampled_from(STEPS))
ack = st.tuples(st.just("ack"), st.integers(0, 5), st.sampled_from(["olena", "taras"]),
                st.sampled_from([None, 1, 2]))
silence = st.tuples(st.just("silence"), st.sampled_from(range(len(MATCHERS))), st.sampled_from([0, 0, 50]),
                    st.sampled_from([10, 60, 600, 3600]))
expire = st.tuples(st.just("expire"), st.integers(0, 5))
actions = st.lists(st.one_of(observe, observe, tick, tick, status, ack, silence, expire), min_size=10,
                   max_size=100)


class Model:
    """What the commands said so far, and the promises checked against each new command."""

    def __init__(self, config=CONFIG):
        self.config = config
        self.open = {}                       # key -> (serial, status, pending_at)
        self.acks = defaultdict(list)        # (key, serial) -> [(who, at, comment)]
        self.told = {}                       # key -> last kind told (firing | resolved)
        self.fired_serials = set()
        self.firing_told_at = defaultdict(list)
        self.silence_ids = []

    def check(self, state, commands):
        for command in commands:
            a = command.args
            # what the runs covered, shown by pytest --hypothesis-show-statistics
            event(f"{command.name} {a.get('kind') or a.get('to') or ''}".strip())
            if command.name == "transition":
                self._transition(state, a)
            elif command.name == "acked":
                self.acks[(a["key"], a["serial"])].append((a["who"], a["at"], a["comment"]))
            elif command.name == "notify":
                self._notify(state, a)
        assert set(state.alerts) == set(self.open)  # at most one open alert per key, and no stray ones
        for key, alert in state.alerts.items():
            assert (alert.serial, alert.status) == self.open[key][:2]
            assert [(x.who, x.at, x.comment) for x in alert.acks] == self.acks[(key, alert.serial)]

    def _transition(self, state, a):
        key, serial, old, new, at = a["key"], a["serial"], a["from"], a["to"], a["at"]
        rule = state.rule_by_name[a["alert"]["rule"]]
        if old == "inactive":
            assert key not in self.open and new == "pending"
            self.open[key] = (serial, "pending", at)
            return
        assert self.open[key][:2] == (serial, old)
        if new == "firing":
            assert at - self.open[key][2] >= rule.for_s  # only after the for-duration
            self.open[key] = (serial, "firing", self.open[key][2])
            self.fired_serials.add((key, serial))
        elif new == "resolved":
            assert old == "firing" and (key, serial) in self.fired_serials  # resolved only after firing
            # the acks stay with the occurrence until it resolves, then go to history with it
            assert [(x["who"], x["at"], x["comment"]) for x in a["alert"]["acks"]] == self.acks[(key, serial)]
            del self.open[key]
        else:
            assert (old, new) == ("pending", "inactive")
            del self.open[key]

    def _notify(self, state, a):
        key, kind = a["key"], a["kind"]
        labels = state.tracks[key].labels
        silenced = [s for s in state.silences.values()
                    if s.starts_at <= state.now < s.ends_at and all(labels[n] == v for n, v in s.matchers)]
        assert silenced == []
        inhibitors = [x for x in state.alerts.values() if x.status == "firing" and x.site == labels["site"] and (
            (x.rule == "site_offline" and labels["rule"] != "site_offline")
            or (x.rule == "all_uplinks_down" and labels["rule"] == "uplink_down"))]
        assert inhibitors == []
        if kind in ("firing", "repeat"):
            assert key in self.open and self.open[key][1] == "firing"
        if kind == "repeat":
            assert not state.alerts[key].acks
        if kind == "resolved":
            assert self.told.get(key) == "firing" and (key not in self.open or self.open[key][1] != "firing"
                                                       or self.open[key][0] != state.tracks[key].notified_serial)
        if kind == "firing":
            self.firing_told_at[key].append(state.now)
            window = [t for t in self.firing_told_at[key] if t > state.now - self.config.flap_window_s]
            assert len(window) <= self.config.flap_limit + 1  # bounded flapping notifications
        if kind in ("firing", "resolved"):
            self.told[key] = kind


def play(script, full_scan=False, config=CONFIG):
    """Run a script of actions, checking the promises after each event; yields (commands) per event.
    ``full_scan`` makes every event reconcile every key (no wake-up shortcut)."""
    state, model, now = new_state(config), Model(config), 1000.0
    for action in script:
        kind = action[0]
        try:
            if kind == "observe":
                _, site, (entity, values), skew, replayed = action
                event = Event("observe", {"observation": Observation(site, entity, ENTITIES[entity][0], values,
                                                                     now + skew, now, replayed)})
            elif kind == "status":
                event = Event("site_status", {"site": action[1], "online": action[2], "at": now})
            elif kind == "tick":
                now += action[1]
                event = Event("tick", {"at": now})
            elif kind == "ack":
                firing = sorted(k for k, x in state.alerts.items() if x.status == "firing")
                key = firing[action[1] % len(firing)] if firing else "missing"
                event = Event("ack", {"key": key, "who": action[2], "serial": action[3], "comment": "ok",
                                      "at": now})
            elif kind == "silence":
                _, which, delay, length = action
                sid = f"m{len(model.silence_ids)}"
                model.silence_ids.append(sid)
                event = Event("silence", {"id": sid, "matchers": MATCHERS[which], "starts_at": now + delay,
                                          "ends_at": now + delay + length, "creator": "olena",
                                          "comment": "works", "at": now})
            else:
                ids = model.silence_ids
                event = Event("expire_silence", {"id": ids[action[1] % len(ids)] if ids else "none", "at": now})
            if full_scan:
                state = replace(state, wake_at=-math.inf)
            state, commands = handle(state, event)
        except Rejected:
            continue  # a staff action that made no sense changes nothing
        assert state.now == now
        model.check(state, commands)
        yield state, commands


@settings(max_examples=400, deadline=None)
@given(actions)
def test_any_sequence_keeps_the_promises(script):
    for _ in play(script):
        pass


def _digest(commands):
    return sorted(repr(sorted(c.args.items())) + c.name for c in commands)


# no for-durations and no damping: transitions (of inhibitors too) happen inside observations
INSTANT = replace(CONFIG, uplink_down_for_s=0, site_offline_for_s=0, keep_firing_for_s=0)


@settings(max_examples=150, deadline=None)
@given(actions, st.sampled_from([CONFIG, INSTANT]))
def test_the_wake_up_shortcut_decides_exactly_as_reconciling_every_key(script, config):
    for (fast, fast_out), (full, full_out) in zip(play(script, config=config),
                                                  play(script, full_scan=True, config=config)):
        assert _digest(fast_out) == _digest(full_out)
        assert (fast.alerts, fast.tracks) == (full.alerts, full.tracks)
        assert sorted(map(repr, fast.history)) == sorted(map(repr, full.history))  # same event, any order


# each cycle: out of paper for a while, then refilled for a while (a tick ends each dwell)
cycles = st.lists(st.tuples(st.sampled_from([1, 10, 59, 61, 120]), st.sampled_from([1, 30, 59, 61, 120, 700])),
                  min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(cycles)
def test_a_flapping_printer_is_told_boundedly_and_its_state_is_told_once_it_settles(script):
    state, now, told_firing = new_state(CONFIG), 1000.0, []
    last_told = None
    events = []
    for bad_for, good_for in script:
        for paper_out, dwell in ((True, bad_for), (False, good_for)):
            events.append(Event("observe", {"observation": Observation("s1", "printer", "printer",
                                                                       {"paper_out": paper_out}, now, now)}))
            now += dwell
            events.append(Event("tick", {"at": now}))
    # then quiet for longer than the flap window and keep_firing_for
    events.append(Event("tick", {"at": now + CONFIG.flap_window_s + CONFIG.keep_firing_for_s}))
    for item in events:
        state, commands = handle(state, item)
        for command in commands:
            if command.name == "notify":
                event(f"notify {command.args['kind']}")
                if command.args["kind"] == "firing":
                    told_firing.append(state.now)
                    recent = [t for t in told_firing if t > state.now - CONFIG.flap_window_s]
                    assert len(recent) <= CONFIG.flap_limit + 1
                if command.args["kind"] in ("firing", "resolved"):
                    last_told = command.args["kind"]
    # what was told last is what is: nothing is lost to damping
    assert state.alerts == {} and not state.flapping("printer_paper_out|s1|printer")
    assert last_told == "resolved"


anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=80),
                     st.lists(st.integers(), max_size=3))
observations = st.builds(Observation, site=st.one_of(st.sampled_from(SITES), st.text(max_size=70), anything),
                         entity=st.one_of(st.sampled_from(sorted(ENTITIES)), anything),
                         kind=st.one_of(st.sampled_from(["uplink", "printer", "co2"]), anything),
                         values=st.one_of(st.dictionaries(st.one_of(st.sampled_from(["up", "paper_out", "co2_ppm"]),
                                                                    st.text(max_size=70)), anything, max_size=40),
                                          anything),
                         measured_at=anything, received_at=anything, replayed=anything)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(observations.map(lambda o: Event("observe", {"observation": o})),
                          st.builds(lambda site, online, at: Event("site_status", {"site": site, "online": online,
                                                                                    "at": at}),
                                    anything, anything, anything)), max_size=20))
def test_no_observation_or_site_status_ever_raises(events):
    state = new_state(CONFIG)
    for item in events:
        state, commands = handle(state, item)
        assert all(c.name in ("transition", "notify") for c in commands)
    assert sum(state.counters.values()) <= len(events)
