"""The hub's alert machine, table by table: (observations, time, staff actions in) ->
(transitions, notifications out)."""
import math

import pytest

from monitoring.alerts import (AlertConfig, Event, Observation, Rejected, alert_key, config_from_settings,
                               default_rules, handle, new_state, run)

CONFIG = AlertConfig()
KEEP = CONFIG.keep_firing_for_s


def obs(site, entity, kind, at, measured=None, replayed=False, **values):
    return Event("observe", {"observation": Observation(site, entity, kind, values,
                                                        at if measured is None else measured, at,
                                                        replayed)})


def tick(at):
    return Event("tick", {"at": at})


def status(site, online, at):
    return Event("site_status", {"site": site, "online": online, "at": at})


def steps(events, state=None):
    """Fold events; return the state and, per event, its commands as short tuples."""
    state = state or new_state()
    out = []
    for event in events:
        state, commands = handle(state, event)
        out.append([_short(c) for c in commands])
    return state, out


def _short(command):
    a = command.args
    if command.name == "transition":
        return ("transition", a["key"], a["from"], a["to"])
    if command.name == "notify":
        return ("notify", a["key"], a["kind"])
    return (command.name,)


def keyed(key, events, state=None):
    """steps(), keeping only the commands about one alert key (a lone uplink also takes the site's
    all_uplinks_down with it; that rule has its own test)."""
    state, out = steps(events, state)
    return state, [[c for c in step if len(c) > 1 and c[1] == key] for step in out]


def notifications(commands):
    return [c for c in commands if c[0] == "notify"]


# a second uplink that stays up, so one uplink's alert is not inhibited by all_uplinks_down
BACKUP_UPLINK = Event("observe", {"observation": Observation("s1", "lte", "uplink", {"up": True}, 0, 0)})

# (rule, kind, device, bad values, band values (neither fire nor resolve) or None, good values, for_s)
RULES = [
    ("ups_on_battery", "ups", "ups", {"on_battery": True}, None, {"on_battery": False},
     CONFIG.ups_on_battery_for_s),
    ("ups_low_battery", "ups", "ups", {"battery_pct": 20}, {"battery_pct": 35}, {"battery_pct": 60}, 0.0),
    ("co2_high", "co2", "hall", {"co2_ppm": 1500}, {"co2_ppm": 1350}, {"co2_ppm": 900}, CONFIG.co2_for_s),
    ("uplink_down", "uplink", "wan1", {"up": False}, None, {"up": True}, CONFIG.uplink_down_for_s),
    ("printer_paper_out", "printer", "printer", {"paper_out": True}, None, {"paper_out": False}, 0.0),
    ("cassette_full", "bill_validator", "validator", {"cassette_fill_pct": 92}, {"cassette_fill_pct": 85},
     {"cassette_fill_pct": 3}, 0.0),
]


def test_every_rule_of_the_table_is_tested():
    tested = {r[0] for r in RULES} | {"all_uplinks_down", "site_offline", "agent_clock_skew"}
    assert tested == {r.name for r in default_rules()}


@pytest.mark.parametrize("rule,kind,device,bad,band,good,for_s", RULES, ids=[r[0] for r in RULES])
def test_entity_rule_fires_after_its_for_duration_and_resolves_after_keep_firing(rule, kind, device, bad,
                                                                                 band, good, for_s):
    key = alert_key(rule, "s1", device)
    state, out = keyed(key, [BACKUP_UPLINK, obs("s1", device, kind, 1000, **good),
                             obs("s1", device, kind, 1010, **bad)])
    out = out[1:]
    assert out[0] == []
    if for_s:
        assert out[1] == [("transition", key, "inactive", "pending")]
        state, out = keyed(key, [tick(1010 + for_s - 1), tick(1010 + for_s)], state)
        assert out[0] == []
        assert out[1] == [("transition", key, "pending", "firing"), ("notify", key, "firing")]
    else:
        assert out[1] == [("transition", key, "inactive", "pending"), ("transition", key, "pending", "firing"),
                          ("notify", key, "firing")]
    t = 1010 + for_s
    if band is not None:  # hysteresis: a value between the thresholds neither fires nor resolves
        state, out = keyed(key, [obs("s1", device, kind, t + 1, **band), tick(t + 1 + 10 * KEEP)], state)
        assert out == [[], []] and state.alerts[key].status == "firing"
        t += 1 + 10 * KEEP
    state, out = keyed(key, [obs("s1", device, kind, t + 1, **good), tick(t + KEEP), tick(t + 1 + KEEP)], state)
    assert out[:2] == [[], []]
    assert out[2] == [("transition", key, "firing", "resolved"), ("notify", key, "resolved")]
    assert key not in state.alerts and state.history[-1].key == key


