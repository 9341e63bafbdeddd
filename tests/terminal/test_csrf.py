"""CSRF: every state-changing route refuses a request without the session's token (400) before
its view runs; the only exemptions are the tablet's token-authenticated API. The routes are
read from the app's URL map, so a route added later is covered without touching this file."""
import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.routing.converters import NumberConverter

from terminal import CSRF_EXEMPT_ENDPOINTS
from terminal.limits import GUEST, LISTENER_KEY, PORTAL, area_of
from tests.helpers import csrf_token_from, service_login
from terminal.state import state

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
TEMPLATES = Path(__file__).resolve().parents[2] / "terminal" / "templates"


def state_changing_routes(app):
    routes = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods & UNSAFE):
            values = {arg: 1 if isinstance(rule._converters[arg], NumberConverter) else "x"
                      for arg in rule.arguments}
            routes.append((rule.endpoint, method, rule.build(values, append_unknown=False)[1]))
    return routes


def plain_client(app):
    """A client that sends exactly what the test says (no token unless given)."""
    return FlaskClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def spied(app):
    """Count the calls of every view, to prove a refused request never reached it."""
    calls = {}
    for endpoint, view in list(app.view_functions.items()):
        def spy(*args, _view=view, _endpoint=endpoint, **kwargs):
            calls[_endpoint] = calls.get(_endpoint, 0) + 1
            return _view(*args, **kwargs)
        spy.__name__, spy.__module__ = view.__name__, view.__module__   # what CSRFProtect.exempt matches
        app.view_functions[endpoint] = spy
    return calls


def test_the_map_has_the_routes_we_know_of(app):
    endpoints = {endpoint for endpoint, _, _ in state_changing_routes(app)}
    # a sample from every area, so an empty enumeration cannot pass the tests below
    assert {"core.set_language", "core.set_preferences", "service.login", "service.logout", "service.staff",
            "service.change_pin", "pay.start", "pay.begin", "pay.cancel", "survey.tablets",
            "survey.media_upload"} <= endpoints
    assert set(CSRF_EXEMPT_ENDPOINTS) <= endpoints


@pytest.mark.parametrize("token", ["missing", "empty", "garbage", "other session's"])
def test_every_state_changing_route_refuses_a_missing_or_wrong_token(app, spied, token):
    client = plain_client(app)
    assert service_login(app.test_client(), "000000").status_code == 302   # the store works
    # A logged-in admin: the refusal must come from the token, not from a missing login.
    good = csrf_token_from(client)
    form = {"staff_id": str(next(m["id"] for m in state(app).staff.members() if m["role"] == "admin")),
            "pin": "000000", "csrf_token": good}
    assert client.post("/service/login", data=form).status_code == 302
    other = csrf_token_from(plain_client(app))
    spied.clear()
    sent = {"missing": None, "empty": "", "garbage": "x" * 40, "other session's": other}[token]
    checked = 0
    for endpoint, method, path in state_changing_routes(app):
        if endpoint in CSRF_EXEMPT_ENDPOINTS:
            continue
        data = {"action": "add", "pin": "123456"} if sent is None else {"action": "add", "pin": "123456",
                                                                       "csrf_token": sent}
        headers = {} if sent is None else {"X-CSRFToken": sent}
        # The captive portal exists only on the guest Wi-Fi's listener: ask it there.
        environ = ({LISTENER_KEY: GUEST, "REMOTE_ADDR": "10.99.1.23"} if area_of(path) == PORTAL else {})
        response = client.open(path, method=method, data=data, headers=headers, environ_base=environ)
        # the idle reset is refused by sending the screen home unchanged (core._csrf_error)
        refused = (302,) if endpoint == "core.reset" else (400,)
        assert response.status_code in refused, (endpoint, method, response.status_code)
        checked += 1
    assert checked >= 20
    assert spied == {}, f"views ran despite a bad CSRF token: {spied}"


def test_the_same_requests_with_the_token_reach_their_views(app, spied):
    client = plain_client(app)
    token = csrf_token_from(client)
    spied.clear()
    for path, data in (("/prefs", {"action": "larger", "next": "/"}), ("/lang/en", {"next": "/"}),
                       ("/service/logout", {})):
        assert client.post(path, data={**data, "csrf_token": token}).status_code == 302, path
    response = client.post("/prefs", data={"action": "smaller"}, headers={"X-CSRFToken": token})
    assert response.status_code == 302                      # scripts send it as a header
    assert spied == {"core.set_preferences": 2, "core.set_language": 1, "service.logout": 1}


def test_a_token_does_not_outlive_the_visitor_reset(app):
    client = plain_client(app)
    token = csrf_token_from(client)
    client.post("/reset", data={"csrf_token": token})        # the idle reset forgets the visitor
    assert client.post("/prefs", data={"action": "larger", "csrf_token": token}).status_code == 400


def test_only_the_bearer_token_apis_are_exempt_and_they_need_the_token(app):
    exempt = {endpoint for endpoint, _, _ in state_changing_routes(app)
              if endpoint in CSRF_EXEMPT_ENDPOINTS}
    assert exempt == {"survey.api_answers", "survey.api_shift_start", "survey.api_shift_end",
                      "internal.survey_answers_forwarded", "internal.out_of_service_set"}
    assert all(endpoint.startswith(("survey.api_", "internal.")) for endpoint in exempt)
    client = plain_client(app)
    for endpoint, method, path in state_changing_routes(app):
        if endpoint in exempt:
            # No cookie or form token helps here: without the tablet's (or the agent's) bearer
            # token, no entry.
            assert client.open(path, method=method, json={"pin": "000000"}).status_code in (401, 403), endpoint


def test_session_cookie_is_strict_httponly_and_secure_only_with_https(app, tmp_path):
    cookie = plain_client(app).get("/").headers["Set-Cookie"]
    assert "SameSite=Strict" in cookie and "HttpOnly" in cookie and "Secure" not in cookie
    from terminal import close_app, create_app

    https = create_app({"INSTANCE_PATH": str(tmp_path / "https"), "TESTING": True, "SECRET_KEY": "t",
                        "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": "", "HTTPS": True})
    try:
        cookie = plain_client(https).get("/", base_url="https://localhost").headers["Set-Cookie"]
        assert "SameSite=Strict" in cookie and "HttpOnly" in cookie and "Secure" in cookie
    finally:
        close_app(https)


def test_every_post_form_in_every_template_carries_the_token():
    forms = 0
    for template in sorted(TEMPLATES.rglob("*.html")):
        text = template.read_text(encoding="utf-8")
        for match in re.finditer(r"<form\b[^>]*>", text, re.S):
            if not re.search(r'method="post"', match.group(0), re.I):
                continue
            forms += 1
            body = text[match.end():text.find("</form>", match.end())]
            assert '<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">' in body, \
                f"{template.relative_to(TEMPLATES)}: a POST form without the CSRF token"
    assert forms >= 25
    assert '<meta name="csrf-token" content="{{ csrf_token() }}">' in (TEMPLATES / "base.html").read_text()


def test_rendered_pages_hand_out_the_token_in_forms_and_meta(app):
    client = app.test_client()
    service_login(client, "000000")
    for path in ("/", "/service/staff", "/service/surveys/administrators", "/pay"):
        page = client.get(path).text
        meta = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)
        fields = re.findall(r'name="csrf_token" value="([^"]+)"', page)
        assert fields and set(fields) == {meta}, path
