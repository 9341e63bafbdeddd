"""The one MQTT topic tree and its payload schemas (agent, hub, broker ACLs and tests all use this).

Every topic of a site lives under ``cnap/<site>/``::

    cnap/<site>/online               retained  "online" / "offline" (the agent's last will)
    cnap/<site>/bridge               retained  "1" / "0" (the site broker's bridge, set by mosquitto)
    cnap/<site>/ventilation          retained  VentilationState
    cnap/<site>/air                  retained  AirQualityState
    cnap/<site>/power                retained  PowerState (the UPS and the mains inputs)
    cnap/<site>/uplink/<name>        retained  UplinkState, one per uplink
    cnap/<site>/device/<device>      retained  BillValidatorState | PrinterState | CardTerminalState
    cnap/<site>/survey/answer        QoS 1, not retained: SurveyAnswer (idempotent by its UUID)
    cnap/<site>/cmd/<controller>     QoS 1, not retained: Command (hub → site)
    cnap/<site>/cmd_result/<controller>  QoS 1, not retained: CommandResult (site → hub)

Builders: the payload classes below (strict pydantic models: constructing one with a bad value
raises, which is a bug in the caller) and ``outgoing(site, payload)``, which gives the topic, the
bytes, QoS and retain flag. Parsing: ``parse(topic, payload, now=...)`` takes anything a broker
may deliver and returns a ``Message`` or a ``Rejected`` with a short reason; it never raises.
Unknown fields are dropped and named in ``Message.dropped`` so newer agents can add fields without
breaking older hubs; anything else that does not fit the schema rejects the whole message.
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints,
                      ValidationError, ValidationInfo, model_validator)

PREFIX = "cnap"
SCHEMA_VERSION = 1

# Site ids become a topic level and, on the brokers, the site agent's user name (ACL `%u`): only
# characters that are safe in both, never the MQTT wildcards "+" "#", "/" or a leading "$".
SITE_ID_MAX = 32
SITE_ID_RE = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")   # uplink, sensor, controller names
MAX_TOPIC_CHARS = 128
MAX_DROPPED_REPORTED = 10

# Size limits by topic kind: far above a real payload, well below what could hurt the hub.
MAX_STATE_BYTES = 8192
MAX_SURVEY_BYTES = 8192
MAX_COMMAND_BYTES = 4096

# Timestamps: none before the project existed or after 2100; none more than this in the future
# of the receiver's clock (when it passes ``now``).
MIN_TIMESTAMP = datetime(2020, 1, 1, tzinfo=timezone.utc)
MAX_TIMESTAMP = datetime(2100, 1, 1, tzinfo=timezone.utc)
MAX_FUTURE_SKEW_S = 300
COMMAND_TTL_MAX_S = 3600

ONLINE, OFFLINE = "online", "offline"
DEVICES = ("bill_validator", "printer", "card_terminal")


# --- field types ---------------------------------------------------------------------------------
def _timestamp(value: datetime, info: ValidationInfo) -> datetime:
    value = value.astimezone(timezone.utc)
    if not MIN_TIMESTAMP <= value < MAX_TIMESTAMP:
        raise ValueError("timestamp outside 2020..2100")
    now = (info.context or {}).get("now")
    if now is not None and value.timestamp() > now + MAX_FUTURE_SKEW_S:
        raise ValueError(f"timestamp more than {MAX_FUTURE_SKEW_S} s in the future")
    return value


def _plain_text(value: str) -> str:
    # No control, format (bidi) or unassigned characters: the text ends up in logs and web pages.
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in value):
        raise ValueError("control or invisible characters")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_timestamp)]
Word = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,40}$")]           # a state or alert word
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]  # like NAME_RE
Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]     # survey, question ids
Account = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Uuid = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]


def Text(max_length: int):   # noqa: N802 - reads like the other type names
    return Annotated[str, StringConstraints(max_length=max_length), AfterValidator(_plain_text)]


def Number(low: float, high: float):   # noqa: N802
    return Annotated[float, Field(ge=low, le=high)]


def Count(low: int, high: int):   # noqa: N802
    return Annotated[int, Field(ge=low, le=high)]


Alerts = Annotated[list[Word], Field(max_length=32)]


class Payload(BaseModel):
    """Common rules: strict JSON types (no "1" for 1, no true for 1), finite numbers, unknown
    fields kept aside by pydantic and then dropped by ``parse``."""
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
    v: Literal[1] = SCHEMA_VERSION
    ts: Timestamp


class ControllerState(Payload):
    """What ``facility.base.Controller.status()`` says, without its event list."""
    available: bool
    state: Word
    alerts: Alerts = []


MAX_FAN_LEVEL = 100


class VentilationState(ControllerState):
    level: Count(0, MAX_FAN_LEVEL) | None = None        # the fan level now
    max_level: Count(1, MAX_FAN_LEVEL) | None = None
    override_until: Timestamp | None = None   # a manual level runs until then

    @model_validator(mode="after")
    def _level_within_max(self):
        if self.level is not None and self.max_level is not None and self.level > self.max_level:
            raise ValueError("level above max_level")
        return self


class AirSensor(BaseModel):
    model_config = Payload.model_config
    name: Name
    online: bool
    co2_ppm: Number(0, 10000) | None = None
    temperature_c: Number(-40, 85) | None = None
    humidity_pct: Number(0, 100) | None = None


class AirQualityState(ControllerState):
    sensors: Annotated[list[AirSensor], Field(max_length=16)] = []


class Ups(BaseModel):
    model_config = Payload.model_config
    status: Word                               # "online", "on_battery", "low_battery", …
    charge_pct: Number(0, 100) | None = None
    runtime_s: Count(0, 7 * 86400) | None = None
    load_pct: Number(0, 200) | None = None
    input_voltage_v: Number(0, 400) | None = None


class PowerInput(BaseModel):
    model_config = Payload.model_config
    name: Name                                 # "mains", "generator", …
    live: bool
    voltage_v: Number(0, 400) | None = None


class PowerState(ControllerState):
    ups: Ups | None = None
    inputs: Annotated[list[PowerInput], Field(max_length=8)] = []
    active_input: Name | None = None


class UplinkState(ControllerState):
    up: bool                                   # reaches the internet through this uplink
    active: bool                               # carries the default route now
    interface: Name | None = None
    latency_ms: Number(0, 60000) | None = None
    loss_pct: Number(0, 100) | None = None


class DeviceState(Payload):
    """A kiosk device (``devices.events.DeviceStatus``): online, its state word, active alerts."""
    online: bool
    state: Word
    alerts: Alerts = []


class BillValidatorState(DeviceState):
    cassette_bills: Count(0, 100000)
    cassette_capacity: Count(1, 100000)

    @model_validator(mode="after")
    def _fill_within_capacity(self):
        if self.cassette_bills > self.cassette_capacity:
            raise ValueError("cassette_bills above cassette_capacity")
        return self


class PrinterState(DeviceState):
    paper: Literal["ok", "near_end", "out", "unknown"]
    cover_open: bool = False


class CardTerminalState(DeviceState):
    pass


class SurveyAnswer(Payload):
    """One desk-tablet answer as the kiosk's forwarding outbox gives it; ``ts`` is when it was
    answered. The hub stores it once per ``uuid`` (QoS 1 may deliver twice)."""
    uuid: Uuid
    tablet_id: Count(1, 2 ** 31)
    branch_id: Ident
    desk: Text(64)
    survey_id: Ident
    version: Count(1, 100000)
    main: Ident
    score: Count(0, 10)
    scale: Count(2, 10)
    path: Annotated[list[tuple[Ident, Ident]], Field(max_length=16)] = []
    nps: Count(0, 10) | None = None
    comment: Text(1000) | None = None          # masked by the kiosk already (no phones, e-mails)
    lang: Literal["uk", "en"] | None = None
    counted: bool = True
    flag: Word | None = None
    review: Word | None = None

    @model_validator(mode="after")
    def _score_within_scale(self):
        if self.score > self.scale:
            raise ValueError("score above scale")
        return self


Scalar = Union[bool, int, float, Text(100), None]


class Command(Payload):
    """An operator's command for one controller (``Controller.command(action, args)``). The site
    refuses it once ``ts + ttl_s`` has passed, so a command queued during an outage does not act
    hours later."""
    id: Uuid
    action: Word
    args: Annotated[dict[Word, Scalar], Field(max_length=8)] = {}
    by: Account                                # the hub account or staff member who sent it
    ttl_s: Count(1, COMMAND_TTL_MAX_S) = 60

    @model_validator(mode="after")
    def _args_are_small(self):
        for value in self.args.values():
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2 ** 53:
                raise ValueError("integer argument too large")
        return self


class CommandResult(Payload):
    id: Uuid                                   # the command's id
    ok: bool
    message: Text(300) = ""


# --- visitor internet (terminal/internet/, facility/guestnet, docs/internet.md) ---------------------
MAX_TOP_BLOCKED = 10
Host = Annotated[str, StringConstraints(pattern=r"^[a-z0-9.-]{1,253}$")]   # an ASCII host name, or "other"


class BlockedHost(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    host: Host
    attempts: Count(1, 10 ** 9)


class InternetState(Payload):
    """The kiosk's visitor browsing, today (the kiosk's local day): hosts only, nothing about
    visitors. ``available``: the home screen offers the internet now; ``state``: ``ok`` or why
    not (disabled, no_window, proxy_down, no_uplink, no_agent, empty_list)."""
    enabled: bool
    available: bool
    state: Word
    session_open: bool = False
    day: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    sessions: Count(0, 10 ** 7)                             # started today
    ended: Annotated[dict[Word, Count(0, 10 ** 7)], Field(max_length=8)] = {}   # by reason
    minutes: Number(0, 10 ** 7)
    blocked_hook: Count(0, 10 ** 9)
    blocked_proxy: Count(0, 10 ** 9)
    top_blocked: Annotated[list[BlockedHost], Field(max_length=MAX_TOP_BLOCKED)] = []


MAX_COUNTER = 2 ** 53          # nftables counters are 64-bit; JSON numbers stay exact up to here
Ifname = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,15}$")]   # a Linux interface name


class GuestNetworkState(ControllerState):
    """The guest network controller's status (``cnap agent``): ``clients_now`` admitted through
    the portal now, ``admitted_today`` (the site's local day), and the gateway's nftables counters
    since it was set up: ``bytes_up``/``bytes_down`` of admitted guests, ``blocked`` packets
    (to the office networks, the kiosk's services, or before admission), ``redirected`` (captive
    portal redirects). Counts only: no guest's address or traffic."""
    interface: Ifname | None = None
    dhcp: bool | None = None                                # the guests' dnsmasq runs
    clients_now: Count(0, 100000) = 0
    admitted_today: Count(0, 10 ** 7) = 0
    bytes_up: Count(0, MAX_COUNTER) = 0
    bytes_down: Count(0, MAX_COUNTER) = 0
    blocked: Count(0, MAX_COUNTER) = 0
    redirected: Count(0, MAX_COUNTER) = 0
    total_rate_kbit: Count(1, 10 ** 7) | None = None        # the guest network's cap
    client_rate_kbit: Count(1, 10 ** 7) | None = None       # one client's ceiling, when set
    admit_minutes: Count(1, 7 * 24 * 60) | None = None      # how long an acceptance lets a client out


# --- the tree ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicSpec:
    kind: str
    pattern: str            # with {site} and, for some kinds, {name}
    qos: int
    retain: bool
    max_bytes: int
    summary: str

    @property
    def filter(self) -> str:
        """The same topic with "+" for each variable level (for ACLs and subscriptions)."""
        return self.pattern.replace("{site}", "+").replace("{name}", "+")


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("online", "cnap/{site}/online", 1, True, 16,
              '"online" after the agent connects; "offline" as its last will'),
    TopicSpec("bridge", "cnap/{site}/bridge", 1, True, 16,
              '"1"/"0": the site broker\'s bridge to the central broker is up (mosquitto sets it)'),
    TopicSpec("ventilation", "cnap/{site}/ventilation", 1, True, MAX_STATE_BYTES, "VentilationState"),
    TopicSpec("air", "cnap/{site}/air", 1, True, MAX_STATE_BYTES, "AirQualityState"),
    TopicSpec("power", "cnap/{site}/power", 1, True, MAX_STATE_BYTES, "PowerState (UPS, inputs)"),
    TopicSpec("uplink", "cnap/{site}/uplink/{name}", 1, True, MAX_STATE_BYTES, "UplinkState, one per uplink"),
    TopicSpec("device", "cnap/{site}/device/{name}", 1, True, MAX_STATE_BYTES,
              "BillValidatorState, PrinterState or CardTerminalState"),
    TopicSpec("internet", "cnap/{site}/internet", 1, True, MAX_STATE_BYTES,
              "InternetState (visitor browsing at the kiosk, today)"),
    TopicSpec("guest_network", "cnap/{site}/guest_network", 1, True, MAX_STATE_BYTES,
              "GuestNetworkState (the guest Wi-Fi's gateway and counters)"),
    TopicSpec("survey", "cnap/{site}/survey/answer", 1, False, MAX_SURVEY_BYTES, "SurveyAnswer"),
    TopicSpec("cmd", "cnap/{site}/cmd/{name}", 1, False, MAX_COMMAND_BYTES, "Command, hub → site"),
    TopicSpec("cmd_result", "cnap/{site}/cmd_result/{name}", 1, False, MAX_COMMAND_BYTES,
              "CommandResult, site → hub"),
)
SPECS = {spec.kind: spec for spec in TOPICS}

