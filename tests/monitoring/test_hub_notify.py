"""The notifier (monitoring/hub/notify.py) against a real HTTP server and a real SMTP server on
127.0.0.1: what arrives, the signature, retries with back-off, giving up, and a dead webhook that
holds up nothing else. Time is a fake clock; no test waits on real time to decide anything."""
from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from monitoring.hub import notify, schema
from monitoring.hub.db import open_store

T0 = 1_800_000_000.0


# --- local servers (also used by test_hub_evaluator.py) ----------------------------------------------
class WebhookServer:
    """Records every POST; ``status`` is what it answers, ``hang`` makes it answer too late."""

    def __init__(self) -> None:
        self.received: list[tuple[dict, bytes]] = []
        self.status = 200
        self.hang = threading.Event()     # set: the handler waits (until released) before answering
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.hang.is_set():
                    outer.release.wait(30)
                    return
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/cnap"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class SmtpServer:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
                outer.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                       email.message_from_bytes(envelope.original_content or envelope.content,
                                                                policy=email.policy.default)))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webhook():
    server = WebhookServer()
    yield server
    server.stop()


@pytest.fixture
def smtp():
    server = SmtpServer()
    yield server
    server.stop()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- helpers ------------------------------------------------------------------------------------
PAYLOAD = {
    "event": "firing", "key": "printer_paper_out|kyiv-1|device/printer", "serial": 2, "at": T0,
    "rule": "printer_paper_out", "site": "kyiv-1", "device": "device/printer", "severity": "warning",
    "summary_uk": "У принтері закінчився папір", "summary_en": "Printer out of paper",
    "alert": {"status": "firing", "fired_at": T0, "active_since": T0, "resolved_at": None,
              "acks": [{"who": "staff.olena", "at": T0 + 60, "comment": "Несу папір"}]},
}


@pytest.fixture
def store(tmp_path):
    db = schema.ensure(open_store(tmp_path / "hub.db"))
    yield db
    db.close()


def queue(store, channel: str, payload: dict = PAYLOAD, at: float = T0) -> int:
    with store.transaction() as tx:
        tx.execute("INSERT INTO notifications (key, serial, channel, event, payload, created_at, next_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", (payload["key"], payload["serial"] or 0, channel, payload["event"],
                                                   json.dumps(payload), at, at))
        return tx.execute("SELECT MAX(id) FROM notifications").fetchone()[0]


def row(store, row_id: int) -> dict:
    names = ("sent_at", "gave_up_at", "attempts", "next_at", "last_error")
    return dict(zip(names, store.query_one(f"SELECT {', '.join(names)} FROM notifications WHERE id = ?", (row_id,))))


def settings(**kw) -> notify.NotifySettings:
    return notify.NotifySettings(**{"max_attempts": 3, "retry_s": 30.0, "retry_max_s": 600.0, **kw})


# --- tests --------------------------------------------------------------------------------------
def test_webhook_gets_the_json_signed(store, webhook):
    clock = Clock()
    notifier = notify.Notifier(store, settings(webhook=notify.WebhookChannel(webhook.url, secret="s3cret")), clock)
    row_id = queue(store, "webhook")
    assert notifier.send_due() == 1
    (headers, body), = webhook.received
    assert json.loads(body) == {"id": row_id, **PAYLOAD}
    assert headers["content-type"].startswith("application/json")
    assert headers["x-cnap-delivery"] == str(row_id)
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-cnap-signature"], expected)
    assert row(store, row_id)["sent_at"] == T0 and row(store, row_id)["attempts"] == 1
    assert notifier.send_due() == 0 and len(webhook.received) == 1   # sent once