@pytest.mark.parametrize("rule,kind,device,bad,band,good,for_s",
                         [r for r in RULES if r[6]], ids=[r[0] for r in RULES if r[6]])
def test_pending_that_clears_before_its_for_duration_never_fires(rule, kind, device, bad, band, good, for_s):
    key = alert_key(rule, "s1", device)
    state, out = steps([BACKUP_UPLINK, obs("s1", device, kind, 0, **bad),
                        obs("s1", device, kind, for_s - 1, **good), tick(for_s * 3)])
    assert out[1:] == [[("transition", key, "inactive", "pending")], [("transition", key, "pending", "inactive")],
                   []]
    assert state.alerts == {} and state.history == ()


def test_all_uplinks_down_fires_only_when_every_known_uplink_is_down_and_inhibits_uplink_down():
    f = CONFIG.uplink_down_for_s
    site_key = alert_key("all_uplinks_down", "s1", "")
    state, out = steps([obs("s1", "wan1", "uplink", 0, up=False), obs("s1", "lte", "uplink", 0, up=True),
                        tick(f)])
    assert [c for c in out[2] if c[1] == site_key] == []
    assert notifications(out[2]) == [("notify", alert_key("uplink_down", "s1", "wan1"), "firing")]
    state, out = steps([obs("s1", "lte", "uplink", f + 1, up=False), tick(2 * f), tick(2 * f + 1)], state)
    # wan1's alert was told before the outage; lte's fires while all_uplinks_down inhibits it
    assert ("notify", site_key, "firing") in out[2]
    assert ("notify", alert_key("uplink_down", "s1", "lte"), "firing") not in out[2]
    assert state.alerts[alert_key("uplink_down", "s1", "lte")].status == "firing"
    # wan1 comes back: the site alert resolves, lte's (still firing) is told now
    state, out = steps([obs("s1", "wan1", "uplink", 3 * f, up=True), tick(3 * f + KEEP)], state)
    assert ("notify", site_key, "resolved") in out[1]
    assert ("notify", alert_key("uplink_down", "s1", "lte"), "firing") in out[1]


def test_site_offline_by_last_will_inhibits_the_sites_device_alerts_which_resume_after():
    f = CONFIG.site_offline_for_s
    paper = alert_key("printer_paper_out", "s1", "printer")
    offline = alert_key("site_offline", "s1", "")
    state, out = steps([status("s1", True, 0), status("s1", False, 10), tick(10 + f)])
    assert out[1] == [("transition", offline, "inactive", "pending")]
    assert out[2] == [("transition", offline, "pending", "firing"), ("notify", offline, "firing")]
    # the outbox delivers a paper-out from the dark time: tracked, firing, not told
    state, out = steps([obs("s1", "printer", "printer", 20 + f, measured=15, replayed=True, paper_out=True)],
                       state)
    assert out[0] == [("transition", paper, "inactive", "pending"), ("transition", paper, "pending", "firing")]
    assert state.inhibited_by(state.tracks[paper].labels) == [offline]
    # another site is not inhibited
    state, out = steps([obs("s2", "printer", "printer", 21 + f, paper_out=True)], state)
    assert ("notify", alert_key("printer_paper_out", "s2", "printer"), "firing") in out[0]
    # back online: the site alert resolves after keep_firing_for, the paper alert is told then
    state, out = steps([status("s1", True, 100 + f), tick(100 + f + KEEP)], state)
    assert out[0] == []
    assert out[1] == [("transition", offline, "firing", "resolved"), ("notify", offline, "resolved"),
                      ("notify", paper, "firing")]


