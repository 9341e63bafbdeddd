"""The captive portal as a guest's phone sees it on the guest listener (the WSGI wrapper that
tags the listener and sends every other path to the probe view), with the agent faked or absent;
its refusal on the kiosk's and the tablets' listeners; and a fuzz of its routes (never a 500)."""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from werkzeug.test import Client

from terminal import close_app, create_app
from terminal.limits import GUEST, KIOSK, TABLET
from terminal.server import on_listener
from terminal.views import portal

GATEWAY, PHONE = "10.99.0.1", "10.99.1.23"
PORTAL = f"http://{GATEWAY}:8083/portal/"


class FakeAgent:
    def __init__(self):
        self.admitted: dict[str, int] = {}
        self.calls = []
        self.down = False

    def command(self, controller, action, args):
        from monitoring.agent_client import AgentUnavailable
        self.calls.append((controller, action, dict(args)))
        if self.down:
            raise AgentUnavailable("no answer")
        if action == "admit":
            self.admitted[args["ip"]] = 3600
            return {"ok": True, "message": "3600"}
        return {"ok": True, "message": str(self.admitted.get(args["ip"], 0))}


@pytest.fixture
def app(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "GUEST_INTERFACE": "wlan1"})
    yield app
    close_app(app)


@pytest.fixture
def agent(monkeypatch):
    fake = FakeAgent()
    monkeypatch.setattr(portal, "_agent", lambda: fake)
    return fake


def phone(app, listener=GUEST, host=GATEWAY) -> Client:
    return Client(on_listener(app, listener, host))


def get(client, path, **kw):
    return client.get(path, environ_base={"REMOTE_ADDR": PHONE}, **kw)


def accept(client, lang="en"):
    page = get(client, f"/portal/?lang={lang}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/portal/accept", data={"csrf_token": token, "lang": lang},
                       environ_base={"REMOTE_ADDR": PHONE})


@pytest.mark.parametrize("path,host", [("/generate_204", "connectivitycheck.gstatic.com"),
                                       ("/hotspot-detect.html", "captive.apple.com"),
                                       ("/connecttest.txt", "www.msftconnecttest.com"),
                                       ("/ncsi.txt", "www.msftncsi.com"), ("/", "example.org"),
                                       ("/service/", "10.99.0.1"), ("/tablet/", "10.99.0.1"),
                                       ("/internal/status", "10.99.0.1"), ("/static/kiosk.css", "x")])
def test_every_probe_and_page_of_a_captive_phone_goes_to_the_terms(app, agent, path, host):
    response = get(phone(app), path, headers={"Host": host})
    assert response.status_code == 302 and response.headers["Location"] == PORTAL
    assert "no-store" in response.headers["Cache-Control"]


def test_terms_in_both_languages_accept_admits_this_phone_and_probes_then_succeed(app, agent):
    client = phone(app)
    uk = get(client, "/portal/").get_data(as_text=True)
    assert 'lang="uk"' in uk and "Погоджуюсь, підключити" in uk and "60\u00a0хв" in uk
    en = get(client, "/portal/?lang=en").get_data(as_text=True)
    assert 'lang="en"' in en and "I agree, connect me" in en
    answer = accept(client)
    assert answer.status_code == 200 and "You are online" in answer.get_data(as_text=True)
    assert ("guestnet", "admit", {"ip": PHONE}) in agent.calls
    assert get(client, "/generate_204").status_code == 204
    assert get(client, "/hotspot-detect.html").get_data() == (
        b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>")
    assert get(client, "/connecttest.txt").get_data() == b"Microsoft Connect Test"
    assert "60" in get(client, "/portal/?lang=en").get_data(as_text=True)   # the connected page


def test_the_rfc8908_api(app, agent):
    client = phone(app)
    response = get(client, "/captive-portal/api")
    assert response.mimetype == "application/captive+json"
    assert response.get_json() == {"captive": True, "user-portal-url": PORTAL}
    agent.admitted[PHONE] = 1200
    assert get(client, "/captive-portal/api").get_json() == {
        "captive": False, "user-portal-url": PORTAL, "seconds-remaining": 1200}


def test_accept_without_the_csrf_token_admits_nobody(app, agent):
    client = phone(app)
    get(client, "/portal/")
    response = client.post("/portal/accept", data={"lang": "en"}, environ_base={"REMOTE_ADDR": PHONE})
    assert response.status_code == 400 and not agent.admitted


def test_an_honest_page_when_the_agent_cannot_be_reached(app, agent):
    client = phone(app)
    agent.down = True
    page = get(client, "/portal/?lang=en").get_data(as_text=True)
    assert "could not be checked" in page
    answer = accept(client)
    assert answer.status_code == 503 and "could not be opened" in answer.get_data(as_text=True)
    assert get(client, "/generate_204").status_code == 302


def test_the_portal_exists_only_on_the_guest_listener(app, agent):
    for listener in (KIOSK, TABLET):
        client = phone(app, listener, "127.0.0.1")
        for path in ("/portal/", "/captive-portal/api", "/portal/probe", "/static/portal.css"):
            assert client.get(path, environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 404, (listener, path)
    assert phone(app).get("/static/portal.css").status_code == 200


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=TEXT, query=TEXT, form=st.dictionaries(TEXT, TEXT, max_size=4), method=st.sampled_from(
    ["GET", "POST", "HEAD", "PUT", "DELETE"]), target=st.sampled_from(
    ["/portal/", "/portal/accept", "/captive-portal/api", "/portal/probe", "/static/portal.css", ""]),
    down=st.booleans(), remote=st.sampled_from([PHONE, "", "::1", "not-an-ip"]))
def test_portal_routes_never_give_a_server_error(app, agent, path, query, form, method, target, down, remote):
    agent.down = down
    from urllib.parse import quote
    url = (target or "/" + quote(path, safe="/")) + "?" + quote(query, safe="=&")
    client = phone(app)
    with_token = dict(form)
    if method == "POST" and target == "/portal/accept":
        page = get(client, "/portal/").get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if match:
            with_token["csrf_token"] = match.group(1)
    response = client.open(url, method=method, data=with_token, environ_base={"REMOTE_ADDR": remote})
    assert response.status_code < 500 or (response.status_code == 503 and target == "/portal/accept"), \
        (response.status_code, url)
