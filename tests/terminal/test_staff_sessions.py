"""Server-side staff sessions: a copied cookie is worthless after logout, deactivation or a PIN
change; sessions end after SERVICE_SESSION_S idle (server clock, stepped here); sample PINs must
be changed at the first login before anything else."""
import sqlite3

import pytest

from terminal import close_app, create_app
from terminal.staff import CLOCK_SLACK_S, StaffStore
from tests.helpers import holder_of, service_login
from terminal.state import state


def member_id(app, role):
    return next(m["id"] for m in state(app).staff.members() if m["role"] == role)


def copy_of(app, client):
    """A second browser holding a copy of ``client``'s session cookie."""
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    return thief


def inside(client, path="/service/"):
    return client.get(path).status_code == 200


def test_the_cookie_holds_only_a_session_id(app, client):
    service_login(client, "000000")
    with client.session_transaction() as cookie_session:
        service_keys = {k: v for k, v in cookie_session.items() if k.startswith("staff")}
    assert list(service_keys) == ["staff_sid"] and len(service_keys["staff_sid"]) >= 40
    assert "admin" not in str(dict(cookie_session))


def test_a_copied_cookie_dies_with_logout(app, client):
    service_login(client, "000000")
    thief = copy_of(app, client)
    assert inside(thief)
    client.post("/service/logout")
    assert not inside(thief) and not inside(client)


def test_logout_ends_every_session_of_that_person_only(app):
    desk, screen, cashier = app.test_client(), app.test_client(), app.test_client()
    for c, pin in ((desk, "000000"), (screen, "000000"), (cashier, "111111")):
        assert service_login(c, pin).status_code == 302
    desk.post("/service/logout")
    assert not inside(screen)
    assert inside(cashier)
    assert state(app).staff.open_sessions(member_id(app, "admin")) == 0


def test_deactivation_ends_the_persons_sessions_at_once(app, client):
    cashier = app.test_client()
    service_login(cashier, "111111")
    thief = copy_of(app, cashier)
    assert inside(thief)
    service_login(client, "000000")
    client.post("/service/staff", data={"action": "deactivate", "staff_id": member_id(app, "cashier")})
    assert not inside(cashier) and not inside(thief)
    # Activated again, the old cookie stays dead: only a new login opens service mode.
    client.post("/service/staff", data={"action": "activate", "staff_id": member_id(app, "cashier")})
    assert not inside(thief)
    assert service_login(cashier, "111111").status_code == 302 and inside(cashier)


def test_a_pin_set_by_the_admin_ends_the_persons_sessions(app, client):
    cashier = app.test_client()
    service_login(cashier, "111111")
    thief = copy_of(app, cashier)
    service_login(client, "000000")
    client.post("/service/staff", data={"action": "set_pin", "staff_id": member_id(app, "cashier"), "pin": "864208"})
    assert not inside(cashier) and not inside(thief)
    assert inside(client)


def test_changing_ones_own_pin_keeps_this_screen_and_kills_copies(app, client):
    service_login(client, "000000")
    thief = copy_of(app, client)
    elsewhere = app.test_client()
    service_login(elsewhere, "000000")
    response = client.post("/service/pin", data={"pin": "739104", "pin2": "739104"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/service/")
    assert inside(client)
    assert not inside(thief) and not inside(elsewhere)
    assert service_login(app.test_client(), "000000", name="admin").status_code == 401
    assert service_login(app.test_client(), "739104", name="admin").status_code == 302


def test_the_idle_reset_ends_the_screens_server_session(app, client):
    service_login(client, "000000")
    thief = copy_of(app, client)
    client.post("/reset")
    assert not inside(thief)


class SteppedClock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock(app):
    stepped = SteppedClock()
    state(app).staff.clock = stepped
    return stepped


def test_sessions_end_after_the_idle_time_whatever_the_browser_does(app, client, clock):
    idle = app.config["SERVICE_SESSION_S"]
    service_login(client, "000000")
    clock.now += idle - 1
    assert inside(client)              # used: the idle time starts again
    clock.now += idle - 1
    assert inside(client)
    thief = copy_of(app, client)
    clock.now += idle + 1
    assert not inside(client)
    assert not inside(thief)
    clock.now -= idle + 1              # even if the clock came back, the session stays ended
    assert not inside(thief)


def test_a_clock_stepped_back_ends_the_session_instead_of_stretching_it(app, client, clock):
    service_login(client, "000000")
    clock.now -= CLOCK_SLACK_S - 1     # NTP-sized corrections are tolerated
    assert inside(client)
    clock.now -= 3600                  # a big step back would stretch the idle window by an hour
    assert not inside(client)


def test_the_idle_time_is_a_setting(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "i"), "TESTING": True, "SECRET_KEY": "t",
                      "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": "", "SERVICE_SESSION_S": 30})
    try:
        clock = SteppedClock()
        state(app).staff.clock = clock
        client = app.test_client()
        service_login(client, "000000")
        clock.now += 31
        assert not inside(client)
    finally:
        close_app(app)


def test_a_forged_or_unknown_session_id_is_no_login(app):
    client = app.test_client()
    with client.session_transaction() as cookie_session:
        cookie_session["staff_sid"] = "A" * 43
    assert client.get("/service/").status_code == 302
    with client.session_transaction() as cookie_session:
        cookie_session["staff_sid"] = {"id": 1, "role": "admin"}
    assert client.get("/service/").status_code == 302


# --- the first login with a sample PIN ---------------------------------------------------------
def fresh(tmp_path, name="fresh"):
    return create_app({"INSTANCE_PATH": str(tmp_path / name), "TESTING": True, "SECRET_KEY": "t",
                       "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": "",
                       "SERVICE_PINS_MUST_CHANGE": True})