_STATE_MODELS: dict[str, type[Payload]] = {
    "ventilation": VentilationState, "air": AirQualityState, "power": PowerState, "uplink": UplinkState,
    "internet": InternetState, "guest_network": GuestNetworkState, "survey": SurveyAnswer, "cmd": Command, "cmd_result": CommandResult,
}
_DEVICE_MODELS: dict[str, type[Payload]] = {
    "bill_validator": BillValidatorState, "printer": PrinterState, "card_terminal": CardTerminalState,
}
_TEXT_PAYLOADS = {"online": (ONLINE, OFFLINE), "bridge": ("1", "0")}
_KIND_OF_MODEL = {model: kind for kind, model in _STATE_MODELS.items()} | {m: "device" for m in _DEVICE_MODELS.values()}
_DEVICE_OF_MODEL = {model: name for name, model in _DEVICE_MODELS.items()}


def device_model(name: str) -> type[Payload]:
    """The payload model of the kiosk device ``name`` (one of DEVICES); KeyError otherwise."""
    return _DEVICE_MODELS[name]

# Filters other parts use: the hub's shared subscription, a site's own subtree, its commands.
HUB_FILTER = "cnap/+/#"


def valid_site_id(site: Any) -> bool:
    return isinstance(site, str) and SITE_ID_RE.fullmatch(site) is not None