def test_email_in_ukrainian_and_english(store, smtp):
    channel = notify.EmailChannel(host="127.0.0.1", port=smtp.port, sender="hub@cnap.example",
                                  recipients=("duty@cnap.example", "it@cnap.example"))
    notifier = notify.Notifier(store, settings(email=channel), Clock())
    row_id = queue(store, "email")
    assert notifier.send_due() == 1
    (mail_from, rcpts, message), = smtp.messages
    assert mail_from == "hub@cnap.example" and rcpts == ["duty@cnap.example", "it@cnap.example"]
    assert "Printer out of paper" in message["Subject"] and "kyiv-1" in message["Subject"]
    body = message.get_content()
    for text in ("У принтері закінчився папір", "Об'єкт: kyiv-1", "Пристрій: device/printer",
                 "Важливість: попередження", "Статус: АКТИВНА", "Printer out of paper", "Site: kyiv-1",
                 "Rule: printer_paper_out", "Severity: warning", "Status: FIRING",
                 "2027-01-15 08:00:00 UTC", "staff.olena", "Несу папір"):
        assert text in body, text
    assert body.index("Об'єкт") < body.index("Site:")    # Ukrainian first
    assert row(store, row_id)["sent_at"] is not None


@pytest.mark.parametrize("failure", ["http_500", "refused", "timeout"])
def test_a_failing_webhook_is_retried_with_back_off_then_given_up(store, webhook, failure):
    clock = Clock()
    url = webhook.url
    if failure == "http_500":
        webhook.status = 500
    elif failure == "refused":
        url = f"http://127.0.0.1:{free_port()}/hook"   # nothing listens there
    else:
        webhook.hang.set()
    notifier = notify.Notifier(store, settings(webhook=notify.WebhookChannel(url, timeout_s=0.5)), clock)
    row_id = queue(store, "webhook")
    assert notifier.send_due() == 0
    first = row(store, row_id)
    assert first["attempts"] == 1 and first["sent_at"] is None and first["gave_up_at"] is None
    assert first["next_at"] == T0 + 30 and first["last_error"]
    assert notifier.send_due() == 0 and row(store, row_id)["attempts"] == 1   # not due yet
    clock.now = T0 + 30
    notifier.send_due()
    assert row(store, row_id)["attempts"] == 2 and row(store, row_id)["next_at"] == T0 + 30 + 60   # doubled
    clock.now = T0 + 90
    notifier.send_due()
    gave_up = row(store, row_id)
    assert gave_up["attempts"] == 3 and gave_up["gave_up_at"] == T0 + 90 and gave_up["sent_at"] is None
    clock.now = T0 + 10_000
    assert notifier.send_due() == 0 and row(store, row_id)["attempts"] == 3
    assert notifier.counters["gave_up"] == 1


def test_a_dead_webhook_holds_up_neither_email_nor_later_rows(store, smtp):
    dead = f"http://127.0.0.1:{free_port()}/hook"
    channel = notify.EmailChannel(host="127.0.0.1", port=smtp.port, sender="hub@cnap.example",
                                  recipients=("duty@cnap.example",))
    clock = Clock()
    notifier = notify.Notifier(store, settings(webhook=notify.WebhookChannel(dead), email=channel), clock)
    hooks = [queue(store, "webhook") for _ in range(5)]
    mail = queue(store, "email")
    assert notifier.send_due() == 1
    assert len(smtp.messages) == 1 and row(store, mail)["sent_at"] == T0
    # one failed try, the channel then paused: the other webhook rows were not even tried
    assert sorted(row(store, h)["attempts"] for h in hooks) == [0, 0, 0, 0, 1]


def test_rows_too_old_or_for_a_channel_that_is_off_are_given_up(store, webhook):
    clock = Clock(T0 + 90_000)
    notifier = notify.Notifier(store, settings(webhook=notify.WebhookChannel(webhook.url),
                                               give_up_after_s=86_400), clock)
    old = queue(store, "webhook", at=T0)
    mail = queue(store, "email", at=T0 + 89_000)
    assert notifier.send_due() == 0 and webhook.received == []
    assert row(store, old)["gave_up_at"] == T0 + 90_000 and row(store, old)["last_error"] == "too old"
    assert row(store, mail)["gave_up_at"] is not None and "not configured" in row(store, mail)["last_error"]