def test_inhibited_alert_that_resolves_while_inhibited_is_never_told():
    state, out = steps([status("s1", False, 0), tick(CONFIG.site_offline_for_s),
                        obs("s1", "printer", "printer", 100, paper_out=True),
                        obs("s1", "printer", "printer", 101, paper_out=False), tick(101 + KEEP),
                        status("s1", True, 200), tick(200 + KEEP)])
    told = {c[1] for step in out for c in notifications(step)}
    assert told == {alert_key("site_offline", "s1", "")}


def test_site_offline_needs_its_for_duration_a_quick_reconnect_is_not_an_alert():
    state, out = steps([status("s1", False, 0), status("s1", True, CONFIG.site_offline_for_s - 5),
                        tick(1000)])
    key = alert_key("site_offline", "s1", "")
    assert out == [[("transition", key, "inactive", "pending")], [("transition", key, "pending", "inactive")],
                   []]


def test_clock_skew_is_judged_on_hub_receive_time_and_raises_the_skew_rule():
    key = alert_key("agent_clock_skew", "s1", "")
    co2 = alert_key("co2_high", "s1", "hall")
    skew = 1000  # far beyond clock_skew_max_s
    # the agent's clock is ahead: its readings still age on the hub's clock (the for-duration counts
    # from hub receive time, not from the agent's timestamp)
    state, out = steps([obs("s1", "hall", "co2", 1000, measured=1000 + skew, co2_ppm=1500)])
    assert out[0] == [("transition", co2, "inactive", "pending"), ("transition", key, "inactive", "pending")]
    assert state.alerts[co2].active_since == 1000
    state, out = steps([tick(1000 + CONFIG.clock_skew_for_s)], state)
    assert out[0] == [("transition", key, "pending", "firing"), ("notify", key, "firing")]
    state, out = steps([tick(1000 + CONFIG.co2_for_s - 1)], state)
    assert out[0] == []
    # NTP fixes the clock: the first reading after the step looks older than the last one (ignored,
    # it might be one message delayed in transit); a second confirms the step and is taken
    state, out = steps([obs("s1", "hall", "co2", 1700, co2_ppm=900), obs("s1", "hall", "co2", 1710, co2_ppm=950),
                        tick(1710 + KEEP)], state)
    assert state.counters == {"stale_ignored": 1, "clock_steps": 1}
    assert state.sites["s1"].entities["hall"].values["co2_ppm"] == 950
    assert ("notify", key, "resolved") in out[2]


def test_one_live_message_delayed_in_transit_is_not_a_clock_step():
    state, out = steps([obs("s1", "wan1", "uplink", 1000, up=True),
                        obs("s1", "wan1", "uplink", 1500, measured=900, up=False),
                        obs("s1", "wan1", "uplink", 1501, up=True), tick(5000)])
    assert state.counters == {"stale_ignored": 1}
    assert state.sites["s1"].skew_s == 0 and state.alerts == {}


def test_a_late_replayed_observation_does_not_count_as_clock_skew():
    state, out = steps([obs("s1", "hall", "co2", 5000, measured=100, replayed=True, co2_ppm=500)])
    assert out == [[]] and state.sites["s1"].skew_s is None


def test_out_of_order_and_duplicate_observations_are_ignored_and_counted():
    state, out = steps([obs("s1", "wan1", "uplink", 100, up=True), obs("s1", "wan1", "uplink", 101, measured=90,
                                                                     up=False),
                        obs("s1", "wan1", "uplink", 102, measured=100, up=False), tick(1000)])
    assert out == [[], [], [], []]
    assert state.counters["stale_ignored"] == 2
    assert state.sites["s1"].entities["wan1"].values == {"up": True}


@pytest.mark.parametrize("observation", [
    Observation("", "e", "co2", {"co2_ppm": 1}, 0, 0),
    Observation("s" * 65, "e", "co2", {"co2_ppm": 1}, 0, 0),
    Observation("s1", "e", "co2", {"co2_ppm": [1]}, 0, 0),
    Observation("s1", "e", "co2", {f"m{i}": 1 for i in range(33)}, 0, 0),
    Observation("s1", "e", "co2", "not a mapping", 0, 0),
    Observation("s1", "e", "co2", {"co2_ppm": 1}, math.nan, 0),
    Observation("s1", "e", "co2", {"co2_ppm": 1}, 0, "yesterday"),
    Observation("s1", "e\n", "co2", {"co2_ppm": 1}, 0, 0),
    Observation("s1", "e", "co2", {"co2_ppm": 1}, 10 ** 400, 0),
    Observation("s1", "e", "co2", {"co2_ppm": 1}, 0, True),
    "not an observation",
])
def test_malformed_observations_are_counted_never_raise(observation):
    state, commands = handle(new_state(), Event("observe", {"observation": observation}))
    assert commands == [] and state.counters == {"invalid_ignored": 1} and state.alerts == {}


