"""Visitor internet, the kiosk's side: the allowlist and counters store, the terms → start → ended
flow against a recording fake of the window (terminal/internet/port.py), the blocked page, the
service-mode allowlist editor, the home tile's rule, the loopback API and the MQTT payload."""
from __future__ import annotations

import re
import time
from datetime import date, timedelta

import pytest

from monitoring import mqtt_map, topics
from monitoring.agent import ensure_token, token_path
from terminal import settings as settings_module
from terminal.internet.store import OTHER_HOST, InternetStore
from terminal.state import state
from tests.helpers import service_login
from tests.terminal.internet_fakes import BrokenProxy, FakeProxy, FakeWindow, make_ready

ADMIN, CASHIER, TECHNICIAN = "000000", "111111", "222222"


# --- the store -------------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    day = {"today": date(2026, 3, 2)}
    found = InternetStore(str(tmp_path / "internet.sqlite"), today=lambda: day["today"], max_hosts=3, keep_days=5)
    found.day = day
    yield found
    found.close()


def test_the_list_is_seeded_once_and_then_the_file_is_the_truth(tmp_path, store):
    assert store.seed(["https://www.Diia.gov.ua/path", "*.gov.ua", "gov.ua", "not a domain"]) == 2
    assert store.domains() == ["gov.ua", "www.diia.gov.ua"]
    assert store.remove("gov.ua") and store.remove("www.diia.gov.ua")
    assert store.seed(["privat24.ua"]) == 0          # an emptied list stays empty
    assert store.domains() == []
    assert store.add("Monobank.UA") == ("monobank.ua", True)
    assert store.add("monobank.ua/") == ("monobank.ua", False)
    assert not store.remove("x" * 1000)


def test_counters_by_day_reason_layer_and_host_with_a_cap(store):
    store.session_started()
    store.session_started()
    store.session_ended("user", 125.0)
    store.session_ended("nonsense", 10 ** 9)        # an unknown reason counts as error, capped at a day
    for host in ("facebook.com", "facebook.com", "a.example", "b.example", "c.example", "d.example"):
        store.blocked("hook", host)
    store.blocked("proxy", "FACEBOOK.com.")
    store.blocked("proxy", "/etc/passwd?x=1")          # not a host name: counted as other, never stored
    today = store.day_counters(top=10)
    assert today["sessions_started"] == 2
    assert today["sessions_ended"]["user"] == 1 and today["sessions_ended"]["error"] == 1
    assert today["minutes"] == round((125 + 86400) / 60, 1)
    assert today["blocked"] == {"hook": 6, "proxy": 2}
    hosts = {row["host"]: row["attempts"] for row in today["top_blocked"]}
    # cap 3 distinct hosts a day: c.example and d.example went to "other"
    assert hosts == {"facebook.com": 3, "a.example": 1, "b.example": 1, OTHER_HOST: 3}
    store.day["today"] += timedelta(days=1)
    assert store.day_counters()["sessions_started"] == 0
    store.day["today"] += timedelta(days=10)
    store.session_started()                           # a write on a new day prunes old days
    assert store.day_counters(date(2026, 3, 2))["sessions_started"] == 0


# --- pages: terms, start, ended, blocked ---------------------------------------------------------------
def test_terms_page_in_both_languages_and_start_opens_a_session(app, client):
    window = make_ready(app)
    page = client.get("/internet")
    assert page.status_code == 200
    for text in ("Інтернет", "Погоджуюсь", "diia.gov.ua", "15 хв", "все стирається"):
        assert text in page.text, text
    client.post("/lang/en", data={"next": "/internet"})
    page = client.get("/internet")
    assert "I agree, open the internet" in page.text and "everything is erased" in page.text
    opened = client.post("/internet/start")
    assert opened.status_code == 200 and "Session open" in opened.text
    [request] = window.requests
    assert request.lang == "en" and request.proxy_url == "http://127.0.0.1:3128"
    assert request.home_url == "https://diia.gov.ua/" and request.allowlist.allows_host("diia.gov.ua")
    assert (request.session_s, request.idle_s, request.warn_s, request.extend_s) == (900, 120, 30, 300)
    assert request.back_url.endswith("/internet/ended?lang=en")
    again = client.post("/internet/start")
    assert again.status_code == 409 and "already open" in again.text


