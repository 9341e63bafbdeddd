"""The agent's MQTT reporting (``cnap agent`` with MQTT_HOST set): facility and kiosk state to the
site broker, survey answers on to the hub, and the hub's commands back.

What it does, on one thread of its own (paho-mqtt 2.x, MQTT 5, driven with ``client.loop``, so
every callback runs on that thread and no lock guards the outbox):

- logs in as the site (user = site id, password from MQTT_PASSWORD_FILE), over TLS when
  MQTT_TLS_CA_FILE is set (client certificate optional); last will: retained ``offline`` on
  ``cnap/<site>/online``; retained ``online`` once connected, ``offline`` again at a clean stop;
- publishes the controllers' retained state (monitoring/mqtt_map.py) when it changes and all of it
  every MQTT_REFRESH_S; the kiosk's device states polled every MQTT_KIOSK_POLL_S;
- survey answers: kiosk → outbox (disk) → broker at QoS 1 → PUBACK → ``kiosk.mark_forwarded``;
- state and answers go through the outbox (monitoring/outbox.py), so a broker outage or an agent
  restart loses neither; after a lost connection it reconnects with exponential back-off;
- subscribes to its commands (``cnap/<site>/cmd/+``: the broker lets only hub accounts publish
  there), refuses malformed or expired ones, routes ``kiosk`` to ``kiosk.set_out_of_service`` and
  any other controller to ``runner.command``, and always answers on ``cmd_result/<controller>``
  when the command carries a usable id;
- optionally, Home Assistant discovery configs (monitoring/discovery.py).

A fresh paho client is made for each connection: the outbox is the only queue, so a reconnect
never makes paho re-send something the outbox sends again.
"""
from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from monitoring import discovery, mqtt_map, topics
from monitoring.outbox import Outbox

log = logging.getLogger("cnap.agent.mqtt")

LOOP_S = 0.25                # how long one network wait lasts (also how soon a new snapshot goes out)
CONNACK_WAIT_S = 15.0        # a broker that accepted TCP but sends no CONNACK is given up on
RECONNECT_MIN_S = 0.5
SEND_BATCH = 50              # rows read from the outbox at once; bounds memory
MAX_INFLIGHT = 20            # QoS 1 messages waiting for PUBACK
ANSWERS_PER_PULL = 100       # new survey answers taken from the kiosk at once
KIOSK_MAX_LIMIT = 500        # the kiosk's bound per request (terminal/views/internal.py)
FORWARD_RETRY_S = 5.0        # after the kiosk failed to take mark_forwarded
RECENT_COMMANDS = 256        # command ids remembered, so a QoS 1 duplicate is not run twice
MAX_TOPICS_REMEMBERED = 512  # topics whose last content is kept in memory (the disk has the rest)
KIOSK = "kiosk"              # the command topic's controller name for the kiosk itself
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")   # topics.Uuid


class KioskSource(Protocol):
    """What the reporter needs of the kiosk (monitoring/kiosk_client.py KioskClient). Every
    method may raise (KioskUnavailable) when the kiosk does not answer."""

    def devices(self) -> dict[str, dict]: ...

    def pending_answers(self, limit: int) -> list[dict]: ...

    def mark_forwarded(self, uuids: list[str]) -> int: ...

    def set_out_of_service(self, on: bool, reason: str, by: str) -> dict: ...

    # optional: def internet(self) -> dict  (today's browsing counters, topics.InternetState fields)


class StatusSource(Protocol):
    """facility.runner.Runner, or anything with ``status()``; ``listeners``, ``names()`` and
    ``command()`` are used when present."""

    def status(self) -> dict: ...


