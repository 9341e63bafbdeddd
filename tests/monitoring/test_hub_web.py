"""The hub's web app through Flask's test client over real stores (a SQLite file, and PostgreSQL
where the SQL matters): login and roles, CSRF, acks, silences and commands as queue rows, sorting,
4,070 sites in one query, /metrics checked by promtool.

Rows are inserted with SQL, as ingest and the evaluator would write them."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from datetime import datetime, timezone

import pytest
from flask.testing import FlaskClient

from monitoring import topics
from monitoring.hub import schema
from monitoring.hub.db import open_store
from monitoring.hub.web import create_hub_app
from terminal.staff import StaffStore
from tests.helpers import csrf_token_from

NOW = 1_796_000_000.0     # 2026-11-30 00:53:20 UTC: a fixed clock, so pages are predictable
PINS = {"technician": "246810", "manager": "135790", "admin": "975310", "cashier": "111333"}


class HubClient(FlaskClient):
    """Sends the CSRF token the hub's login page hands this client with every unsafe request,
    as the hub's forms do; ``csrf=False`` sends none."""

    def open(self, *args, csrf: bool = True, **kwargs):
        method = str(kwargs.get("method", "GET")).upper()
        if csrf and method in ("POST", "PUT", "PATCH", "DELETE") and isinstance(kwargs.get("data"), dict):
            kwargs["data"] = {"csrf_token": csrf_token_from(self, "/login"), **kwargs["data"]}
        return super().open(*args, **kwargs)


def make_staff(path) -> tuple[StaffStore, dict[str, int]]:
    staff = StaffStore(str(path))
    ids = {role: staff.add(role.capitalize(), role, pin).id for role, pin in PINS.items()}
    return staff, ids


def make_app(store, staff, **settings):
    app = create_hub_app({"SECRET_KEY": "test", "TESTING": True, "CLOCK": lambda: NOW, **settings}, store, staff)
    app.test_client_class = HubClient
    return app


@pytest.fixture
def hub(tmp_path):
    store = schema.ensure(open_store(tmp_path / "hub.db"))
    staff, ids = make_staff(tmp_path / "staff.db")
    app = make_app(store, staff)
    app.staff_ids = ids
    yield app, store, staff
    staff.close()
    store.close()


def login(client, app, role: str, pin: str | None = None):
    return client.post("/login", data={"staff_id": str(app.staff_ids[role]), "pin": pin or PINS[role]})


def client_as(app, role: str) -> HubClient:
    client = app.test_client()
    response = login(client, app, role)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def add_site(store, site, status="online", last_seen=NOW - 120):
    with store.transaction() as tx:
        tx.execute("INSERT INTO sites (site, status, status_at, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)",
                   (site, status, last_seen, NOW - 86400, last_seen))


def add_alert(store, site, rule="co2_high", severity="warning", status="firing", key=None, serial=1):
    key = key or f"{rule}|{site}|"
    with store.transaction() as tx:
        tx.execute("INSERT INTO alerts (key, serial, rule, site, device, severity, status, active_since, fired_at, "
                   "summary) VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, '{}')",
                   (key, serial, rule, site, severity, status, NOW - 600, NOW - 300 if status == "firing" else None))
    return key


def requests_of(store, kind):
    return [(who, json.loads(payload), at) for who, payload, at in store.query(
        "SELECT who, payload, at FROM alert_requests WHERE kind = ? ORDER BY id", (kind,))]


# --- login, roles, sessions, CSRF ----------------------------------------------------------------
def test_pages_need_a_login_and_a_wrong_pin_is_refused_and_audited(hub):
    app, store, staff = hub
    client = app.test_client()
    for path in ("/", "/site/kyiv-1", "/alerts", "/surveys", "/dropped", "/audit", "/staff"):
        response = client.get(path)
        assert response.status_code == 302 and response.location.startswith("/login"), path
    assert login(client, app, "technician", "000000").status_code == 401
    assert client.get("/").status_code == 302
    assert any(e["action"] == "hub.login.failed" for e in staff.audit_log())
    # the kiosk's lockout counts hub logins too: the 6th try is refused unchecked
    for _ in range(4):
        login(client, app, "technician", "000000")
    assert login(client, app, "technician").status_code == 429


def test_a_cashier_is_no_hub_user(hub):
    app, _, staff = hub
    client = app.test_client()
    assert "Cashier" not in client.get("/login").get_data(as_text=True)
    assert login(client, app, "cashier").status_code == 403
    assert client.get("/").status_code == 302