@pytest.mark.parametrize("reading", [math.nan, math.inf, 10 ** 400])
def test_a_reading_that_is_no_number_is_no_reading(reading):
    state, out = steps([obs("s1", "hall", "co2", 0, co2_ppm=reading), tick(10_000)])
    assert out == [[], []] and state.sites["s1"].entities["hall"].values == {}


def test_an_event_whose_data_is_no_mapping_is_ignored_or_rejected():
    state, commands = handle(new_state(), Event("observe", "junk"))
    assert commands == [] and state.counters == {"invalid_ignored": 1}
    with pytest.raises(Rejected):
        handle(new_state(), Event("ack", ["junk"]))


def test_an_entity_keeps_its_kind():
    state, _ = steps([obs("s1", "x", "uplink", 0, up=True), obs("s1", "x", "printer", 1, paper_out=True)])
    assert state.counters["invalid_ignored"] == 1 and state.alerts == {}


# ---- flap damping ----------------------------------------------------------------------------
def test_a_toggle_faster_than_keep_firing_for_stays_one_firing_alert_and_counts_flaps():
    key = alert_key("printer_paper_out", "s1", "printer")
    events = [obs("s1", "printer", "printer", 0, paper_out=True)]
    for i in range(1, 11):
        events.append(obs("s1", "printer", "printer", i * KEEP / 4, paper_out=i % 2 == 0))
    state, out = steps(events)
    assert [c for step in out for c in notifications(step)] == [("notify", key, "firing")]
    assert state.alerts[key].status == "firing" and state.alerts[key].flaps == 5 and state.alerts[key].serial == 1


def test_a_slow_flapper_is_told_flapping_once_then_goes_quiet_until_stable():
    key = alert_key("printer_paper_out", "s1", "printer")
    events, t = [], 0.0
    for _ in range(8):  # each cycle: out of paper, refilled long enough to resolve
        events += [obs("s1", "printer", "printer", t, paper_out=True),
                   obs("s1", "printer", "printer", t + 1, paper_out=False), tick(t + 1 + KEEP)]
        t += KEEP + 10
    state, out = steps(events)
    told = [c[2] for step in out for c in notifications(step)]
    limit = CONFIG.flap_limit
    assert told == ["firing", "resolved"] * limit + ["flapping"]
    assert state.flapping(key)
    # stable for a flap window: no longer flapping, and resolved was the last thing told; the next
    # fire is told again
    state, out = steps([tick(t + CONFIG.flap_window_s), obs("s1", "printer", "printer", t + CONFIG.flap_window_s,
                                                            paper_out=True)], state)
    assert out[0] == [] and notifications(out[1]) == [("notify", key, "firing")]


# ---- acknowledgement ---------------------------------------------------------------------------
def _firing_paper(at=0):
    state, _ = steps([obs("s1", "printer", "printer", at, paper_out=True)])
    return state, alert_key("printer_paper_out", "s1", "printer")


def test_ack_keeps_who_when_comment_does_not_resolve_and_stops_repeats():
    state, key = _firing_paper()
    state, cmds = handle(state, Event("ack", {"key": key, "who": "olena", "comment": "везу папір", "at": 30}))
    assert [c.name for c in cmds] == ["acked"]
    alert = state.alerts[key]
    assert alert.status == "firing" and [(a.who, a.at, a.comment) for a in alert.acks] == [("olena", 30, "везу папір")]
    state, out = steps([tick(10 * CONFIG.repeat_interval_s)], state)
    assert out == [[]] and state.alerts[key].acked


def test_unacknowledged_firing_alert_repeats_every_repeat_interval():
    state, key = _firing_paper()
    r = CONFIG.repeat_interval_s
    state, out = steps([tick(r - 1), tick(r), tick(r + 1), tick(2 * r)], state)
    assert out == [[], [("notify", key, "repeat")], [], [("notify", key, "repeat")]]