def valid_name(name: Any) -> bool:
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def topic(kind: str, site: str, name: str | None = None) -> str:
    """The topic of ``kind`` for ``site`` (and ``name``); ValueError on a bad site id or name."""
    spec = SPECS[kind]
    if not valid_site_id(site):
        raise ValueError(f"bad site id {site!r}: 1–{SITE_ID_MAX} of a-z 0-9 - _, starting and ending with a-z 0-9")
    if ("{name}" in spec.pattern) != (name is not None):
        raise ValueError(f"topic {kind!r} {'needs' if name is None else 'takes no'} name")
    if name is not None and not valid_name(name):
        raise ValueError(f"bad name {name!r}")
    if kind == "device" and name not in DEVICES:
        raise ValueError(f"unknown device {name!r}")
    return spec.pattern.format(site=site, name=name)


def site_filter(site: str) -> str:
    return topic("online", site).rsplit("/", 1)[0] + "/#"


def command_filter(site: str) -> str:
    return topic("cmd", site, "x").rsplit("/", 1)[0] + "/+"


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def encode(payload: Payload) -> bytes:
    return payload.model_dump_json(exclude_none=True).encode()


def outgoing(site: str, payload: Payload | bool, name: str | None = None) -> Outgoing:
    """What to publish: ``payload`` is a payload model, or True/False for the online topic.
    ``name`` is the uplink's name or the command's controller (devices know their own name)."""
    if isinstance(payload, bool):
        kind, data = "online", (ONLINE if payload else OFFLINE).encode()
    else:
        kind = _KIND_OF_MODEL[type(payload)]
        if kind == "device":
            name = _DEVICE_OF_MODEL[type(payload)]
        data = encode(payload)
    spec = SPECS[kind]
    if len(data) > spec.max_bytes:
        raise ValueError(f"{kind} payload of {len(data)} bytes is over {spec.max_bytes}")
    return Outgoing(topic(kind, site, name), data, spec.qos, spec.retain)


