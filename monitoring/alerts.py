"""The hub's alert state machine: pure, table-driven, no I/O, no clock, no randomness.

``handle(state, event) -> (state, commands)``, like ``payments/machine.py``. Observations, site
status, staff actions (ack, silence) and time steps go in; transitions and notification decisions
come out as commands. The hub's runtime stores the transitions and sends the notifications
(webhook, e-mail); it never decides anything itself.

Lifecycle of one alert, keyed by its labels (rule, site, device)::

    inactive ──fire condition──▶ pending ──held for `for_s`──▶ firing ──resolve condition held
       ▲                           │                             │     for `keep_firing_for_s`──▶ resolved
       └──fire condition gone──────┘                             └─(ack: who/when/comment; stays firing)

A resolved alert leaves the open set (it goes to ``history``); the next fire of the same labels is
a new occurrence (serial + 1) and needs a new acknowledgement. Notifications are the difference
between what the key's state is (firing / resolved) and what was last told about it, sent only
when the key is not silenced, not inhibited and not flapping; a firing alert nobody acknowledged
is told again every ``repeat_interval_s``.

Time is the hub's receive clock only: every event carries ``at`` (hub time), and the agent's own
timestamps serve only to order one entity's observations and to measure the agent's clock skew.
The observation type here is our own (``Observation``); ``monitoring/topics.py`` maps MQTT
payloads onto it.
"""
from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from common.transitions import handler_table

SEVERITIES = ("critical", "warning", "info")
LABEL_NAMES = ("rule", "site", "device", "severity")

# Limits on every input: the hub takes observations from any site, and ack/silence text from staff.
MAX_NAME = 64            # site, entity, kind, metric names, silence id, who
MAX_TEXT = 500           # comments
MAX_VALUES = 32          # metrics in one observation
MAX_STRING_VALUE = 64
MAX_ENTITIES_PER_SITE = 256
MAX_SITES = 5000            # Ukraine has 4,070 service centres: one hub for the whole country
MAX_ACKS = 20            # acknowledgements on one occurrence
MAX_SILENCES = 1000
MAX_MATCHERS = 8
MAX_SILENCE_S = 90 * 86400
MAX_HISTORY = 1000       # resolved occurrences kept in the state (the runtime stores them all)


# ---- configuration and the rule table ----------------------------------------------------
@dataclass(frozen=True)
class AlertConfig:
    """The numbers of the rule table (from the HUB_ALERT_* settings)."""
    ups_on_battery_for_s: float = 300.0
    ups_low_battery_pct: float = 30.0
    ups_battery_ok_pct: float = 40.0
    co2_high_ppm: float = 1400.0
    co2_ok_ppm: float = 1300.0
    co2_for_s: float = 600.0
    uplink_down_for_s: float = 60.0
    cassette_full_pct: float = 90.0
    cassette_ok_pct: float = 80.0
    site_offline_for_s: float = 60.0
    clock_skew_max_s: float = 120.0
    clock_skew_for_s: float = 300.0
    keep_firing_for_s: float = 120.0
    repeat_interval_s: float = 4 * 3600.0
    flap_window_s: float = 3600.0
    flap_limit: int = 3


Clause = tuple[str, str, Any]  # (metric, operator, threshold)
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}


@dataclass(frozen=True)
class Rule:
    """One row of the rule table. ``scope`` 'entity' evaluates each entity of ``kind`` on its own
    latest values; 'site' evaluates the site's derived values (online, uplinks_up, uplinks_known,
    clock_skew_abs_s). ``fire`` and ``resolve`` are conjunctions of clauses; a value in between
    (hysteresis band) keeps the current state."""
    name: str
    severity: str
    scope: str
    kind: str
    fire: tuple[Clause, ...]
    resolve: tuple[Clause, ...]
    for_s: float
    keep_firing_for_s: float
    summary_uk: str
    summary_en: str
    channels: tuple[str, ...] = ("webhook", "email")


@dataclass(frozen=True)
class InhibitRule:
    """While an alert of ``source`` fires, alerts of ``targets`` (empty: every other rule) with the
    same values of the ``equal`` labels are inhibited: tracked, not notified."""
    source: str
    targets: tuple[str, ...]
    equal: tuple[str, ...]