def test_a_resolved_then_refiring_alert_needs_a_new_ack():
    state, key = _firing_paper()
    state, _ = handle(state, Event("ack", {"key": key, "who": "olena", "comment": "", "at": 1}))
    state, _ = steps([obs("s1", "printer", "printer", 2, paper_out=False), tick(2 + KEEP),
                      obs("s1", "printer", "printer", 10 + KEEP, paper_out=True)], state)
    assert state.history[-1].acks[0].who == "olena" and state.history[-1].serial == 1
    assert state.alerts[key].serial == 2 and not state.alerts[key].acked
    with pytest.raises(Rejected, match="stale_alert"):
        handle(state, Event("ack", {"key": key, "serial": 1, "who": "olena", "at": 20 + KEEP}))


@pytest.mark.parametrize("data,reason", [
    ({"key": "nope", "who": "a"}, "no_open_alert"),
    ({"who": "a"}, "no_open_alert"),
    ({"key": alert_key("printer_paper_out", "s1", "printer"), "who": ""}, "bad_who"),
    ({"key": alert_key("printer_paper_out", "s1", "printer"), "who": "a", "comment": "x" * 501}, "bad_comment"),
    ({"key": alert_key("printer_paper_out", "s1", "printer"), "who": "a", "comment": 5}, "bad_comment"),
])
def test_bad_acks_are_rejected(data, reason):
    state, _ = _firing_paper()
    with pytest.raises(Rejected, match=reason):
        handle(state, Event("ack", {"at": 1, **data}))


def test_a_pending_alert_cannot_be_acked():
    state, _ = steps([obs("s1", "hall", "co2", 0, co2_ppm=2000)])
    with pytest.raises(Rejected, match="not_firing"):
        handle(state, Event("ack", {"key": alert_key("co2_high", "s1", "hall"), "who": "a", "at": 1}))


# ---- silences ------------------------------------------------------------------------------------
def silence(sid, at, ends, **matchers):
    return Event("silence", {"id": sid, "matchers": matchers, "ends_at": ends, "creator": "taras",
                             "comment": "заміна принтера", "at": at})


def test_silence_mutes_matching_alerts_for_its_period_then_tells_what_is_still_firing():
    key = alert_key("printer_paper_out", "s1", "printer")
    state, out = steps([silence("m1", 0, 3600, site="s1", device="printer"),
                        obs("s1", "printer", "printer", 10, paper_out=True),
                        obs("s2", "printer", "printer", 11, paper_out=True),
                        tick(3599), tick(3600)])
    assert out[0] == [("silenced",)]
    assert notifications(out[1]) == []
    assert notifications(out[2]) == [("notify", alert_key("printer_paper_out", "s2", "printer"), "firing")]
    assert out[3] == [] and out[4] == [("notify", key, "firing")]
    assert state.silences == {}


def test_an_alert_told_firing_that_resolves_under_a_silence_is_told_resolved_after_it():
    key = alert_key("printer_paper_out", "s1", "printer")
    state, out = steps([obs("s1", "printer", "printer", 0, paper_out=True),
                        silence("m1", 5, 1000, rule="printer_paper_out"),
                        obs("s1", "printer", "printer", 10, paper_out=False), tick(10 + KEEP),
                        Event("expire_silence", {"id": "m1", "at": 500})])
    assert notifications(out[0]) == [("notify", key, "firing")]
    assert notifications(out[3]) == [] and key not in state.alerts
    assert out[4] == [("silence_expired",), ("notify", key, "resolved")]


def test_a_silence_that_starts_later_is_not_active_yet():
    state, out = steps([Event("silence", {"id": "m1", "matchers": {"site": "s1"}, "starts_at": 100,
                                          "ends_at": 200, "creator": "a", "comment": "c", "at": 0}),
                        obs("s1", "printer", "printer", 10, paper_out=True)])
    assert ("notify", alert_key("printer_paper_out", "s1", "printer"), "firing") in out[1]