# --- parsing ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicRef:
    kind: str
    site: str
    name: str | None


@dataclass(frozen=True)
class Message:
    kind: str
    site: str
    name: str | None                # uplink name, device, controller
    payload: Payload | str          # a model; "online"/"offline" or "1"/"0" for the text topics
    dropped: tuple[str, ...] = ()   # unknown fields that were dropped (dotted paths)


@dataclass(frozen=True)
class Rejected:
    reason: str     # topic, site, name, empty, too_large, encoding, json, schema, expired
    detail: str

    def __bool__(self) -> bool:   # `if result:` reads as "parsed"
        return False


def _printable(text: str, limit: int) -> str:
    """Input quoted in a rejection or report: short, printable, so it is safe in a log line."""
    cut = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return cut + ("…" if len(text) > limit else "")


def _short(value: Any, limit: int = 60) -> str:
    return repr(_printable(value if isinstance(value, str) else repr(value), limit))


def _shape_index(specs: tuple[TopicSpec, ...]) -> dict[Any, list[tuple[TopicSpec, list[str]]]]:
    """Specs by the levels after the site: by their number alone where the first level is a
    variable (every topic of that length is a candidate), else by (number, first level)."""
    index: dict[Any, list] = {}
    shapes = [(spec, spec.pattern.split("/")[2:]) for spec in specs]
    for spec, shape in shapes:
        if shape[0].startswith("{"):
            index[len(shape)] = [item for item in shapes if len(item[1]) == len(shape)]
    for spec, shape in shapes:
        if len(shape) not in index:
            index.setdefault((len(shape), shape[0]), []).append((spec, shape))
    return index