def test_start_needs_the_csrf_token(app, client):
    window = make_ready(app)
    assert client.post("/internet/start", csrf=False).status_code == 400
    assert window.requests == []


def test_events_become_counters_and_the_ended_page(app, client):
    window = make_ready(app)
    client.post("/internet/start")
    browsing = state(app).internet
    window.emit({"type": "started"})
    assert browsing.status()["open"] and 890 <= browsing.status()["seconds_left"] <= 900
    window.emit({"type": "blocked", "host": "facebook.com", "layer": "hook", "kind": "navigation"})
    window.emit({"type": "blocked", "host": "evil.example", "layer": "proxy", "kind": "navigation"})
    window.emit({"type": "warning", "limit": "session", "seconds_left": 30})
    window.emit({"type": "extended", "limit": "session"})
    assert browsing.status()["seconds_left"] > 1100          # "More time" added 5 minutes
    assert "Session open" in client.get("/internet/ended?lang=en").text   # still open
    window.emit({"type": "ended", "reason": "idle", "seconds": 240.0})
    page = client.get("/internet/ended?lang=en")
    assert "Session ended" in page.text and "not touched" in page.text and "erased" in page.text
    assert "екрана давно не торкалися" in client.get("/internet/ended?lang=uk").text
    today = browsing.store.day_counters()
    assert today["sessions_started"] == 1 and today["sessions_ended"]["idle"] == 1 and today["minutes"] == 4.0
    # the proxy reports its own refusals (on_proxy_event): a window's echo of one is not counted again
    assert today["blocked"] == {"hook": 1, "proxy": 0}
    browsing.on_proxy_event({"type": "blocked", "layer": "proxy", "host": "x.example"})
    assert browsing.store.day_counters()["blocked"]["proxy"] == 1
    browsing.on_event({"type": "blocked", "host": None, "layer": 7})     # odd events never raise
    browsing.on_event("nonsense")


def test_blocked_page_echoes_the_host_safely(app, client):
    make_ready(app)
    page = client.get("/internet/blocked", query_string={"host": "<script>alert(1)</script>evil.com", "lang": "en"})
    assert page.status_code == 200 and "This site is not available here" in page.text
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;" in page.text
    assert "gov.ua" in page.text and "privat24.ua" in page.text
    long = client.get("/internet/blocked", query_string={"host": "a" * 5000 + "\u202e\x00"})
    shown = re.search(r'<span class="code">([^<]*)</span>', long.text)[1]
    assert "Цей сайт тут недоступний" in long.text and shown == "a" * 99 + "…"


def test_blocked_page_is_self_contained(app, client):
    # The browsing view shows it on an about:blank base, outside the kiosk's origin and never
    # through the proxy: anything it linked to (style, script, a form to the kiosk) would not load
    # or would lead out of the page.
    make_ready(app)
    page = client.get("/internet/blocked", query_string={"host": "evil.com", "lang": "uk"}).text
    assert '<html lang="uk">' in page and "<style>" in page
    for outside in ("<link", "<script", "<form", "src=", "href=", "csrf"):
        assert outside not in page, outside


@pytest.mark.parametrize("setup, reason_text, status", [
    ("no_window", "лише на екрані термінала", 503),
    ("proxy_down", "фільтр сайтів не працює", 503),
    ("no_uplink", "Немає зʼєднання з інтернетом", 503),
    ("refused", "не зміг відкрити сеанс", 409),
])
def test_honest_pages_when_browsing_cannot_start(app, client, setup, reason_text, status):
    if setup == "no_window":
        pass
    elif setup == "proxy_down":
        make_ready(app, proxy=BrokenProxy)
    elif setup == "no_uplink":
        make_ready(app, uplink="down")
    else:
        make_ready(app, window=FakeWindow(accept=False))
    page = client.post("/internet/start")
    assert page.status_code == status and reason_text in page.text
    assert 'href="/"' in page.text


