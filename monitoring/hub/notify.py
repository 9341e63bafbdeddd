"""Sends the alert notifications the evaluator queues in ``notifications``: webhook and e-mail.

Each row is one message on one channel. ``Notifier.send_due()`` takes the due rows, claims each
(so two notifiers, or one restarted mid-send, never send a row twice within its lease), sends it
and stores the outcome: ``sent_at``; or ``attempts``, ``last_error`` and the next try after an
exponential back-off; or ``gave_up_at`` after ``max_attempts`` tries or ``give_up_after_s`` of age.
A channel that fails is paused until its back-off ends, so a dead webhook costs one timeout per
back-off and never holds up e-mail or the other rows.

* webhook: ``POST`` of the row's JSON with ``Content-Type: application/json``,
  ``X-Cnap-Delivery: <row id>`` (receivers drop duplicates by it: a timeout after the receiver
  took the message sends it again) and, with a secret, ``X-Cnap-Signature: sha256=<hex>``, the
  HMAC-SHA256 of the body. Any 2xx answer is delivery.
* e-mail: smtplib, optional STARTTLS and login; a plain-text message in Ukrainian, then English.

Only the standard library talks to the network here (http.client, smtplib).
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import math
import smtplib
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from monitoring.hub import schema
from monitoring.hub.db import HubStore

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 300
MAX_RESPONSE_BYTES = 4096


class DeliveryError(Exception):
    """One failed delivery, with a short printable reason for ``last_error``."""


# --- settings -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WebhookChannel:
    url: str
    secret: str = ""
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("HUB_NOTIFY_WEBHOOK_URL must be an http:// or https:// URL")
        _positive("HUB_NOTIFY_WEBHOOK_TIMEOUT_S", self.timeout_s)


@dataclass(frozen=True)
class EmailChannel:
    host: str
    sender: str
    recipients: tuple[str, ...]
    port: int = 25
    starttls: bool = False
    username: str = ""
    password: str = ""
    timeout_s: float = 20.0

    def __post_init__(self) -> None:
        addresses = (self.sender, *self.recipients)
        if not self.host or not self.recipients or any(
                not a or "@" not in a or any(ch in a for ch in "\r\n,;<> ") for a in addresses):
            raise ValueError("HUB_NOTIFY_SMTP_HOST, HUB_NOTIFY_SMTP_FROM and HUB_NOTIFY_SMTP_TO "
                             "(plain addresses) are required for e-mail")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError("HUB_NOTIFY_SMTP_PORT must be 1..65535")
        _positive("HUB_NOTIFY_SMTP_TIMEOUT_S", self.timeout_s)


@dataclass(frozen=True)
class NotifySettings:
    webhook: WebhookChannel | None = None
    email: EmailChannel | None = None
    max_attempts: int = 10
    give_up_after_s: float = 86400.0
    retry_s: float = 30.0            # the first back-off; doubled after each failure
    retry_max_s: float = 3600.0
    batch: int = 50                  # rows per round

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError("HUB_NOTIFY_MAX_ATTEMPTS must be an integer ≥ 1")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or not 1 <= self.batch <= 1000:
            raise ValueError("HUB_NOTIFY_BATCH must be an integer 1..1000")
        for name, value in (("HUB_NOTIFY_GIVE_UP_AFTER_S", self.give_up_after_s),
                            ("HUB_NOTIFY_RETRY_S", self.retry_s), ("HUB_NOTIFY_RETRY_MAX_S", self.retry_max_s)):
            _positive(name, value)

    @property
    def channels(self) -> tuple[str, ...]:
        """The configured channels (what the evaluator queues rows for)."""
        return tuple(name for name, ch in (("webhook", self.webhook), ("email", self.email)) if ch is not None)


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a number > 0")


def settings_from(values: Mapping[str, Any]) -> NotifySettings:
    """NotifySettings from resolved settings (HUB_NOTIFY_*); a channel without its URL / host is
    off. Values may be typed or strings (from the environment). ValueError names a bad setting."""
    def get(name: str, default: Any = None) -> Any:
        value = values.get("HUB_NOTIFY_" + name, default)
        return default if value is None else value

    def number(name: str, default: float, integer: bool = False) -> Any:
        value = get(name, default)
        try:
            if isinstance(value, bool):
                raise ValueError
            value = float(value.strip()) if isinstance(value, str) else value
            if integer:
                if not float(value).is_integer():
                    raise ValueError
                return int(value)
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"HUB_NOTIFY_{name} must be a{'n integer' if integer else ' number'}") from None

    def flag(name: str) -> bool:
        value = get(name, False)
        if isinstance(value, str):
            if value.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                raise ValueError(f"HUB_NOTIFY_{name} must be true or false")
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)

    webhook = None
    if get("WEBHOOK_URL", ""):
        webhook = WebhookChannel(url=str(get("WEBHOOK_URL")), secret=str(get("WEBHOOK_SECRET", "")),
                                 timeout_s=number("WEBHOOK_TIMEOUT_S", 10.0))
    email = None
    if get("SMTP_HOST", ""):
        recipients = get("SMTP_TO", ())
        if isinstance(recipients, str):
            recipients = [r.strip() for r in recipients.split(",") if r.strip()]
        email = EmailChannel(host=str(get("SMTP_HOST")), port=number("SMTP_PORT", 25, integer=True),
                             sender=str(get("SMTP_FROM", "")), recipients=tuple(str(r) for r in recipients),
                             starttls=flag("SMTP_STARTTLS"), username=str(get("SMTP_USER", "")),
                             password=str(get("SMTP_PASSWORD", "")), timeout_s=number("SMTP_TIMEOUT_S", 20.0))
    return NotifySettings(webhook=webhook, email=email, max_attempts=number("MAX_ATTEMPTS", 10, integer=True),
                          give_up_after_s=number("GIVE_UP_AFTER_S", 86400.0), retry_s=number("RETRY_S", 30.0),
                          retry_max_s=number("RETRY_MAX_S", 3600.0), batch=number("BATCH", 50, integer=True))


# --- the messages ---------------------------------------------------------------------------------
EVENT_WORDS = {   # event → (Ukrainian, English)
    "firing": ("АКТИВНА", "FIRING"),
    "repeat": ("ДОСІ АКТИВНА (нагадування)", "STILL FIRING (reminder)"),
    "resolved": ("ВИРІШЕНА", "RESOLVED"),
    "flapping": ("НЕСТАБІЛЬНА (часто змінюється)", "FLAPPING"),
}
SEVERITY_UK = {"critical": "критична", "warning": "попередження", "info": "інформація"}


def _when(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    try:
        return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "—"


def _text(value: Any, limit: int = 500) -> str:
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return "".join(ch if ch.isprintable() else " " for ch in text[:limit])


def email_message(payload: Mapping[str, Any], sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """The plain-text e-mail for one notification: Ukrainian first, then English."""
    alert = payload.get("alert") if isinstance(payload.get("alert"), Mapping) else {}
    event = payload.get("event") if payload.get("event") in EVENT_WORDS else "firing"
    word_uk, word_en = EVENT_WORDS[event]
    site, device = _text(payload.get("site"), 64), _text(payload.get("device"), 64)
    severity = _text(payload.get("severity"), 16)
    rule = _text(payload.get("rule"), 64)
    summary_uk, summary_en = _text(payload.get("summary_uk"), 200), _text(payload.get("summary_en"), 200)
    acks = [a for a in alert.get("acks", []) if isinstance(a, Mapping)] if isinstance(alert.get("acks"), list) else []
    since = _when(alert.get("fired_at") or alert.get("active_since"))
    resolved = _when(alert.get("resolved_at")) if alert.get("resolved_at") is not None else None

    def ack_lines(lang: str) -> list[str]:
        if not acks:
            return ["Підтвердження: немає" if lang == "uk" else "Acknowledged: no"]
        head = "Підтвердження:" if lang == "uk" else "Acknowledged:"
        return [head] + [f"  {_text(a.get('who'), 64)}, {_when(a.get('at'))}: {_text(a.get('comment'))}"
                         for a in acks[-5:]]

    lines = [
        f"{word_uk}: {summary_uk}",
        f"Об'єкт: {site}",
        f"Правило: {rule}",
        f"Пристрій: {device or '—'}",
        f"Важливість: {SEVERITY_UK.get(severity, severity)}",
        f"Статус: {word_uk}",
        f"З: {since}" + (f", вирішена: {resolved}" if resolved else ""),
        *ack_lines("uk"),
        "",
        f"{word_en}: {summary_en}",
        f"Site: {site}",
        f"Rule: {rule}",
        f"Device: {device or '—'}",
        f"Severity: {severity}",
        f"Status: {word_en}",
        f"Since: {since}" + (f", resolved: {resolved}" if resolved else ""),
        *ack_lines("en"),
        "",
        f"Key: {_text(payload.get('key'), 200)} #{_text(payload.get('serial'), 20)}",
    ]
    message = EmailMessage()
    message["Subject"] = f"[CNAP {word_en}] {summary_uk} / {summary_en}: {site}{' ' + device if device else ''}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[1])
    message.set_content("\n".join(lines) + "\n")
    return message


def signature(secret: str, body: bytes) -> str:
    """The X-Cnap-Signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- delivery -----------------------------------------------------------------------------------------