@pytest.fixture
def first_day(tmp_path):
    app = fresh(tmp_path)
    yield app
    close_app(app)


def test_a_sample_pin_must_be_changed_before_anything_else(first_day):
    app, client = first_day, first_day.test_client()
    response = service_login(client, "000000")
    assert response.status_code == 302 and response.headers["Location"].endswith("/service/pin")
    pages = ["/service/", "/service/staff", "/service/audit", "/service/pay/payments", "/service/surveys/tablets"]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/service/pin"), path
    staff_before = state(app).staff.members()
    response = client.post("/service/staff", data={"action": "add", "name": "Зловмисник", "role": "admin",
                                                     "pin": "135791"})
    assert response.status_code == 302 and state(app).staff.members() == staff_before
    page = client.get("/service/pin")
    assert page.status_code == 200 and "початковим PIN-кодом" in page.text


@pytest.mark.parametrize("new, repeat, why", [
    ("000000", "000000", "відрізнятися від поточного"),
    ("111111", "111111", "початкових PIN-кодів"),      # another sample PIN is no change at all
    ("١٢٣٤٥٦", "١٢٣٤٥٦", "від 6 до 12 цифр"),
    ("¹²³⁴⁵⁶", "¹²³⁴⁵⁶", "від 6 до 12 цифр"),
    ("12345", "12345", "від 6 до 12 цифр"),
    ("482915", "482916", "не збігаються"),
])
def test_the_new_pin_is_checked(first_day, new, repeat, why):
    client = first_day.test_client()
    service_login(client, "000000")
    response = client.post("/service/pin", data={"pin": new, "pin2": repeat})
    assert response.status_code == 400 and why in response.text
    assert client.get("/service/").headers["Location"].endswith("/service/pin")   # still to be done


def test_after_the_change_service_mode_opens_and_stays_open_across_restarts(tmp_path):
    app = fresh(tmp_path)
    client = app.test_client()
    service_login(client, "000000")
    assert client.post("/service/pin", data={"pin": "602817", "pin2": "602817"}).status_code == 302
    assert client.get("/service/audit").status_code == 200
    actions = [e["action"] for e in state(app).staff.audit_log()]
    assert "staff.change_own_pin" in actions
    close_app(app)
    app = fresh(tmp_path)           # same instance folder: the seed must not flag it again
    try:
        admin = app.test_client()
        assert service_login(admin, "602817", name="admin").status_code == 302
        assert admin.get("/service/audit").status_code == 200
        cashier = app.test_client()   # the cashier has not changed theirs yet
        assert service_login(cashier, "111111").headers["Location"].endswith("/service/pin")
    finally:
        close_app(app)


def test_an_older_database_with_sample_pins_gets_the_flag_too(tmp_path):
    instance = tmp_path / "old"
    instance.mkdir()
    store = StaffStore(str(instance / "service.sqlite"))
    store.seed("admin:000000,cashier:111111", must_change=False)
    store.set_pin(holder_of(store, "111111").id, "246802")          # changed long ago
    db = sqlite3.connect(instance / "service.sqlite")   # as a database from before the column
    db.execute("ALTER TABLE staff DROP COLUMN must_change")
    db.execute("PRAGMA user_version = 0")              # (and before schema versions were counted)
    db.close()
    app = create_app({"INSTANCE_PATH": str(instance), "TESTING": True, "SECRET_KEY": "t",
                      "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": "",
                      "SERVICE_PINS_MUST_CHANGE": True})
    try:
        admin, cashier = app.test_client(), app.test_client()
        assert service_login(admin, "000000").headers["Location"].endswith("/service/pin")
        assert service_login(cashier, "246802", name="cashier").headers["Location"].endswith("/service/")
    finally:
        close_app(app)


def service_routes(app):
    """Every service-mode URL in the map (GET and POST), so a route added later is covered."""
    from werkzeug.routing.converters import NumberConverter

    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/service") or rule.endpoint.startswith("catalogue."):
            continue   # /service/<id> of the catalogue is a public page about a service
        values = {arg: 1 if isinstance(rule._converters[arg], NumberConverter) else "x" for arg in rule.arguments}
        path = rule.build(values, append_unknown=False)[1]
        for method in sorted(rule.methods & {"GET", "POST"}):
            yield rule.endpoint, method, path


def test_every_service_route_needs_a_live_session(app):
    client = app.test_client()
    checked = 0
    for endpoint, method, path in service_routes(app):
        if endpoint in ("service.login", "service.logout"):
            continue
        response = client.open(path, method=method, data={})
        assert response.status_code == 302 and "/service/login" in response.headers["Location"], (endpoint, method)
        checked += 1
    assert checked >= 20


def test_every_service_route_waits_for_the_sample_pin_to_be_changed(first_day):
    client = first_day.test_client()
    service_login(client, "000000")
    checked = 0
    for endpoint, method, path in service_routes(first_day):
        if endpoint in ("service.login", "service.logout", "service.change_pin"):
            continue
        response = client.open(path, method=method, data={})
        assert response.status_code == 302 and response.headers["Location"].endswith("/service/pin"), (endpoint, method)
        checked += 1
    assert checked >= 20


def test_old_sessions_are_deleted_not_kept_for_ever(app, clock):
    from terminal.staff import SESSION_HISTORY_S

    store = state(app).staff
    for pin in ("000000", "111111"):
        service_login(app.test_client(), pin)
    app.test_client().post("/service/logout")
    clock.now += SESSION_HISTORY_S + 1
    service_login(app.test_client(), "222222")
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM staff_sessions").fetchone()[0] == 1