def test_a_bad_payload_is_given_up_not_crashed_on(store, webhook):
    notifier = notify.Notifier(store, settings(webhook=notify.WebhookChannel(webhook.url)), Clock())
    with store.transaction() as tx:
        tx.execute("INSERT INTO notifications (key, serial, channel, event, payload, created_at, next_at) "
                   "VALUES ('k', 1, 'webhook', 'firing', 'not json', ?, ?)", (T0, T0))
    assert notifier.send_due() == 0 and webhook.received == []
    assert store.query_one("SELECT gave_up_at FROM notifications")[0] == T0


def test_an_odd_payload_still_makes_an_email(store, smtp):
    channel = notify.EmailChannel(host="127.0.0.1", port=smtp.port, sender="hub@cnap.example",
                                  recipients=("duty@cnap.example",))
    notifier = notify.Notifier(store, settings(email=channel), Clock())
    queue(store, "email", {"event": "nonsense", "key": "k\r\nBcc: x@y", "serial": None, "site": ["x"],
                           "alert": {"acks": "no", "fired_at": float("1e300")}})
    assert notifier.send_due() == 1
    (_, rcpts, message), = smtp.messages
    assert rcpts == ["duty@cnap.example"] and message["Bcc"] is None


def test_settings():
    s = notify.settings_from({"HUB_NOTIFY_WEBHOOK_URL": "https://ops.example/hook", "HUB_NOTIFY_SMTP_HOST": "mx",
                              "HUB_NOTIFY_SMTP_FROM": "hub@cnap.example",
                              "HUB_NOTIFY_SMTP_TO": "a@cnap.example, b@cnap.example",
                              "HUB_NOTIFY_SMTP_STARTTLS": True, "HUB_NOTIFY_MAX_ATTEMPTS": 5})
    assert s.channels == ("webhook", "email")
    assert s.email.recipients == ("a@cnap.example", "b@cnap.example") and s.email.starttls
    assert s.max_attempts == 5
    assert notify.settings_from({}).channels == ()
    from_environment = notify.settings_from({"HUB_NOTIFY_SMTP_HOST": "mx", "HUB_NOTIFY_SMTP_PORT": "587",
                                             "HUB_NOTIFY_SMTP_FROM": "hub@cnap.example",
                                             "HUB_NOTIFY_SMTP_TO": "a@cnap.example",
                                             "HUB_NOTIFY_SMTP_STARTTLS": "false", "HUB_NOTIFY_RETRY_S": "5"})
    assert (from_environment.email.port, from_environment.email.starttls, from_environment.retry_s) == (587, False, 5.0)
    for bad in ({"HUB_NOTIFY_WEBHOOK_URL": "file:///etc/passwd"},
                {"HUB_NOTIFY_SMTP_HOST": "mx", "HUB_NOTIFY_SMTP_FROM": "hub@x", "HUB_NOTIFY_SMTP_TO": "a@x\r\nBcc: b@y"},
                {"HUB_NOTIFY_MAX_ATTEMPTS": 0}, {"HUB_NOTIFY_RETRY_S": float("nan")},
                {"HUB_NOTIFY_RETRY_S": "soon"}, {"HUB_NOTIFY_MAX_ATTEMPTS": "2.5"}, {"HUB_NOTIFY_BATCH": 0},
                {"HUB_NOTIFY_SMTP_HOST": "mx", "HUB_NOTIFY_SMTP_FROM": "hub@x", "HUB_NOTIFY_SMTP_TO": "a@x",
                 "HUB_NOTIFY_SMTP_STARTTLS": "maybe"},
                {"HUB_NOTIFY_SMTP_HOST": "mx", "HUB_NOTIFY_SMTP_FROM": "hub@x", "HUB_NOTIFY_SMTP_TO": "a@x",
                 "HUB_NOTIFY_SMTP_PORT": 70000}):
        with pytest.raises(ValueError):
            notify.settings_from(bad)