def default_rules(config: AlertConfig = AlertConfig()) -> tuple[Rule, ...]:
    c = config
    keep = c.keep_firing_for_s
    return (
        Rule("ups_on_battery", "warning", "entity", "ups", (("on_battery", "==", True),),
             (("on_battery", "==", False),), c.ups_on_battery_for_s, keep,
             "ДБЖ працює від батареї", "UPS on battery"),
        Rule("ups_low_battery", "critical", "entity", "ups", (("battery_pct", "<", c.ups_low_battery_pct),),
             (("battery_pct", ">=", c.ups_battery_ok_pct),), 0.0, keep,
             "Низький заряд батареї ДБЖ", "UPS battery low"),
        Rule("co2_high", "warning", "entity", "co2", (("co2_ppm", ">", c.co2_high_ppm),),
             (("co2_ppm", "<=", c.co2_ok_ppm),), c.co2_for_s, keep,
             "Високий рівень CO2", "CO2 high"),
        Rule("uplink_down", "warning", "entity", "uplink", (("up", "==", False),),
             (("up", "==", True),), c.uplink_down_for_s, keep,
             "Канал зв'язку недоступний", "Uplink down"),
        Rule("all_uplinks_down", "critical", "site", "site",
             (("uplinks_known", ">=", 1), ("uplinks_up", "==", 0)), (("uplinks_up", ">=", 1),),
             c.uplink_down_for_s, keep, "Усі канали зв'язку недоступні", "All uplinks down"),
        Rule("printer_paper_out", "warning", "entity", "printer", (("paper_out", "==", True),),
             (("paper_out", "==", False),), 0.0, keep,
             "У принтері закінчився папір", "Printer out of paper"),
        Rule("cassette_full", "warning", "entity", "bill_validator",
             (("cassette_fill_pct", ">=", c.cassette_full_pct),),
             (("cassette_fill_pct", "<", c.cassette_ok_pct),), 0.0, keep,
             "Касета купюроприймача майже повна", "Bill cassette nearly full"),
        Rule("site_offline", "critical", "site", "site", (("online", "==", False),),
             (("online", "==", True),), c.site_offline_for_s, keep,
             "Об'єкт не на зв'язку", "Site offline"),
        Rule("agent_clock_skew", "warning", "site", "site",
             (("clock_skew_abs_s", ">", c.clock_skew_max_s),),
             (("clock_skew_abs_s", "<=", c.clock_skew_max_s / 2),), c.clock_skew_for_s, keep,
             "Годинник агента розходиться з хабом", "Agent clock skewed", ("webhook",)),
    )


DEFAULT_INHIBITS = (
    InhibitRule("site_offline", (), ("site",)),                     # a dark site: only the site alert
    InhibitRule("all_uplinks_down", ("uplink_down",), ("site",)),   # the bigger outage says it all
)


def config_from_settings(settings: Mapping[str, Any]) -> AlertConfig:
    """AlertConfig from resolved settings (terminal.settings), missing keys keep their defaults."""
    names = {"HUB_ALERT_" + f.upper(): f for f in AlertConfig.__dataclass_fields__}
    values = {f: settings[name] for name, f in names.items() if name in settings}
    config = AlertConfig(**values)
    problems = [f"HUB_ALERT_{f.upper()} must be a finite number ≥ 0" for f in AlertConfig.__dataclass_fields__
                if isinstance(getattr(config, f), bool) or not isinstance(getattr(config, f), (int, float))
                or not math.isfinite(getattr(config, f)) or getattr(config, f) < 0]
    if problems:
        raise ValueError("; ".join(problems))
    # the resolve marks must sit on the healthy side of the fire marks, or an alert could never resolve
    for ok, bad, healthy_side in (("ups_battery_ok_pct", "ups_low_battery_pct", "above"),
                                  ("co2_ok_ppm", "co2_high_ppm", "below"),
                                  ("cassette_ok_pct", "cassette_full_pct", "below")):
        a, b = getattr(config, ok), getattr(config, bad)
        if (healthy_side == "above" and a < b) or (healthy_side == "below" and a > b):
            problems.append(f"HUB_ALERT_{ok.upper()} must be {healthy_side} HUB_ALERT_{bad.upper()}")
    if config.flap_limit < 1 or config.flap_window_s <= 0 or config.repeat_interval_s <= 0:
        problems.append("HUB_ALERT_FLAP_LIMIT must be ≥ 1, HUB_ALERT_FLAP_WINDOW_S and "
                        "HUB_ALERT_REPEAT_INTERVAL_S > 0")
    if problems:
        raise ValueError("; ".join(problems))
    return config