def test_session_cookie_is_httponly_and_strict_and_ends_at_logout(hub):
    app, _, staff = hub
    client = app.test_client()
    response = login(client, app, "manager")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/").status_code == 200
    assert client.post("/logout", data={}).status_code == 302
    assert client.get("/").status_code == 302
    assert staff.open_sessions(app.staff_ids["manager"]) == 0
    assert staff.audit_log(1)[0]["action"] == "hub.logout"


def test_idle_sessions_end(tmp_path):
    store = schema.ensure(open_store(tmp_path / "hub.db"))
    clock = [NOW]
    staff = StaffStore(str(tmp_path / "staff.db"), clock=lambda: clock[0])
    staff_id = staff.add("Tech", "technician", "246810").id
    app = make_app(store, staff, SESSION_IDLE_S=60)
    client = app.test_client()
    client.post("/login", data={"staff_id": str(staff_id), "pin": "246810"})
    assert client.get("/").status_code == 200
    clock[0] += 61
    assert client.get("/").status_code == 302
    staff.close()
    store.close()


def test_roles(hub):
    app, store, _ = hub
    add_site(store, "kyiv-1")
    key = add_alert(store, "kyiv-1")
    manager = client_as(app, "manager")
    assert manager.get("/site/kyiv-1").status_code == 200
    assert "/site/kyiv-1/ventilation" not in manager.get("/site/kyiv-1").get_data(as_text=True)
    assert manager.post("/site/kyiv-1/ventilation", data={"level": "0", "minutes": "30"}).status_code == 403
    assert manager.post("/silences", data={"site": "kyiv-1", "hours": "1", "comment": "x"}).status_code == 403
    assert manager.post("/alerts/ack", data={"key": key, "serial": "1", "comment": "on it"}).status_code == 302
    assert manager.get("/staff").status_code == 403
    assert manager.get("/audit").status_code == 403
    technician = client_as(app, "technician")
    assert technician.get("/audit").status_code == 200
    assert technician.get("/staff").status_code == 403
    admin = client_as(app, "admin")
    assert admin.get("/staff").status_code == 200
    assert admin.post("/site/kyiv-1/ventilation", data={"level": "0", "minutes": "30"}).status_code == 302
    assert store.query_one("SELECT COUNT(*) FROM commands")[0] == 1


def test_posts_without_the_csrf_token_are_refused(hub):
    app, store, _ = hub
    add_site(store, "kyiv-1")
    key = add_alert(store, "kyiv-1")
    client = client_as(app, "technician")
    for path, data in (("/alerts/ack", {"key": key, "serial": "1", "comment": "x"}),
                       ("/silences", {"site": "kyiv-1", "hours": "1", "comment": "x"}),
                       ("/site/kyiv-1/ventilation", {"level": "0", "minutes": "5"}),
                       ("/site/kyiv-1/kiosk", {"on": "1", "reason": "x"}),
                       ("/logout", {}), ("/lang", {"lang": "en"})):
        response = client.post(path, data=data, csrf=False)
        assert response.status_code == 400, path
        response = client.post(path, data={**data, "csrf_token": "forged"}, csrf=False)
        assert response.status_code == 400, path
    assert store.query_one("SELECT COUNT(*) FROM alert_requests")[0] == 0
    assert store.query_one("SELECT COUNT(*) FROM commands")[0] == 0
    assert client.get("/").status_code == 200     # still logged in: the forged logout did nothing


def test_request_size_is_limited(hub):
    app, _, _ = hub
    client = client_as(app, "technician")
    response = client.post("/alerts/ack", data={"comment": "x" * 100_000, "key": "k", "serial": "1"})
    assert response.status_code == 413