def test_the_filtering_proxy_starts_once_and_stops_with_the_app(app):
    FakeProxy.instances.clear()
    make_ready(app)
    browsing = state(app).internet
    [proxy] = FakeProxy.instances
    assert proxy.running and browsing.health() == (True, {"enabled": True, "window": True, "proxy": True,
                                                        "domains": len(browsing.store.domains())})
    proxy.running = False                           # tinyproxy died: the tile hides, health says so
    browsing._proxy_tried_at = time.monotonic()     # a retry is not due yet
    assert browsing.unavailable_reason() == "proxy_down"
    ok, detail = browsing.health()
    assert not ok and "ended" in detail["error"]
    browsing._proxy_tried_at -= 60                  # due: started again
    assert browsing.unavailable_reason() is None and len(FakeProxy.instances) == 2
    from terminal import close_app
    close_app(app)
    assert FakeProxy.instances[-1].stopped


# --- the home tile ----------------------------------------------------------------------------------------
def test_the_tile_shows_only_when_everything_works(app, client):
    assert 'id="internet-tile"' not in client.get("/").text          # no window in this mode
    make_ready(app)
    home = client.get("/")
    assert 'id="internet-tile"' in home.text and "Інтернет" in home.text
    app.config["INTERNET_ENABLED"] = False
    assert 'id="internet-tile"' not in client.get("/").text
    assert client.get("/internet").status_code == 404


# --- service mode --------------------------------------------------------------------------------------
def test_only_managers_technicians_and_admins_edit_the_allowlist(app, client):
    assert client.get("/service/internet").status_code == 302
    service_login(client, CASHIER)
    assert client.get("/service/internet").status_code == 403
    assert client.post("/service/internet", data={"action": "add", "domain": "evil.com"}).status_code == 403
    assert "evil.com" not in state(app).internet.store.domains()
    for pin in (TECHNICIAN, ADMIN):
        staff = app.test_client()
        service_login(staff, pin)
        assert "Інтернет для відвідувачів" in staff.get("/service/").text
        assert staff.get("/service/internet").status_code == 200


def test_add_and_remove_apply_to_the_proxy_at_once_and_are_audited(app, client):
    make_ready(app)
    proxy = state(app).internet.proxy
    service_login(client, TECHNICIAN)
    added = client.post("/service/internet", data={"action": "add", "domain": "https://WWW.Example.UA/x"})
    assert added.status_code == 200 and "Додано: www.example.ua" in added.text
    assert proxy.updates[-1].allows_host("www.example.ua")
    removed = client.post("/service/internet", data={"action": "remove", "domain": "www.example.ua"})
    assert removed.status_code == 200 and not proxy.updates[-1].allows_host("www.example.ua")
    assert client.post("/service/internet", data={"action": "remove", "domain": "nope.ua"}).status_code == 400
    actions = [(e["action"], e["detail"]) for e in state(app).staff.audit_log()]
    assert ("internet.allowlist.add", {"domain": "www.example.ua"}) in actions
    assert ("internet.allowlist.remove", {"domain": "www.example.ua"}) in actions
    assert client.post("/service/internet", data={"action": "add", "domain": "gov.ua"}, csrf=False).status_code == 400


@pytest.mark.parametrize("typed, uk, en", [
    ("", "Введіть домен", "Type a domain"),
    ("a" * 260, "Домен задовгий", "too long"),
    ("10.0.0.1", "не IP-адреса", "not an IP address"),
    ("bad_domain!.ua", "Це не домен", "not a domain"),
    ("ua", "цілу доменну зону", "whole top-level domain"),
])
def test_bad_domains_are_refused_with_a_message_per_reason(app, client, typed, uk, en):
    service_login(client, TECHNICIAN)
    before = state(app).internet.store.domains()
    page = client.post("/service/internet", data={"action": "add", "domain": typed})
    assert page.status_code == 400 and uk in page.text
    client.post("/lang/en", data={"next": "/service/internet"})
    page = client.post("/service/internet", data={"action": "add", "domain": typed})
    assert page.status_code == 400 and en in page.text
    assert state(app).internet.store.domains() == before