def read_secret(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def _utc(now: float) -> datetime:
    return datetime.fromtimestamp(now, timezone.utc)


def _plain(text: Any, limit: int = 300) -> str:
    """Text safe for a CommandResult message (printable, bounded)."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(text))[:limit]


class MqttReporter:
    def __init__(self, settings: Mapping[str, Any], site: str, source: StatusSource,
                 kiosk: KioskSource | None = None, clock: Callable[[], float] = time.time):
        if not topics.valid_site_id(site):
            raise ValueError(f"bad site id {site!r}")
        self.settings = settings
        self.site, self.source, self.kiosk, self.clock = site, source, kiosk, clock
        from monitoring.agent import instance_folder

        instance = instance_folder(settings)
        self.password = read_secret(instance / settings["MQTT_PASSWORD_FILE"]) if settings.get(
            "MQTT_PASSWORD_FILE") else None
        self.outbox_path = instance / settings["MQTT_OUTBOX_FILE"]
        self.refresh_s = float(settings["MQTT_REFRESH_S"])
        self.kiosk_poll_s = float(settings["MQTT_KIOSK_POLL_S"])
        self.reconnect_max_s = max(RECONNECT_MIN_S, float(settings["MQTT_RECONNECT_MAX_S"]))
        self.discovery_on = bool(settings.get("MQTT_DISCOVERY"))
        self.discovery_prefix = settings.get("MQTT_DISCOVERY_PREFIX") or discovery.DEFAULT_PREFIX

        self.online_topic = topics.topic("online", site)
        self.connected = threading.Event()
        self.published = 0           # messages the broker acknowledged
        self.answers_published = 0   # of which survey answers
        self.refused = 0             # messages the broker refused (PUBACK reason >= 128)
        self.commands = 0            # commands answered
        self.depth: dict[str, int] = {"state": 0, "answer": 0, "answer_acked": 0}

        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._latest: dict[str, dict] = {}      # controller → newest snapshot (coalesced)
        self._latest_lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._connack_deadline = 0.0
        self._backoff = RECONNECT_MIN_S
        self._next_attempt = 0.0                # monotonic
        self._next_refresh = float("-inf")      # self.clock()
        self._next_kiosk_poll = float("-inf")   # self.clock()
        self._next_forward = 0.0                # monotonic
        self._inflight: dict[int, tuple] = {}   # mid → ("state", topic, version) | ("answer", uuid) | ("other",)
        self._inflight_keys: set[tuple] = set()
        self._refused_keys: set[tuple] = set()  # not retried until the next connection or refresh
        self._sent_content: dict[str, bytes] = {}   # topic → content last put (skips the disk)
        self._uplinks: tuple[str, ...] = ()
        self._discovery_due = False
        self._force_devices = True
        self._kiosk_answers = True
        self._recent: OrderedDict[str, dict] = OrderedDict()
        self.outbox: Outbox | None = None

    # --- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.outbox = Outbox(self.outbox_path, max_answers=int(self.settings["MQTT_OUTBOX_MAX_ANSWERS"]),
                             max_bytes=int(self.settings["MQTT_OUTBOX_MAX_BYTES"]))
        listeners = getattr(self.source, "listeners", None)
        if isinstance(listeners, list):
            listeners.append(self.on_snapshot)
        self._thread = threading.Thread(target=self._run, name="cnap-mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say ``offline`` (retained), disconnect, close the outbox. Safe to call twice."""
        listeners = getattr(self.source, "listeners", None)
        if isinstance(listeners, list) and self.on_snapshot in listeners:
            listeners.remove(self.on_snapshot)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout + CONNACK_WAIT_S)
            self._thread = None

    def kill_connection(self) -> None:
        """Tests: drop the TCP connection without DISCONNECT, as a crash or a cut cable would."""
        client = self._client
        sock = client.socket() if client is not None else None
        if sock is not None:
            import socket

            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def on_snapshot(self, name: str, snapshot: dict) -> None:
        """The runner's status listener (called on controller threads): keep the newest only."""
        with self._latest_lock:
            self._latest[name] = snapshot
        self._wake.set()

    def metrics(self) -> dict[str, Any]:
        return {"connected": self.connected.is_set(), "published": self.published, "refused": self.refused,
                "answers_published": self.answers_published, "commands": self.commands, "outbox": dict(self.depth)}

    # --- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception:   # one bad turn must not end reporting
                    log.exception("mqtt reporter: unexpected error; reconnecting")
                    self._drop_connection()
                    self._stop.wait(1.0)
        finally:
            self._say_offline()
            if self.outbox is not None:
                self.outbox.close()

    def _step(self) -> None:
        client = self._client
        if client is None:
            if time.monotonic() >= self._next_attempt:
                self._connect()
            else:
                self._wake.wait(min(LOOP_S, max(0.0, self._next_attempt - time.monotonic())))
            self._wake.clear()
        else:
            code = client.loop(timeout=LOOP_S)
            if code != mqtt.MQTT_ERR_SUCCESS:
                log.warning("mqtt: connection lost (%s); reconnecting", mqtt.error_string(code))
                self._drop_connection()
            elif not self.connected.is_set() and time.monotonic() > self._connack_deadline:
                log.warning("mqtt: no CONNACK from %s; reconnecting", self.settings["MQTT_HOST"])
                self._drop_connection()
        now = self.clock()
        self._take_snapshots(now)
        if now >= self._next_refresh:
            self._next_refresh = now + self.refresh_s
            self._refresh(now)
        if self.kiosk is not None and now >= self._next_kiosk_poll:
            self._next_kiosk_poll = now + self.kiosk_poll_s
            self._poll_kiosk(now)
        if self._discovery_due:
            self._discovery_due = False
            self._put_discovery(now, force=True)
        if self.connected.is_set():
            self._send()
            self._tell_kiosk()
        self.depth = self.outbox.depth()

    # --- connection ----------------------------------------------------------------------------
    def _connect(self) -> None:
        protocol = mqtt.MQTTv311 if self.settings.get("MQTT_PROTOCOL") == "3.1.1" else mqtt.MQTTv5
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"cnap-agent-{self.site}", protocol=protocol)
        client.username_pw_set(self.site, self.password)
        client.will_set(self.online_topic, topics.OFFLINE.encode(), qos=1, retain=True)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        try:
            ca = self.settings.get("MQTT_TLS_CA_FILE")
            if ca:   # a missing or bad file is an OSError (ssl.SSLError is one too): retried like the rest
                client.tls_set(ca_certs=ca, certfile=self.settings.get("MQTT_TLS_CERT_FILE") or None,
                               keyfile=self.settings.get("MQTT_TLS_KEY_FILE") or None)
            client.connect(self.settings["MQTT_HOST"], int(self.settings["MQTT_PORT"]),
                           keepalive=int(self.settings["MQTT_KEEPALIVE_S"]))
        except (OSError, ValueError) as exc:
            log.info("mqtt: cannot connect to %s:%s (%s); next try in %.1f s", self.settings["MQTT_HOST"],
                     self.settings["MQTT_PORT"], exc, self._backoff)
            self._schedule_retry()
            return
        self._client = client
        self._connack_deadline = time.monotonic() + CONNACK_WAIT_S

    def _schedule_retry(self) -> None:
        # Jitter so that many sites cut off together do not all come back in the same second.
        self._next_attempt = time.monotonic() + self._backoff * random.uniform(0.8, 1.2)
        self._backoff = min(self.reconnect_max_s, self._backoff * 2)

    def _drop_connection(self) -> None:
        client, self._client = self._client, None
        self.connected.clear()
        self._inflight.clear()
        self._inflight_keys.clear()
        if client is not None:
            try:
                client.socket() and client.socket().close()
            except OSError:
                pass
        self._schedule_retry()

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt: the broker refused the log-in as %s: %s", self.site, reason_code)
            self._drop_connection()
            return
        log.info("mqtt: connected to %s:%s as %s", self.settings["MQTT_HOST"], self.settings["MQTT_PORT"],
                 self.site)
        self.connected.set()
        self._backoff = RECONNECT_MIN_S
        self._refused_keys.clear()
        self._publish(self.online_topic, topics.ONLINE.encode(), 1, True, ("other",))
        client.subscribe(topics.command_filter(self.site), qos=1)
        if self.discovery_on:
            client.subscribe(discovery.status_topic(self.discovery_prefix), qos=1)
        # The broker may have restarted without its retained messages: send the state again.
        self.outbox.mark_all_dirty()

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        for code in reason_codes:
            if code.is_failure:   # the ACL does not give this site its command topic: say so loudly
                log.error("mqtt: the broker refused a subscription of %s: %s", self.site, code)

    def _say_offline(self) -> None:
        client = self._client
        if client is None or not self.connected.is_set():
            return
        try:
            info = client.publish(self.online_topic, topics.OFFLINE.encode(), qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline:
                if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                    break
            client.disconnect()
            client.loop(timeout=0.1)
        except Exception:
            log.exception("mqtt: clean disconnect failed")
        self._client = None
        self.connected.clear()

    # --- publishing ------------------------------------------------------------------------------
    def _publish(self, topic_name: str, payload: bytes, qos: int, retain: bool, key: tuple) -> bool:
        info = self._client.publish(topic_name, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        if qos > 0:
            self._inflight[info.mid] = key
            if key[0] != "other":
                self._inflight_keys.add(key[:2])
        return True

    def _on_publish(self, _client, _userdata, mid, reason_code, _properties) -> None:
        key = self._inflight.pop(mid, None)
        if key is None:
            return
        self._inflight_keys.discard(key[:2])
        if reason_code.is_failure:
            self.refused += 1
            self._refused_keys.add(key[:2])
            log.warning("mqtt: the broker refused a %s message (%s)", key[0], reason_code)
            return
        self.published += 1
        if key[0] == "state":
            self.outbox.state_sent(key[1], key[2])
        elif key[0] == "answer":
            self.answers_published += 1
            self.outbox.answer_acked(key[1])

    def _send(self) -> None:
        room = MAX_INFLIGHT - len(self._inflight)
        if room <= 0:
            return
        for row in self.outbox.dirty_states(SEND_BATCH):
            if room <= 0:
                return
            key = ("state", row.topic)
            if key in self._inflight_keys or key in self._refused_keys:
                continue
            if self._publish(row.topic, row.payload, row.qos, row.retain, ("state", row.topic, row.version)):
                room -= 1
        if room <= 0:
            return
        busy = {key[1] for key in self._inflight_keys | self._refused_keys if key[0] == "answer"}
        for answer in self.outbox.unsent_answers(room, exclude=busy):
            self._publish(answer.topic, answer.payload, 1, False, ("answer", answer.uuid))

    def _put(self, message: topics.Outgoing, now: float, force: bool) -> None:
        content = mqtt_map.content_key(message)
        if not force and self._sent_content.get(message.topic) == content:
            return
        if len(self._sent_content) >= MAX_TOPICS_REMEMBERED:   # bounded even if names keep changing
            self._sent_content.clear()
        self._sent_content[message.topic] = content
        if force:
            self._refused_keys.discard(("state", message.topic))
        self.outbox.put_state(message.topic, message.payload, message.qos, message.retain, content, now, force)

    # --- what is reported --------------------------------------------------------------------
    def _take_snapshots(self, now: float) -> None:
        with self._latest_lock:
            latest, self._latest = self._latest, {}
        for name, snapshot in latest.items():
            self._put_controller(name, snapshot, now, force=False)

    def _put_controller(self, name: str, snapshot: Any, now: float, force: bool) -> None:
        for message in mqtt_map.controller_outgoing(self.site, name, snapshot, now):
            self._put(message, now, force)
        if name == "uplinks" and self.discovery_on:
            names = tuple(sorted(mqtt_map.uplinks(snapshot, now)))
            if names != self._uplinks:
                self._uplinks = names
                self._put_discovery(now, force=False)

    def _refresh(self, now: float) -> None:
        try:
            status = self.source.status()
        except Exception:
            log.exception("mqtt: the status source failed")
            return
        controllers = status.get("controllers") if isinstance(status, dict) else None
        for name, snapshot in (controllers or {}).items():
            self._put_controller(name, snapshot, now, force=True)
        self._force_devices = True   # the next kiosk poll refreshes the devices too
        if self.discovery_on:
            self._put_discovery(now, force=False)

    def _put_discovery(self, now: float, force: bool) -> None:
        for message in discovery.configs(self.site, self._uplinks, prefix=self.discovery_prefix):
            self._put(message, now, force)

    def _poll_internet(self, now: float) -> None:
        """The kiosk's visitor browsing counters (topic ``internet``), when the kiosk has them."""
        ask = getattr(self.kiosk, "internet", None)   # a KioskSource without browsing: nothing to say
        if ask is None:
            return
        try:
            state = mqtt_map.internet(ask(), now)
        except Exception as exc:   # browsing off or not running on this kiosk: no topic
            log.debug("mqtt: no internet counters from the kiosk: %s", exc)
            return
        if state is not None:
            self._put(topics.outgoing(self.site, state), now, force=self._force_devices)

    def _poll_kiosk(self, now: float) -> None:
        try:
            devices = self.kiosk.devices()
        except Exception as exc:
            if self._kiosk_answers:   # said once per outage, not every poll
                log.warning("mqtt: the kiosk does not answer (%s); its devices and answers wait", exc)
            self._kiosk_answers = False
            return
        else:
            if not self._kiosk_answers:
                log.info("mqtt: the kiosk answers again")
            self._kiosk_answers = True
            for name in topics.DEVICES:
                state = mqtt_map.device(name, devices.get(name) if isinstance(devices, dict) else None, now)
                if state is not None:
                    self._put(topics.outgoing(self.site, state), now, force=self._force_devices)
            self._poll_internet(now)
            self._force_devices = False
        room = min(self.outbox.room_for_answers(), ANSWERS_PER_PULL)
        held = self.outbox.answers_held()
        if room <= 0 or held >= KIOSK_MAX_LIMIT:
            return   # the outbox is full: the kiosk keeps them until there is room again
        try:
            # The kiosk gives its oldest unforwarded answers: those held here come first again.
            answers = self.kiosk.pending_answers(min(KIOSK_MAX_LIMIT, held + room))
        except Exception as exc:
            log.info("mqtt: the kiosk's survey answers are unavailable: %s", exc)
            return
        rows = []
        for fields in answers[:KIOSK_MAX_LIMIT] if isinstance(answers, list) else []:
            try:
                answer = topics.SurveyAnswer.model_validate_json(json.dumps(fields), strict=True)
                message = topics.outgoing(self.site, answer)
            except (ValidationError, ValueError, TypeError):
                log.error("mqtt: the kiosk gave a survey answer that does not fit SurveyAnswer; left there")
                continue
            rows.append((answer.uuid, message.topic, message.payload))
        if rows:
            self.outbox.add_answers(rows, now)

    def _tell_kiosk(self) -> None:
        if self.kiosk is None or time.monotonic() < self._next_forward:
            return
        uuids = self.outbox.acked_answers(ANSWERS_PER_PULL)
        if not uuids:
            return
        try:
            self.kiosk.mark_forwarded(uuids)
        except Exception as exc:
            log.info("mqtt: cannot tell the kiosk about forwarded answers (%s); retrying", exc)
            self._next_forward = time.monotonic() + FORWARD_RETRY_S
            return
        self.outbox.forget_answers(uuids)

    # --- commands and Home Assistant --------------------------------------------------------------
    def _on_message(self, _client, _userdata, message) -> None:
        if self.discovery_on and message.topic == discovery.status_topic(self.discovery_prefix):
            if message.payload == b"online":   # Home Assistant restarted: it wants the configs again
                self._discovery_due = True
            return
        self.handle_command(message.topic, message.payload)

    def handle_command(self, topic_name: Any, payload: Any) -> None:
        """One message from the command subscription, whatever its bytes: run it when it is a
        valid, current Command, answer it on cmd_result when it has a usable id. Never raises."""
        try:
            self._command(topic_name, payload)
        except Exception:
            log.exception("mqtt: a command could not be handled")

    def _command(self, topic_name: Any, payload: Any) -> None:
        now = self.clock()
        ref = topics.parse_topic(topic_name)
        if not isinstance(ref, topics.TopicRef) or ref.kind != "cmd" or ref.site != self.site:
            log.warning("mqtt: message on an unexpected topic ignored")
            return
        parsed = topics.parse(topic_name, payload, now=now)
        if isinstance(parsed, topics.Rejected):
            command_id = _command_id(payload)
            log.warning("mqtt: command for %s refused: %s: %s", ref.name, parsed.reason, parsed.detail)
            if command_id is not None:
                self._answer(ref.name, command_id, False, f"refused: {parsed.reason}: {parsed.detail}", now)
            return
        command = parsed.payload
        result = self._recent.get(command.id)
        if result is None:   # a QoS 1 duplicate gets the first answer again and is not run twice
            result = self._run_command(ref.name, command)
            self._recent[command.id] = result
            while len(self._recent) > RECENT_COMMANDS:
                self._recent.popitem(last=False)
        log.info("mqtt: command %s %s from %s → %s", ref.name, command.action, command.by,
                 "ok" if result["ok"] else "refused")
        self._answer(ref.name, command.id, result["ok"], result["message"], now)

    def _run_command(self, controller: str, command: topics.Command) -> dict:
        if controller == KIOSK:
            if command.action != "out_of_service":
                return {"ok": False, "message": f"unknown kiosk action {command.action!r}; known: out_of_service"}
            on, reason = command.args.get("on"), command.args.get("reason", "")
            if not isinstance(on, bool) or not isinstance(reason, str):
                return {"ok": False, "message": "out_of_service needs args on (true/false) and reason (text)"}
            if self.kiosk is None:
                return {"ok": False, "message": "this agent has no kiosk to switch"}
            try:
                answer = self.kiosk.set_out_of_service(on, reason, command.by)
            except Exception as exc:
                return {"ok": False, "message": f"the kiosk does not answer: {type(exc).__name__}"}
            return _result(answer)
        names = getattr(self.source, "names", None)
        run = getattr(self.source, "command", None)
        if names is None or run is None or controller not in names():
            return {"ok": False, "message": f"no controller {controller!r} here"}
        try:
            return _result(run(controller, command.action, dict(command.args)))
        except Exception as exc:
            log.exception("mqtt: command %s failed", controller)
            return {"ok": False, "message": f"the command failed: {type(exc).__name__}"}

    def _answer(self, controller: str, command_id: str, ok: bool, message: str, now: float) -> None:
        try:
            result = topics.CommandResult(ts=_utc(now), id=command_id, ok=ok, message=_plain(message))
        except ValidationError:
            result = topics.CommandResult(ts=_utc(now), id=command_id, ok=ok)
        out = topics.outgoing(self.site, result, controller)
        self.commands += 1
        if self._client is not None:
            self._publish(out.topic, out.payload, out.qos, out.retain, ("other",))


def _result(answer: Any) -> dict:
    if isinstance(answer, Mapping) and isinstance(answer.get("ok"), bool):
        return {"ok": answer["ok"], "message": _plain(answer.get("message", ""))}
    return {"ok": False, "message": "no clear answer"}


def _command_id(payload: Any) -> str | None:
    """The id of a command that was refused, when it has a usable one (to answer it)."""
    try:
        data = json.loads(bytes(payload)[:topics.MAX_COMMAND_BYTES])
    except (ValueError, TypeError, RecursionError):
        return None
    command_id = data.get("id") if isinstance(data, dict) else None
    return command_id if isinstance(command_id, str) and UUID_RE.fullmatch(command_id) else None


def from_settings(settings: Mapping[str, Any], source: StatusSource, token: str | None = None,
                  clock: Callable[[], float] = time.time) -> MqttReporter | None:
    """The reporter ``cnap agent`` runs, or None without MQTT_HOST. The kiosk is reached with
    monitoring/kiosk_client.py (the agent's token) on HOST:PORT."""
    if not settings.get("MQTT_HOST"):
        return None
    site = settings.get("MQTT_SITE", "")
    if not topics.valid_site_id(site):
        raise ValueError(f"setting MQTT_SITE: {site!r} is not a site id (a-z 0-9 - _, up to 32)")
    from monitoring.kiosk_client import KioskClient

    host = settings.get("HOST", "127.0.0.1")
    base = f"http://{'[' + host + ']' if ':' in host else host}:{settings.get('PORT', 8080)}"
    kiosk = KioskClient(base, token or "", float(settings.get("AGENT_TIMEOUT_S", 3.0)))
    return MqttReporter(settings, site, source, kiosk, clock)