# --- actions ------------------------------------------------------------------------------------
def test_ack_queues_a_request_with_who_and_needs_a_comment(hub):
    app, store, staff = hub
    add_site(store, "kyiv-1")
    key = add_alert(store, "kyiv-1", serial=3)
    client = client_as(app, "technician")
    assert client.post("/alerts/ack", data={"key": key, "serial": "3", "comment": "  "}).status_code == 302
    assert requests_of(store, "ack") == []
    assert "коментар" in client.get("/alerts").get_data(as_text=True)
    assert client.post("/alerts/ack", data={"key": "nope", "serial": "3", "comment": "x"}).status_code == 404
    assert client.post("/alerts/ack", data={"key": key, "serial": "٣", "comment": "x"}).status_code == 400
    response = client.post("/alerts/ack", data={"key": key, "serial": "3", "comment": "Їду на об'єкт",
                                                "next": "/site/kyiv-1"})
    assert response.status_code == 302 and response.location == "/site/kyiv-1"
    assert requests_of(store, "ack") == [("Technician", {"key": key, "serial": 3, "comment": "Їду на об'єкт"}, NOW)]
    entry = staff.audit_log()[0]
    assert entry["action"] == "hub.ack" and entry["name"] == "Technician" and entry["detail"]["serial"] == 3
    # pending alerts cannot be acked (the alert machine refuses it): the form is not offered
    pending = add_alert(store, "kyiv-1", rule="ups_on_battery", status="pending")
    assert client.post("/alerts/ack", data={"key": pending, "serial": "1", "comment": "x"}).status_code == 302
    assert len(requests_of(store, "ack")) == 1
    assert "Підтвердити можна лише активну тривогу" in client.get("/alerts").get_data(as_text=True)
    # a request the evaluator refused is shown with its reason
    with store.transaction() as tx:
        tx.execute("UPDATE alert_requests SET done_at = ?, error = 'not_firing'", (NOW,))
    assert "не виконані" in client.get("/alerts").get_data(as_text=True).lower()
    # an off-site "next" is not followed
    response = client.post("/alerts/ack", data={"key": key, "serial": "3", "comment": "x", "next": "//evil.example"})
    assert response.location == "/alerts"


def test_acks_and_flags_are_shown(hub):
    app, store, _ = hub
    add_site(store, "kyiv-1")
    key = add_alert(store, "kyiv-1", rule="ups_on_battery")
    with store.transaction() as tx:
        tx.execute("UPDATE alerts SET silenced = 1, inhibited = 1")
        tx.execute("INSERT INTO alert_acks (key, serial, at, who, comment) VALUES (?, 1, ?, 'Olena', 'на місці')",
                   (key, NOW - 60))
    page = client_as(app, "manager").get("/alerts").get_data(as_text=True)
    assert "Olena, 2026-11-30 02:52: на місці" in page     # Kyiv time (UTC+2 in winter)
    assert "приглушено" in page and "пригнічено" in page


def test_silences_are_queued_and_ended(hub):
    app, store, staff = hub
    client = client_as(app, "technician")
    data = {"site": "kyiv-1", "rule": "co2_high", "severity": "", "hours": "2", "comment": "ремонт"}
    assert client.post("/silences", data=data).status_code == 302
    who, payload, _ = requests_of(store, "silence")[0]
    assert who == "Technician"
    assert payload == {"matchers": {"site": "kyiv-1", "rule": "co2_high"}, "starts_at": NOW,
                       "ends_at": NOW + 7200, "comment": "ремонт"}
    for bad in ({**data, "comment": ""}, {**data, "hours": "0"}, {**data, "site": "", "rule": ""},
                {**data, "site": "Київ"}):
        client.post("/silences", data=bad)
    assert len(requests_of(store, "silence")) == 1
    assert client.post("/silences", data={**data, "rule": "no_such_rule"}).status_code == 400
    with store.transaction() as tx:
        tx.execute("INSERT INTO silences (id, matchers, starts_at, ends_at, creator, comment, created_at) "
                   "VALUES ('s1', ?, ?, ?, 'Technician', 'ремонт', ?)",
                   (json.dumps({"site": "kyiv-1"}), NOW, NOW + 7200, NOW))
    assert "site = kyiv-1" in client.get("/alerts").get_data(as_text=True)
    assert client.post("/silences/s1/end", data={}).status_code == 302
    assert requests_of(store, "end_silence") == [("Technician", {"id": "s1"}, NOW)]
    assert client.post("/silences/nope/end", data={}).status_code == 404
    assert [e["action"] for e in staff.audit_log()][:2] == ["hub.end_silence", "hub.silence"]