def test_a_full_list_is_refused(app, client, monkeypatch):
    monkeypatch.setattr("terminal.internet.store.MAX_DOMAINS", len(state(app).internet.store.domains()))
    service_login(client, TECHNICIAN)
    page = client.post("/service/internet", data={"action": "add", "domain": "new.example.ua"})
    assert page.status_code == 400 and "Список повний" in page.text


def test_service_section_shows_todays_counters(app, client):
    window = make_ready(app)
    client.post("/internet/start")
    window.emit({"type": "started"})
    window.emit({"type": "blocked", "host": "facebook.com", "layer": "hook", "kind": "navigation"})
    window.emit({"type": "ended", "reason": "user", "seconds": 60})
    service_login(client, TECHNICIAN)
    page = client.get("/service/internet").text
    assert "facebook.com" in page and "Плитка «Інтернет» показується" in page


# --- settings -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [{"INTERNET_WARN_S": 19}, {"INTERNET_SESSION_MIN": 0},
                                    {"INTERNET_IDLE_S": 30}, {"INTERNET_HOME_URL": "file:///etc"},
                                    {"INTERNET_ALLOWLIST": "gov.ua,127.0.0.1"}, {"INTERNET_EXTEND_MIN": 99}])
def test_bad_internet_settings_are_refused(values):
    with pytest.raises(settings_module.SettingError):
        settings_module.load(values, environ={})


# --- the agent's view -----------------------------------------------------------------------------------
def test_internal_api_gives_the_counters_the_hub_model_takes(app, client):
    window = make_ready(app, uplink="none")          # no uplink watch: the internet counts as available
    client.post("/internet/start")
    window.emit({"type": "started"})
    window.emit({"type": "blocked", "host": "facebook.com", "layer": "hook", "kind": "popup"})
    token = ensure_token(token_path(app.config))
    assert client.get("/internal/internet").status_code == 401
    answer = client.get("/internal/internet", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    fields = answer.get_json()
    assert fields["available"] and fields["state"] == "ok" and fields["session_open"]
    assert fields["sessions"] == 1 and fields["top_blocked"] == [{"host": "facebook.com", "attempts": 1}]
    payload = mqtt_map.internet(fields, time.time())
    message = topics.outgoing("kyiv-1", payload)
    assert message.topic == "cnap/kyiv-1/internet" and message.retain
    parsed = topics.parse(message.topic, message.payload)
    assert parsed.kind == "internet" and parsed.payload.blocked_hook == 1 and parsed.payload.sessions == 1


def test_mqtt_map_keeps_only_what_fits():
    now = time.time()
    state_ = mqtt_map.internet({"enabled": True, "available": False, "state": "No Uplink!", "day": "2026-03-02",
                                "sessions": -5, "minutes": float("nan"), "blocked_hook": 3, "blocked_proxy": True,
                                "top_blocked": [{"host": "ok.example", "attempts": 2}, {"host": "<b>", "attempts": 1},
                                                {"host": "x.example", "attempts": 0}] + [{"host": "h.example",
                                                                                         "attempts": 1}] * 20},
                               now)
    assert state_.state == "unknown" and state_.sessions == 0 and state_.minutes == 0.0
    assert state_.blocked_proxy == 0 and len(state_.top_blocked) == topics.MAX_TOP_BLOCKED
    assert state_.top_blocked[0].host == "ok.example"
    assert mqtt_map.internet({"day": "yesterday"}, now) is None
    assert mqtt_map.internet(None, now) is None


def test_internet_pages_answer_this_machine_only():
    import ipaddress

    from terminal import limits

    networks = [ipaddress.ip_network("192.168.10.0/24")]
    for path in ("/internet", "/internet/start", "/internet/blocked"):
        area = limits.area_of(path)
        assert area == limits.BROWSE
        assert limits.refusal(limits.KIOSK, area, "127.0.0.1", networks) is None
        assert limits.refusal(limits.KIOSK, area, "192.168.10.5", networks) == 403
        assert limits.refusal(limits.TABLET, area, "127.0.0.1", networks) == 404
    # service mode's section stays reachable from the service networks, like the rest of service mode
    assert limits.refusal(limits.KIOSK, limits.area_of("/service/internet"), "192.168.10.5", networks) is None