@pytest.mark.parametrize("change,reason", [
    ({"id": ""}, "bad_id"),
    ({"creator": ""}, "bad_creator"),
    ({"comment": "  "}, "bad_comment"),
    ({"matchers": {}}, "bad_matchers"),
    ({"matchers": {"colour": "red"}}, "bad_matchers"),
    ({"matchers": {"site": ""}}, "bad_matchers"),
    ({"matchers": {"site": 5}}, "bad_matchers"),
    ({"ends_at": 5}, "bad_period"),
    ({"ends_at": 100 * 86400}, "bad_period"),
    ({"ends_at": math.inf}, "bad_period"),
])
def test_bad_silences_are_rejected(change, reason):
    data = {"id": "m1", "matchers": {"site": "s1"}, "ends_at": 3600, "creator": "a", "comment": "c", "at": 10}
    with pytest.raises(Rejected, match=reason):
        handle(new_state(), Event("silence", {**data, **change}))


def test_a_silence_id_is_used_once_and_only_existing_silences_expire():
    state, _ = steps([silence("m1", 0, 100, site="s1")])
    with pytest.raises(Rejected, match="bad_id"):
        handle(state, silence("m1", 1, 100, site="s2"))
    with pytest.raises(Rejected, match="no_such_silence"):
        handle(state, Event("expire_silence", {"id": "m2", "at": 1}))


# ---- time and settings ------------------------------------------------------------------------------
def test_the_hub_clock_never_runs_backwards():
    state, out = steps([obs("s1", "hall", "co2", 100, co2_ppm=1500), tick(50)])
    assert state.now == 100


def test_unknown_event_is_rejected():
    with pytest.raises(Rejected):
        handle(new_state(), Event("explode"))


def test_config_from_settings_reads_hub_alert_settings():
    config = config_from_settings({"HUB_ALERT_CLOCK_SKEW_MAX_S": 30.0, "HUB_ALERT_FLAP_LIMIT": 5, "OTHER": 1})
    assert config.clock_skew_max_s == 30.0 and config.flap_limit == 5
    rule = {r.name: r for r in default_rules(config)}["agent_clock_skew"]
    assert rule.fire == (("clock_skew_abs_s", ">", 30.0),)


def test_every_alert_number_is_a_documented_setting_with_the_same_default():
    from terminal import settings
    assert config_from_settings(settings.load(environ={})) == AlertConfig()
    names = {s.name for s in settings.SETTINGS if s.area == "hub" and s.name.startswith("HUB_ALERT_")}
    assert names == {"HUB_ALERT_" + f.upper() for f in AlertConfig.__dataclass_fields__}


@pytest.mark.parametrize("bad", [{"HUB_ALERT_CO2_OK_PPM": 1500}, {"HUB_ALERT_UPS_BATTERY_OK_PCT": 10},
                                 {"HUB_ALERT_CASSETTE_OK_PCT": 95}, {"HUB_ALERT_FLAP_LIMIT": 0},
                                 {"HUB_ALERT_CO2_FOR_S": -1}, {"HUB_ALERT_KEEP_FIRING_FOR_S": math.inf},
                                 {"HUB_ALERT_REPEAT_INTERVAL_S": 0}])
def test_settings_that_would_break_the_rules_are_refused(bad):
    with pytest.raises(ValueError, match="HUB_ALERT_"):
        config_from_settings(bad)


def test_run_folds_events():
    state, commands = run(new_state(), [obs("s1", "printer", "printer", 0, paper_out=True)])
    assert [c.name for c in commands] == ["transition", "transition", "notify"]


# ---- docs that cannot rot ---------------------------------------------------------------------------
def test_the_docs_show_the_current_rule_table_events_counters_and_notice_kinds():
    from pathlib import Path

    from monitoring.alerts import TABLE, rule_table_markdown
    page = (Path(__file__).resolve().parents[2] / "docs" / "monitoring-alerts.md").read_text(encoding="utf-8")
    assert rule_table_markdown() in page
    for word in [*TABLE, "invalid_ignored", "over_limit_ignored", "stale_ignored", "clock_steps",
                 "firing", "resolved", "repeat", "flapping", *(f"HUB_ALERT_{n}" for n in (
                     "KEEP_FIRING_FOR_S", "REPEAT_INTERVAL_S", "FLAP_LIMIT", "FLAP_WINDOW_S", "CLOCK_SKEW_MAX_S"))]:
        assert f"`{word}`" in page, word