def test_commands_are_queued_and_their_results_shown(hub):
    app, store, staff = hub
    add_site(store, "kyiv-1")
    client = client_as(app, "technician")
    assert client.post("/site/kyiv-1/ventilation", data={"level": "3", "minutes": "45"}).status_code == 302
    row = store.query_one("SELECT id, site, controller, action, args, requested_by, requested_at, expires_at, "
                          "sent_at FROM commands")
    command_id, site, controller, action, args, by, requested_at, expires_at, sent_at = row
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", command_id)
    technician_id = app.staff_ids["technician"]
    assert (site, controller, action, json.loads(args), by) == ("kyiv-1", "ventilation", "override",
                                                                 {"level": 3, "minutes": 45},
                                                                 f"staff.{technician_id}")
    assert requested_at == NOW and expires_at > NOW and sent_at is None
    # what the hub's worker will publish from this row, the site's model takes
    topics.Command(ts=datetime.fromtimestamp(NOW, timezone.utc), id=command_id, action=action,
                   args=json.loads(args), by=by, ttl_s=int(expires_at - requested_at))
    page = client.get("/site/kyiv-1").get_data(as_text=True)
    assert "у черзі" in page and "Technician, 2026-11-30" in page
    for bad in ({"level": "boost", "minutes": "45"}, {"level": "101", "minutes": "45"}, {"level": "1", "minutes": "0"},
                {"level": "1", "minutes": "99999"}, {"level": "1", "minutes": "4٥"}, {"level": "٣", "minutes": "5"}):
        assert client.post("/site/kyiv-1/ventilation", data=bad).status_code in (302, 400)
    assert client.post("/site/kyiv-1/kiosk", data={"on": "1", "reason": ""}).status_code == 302
    assert client.post("/site/kyiv-1/kiosk", data={"on": "1", "reason": "a\u202eb"}).status_code == 302
    assert store.query_one("SELECT COUNT(*) FROM commands")[0] == 1
    assert client.post("/site/kyiv-1/kiosk", data={"on": "1", "reason": "ремонт купюроприймача"}).status_code == 302
    args = store.query_one("SELECT args FROM commands WHERE controller = 'kiosk' AND action = 'out_of_service'")[0]
    assert json.loads(args) == {"on": True, "reason": "ремонт купюроприймача"}
    with store.transaction() as tx:
        tx.execute("UPDATE commands SET sent_at = ?, result_ok = 0, result_message = 'ventilation disabled', "
                   "result_at = ? WHERE controller = 'ventilation'", (NOW, NOW))
    page = client.get("/site/kyiv-1").get_data(as_text=True)
    assert "відхилено" in page and "ventilation disabled" in page
    assert [e["action"] for e in staff.audit_log()].count("hub.command") == 2
    assert client.post("/site/Bad Site/kiosk", data={"on": "0"}).status_code == 404


# --- pages --------------------------------------------------------------------------------------
def site_order(html: str) -> list[str]:
    return re.findall(r'<th scope="row"><a href="/site/([^"]+)">', html)


def test_sites_sort_by_problem_name_and_last_seen_and_filter(hub):
    app, store, _ = hub
    add_site(store, "a-ok", last_seen=NOW - 10)
    add_site(store, "b-offline", status="offline", last_seen=NOW - 5000)
    add_site(store, "c-critical", last_seen=NOW - 20)
    add_alert(store, "c-critical", rule="ups_low_battery", severity="critical")
    add_site(store, "d-warning", last_seen=NOW - 30)
    add_alert(store, "d-warning")
    add_site(store, "e-pending", last_seen=NOW - 40)
    add_alert(store, "e-pending", status="pending")
    add_site(store, "f-unknown", status="unknown", last_seen=NOW - 50)
    add_alert(store, "a-ok", status="resolved")      # resolved alerts do not count
    client = client_as(app, "manager")
    page = client.get("/").get_data(as_text=True)
    assert site_order(page) == ["b-offline", "c-critical", "d-warning", "e-pending", "f-unknown", "a-ok"]
    assert site_order(client.get("/?sort=name").get_data(as_text=True)) == sorted(site_order(page))
    assert site_order(client.get("/?sort=seen").get_data(as_text=True))[:2] == ["b-offline", "f-unknown"]
    assert site_order(client.get("/?q=WARN").get_data(as_text=True)) == ["d-warning"]
    assert "Не на зв&#39;язку" in page and "1 год тому" in page
    assert client.get("/?sort=%00&q=" + "x" * 5000).status_code == 200