def rule_table_markdown(rules: tuple[Rule, ...] | None = None) -> str:
    """The rule table as docs/monitoring-alerts.md shows it (a test keeps the two in step)."""
    def clauses(cs: tuple[Clause, ...]) -> str:
        return " and ".join(f"`{m} {op} {_fmt(v)}`" for m, op, v in cs)

    lines = ["| Rule | Severity | Applies to | Fires when | For | Resolves when | Channels |",
             "|---|---|---|---|---|---|---|"]
    for r in default_rules() if rules is None else rules:
        where = "the site" if r.scope == "site" else f"each `{r.kind}` entity"
        lines.append(f"| `{r.name}` ({r.summary_en}) | {r.severity} | {where} | {clauses(r.fire)} | "
                     f"{_fmt(r.for_s)} s | {clauses(r.resolve)} for {_fmt(r.keep_firing_for_s)} s | "
                     f"{', '.join(r.channels) or '—'} |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---- events, commands and the state --------------------------------------------------------
@dataclass(frozen=True)
class Event:
    kind: str  # observe | site_status | tick | ack | silence | expire_silence
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    name: str  # transition | notify
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Observation:
    """Latest values of one entity (a UPS, a CO2 sensor, an uplink, the printer, the bill
    validator) of one site. ``measured_at`` is the agent's clock, ``received_at`` the hub's.
    ``replayed`` marks an observation delivered late from the agent's disk outbox: it still
    updates values when newer than the last seen, but says nothing about the agent's clock."""
    site: str
    entity: str
    kind: str
    values: Mapping[str, Any]
    measured_at: float
    received_at: float
    replayed: bool = False


@dataclass(frozen=True)
class Ack:
    who: str
    at: float
    comment: str


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[tuple[str, str], ...]
    starts_at: float
    ends_at: float
    creator: str
    comment: str

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(name) == value for name, value in self.matchers)


@dataclass(frozen=True)
class Alert:
    """One occurrence of an alert: open (pending, firing) in ``HubState.alerts``, resolved in
    ``HubState.history``."""
    key: str
    rule: str
    site: str
    device: str
    severity: str
    serial: int
    status: str                   # pending | firing | resolved
    active_since: float           # the fire condition became true
    fired_at: float | None = None
    clear_since: float | None = None  # resolve condition true since (firing only)
    resolved_at: float | None = None
    flaps: int = 0                # the resolve condition held and went away again (damped)
    acks: tuple[Ack, ...] = ()

    @property
    def labels(self) -> dict[str, str]:
        return {"rule": self.rule, "site": self.site, "device": self.device, "severity": self.severity}

    @property
    def acked(self) -> bool:
        return bool(self.acks)

    def summary(self) -> dict[str, Any]:
        return {"key": self.key, "serial": self.serial, "status": self.status, **self.labels,
                "active_since": self.active_since, "fired_at": self.fired_at,
                "resolved_at": self.resolved_at, "flaps": self.flaps,
                "acks": [{"who": a.who, "at": a.at, "comment": a.comment} for a in self.acks]}


@dataclass(frozen=True)
class KeyTrack:
    """What was told about one label set, across its occurrences (flap damping needs both)."""
    labels: Mapping[str, str]
    serial: int = 0                      # last occurrence's serial
    notified: str | None = None          # firing | resolved | None (never told)
    notified_serial: int = 0
    last_sent_at: float | None = None
    fire_times: tuple[float, ...] = ()   # transitions to firing within the flap window
    flap_told: bool = False              # the 'flapping' notice went out for this flapping spell


@dataclass(frozen=True)
class Entity:
    kind: str
    values: Mapping[str, Any]
    measured_at: float


@dataclass(frozen=True)
class SiteState:
    online: bool | None = None
    skew_s: float | None = None          # last live observation: agent clock minus hub clock
    skew_candidate: float | None = None  # a jump of the skew, waiting for a second live observation
    entities: Mapping[str, Entity] = field(default_factory=dict)

    def derived(self) -> dict[str, Any]:
        uplinks = [e.values.get("up") for e in self.entities.values() if e.kind == "uplink"]
        known = [u for u in uplinks if isinstance(u, bool)]
        values: dict[str, Any] = {"uplinks_known": len(known), "uplinks_up": sum(known)}
        if self.online is not None:
            values["online"] = self.online
        if self.skew_s is not None:
            values["clock_skew_abs_s"] = abs(self.skew_s)
        return values