_SHAPE_INDEX = _shape_index(TOPICS)


def _candidates(rest: list[str]) -> list[tuple[TopicSpec, list[str]]]:
    """The specs (in TOPICS order, with their levels after the site) a topic with these levels
    after the site could match."""
    return _SHAPE_INDEX.get(len(rest)) or _SHAPE_INDEX.get((len(rest), rest[0]), [])


def parse_topic(raw: Any) -> TopicRef | Rejected:
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return Rejected("topic", "topic is not UTF-8")
    if not isinstance(raw, str) or not raw or len(raw) > MAX_TOPIC_CHARS:
        return Rejected("topic", f"topic missing or longer than {MAX_TOPIC_CHARS} characters")
    levels = raw.split("/")
    if len(levels) < 3 or levels[0] != PREFIX:
        return Rejected("topic", f"not in the {PREFIX}/<site>/… tree: {_short(raw)}")
    site = levels[1]
    if not valid_site_id(site):
        return Rejected("site", f"bad site id {_short(site)}")
    rest = levels[2:]
    for spec, shape in _candidates(rest):
        name = None
        for want, got in zip(shape, rest):
            if want == "{name}":
                name = got
            elif want != got:
                break
        else:
            if name is not None and not valid_name(name):
                return Rejected("name", f"bad name {_short(name)} in {spec.kind} topic")
            if spec.kind == "device" and name not in _DEVICE_MODELS:
                return Rejected("name", f"unknown device {_short(name)}")
            return TopicRef(spec.kind, site, name)
    return Rejected("topic", f"unknown topic {_short(raw)}")


def _holds_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_model(arg) for arg in get_args(annotation))


_NESTED_FIELDS: dict[type, tuple[str, ...]] = {}