def test_4070_sites_render_from_one_query(hub, monkeypatch):
    app, store, _ = hub
    with store.transaction() as tx:
        tx.executemany("INSERT INTO sites (site, status, first_seen, last_seen) VALUES (?, ?, ?, ?)",
                       [(f"site-{i:04d}", ("online", "offline", "unknown")[i % 3], NOW - 9000, NOW - i)
                        for i in range(4070)])
        tx.executemany("INSERT INTO alerts (key, serial, rule, site, device, severity, status, active_since, summary) "
                       "VALUES (?, 1, 'co2_high', ?, '', 'warning', 'firing', ?, '{}')",
                       [(f"k{i}", f"site-{i:04d}", NOW) for i in range(0, 4070, 7)])
    client = client_as(app, "technician")
    calls = []
    real_query = store.query
    monkeypatch.setattr(store, "query", lambda *a, **k: calls.append(a[0]) or real_query(*a, **k))
    monkeypatch.setattr(store, "query_one", lambda *a, **k: calls.append(a[0]) or real_query(*a, **k)[:1])
    response = client.get("/")
    assert response.status_code == 200
    assert len(site_order(response.get_data(as_text=True))) == 4070
    assert len(calls) == 1


def test_site_page_shows_entities_charts_and_csat(hub):
    app, store, _ = hub
    add_site(store, "kyiv-1")
    entities = {
        "ups_power": ("power", {"v": 1, "ts": NOW, "available": True, "state": "on_battery", "alerts": [],
                                "ups": {"status": "on_battery", "charge_pct": 71.5, "runtime_s": 900},
                                "inputs": [{"name": "mains", "live": False}]}),
        "device/printer": ("device", {"v": 1, "ts": NOW, "online": True, "state": "idle", "paper": "near_end"}),
        "device/bill_validator": ("device", {"v": 1, "ts": NOW, "online": True, "state": "idle",
                                             "cassette_bills": 450, "cassette_capacity": 500}),
        "uplink/lte": ("uplink", {"v": 1, "ts": NOW, "available": True, "state": "up", "up": True,
                                  "active": False, "alerts": 5}),    # a list field that is an int
    }
    with store.transaction() as tx:
        for entity, (kind, payload) in entities.items():
            tx.execute("INSERT INTO entities VALUES ('kyiv-1', ?, ?, ?, ?, ?)",
                       (entity.replace("ups_power", "power"), kind, json.dumps(payload), NOW, NOW - 30))
        tx.executemany("INSERT INTO samples VALUES ('kyiv-1', ?, ?, ?, ?)",
                       [("air", "sensors.hall.co2_ppm", NOW - 3600 * h, 600 + 50 * h) for h in range(5)]
                       + [("power", "ups.charge_pct", NOW - 60, 71.5), ("power", "ups.load_pct", NOW, 3),
                          ("air", "sensors.hall.co2_ppm", NOW - 3 * 86400, 5000)])
        for score in (5, 4, 3, 1):
            tx.execute("INSERT INTO survey_answers VALUES (?, 'kyiv-1', ?, ?, ?)",
                       (f"u{score}", NOW - 3600, NOW, json.dumps({"score": score, "scale": 5, "counted": True})))
        tx.execute("INSERT INTO survey_answers VALUES ('u9', 'kyiv-1', ?, ?, ?)",
                   (NOW, NOW, json.dumps({"score": 5, "scale": 5, "counted": False})))
    page = client_as(app, "manager").get("/site/kyiv-1").get_data(as_text=True)
    assert "Живлення" in page and "Заряд, %" in page and "71.5" in page and "від батареї" in page
    assert "Входи живлення · mains · Є напруга" in page and "(проблема)" in page
    assert "закінчується" in page and "Заповнення касети</th><td>90 %" in page
    assert "Канал зв&#39;язку: lte" in page
    assert page.count("<svg") == 2 and 'role="img"' in page     # load_pct is no chart metric
    assert "Якість повітря: Датчики · hall · CO₂, ppm" in page and "Живлення: ДБЖ · Заряд, %" in page
    assert "від 600 до 800, останнє 600" in page      # the 3-day-old 5000 is outside the chart
    assert "відповідей 4, задоволених 50 %" in page
    assert client_as(app, "manager").get("/site/nowhere").status_code == 404


INTERNET = {"v": 1, "ts": NOW - 20, "enabled": True, "available": False, "state": "proxy_down", "session_open": False,
            "day": "2026-11-30", "sessions": 12, "ended": {"user": 7, "idle": 3}, "minutes": 95.5,
            "blocked_hook": 30, "blocked_proxy": 4,
            "top_blocked": [{"host": "facebook.com", "attempts": 5}, {"host": "other", "attempts": 2}]}