@dataclass(frozen=True)
class HubState:
    rules: tuple[Rule, ...] = default_rules()
    inhibits: tuple[InhibitRule, ...] = DEFAULT_INHIBITS
    config: AlertConfig = AlertConfig()
    now: float = 0.0
    sites: Mapping[str, SiteState] = field(default_factory=dict)
    alerts: Mapping[str, Alert] = field(default_factory=dict)      # open occurrences by key
    tracks: Mapping[str, KeyTrack] = field(default_factory=dict)
    silences: Mapping[str, Silence] = field(default_factory=dict)
    history: tuple[Alert, ...] = ()
    counters: Mapping[str, int] = field(default_factory=dict)
    wake_at: float = -math.inf   # before this hub time nothing is due for keys no event touches

    @property
    def rule_by_name(self) -> dict[str, Rule]:
        return _rules_by_name(self.rules)

    def silenced_by(self, labels: Mapping[str, str]) -> list[str]:
        return [s.id for s in self.silences.values() if s.active(self.now) and s.matches(labels)]

    def inhibitor_index(self) -> list[tuple[InhibitRule, dict[tuple, list[str]]]]:
        """Per inhibit rule, the firing source alerts' keys by their ``equal`` label values: built
        once per reconcile, so asking about every key is linear, not quadratic (a national outage
        opens thousands of alerts at once)."""
        index = []
        for inhibit in self.inhibits:
            held: dict[tuple, list[str]] = {}
            for alert in self.alerts.values():
                if alert.rule == inhibit.source and alert.status == "firing":
                    held.setdefault(tuple(alert.labels[name] for name in inhibit.equal), []).append(alert.key)
            index.append((inhibit, held))
        return index

    def inhibited_by(self, labels: Mapping[str, str],
                     index: list[tuple[InhibitRule, dict[tuple, list[str]]]] | None = None) -> list[str]:
        """The firing alerts that inhibit ``labels``; ``index``: this state's ``inhibitor_index()``."""
        found = []
        for inhibit, held in self.inhibitor_index() if index is None else index:
            if labels["rule"] == inhibit.source or (inhibit.targets and labels["rule"] not in inhibit.targets):
                continue
            found += held.get(tuple(labels.get(name) for name in inhibit.equal), [])
        return found

    def flapping(self, key: str) -> bool:
        track = self.tracks.get(key)
        return track is not None and len(_recent(track.fire_times, self.now, self.config)) > self.config.flap_limit


@functools.lru_cache(maxsize=16)
def _rules_by_name(rules: tuple[Rule, ...]) -> dict[str, Rule]:
    return {r.name: r for r in rules}


def new_state(config: AlertConfig = AlertConfig(), rules: tuple[Rule, ...] | None = None,
              inhibits: tuple[InhibitRule, ...] = DEFAULT_INHIBITS) -> HubState:
    return HubState(rules=default_rules(config) if rules is None else rules, inhibits=inhibits,
                    config=config)


class Rejected(Exception):
    """A staff action that makes no sense (ack of an alert that is not firing, a bad silence)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def alert_key(rule: str, site: str, device: str) -> str:
    return f"{rule}|{site}|{device}"


# ---- the table ---------------------------------------------------------------------------------
Handler = Callable[[HubState, Mapping[str, Any]], tuple[HubState, list[Command]]]
TABLE: dict[str, Handler]
TABLE, on = handler_table()


def handle(state: HubState, event: Event) -> tuple[HubState, list[Command]]:
    """Apply one event at its hub time ``event.data['at']`` (observations: their received_at).
    Observations and site status never raise (bad ones are counted and ignored); staff actions
    raise ``Rejected``. The hub's clock never runs backwards here: an older ``at`` counts as now."""
    fn = TABLE.get(event.kind)
    if fn is None:
        raise Rejected(f"unknown event {event.kind}")
    data = event.data if isinstance(event.data, Mapping) else {}
    if data is not event.data:
        event = Event(event.kind, data)
    at = _time(data.get("at"))
    if event.kind == "observe" and isinstance(data.get("observation"), Observation):
        at = _time(data["observation"].received_at)
    if at is not None and at > state.now:
        state = replace(state, now=at)
    state, commands = fn(state, data)
    state, more = _evaluate_time(state, _touched_keys(state, event))
    return state, commands + more