def post_webhook(channel: WebhookChannel, body: bytes, delivery_id: int) -> None:
    parts = urlsplit(channel.url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "cnap-hub",
               "X-Cnap-Delivery": str(delivery_id)}
    if channel.secret:
        headers["X-Cnap-Signature"] = signature(channel.secret, body)
    connection = connection_class(parts.hostname, parts.port, timeout=channel.timeout_s)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)
        if not 200 <= response.status < 300:
            raise DeliveryError(f"HTTP {response.status}")
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()


def send_email(channel: EmailChannel, message: EmailMessage) -> None:
    try:
        with smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_s) as smtp:
            smtp.ehlo()
            if channel.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if channel.username:
                smtp.login(channel.username, channel.password)
            refused = smtp.send_message(message, from_addr=channel.sender, to_addrs=list(channel.recipients))
            if refused and len(refused) == len(channel.recipients):
                raise DeliveryError("every recipient refused")
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


@dataclass
class _Pause:
    until: float = -math.inf
    failures: int = 0


class Notifier:
    """See the module's docstring. ``send_due()`` is one round; ``run()`` loops."""

    def __init__(self, store: HubStore, settings: NotifySettings, clock: Callable[[], float] = time.time) -> None:
        self.store = schema.ensure(store)
        self.settings = settings
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self._paused: dict[str, _Pause] = {}

    @property
    def channels(self) -> tuple[str, ...]:
        return self.settings.channels

    def backoff(self, attempts: int) -> float:
        """Seconds before try ``attempts + 1`` after ``attempts`` failed ones."""
        return min(self.settings.retry_max_s, self.settings.retry_s * 2 ** min(max(attempts - 1, 0), 30))

    def send_due(self) -> int:
        """Sends what is due now; returns how many rows were sent. Never raises for a failing
        channel or a bad row; a store that is down is counted and retried next round."""
        s = self.settings
        now = self.clock()
        try:
            rows = self.store.query(
                "SELECT id, channel, event, payload, created_at, next_at, attempts FROM notifications "
                "WHERE sent_at IS NULL AND gave_up_at IS NULL AND next_at <= ? ORDER BY next_at, id LIMIT ?",
                (now, s.batch))
        except Exception:
            self.counters["store_errors"] += 1
            log.exception("notifier: cannot read the hub store")
            return 0
        sent = 0
        for row_id, channel, event, payload, created_at, next_at, attempts in rows:
            try:
                sent += self._one(row_id, channel, payload, created_at, next_at, attempts)
            except Exception:
                self.counters["store_errors"] += 1
                log.exception("notifier: cannot store the outcome of notification %s", row_id)
        return sent

    def _one(self, row_id: int, channel: str, payload: str, created_at: float, next_at: float,
             attempts: int) -> int:
        s = self.settings
        now = self.clock()
        if now - created_at >= s.give_up_after_s:
            self._give_up(row_id, now, "too old")
            return 0
        target = {"webhook": s.webhook, "email": s.email}.get(channel)
        if target is None:
            self._give_up(row_id, now, f"channel {_text(channel, 20)} not configured")
            return 0
        pause = self._paused.setdefault(channel, _Pause())
        if now < pause.until:
            return 0   # the channel failed a moment ago: this row waits, other channels go on
        # Claim the row for the send's duration, so a second notifier does not send it too.
        lease = now + getattr(target, "timeout_s", 30.0) * 3 + 60
        with self.store.transaction() as tx:
            claimed = tx.execute("UPDATE notifications SET next_at = ? WHERE id = ? AND next_at = ? "
                                 "AND sent_at IS NULL AND gave_up_at IS NULL", (lease, row_id, next_at)).rowcount
        if claimed != 1:
            return 0
        try:
            data = json.loads(payload)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError, TypeError):
            self._give_up(row_id, now, "payload is not a JSON object")
            return 0
        try:
            if channel == "webhook":
                body = json.dumps({"id": row_id, **data}, ensure_ascii=False, sort_keys=True).encode()
                post_webhook(target, body, row_id)
            else:
                send_email(target, email_message(data, target.sender, target.recipients))
        except Exception as exc:   # DeliveryError, or a bug in building the message
            error = _text(str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}", MAX_ERROR_CHARS)
            attempts += 1
            pause.failures += 1
            pause.until = now + self.backoff(pause.failures)
            self.counters[f"{channel}_failures"] += 1
            log.warning("notifier: %s delivery %s failed (attempt %s): %s", channel, row_id, attempts, error)
            with self.store.transaction() as tx:
                if attempts >= s.max_attempts:
                    tx.execute("UPDATE notifications SET attempts = ?, last_error = ?, gave_up_at = ? WHERE id = ?",
                               (attempts, error, now, row_id))
                    self.counters["gave_up"] += 1
                else:
                    tx.execute("UPDATE notifications SET attempts = ?, last_error = ?, next_at = ? WHERE id = ?",
                               (attempts, error, now + self.backoff(attempts), row_id))
            return 0
        pause.failures, pause.until = 0, -math.inf
        with self.store.transaction() as tx:
            tx.execute("UPDATE notifications SET attempts = ?, sent_at = ?, last_error = NULL WHERE id = ?",
                       (attempts + 1, self.clock(), row_id))
        self.counters[f"{channel}_sent"] += 1
        return 1

    def _give_up(self, row_id: int, now: float, reason: str) -> None:
        with self.store.transaction() as tx:
            tx.execute("UPDATE notifications SET gave_up_at = ?, last_error = ? WHERE id = ?", (now, reason, row_id))
        self.counters["gave_up"] += 1

    def run(self, stop_event: threading.Event, interval_s: float = 1.0) -> None:
        while not stop_event.is_set():
            try:
                self.send_due()
            except Exception:
                self.counters["round_errors"] += 1
                log.exception("notifier: round failed")
            stop_event.wait(interval_s)

    def metrics(self) -> dict[str, float]:
        values: dict[str, float] = dict(self.counters)
        try:
            row = self.store.query_one(
                "SELECT COUNT(*) FROM notifications WHERE sent_at IS NULL AND gave_up_at IS NULL")
            values["queued"] = row[0] if row else 0
        except Exception:
            self.counters["store_errors"] += 1
        return values