GUEST_NETWORK = {"v": 1, "ts": NOW - 10, "available": True, "state": "degraded", "alerts": ["dhcp_down"],
                 "interface": "wlan1", "dhcp": False, "clients_now": 5, "admitted_today": 41,
                 "bytes_up": 120_400_000, "bytes_down": 3_400_000_000, "blocked": 77, "redirected": 19,
                 "total_rate_kbit": 5000, "admit_minutes": 60}


def add_internet_entities(store, site="kyiv-1"):
    """The kiosk's browsing counters and the guest Wi-Fi as ingest stores them, with samples."""
    with store.transaction() as tx:
        for entity, payload in (("internet", INTERNET), ("guest_network", GUEST_NETWORK)):
            tx.execute("INSERT INTO entities VALUES (?, ?, ?, ?, ?, ?)",
                       (site, entity, entity, json.dumps(payload), payload["ts"], NOW - 5))
        tx.executemany("INSERT INTO samples VALUES (?, 'guest_network', 'clients_now', ?, ?)",
                       [(site, NOW - 1800 * h, 5 - h) for h in range(4)])
        tx.executemany("INSERT INTO samples VALUES (?, 'internet', 'minutes', ?, ?)",
                       [(site, NOW - 1800 * h, 95.5 - 20 * h) for h in range(4)])


def test_site_page_shows_visitor_internet_and_guest_wifi_in_both_languages(hub):
    app, store, _ = hub
    add_site(store, "kyiv-1")
    add_internet_entities(store)
    client = client_as(app, "manager")
    page = client.get("/site/kyiv-1").get_data(as_text=True)
    for shown in ("Інтернет для відвідувачів (кіоск)", "Стан</th><td>проксі не працює",
                  "Сеансів сьогодні</th><td>12", "Хвилин перегляду</th><td>95.5",
                  "Завершено сеансів · відвідувачем</th><td>7", "Завершено сеансів · через бездіяльність</th><td>3",
                  "Заблоковано вікном</th><td>30", "Заблоковано проксі</th><td>4",
                  "Найчастіше заблоковані сайти · facebook.com · Спроб</th><td>5",
                  "Найчастіше заблоковані сайти · other · Спроб</th><td>2",
                  "Гостьовий Wi-Fi", "Стан</th><td>з проблемами", "Тривоги пристрою</th><td>DHCP не працює",
                  "DHCP для гостей працює</th><td>ні <span class=\"flag flag-bad\">",
                  "Гостей зараз</th><td>5", "Допущено сьогодні</th><td>41", "Надіслано гостями</th><td>120 МБ",
                  "Отримано гостями</th><td>3.4 ГБ", "Заблоковано</th><td>77", "Переспрямовано на портал</th><td>19",
                  "Загальна швидкість, кбіт/с</th><td>5000", "Доступ після згоди, хв</th><td>60",
                  "Гостьовий Wi-Fi: Гостей зараз", "Інтернет для відвідувачів (кіоск): Хвилин перегляду"):
        assert shown in page, shown
    assert "field." not in page and "word." not in page and "unit." not in page   # no key shows untranslated
    client.post("/lang", data={"lang": "en"})
    page = client.get("/site/kyiv-1").get_data(as_text=True)
    for shown in ("Visitor internet (kiosk)", "State</th><td>proxy down", "Sessions today</th><td>12",
                  "Sessions ended · by the visitor</th><td>7", "Most blocked sites · facebook.com · Attempts</th><td>5",
                  "Guest Wi-Fi", "Guests now</th><td>5", "Admitted today</th><td>41", "Sent by guests</th><td>120 MB",
                  "Received by guests</th><td>3.4 GB", "Redirected to the portal</th><td>19", "DHCP down",
                  "Guest Wi-Fi: Guests now"):
        assert shown in page, shown
    assert "field." not in page and "word." not in page and "unit." not in page


def test_data_sizes_read_in_decimal_units():
    from monitoring.hub.present import data_size
    say = lambda key, n: f"{n} {key}"   # noqa: E731
    assert [data_size(v, say) for v in (0, 999, 1000, 12_345, 999_999, 3_400_000_000, 7e15)] == [
        "0 unit.bytes", "999 unit.bytes", "1.0 unit.kb", "12.3 unit.kb", "1.0 unit.mb", "3.4 unit.gb", "7000 unit.tb"]