def _nested_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``model`` whose type can hold a model (the only ones that can hide unknown
    fields below the top level); computed once per class: this walk ran for every message."""
    fields = _NESTED_FIELDS.get(model)
    if fields is None:
        fields = _NESTED_FIELDS[model] = tuple(
            name for name, info in model.model_fields.items() if _holds_model(info.annotation))
    return fields


def _take_unknown(value: Any, path: str, found: list[str]) -> None:
    """Collect and remove the unknown fields pydantic kept aside, at every depth."""
    if isinstance(value, BaseModel):
        extra = value.__pydantic_extra__
        if extra:
            found.extend(f"{path}{key}" for key in extra)
            extra.clear()
        for field in _nested_fields(type(value)):
            _take_unknown(getattr(value, field), f"{path}{field}.", found)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _take_unknown(item, f"{path}{index}.", found)


def _explain(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(part) for part in item.get("loc", ())) or "payload"
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (+{more} more)" if more > 0 else "")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse(topic_name: Any, payload: Any, now: float | None = None) -> Message | Rejected:
    """Check one delivered message against the tree and its schema. ``now`` (time.time()) turns on
    the clock checks: no timestamp more than MAX_FUTURE_SKEW_S ahead, no expired command. Never
    raises, whatever the bytes."""
    try:
        return _parse(topic_name, payload, now)
    except Exception as exc:   # a schema bug must not take the hub down: report it as a rejection
        return Rejected("schema", f"unexpected {type(exc).__name__}")


def _parse(topic_name: Any, payload: Any, now: float | None) -> Message | Rejected:
    ref = parse_topic(topic_name)
    if isinstance(ref, Rejected):
        return ref
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        return Rejected("encoding", "payload is not bytes")
    payload = bytes(payload)
    spec = SPECS[ref.kind]
    if not payload:
        return Rejected("empty", "empty payload (a cleared retained message)")
    if len(payload) > spec.max_bytes:
        return Rejected("too_large", f"{len(payload)} bytes, over {spec.max_bytes} for {ref.kind}")
    if ref.kind in _TEXT_PAYLOADS:
        text = payload.decode("ascii", "replace")
        if text not in _TEXT_PAYLOADS[ref.kind]:
            return Rejected("schema", f"{ref.kind} payload must be one of {_TEXT_PAYLOADS[ref.kind]}, not {_short(text, 20)}")
        return Message(ref.kind, ref.site, ref.name, text)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected("encoding", "payload is not UTF-8")
    try:   # standard JSON only: pydantic's parser would take NaN/Infinity in fields it then drops
        json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        return Rejected("json", f"not JSON: {_printable(str(exc), 80)}")
    model = _DEVICE_MODELS[ref.name] if ref.kind == "device" else _STATE_MODELS[ref.kind]
    context = {"now": None if now is None or not math.isfinite(now) else now}
    try:
        parsed = model.model_validate_json(payload, strict=True, context=context)
    except ValidationError as exc:
        kind = "json" if any(e.get("type") == "json_invalid" for e in exc.errors(include_url=False)) else "schema"
        return Rejected(kind, _explain(exc))
    dropped: list[str] = []
    _take_unknown(parsed, "", dropped)
    if isinstance(parsed, Command) and context["now"] is not None:
        if parsed.ts.timestamp() + parsed.ttl_s < context["now"]:
            return Rejected("expired", f"command {parsed.id} expired {parsed.ttl_s} s after it was sent")
    return Message(ref.kind, ref.site, ref.name, parsed,
                   tuple(_printable(d, 60) for d in dropped[:MAX_DROPPED_REPORTED]))


__all__ = [
    "PREFIX", "SCHEMA_VERSION", "TOPICS", "SPECS", "TopicSpec", "DEVICES", "ONLINE", "OFFLINE", "HUB_FILTER",
    "Payload", "ControllerState", "VentilationState", "AirSensor", "AirQualityState", "Ups", "PowerInput",
    "PowerState", "UplinkState", "DeviceState", "BillValidatorState", "PrinterState", "CardTerminalState",
    "InternetState", "BlockedHost", "GuestNetworkState", "SurveyAnswer", "Command", "CommandResult",
    "Outgoing", "Message", "Rejected", "TopicRef",
    "valid_site_id", "valid_name", "topic", "site_filter", "command_filter", "encode", "outgoing",
    "parse", "parse_topic",
]