def run(state: HubState, events) -> tuple[HubState, list[Command]]:
    commands: list[Command] = []
    for event in events:
        state, out = handle(state, event)
        commands += out
    return state, commands


# ---- helpers ---------------------------------------------------------------------------------
def _finite(value: Any) -> float | None:
    """A real number as float; None for bools, non-numbers, NaN, infinities and ints too big."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


_time = _finite
finite_number = _finite   # public: the hub's runtime maps payloads with the very same check


def _count(state: HubState, name: str) -> HubState:
    counters = dict(state.counters)
    counters[name] = counters.get(name, 0) + 1
    return replace(state, counters=counters)


def _recent(times: tuple[float, ...], now: float, config: AlertConfig) -> tuple[float, ...]:
    return tuple(t for t in times if t + config.flap_window_s > now)


def _name_ok(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME and value.isprintable()


def _clean_values(values: Any) -> dict[str, Any] | None:
    if not isinstance(values, Mapping) or len(values) > MAX_VALUES:
        return None
    clean = {}
    for name, value in values.items():
        if not _name_ok(name):
            return None
        if isinstance(value, bool):
            clean[name] = value
        elif isinstance(value, (int, float)):
            number = _finite(value)
            if number is None:
                continue  # NaN/inf: the sensor gave nothing usable
            clean[name] = number
        elif isinstance(value, str) and len(value) <= MAX_STRING_VALUE:
            clean[name] = value
        else:
            return None
    return clean


def _holds(clauses: tuple[Clause, ...], values: Mapping[str, Any]) -> bool | None:
    """True/False when every metric is known and comparable; None when something is unknown."""
    for metric, op, threshold in clauses:
        value = values.get(metric)
        if value is None or isinstance(value, bool) != isinstance(threshold, bool):
            return None
        if not isinstance(value, bool) and not isinstance(value, (int, float)):
            return None
        if not OPERATORS[op](value, threshold):
            return False
    return True


def _transition(alert: Alert, old: str, new: str, at: float) -> Command:
    return Command("transition", {"key": alert.key, "serial": alert.serial, "from": old, "to": new,
                                  "at": at, "alert": alert.summary()})


def _apply_condition(state: HubState, rule: Rule, site: str, device: str,
                     values: Mapping[str, Any]) -> tuple[HubState, list[Command]]:
    """One (rule, labels) against its latest values at ``state.now``."""
    fire = _holds(rule.fire, values)
    resolve = _holds(rule.resolve, values)
    key = alert_key(rule.name, site, device)
    alert = state.alerts.get(key)
    now = state.now
    if alert is None:
        if not fire:
            return state, []
        track = state.tracks.get(key) or KeyTrack(labels={"rule": rule.name, "site": site,
                                                          "device": device, "severity": rule.severity})
        track = replace(track, serial=track.serial + 1)
        alert = Alert(key=key, rule=rule.name, site=site, device=device, severity=rule.severity,
                      serial=track.serial, status="pending", active_since=now)
        state = replace(state, alerts={**state.alerts, key: alert}, tracks={**state.tracks, key: track})
        return state, [_transition(alert, "inactive", "pending", now)]
    if alert.status == "pending":
        if fire is False:
            alerts = dict(state.alerts)
            del alerts[key]
            return replace(state, alerts=alerts), [_transition(alert, "pending", "inactive", now)]
        return state, []
    # firing: damp the resolve with keep_firing_for_s, count toggles that come back too soon
    if resolve is True and alert.clear_since is None:
        alert = replace(alert, clear_since=now)
    elif resolve is False and alert.clear_since is not None:
        alert = replace(alert, clear_since=None, flaps=alert.flaps + (1 if fire else 0))
    return replace(state, alerts={**state.alerts, key: alert}), []


def _evaluate_site(state: HubState, site: str, entity: str | None) -> tuple[HubState, list[Command]]:
    """Re-evaluate the rules an observation or a site status change can affect."""
    site_state = state.sites.get(site)
    if site_state is None:
        return state, []
    commands: list[Command] = []
    derived = site_state.derived()
    for rule in state.rules:
        if rule.scope == "site":
            state, out = _apply_condition(state, rule, site, "", derived)
            commands += out
        elif entity is not None:
            ent = site_state.entities.get(entity)
            if ent is not None and ent.kind == rule.kind:
                state, out = _apply_condition(state, rule, site, entity, ent.values)
                commands += out
    return state, commands


def _touched_keys(state: HubState, event: Event) -> set[str] | None:
    """The alert keys an observation or a site status can change; None: any key (staff actions
    and ticks, which are few, reconcile everything)."""
    if event.kind == "observe":
        obs = event.data.get("observation")
        if not isinstance(obs, Observation) or not (_name_ok(obs.site) and _name_ok(obs.entity)):
            return set()
        site = state.sites.get(obs.site)
        entity = site.entities.get(obs.entity) if site else None
        keys = {alert_key(r.name, obs.site, "") for r in state.rules if r.scope == "site"}
        if entity is not None:
            keys |= {alert_key(r.name, obs.site, obs.entity) for r in state.rules
                     if r.scope == "entity" and r.kind == entity.kind}
        return keys
    if event.kind == "site_status":
        site = event.data.get("site")
        return {alert_key(r.name, site, "") for r in state.rules if r.scope == "site"} if _name_ok(site) else set()
    return None


def _evaluate_time(state: HubState, keys: set[str] | None) -> tuple[HubState, list[Command]]:
    """What time alone does: pending → firing, firing → resolved, silences expire; then the
    notifications keys are owed. ``keys`` None: every key (also when a wake-up deadline has come);
    otherwise only the keys the event touched, the rest has nothing due before ``wake_at``."""
    now = state.now
    if keys is not None and now >= state.wake_at:
        keys = None
    commands: list[Command] = []
    alerts = dict(state.alerts)
    tracks = dict(state.tracks)
    history = state.history
    rules = state.rule_by_name
    sources = {i.source for i in state.inhibits}
    todo = state.alerts if keys is None else {k: state.alerts[k] for k in sorted(keys) if k in state.alerts}
    for key, alert in todo.items():
        rule = rules[alert.rule]
        if alert.status == "pending" and now >= alert.active_since + rule.for_s:
            fired = replace(alert, status="firing", fired_at=now)
            alerts[key] = fired
            track = tracks[key]
            tracks[key] = replace(track, fire_times=_recent(track.fire_times, now, state.config) + (now,))
            commands.append(_transition(fired, "pending", "firing", now))
        elif (alert.status == "firing" and alert.clear_since is not None
              and now >= alert.clear_since + rule.keep_firing_for_s):
            resolved = replace(alert, status="resolved", resolved_at=now)
            del alerts[key]
            history = (history + (resolved,))[-MAX_HISTORY:]
            commands.append(_transition(resolved, "firing", "resolved", now))
        else:
            continue
        if alert.rule in sources:
            keys = None  # an inhibitor came or went: other keys of its site are owed their state
    silences = state.silences
    if keys is None:
        silences = {i: s for i, s in state.silences.items() if s.ends_at > now}
    state = replace(state, alerts=alerts, tracks=tracks, history=history, silences=silences)
    state, notes = _notify(state, keys)
    deadlines = [_deadline(state, key) for key in (state.tracks if keys is None else keys)]
    if keys is None:
        deadlines += [s.starts_at for s in silences.values() if s.starts_at > now]
        deadlines += [s.ends_at for s in silences.values()]
    else:
        deadlines.append(state.wake_at)
    return replace(state, wake_at=min(deadlines, default=math.inf)), commands + notes


def _deadline(state: HubState, key: str) -> float:
    """The next hub time at which time alone can change something about this key."""
    times = [math.inf]
    alert, track = state.alerts.get(key), state.tracks.get(key)
    if alert is not None:
        rule = state.rule_by_name[alert.rule]
        if alert.status == "pending":
            times.append(alert.active_since + rule.for_s)
        elif alert.clear_since is not None:
            times.append(alert.clear_since + rule.keep_firing_for_s)
        if (alert.status == "firing" and not alert.acked and track is not None
                and track.last_sent_at is not None):
            times.append(track.last_sent_at + state.config.repeat_interval_s)
    if track is not None and track.fire_times:
        times.append(min(track.fire_times) + state.config.flap_window_s)
    return min(times)


def _notify(state: HubState, keys: set[str] | None) -> tuple[HubState, list[Command]]:
    """Tell each key's state when it differs from what was last told, unless the key is silenced,
    inhibited or flapping; repeat an unacknowledged firing alert every repeat_interval_s."""
    now, config = state.now, state.config
    rules = state.rule_by_name
    tracks = dict(state.tracks)
    commands: list[Command] = []
    todo = state.tracks if keys is None else {k: state.tracks[k] for k in sorted(keys) if k in state.tracks}
    inhibitors = None   # built at the first notice due, once: alerts do not change below, only tracks
    for key, track in todo.items():
        alert = state.alerts.get(key)
        firing = alert is not None and alert.status == "firing"
        recent = _recent(track.fire_times, now, config)
        if recent != track.fire_times:
            track = replace(track, fire_times=recent)
        flapping = len(recent) > config.flap_limit
        if not flapping and track.flap_told:
            track = replace(track, flap_told=False)
        wanted = "firing" if firing else ("resolved" if track.notified == "firing" else track.notified)
        changed = wanted != track.notified or (firing and track.notified_serial != alert.serial)
        repeat_due = (firing and not changed and not alert.acked and track.last_sent_at is not None
                      and now >= track.last_sent_at + config.repeat_interval_s)
        if (changed or repeat_due or (flapping and not track.flap_told)) and rules[track.labels["rule"]].channels:
            if inhibitors is None:
                inhibitors = state.inhibitor_index()
            if not (state.silenced_by(track.labels) or state.inhibited_by(track.labels, inhibitors)):
                snapshot = alert.summary() if alert is not None else _last_summary(state, key)
                channels = rules[track.labels["rule"]].channels
                if flapping:
                    if not track.flap_told:
                        commands.append(Command("notify", {"kind": "flapping", "key": key,
                                                           "channels": channels, "alert": snapshot}))
                        track = replace(track, flap_told=True, last_sent_at=now)
                elif changed:
                    commands.append(Command("notify", {"kind": wanted, "key": key,
                                                       "channels": channels, "alert": snapshot}))
                    track = replace(track, notified=wanted, last_sent_at=now,
                                    notified_serial=alert.serial if firing else track.notified_serial)
                else:
                    commands.append(Command("notify", {"kind": "repeat", "key": key,
                                                       "channels": channels, "alert": snapshot}))
                    track = replace(track, last_sent_at=now)
        if track is not state.tracks[key]:
            tracks[key] = track
    return replace(state, tracks=tracks), commands


def _last_summary(state: HubState, key: str) -> dict[str, Any]:
    for alert in reversed(state.history):
        if alert.key == key:
            return alert.summary()
    return {"key": key}


def _require(cond: bool, reason: str) -> None:
    if not cond:
        raise Rejected(reason)


# ---- handlers ------------------------------------------------------------------------------------
@on("observe")
def _observe(s: HubState, d):
    obs = d.get("observation")
    if not isinstance(obs, Observation):
        return _count(s, "invalid_ignored"), []
    values = _clean_values(obs.values)
    measured, received = _time(obs.measured_at), _time(obs.received_at)
    if (values is None or measured is None or received is None
            or not all(_name_ok(x) for x in (obs.site, obs.entity, obs.kind))):
        return _count(s, "invalid_ignored"), []
    site = s.sites.get(obs.site)
    if site is None:
        if len(s.sites) >= MAX_SITES:
            return _count(s, "over_limit_ignored"), []
        site = SiteState()
    if not obs.replayed:
        site, stepped = _measure_skew(site, measured - received, s.config)
        if stepped:
            s = _count(s, "clock_steps")
    current = site.entities.get(obs.entity)
    if current is not None and measured <= current.measured_at:
        s = _count(s, "stale_ignored")
        s = replace(s, sites={**s.sites, obs.site: site})  # the skew still counts
        return _evaluate_site(s, obs.site, None)
    if current is None and len(site.entities) >= MAX_ENTITIES_PER_SITE:
        return _count(s, "over_limit_ignored"), []
    if current is not None and current.kind != obs.kind:
        return _count(s, "invalid_ignored"), []
    merged = {**(current.values if current else {}), **values}
    site = replace(site, entities={**site.entities, obs.entity: Entity(obs.kind, merged, measured)})
    s = replace(s, sites={**s.sites, obs.site: site})
    return _evaluate_site(s, obs.site, obs.entity)


def _measure_skew(site: SiteState, skew: float, config: AlertConfig) -> tuple[SiteState, bool]:
    """A live observation measures the agent's clock against ours. A jump of the skew by more than
    clock_skew_max_s that a second live observation confirms is a step of the agent's clock (NTP
    fixed it): its old timestamps can no longer order the new ones, so the site's high-water marks
    are reset. A lone jump is one message delayed in transit: ignored."""
    if site.skew_s is None or abs(skew - site.skew_s) <= config.clock_skew_max_s:
        return replace(site, skew_s=skew, skew_candidate=None), False
    if site.skew_candidate is not None and abs(skew - site.skew_candidate) <= config.clock_skew_max_s:
        entities = {name: replace(e, measured_at=-math.inf) for name, e in site.entities.items()}
        return replace(site, skew_s=skew, skew_candidate=None, entities=entities), True
    return replace(site, skew_candidate=skew), False


@on("site_status")
def _site_status(s: HubState, d):
    """The broker's retained `online` after connect, or the last will's `offline`."""
    site_name, online = d.get("site"), d.get("online")
    if not _name_ok(site_name) or not isinstance(online, bool):
        return _count(s, "invalid_ignored"), []
    site = s.sites.get(site_name)
    if site is None:
        if len(s.sites) >= MAX_SITES:
            return _count(s, "over_limit_ignored"), []
        site = SiteState()
    s = replace(s, sites={**s.sites, site_name: replace(site, online=online)})
    return _evaluate_site(s, site_name, None)


@on("tick")
def _tick(s: HubState, d):
    return s, []


@on("ack")
def _ack(s: HubState, d):
    key, who, comment = d.get("key"), d.get("who"), d.get("comment", "")
    _require(isinstance(key, str) and key in s.alerts, "no_open_alert")
    alert = s.alerts[key]
    _require(alert.status == "firing", "not_firing")
    serial = d.get("serial")
    _require(serial is None or (type(serial) is int and serial == alert.serial), "stale_alert")
    _require(_name_ok(who), "bad_who")
    _require(isinstance(comment, str) and len(comment) <= MAX_TEXT, "bad_comment")
    _require(len(alert.acks) < MAX_ACKS, "too_many_acks")
    acked = replace(alert, acks=alert.acks + (Ack(who=who, at=s.now, comment=comment),))
    return (replace(s, alerts={**s.alerts, key: acked}),
            [Command("acked", {"key": key, "serial": alert.serial, "who": who, "at": s.now,
                               "comment": comment})])


@on("silence")
def _silence(s: HubState, d):
    sid, creator, comment = d.get("id"), d.get("creator"), d.get("comment")
    matchers = d.get("matchers")
    _require(_name_ok(sid) and sid not in s.silences, "bad_id")
    _require(len(s.silences) < MAX_SILENCES, "too_many_silences")
    _require(_name_ok(creator), "bad_creator")
    _require(isinstance(comment, str) and 0 < len(comment.strip()) and len(comment) <= MAX_TEXT,
             "bad_comment")
    _require(isinstance(matchers, Mapping) and 0 < len(matchers) <= MAX_MATCHERS, "bad_matchers")
    for name, value in matchers.items():
        _require(name in LABEL_NAMES and isinstance(value, str) and len(value) <= MAX_NAME
                 and (value != "" or name == "device"), "bad_matchers")
    starts, ends = _time(d.get("starts_at", s.now)), _time(d.get("ends_at"))
    _require(starts is not None and ends is not None and starts < ends and ends > s.now
             and ends - max(starts, s.now) <= MAX_SILENCE_S, "bad_period")
    silence = Silence(id=sid, matchers=tuple(sorted(matchers.items())), starts_at=starts,
                      ends_at=ends, creator=creator, comment=comment)
    return (replace(s, silences={**s.silences, sid: silence}),
            [Command("silenced", {"id": sid, "matchers": dict(silence.matchers), "starts_at": starts,
                                  "ends_at": ends, "creator": creator, "comment": comment})])


@on("expire_silence")
def _expire_silence(s: HubState, d):
    sid = d.get("id")
    _require(isinstance(sid, str) and sid in s.silences, "no_such_silence")
    silences = dict(s.silences)
    del silences[sid]
    return replace(s, silences=silences), [Command("silence_expired", {"id": sid, "at": s.now})]