def test_surveys_sorted_by_csat(hub):
    app, store, _ = hub
    with store.transaction() as tx:
        for site, scores in (("good", (5, 5, 4)), ("bad", (1, 2, 5)), ("old", (1,))):
            for index, score in enumerate(scores):
                at = NOW - (90 * 86400 if site == "old" else 3600)
                tx.execute("INSERT INTO survey_answers VALUES (?, ?, ?, ?, ?)",
                           (f"{site}{index}", site, at, at, json.dumps({"score": score, "scale": 5})))
        tx.execute("INSERT INTO survey_answers VALUES ('junk', 'bad', ?, ?, 'not json')", (NOW, NOW))
    client = client_as(app, "manager")
    page = client.get("/surveys").get_data(as_text=True)
    assert site_order(page) == ["bad", "good"]
    assert site_order(client.get("/surveys?sort=site&days=366").get_data(as_text=True)) == ["bad", "good", "old"]
    assert client.get("/surveys?days=0").status_code == 400
    assert client.get("/surveys?days=%D9%A3").status_code == 400


def test_dropped_and_audit_pages(hub):
    app, store, staff = hub
    with store.transaction() as tx:
        tx.execute("INSERT INTO dropped (at, site, topic, reason) VALUES (?, 'kyiv-1', 'cnap/kyiv-1/x', "
                   "'schema: <script>')", (NOW,))
    client = client_as(app, "technician")
    page = client.get("/dropped").get_data(as_text=True)
    assert "cnap/kyiv-1/x" in page and "&lt;script&gt;" in page and "<script>" not in page
    assert "hub.login" in client.get("/audit").get_data(as_text=True)


def test_admin_manages_staff(hub):
    app, _, staff = hub
    admin = client_as(app, "admin")
    admin.post("/staff", data={"action": "add", "name": "Петро", "role": "manager", "pin": "864209"})
    added = next(m for m in staff.members() if m["name"] == "Петро")
    assert added["role"] == "manager"
    admin.post("/staff", data={"action": "deactivate", "staff_id": str(added["id"])})
    assert not next(m for m in staff.members() if m["name"] == "Петро")["active"]
    assert {"hub.staff.add", "hub.staff.deactivate"} <= {e["action"] for e in staff.audit_log()}
    assert admin.post("/staff", data={"action": "add", "name": "X", "role": "admin", "pin": "12"}).status_code == 302
    assert admin.post("/staff", data={"action": "add", "name": "X", "role": "admin", "pin": "111111"}).status_code == 302
    assert not any(m["name"] == "X" for m in staff.members())   # a bad PIN, a published sample PIN


def test_sample_pin_must_be_changed_first(tmp_path):
    store = schema.ensure(open_store(tmp_path / "hub.db"))
    staff = StaffStore(str(tmp_path / "staff.db"))
    staff.seed("technician:222222")
    app = make_app(store, staff)
    client = app.test_client()
    staff_id = staff.members()[0]["id"]
    response = client.post("/login", data={"staff_id": str(staff_id), "pin": "222222"})
    assert response.location == "/pin"
    assert client.get("/").location == "/pin"
    assert client.post("/pin", data={"pin": "222222", "pin2": "222222"}).status_code == 400
    sample = client.post("/pin", data={"pin": "000000", "pin2": "000000"})   # another printed sample: the one PIN rule
    assert sample.status_code == 400 and "зразковий" in sample.get_data(as_text=True)
    assert client.post("/pin", data={"pin": "581234", "pin2": "581234"}).status_code == 302
    assert any(e["action"] == "hub.change_own_pin" for e in staff.audit_log())
    assert client.get("/").status_code == 200
    staff.close()
    store.close()


def test_english_switch(hub):
    app, store, _ = hub
    add_site(store, "kyiv-1", status="offline")
    client = client_as(app, "manager")
    assert client.post("/lang", data={"lang": "en", "next": "/?sort=name"}).location == "/?sort=name"
    page = client.get("/").get_data(as_text=True)
    assert '<html lang="en">' in page and "Offline" in page and "All sites" in page
    client.post("/lang", data={"lang": "xx"})
    assert '<html lang="uk">' in client.get("/").get_data(as_text=True)


def test_catalogues_are_complete_and_compiled():
    from babel.messages.pofile import read_po
    from monitoring.hub.i18n import TRANSLATIONS_DIR
    keys = {}
    for lang in ("uk", "en"):
        with open(TRANSLATIONS_DIR / lang / "LC_MESSAGES" / "messages.po", "rb") as f:
            keys[lang] = {m.id for m in read_po(f) if m.id and m.string}
        assert (TRANSLATIONS_DIR / lang / "LC_MESSAGES" / "messages.mo").stat().st_size > 1000
    assert keys["uk"] == keys["en"]
    root = TRANSLATIONS_DIR.parent
    used = set()
    for path in [*root.glob("templates/*.html"), root / "web.py", root / "present.py"]:
        used |= set(re.findall(r"""(?:_|gettext|N_)\(\s*["']([a-z_]+\.[a-z_.0-9]*[a-z_0-9])["']""", path.read_text()))
    assert used - keys["uk"] == set()


# --- health and metrics ---------------------------------------------------------------------------
def test_healthz_and_metrics_pass_promtool(hub):
    app, store, _ = hub
    add_site(store, "kyiv-1")
    add_site(store, "lviv-2", status="offline")
    add_alert(store, "kyiv-1", rule="ups_low_battery", severity="critical")
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"ok": True}
    response = client.get("/metrics")
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert 'cnap_hub_sites{status="offline"} 1.0' in text and 'cnap_hub_sites{status="critical"} 1.0' in text
    assert 'cnap_hub_open_alerts{severity="critical"} 1.0' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed"
    check = subprocess.run([promtool, "check", "metrics"], input=response.data, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    logged_in = client_as(app, "manager")
    store.close()
    assert client.get("/healthz").status_code == 503
    assert "cnap_hub_store_up 0.0" in client.get("/metrics").get_data(as_text=True)
    page = logged_in.get("/")
    assert page.status_code == 503 and "недоступне" in page.get_data(as_text=True)


# --- the same pages on PostgreSQL ----------------------------------------------------------------------
def test_overview_ack_and_command_on_postgresql(pg_url, tmp_path):
    store = schema.ensure(open_store(pg_url))
    staff, ids = make_staff(tmp_path / "staff.db")
    app = make_app(store, staff)
    app.staff_ids = ids
    try:
        add_site(store, "kyiv-1")
        add_site(store, "lviv-2", status="offline")
        key = add_alert(store, "kyiv-1", severity="critical")
        client = client_as(app, "technician")
        assert site_order(client.get("/").get_data(as_text=True)) == ["lviv-2", "kyiv-1"]
        with store.transaction() as tx:
            tx.execute("INSERT INTO samples VALUES ('kyiv-1', 'air', 'sensors.hall.co2_ppm', ?, 1234)", (NOW - 60,))
            tx.execute("INSERT INTO survey_answers VALUES ('u1', 'kyiv-1', ?, ?, '{\"score\": 4, \"scale\": 5}')",
                       (NOW, NOW))
        page = client.get("/site/kyiv-1").get_data(as_text=True)
        assert "останнє 1234" in page and "задоволених 100 %" in page
        assert site_order(client.get("/surveys").get_data(as_text=True)) == ["kyiv-1"]
        assert client.get("/alerts").status_code == 200
        client.post("/alerts/ack", data={"key": key, "serial": "1", "comment": "ok"})
        assert requests_of(store, "ack")[0][0] == "Technician"
        client.post("/site/kyiv-1/ventilation", data={"level": "0", "minutes": "10"})
        assert store.query_one("SELECT controller FROM commands")[0] == "ventilation"
        assert client.get("/metrics").status_code == 200
    finally:
        staff.close()
        store.close()


def test_time_helpers():
    from monitoring.hub import present
    words = {"time.minutes_ago": "%(n)s min", "time.hours_ago": "%(n)s h"}
    gettext = lambda key, **p: words.get(key, key) % p if p else key   # noqa: E731
    assert present.ago(NOW - 150, NOW, gettext) == "2 min"
    assert present.ago(NOW - 7300, NOW, gettext) == "2 h"
    assert present.ago(None, NOW, gettext) == "time.never"
    assert present.kyiv_time(1_782_864_000) == "2026-07-01 03:00"    # summer: UTC+3
    assert present.kyiv_time(float("nan")) == "" and present.kyiv_time(1e300) == ""
    assert time.time()   # the module's clock is not used by the helpers
