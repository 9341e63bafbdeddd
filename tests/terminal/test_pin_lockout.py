"""PIN guessing: failures counted per person (kiosk screen and LAN apart) and per LAN client,
in SQLite (they survive a restart), under a lock (concurrent guesses get no extra tries); a flood
from the LAN does not lock the administrator out of the kiosk screen; one ASCII PIN rule."""
import threading

import pytest
from hypothesis import given, settings, strategies as st

from terminal import close_app, create_app
from terminal.staff import (LOCKOUT_WINDOW_S, MAX_CLIENT_FAILURES, MAX_FAILURES, StaffStore, client_scope,
                            valid_pin)
from terminal.surveys.store import SurveyInputError
from tests.helpers import csrf_token_from, holder_of, service_login
from terminal.state import state


def config(instance, **extra):
    return {"INSTANCE_PATH": str(instance), "TESTING": True, "SECRET_KEY": "t", "BILL_VALIDATOR_URL": "",
            "CARD_TERMINAL_URL": "", "PRINTER_URL": "", **extra}


def staff_id(app, role):
    return next(m["id"] for m in state(app).staff.members() if m["role"] == role)


def from_lan(app, address):
    """A desk browser on the LAN (only REMOTE_ADDR differs; no network is used)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


@pytest.fixture
def lan_app(tmp_path):
    """Service mode open to one LAN network (SERVICE_NETWORKS), as for desk browsers."""
    app = create_app(config(tmp_path / "lan", SERVICE_NETWORKS=["10.0.0.0/24"]))
    yield app
    close_app(app)


def test_lockout_after_repeated_wrong_pins_even_for_the_right_one(app, client):
    for _ in range(MAX_FAILURES):
        assert service_login(client, "999999", name="admin").status_code == 401
    response = service_login(client, "000000", name="admin")
    assert response.status_code == 429 and "Забагато спроб" in response.text
    # Counted per person: the cashier is not locked out.
    assert service_login(app.test_client(), "111111").status_code == 302
    actions = [e["action"] for e in state(app).staff.audit_log()]
    assert actions.count("login.failed") == MAX_FAILURES and actions.count("login.lockout") == 1


def test_concurrent_wrong_guesses_consume_one_try_each(app):
    guesses = MAX_FAILURES * 3
    admin = staff_id(app, "admin")
    clients = [app.test_client() for _ in range(guesses)]
    tokens = [csrf_token_from(c) for c in clients]
    start = threading.Barrier(guesses)
    statuses = []

    def guess(client, token, pin):
        start.wait()
        response = client.post("/service/login", data={"staff_id": str(admin), "pin": pin, "csrf_token": token},
                               csrf=False)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=guess, args=(c, t, f"{900000 + i}")) for i, (c, t) in
               enumerate(zip(clients, tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [401] * MAX_FAILURES + [429] * (guesses - MAX_FAILURES)
    actions = [e["action"] for e in state(app).staff.audit_log()]
    assert actions.count("login.failed") == MAX_FAILURES and actions.count("login.lockout") == 1
    assert service_login(app.test_client(), "000000").status_code == 429


def test_the_store_counts_concurrent_tries_exactly(tmp_path):
    store = StaffStore(str(tmp_path / "s.sqlite"))
    store.seed("admin:000000", must_change=False)
    admin = holder_of(store, "000000").id
    start = threading.Barrier(12)
    results = []

    def guess(i):
        start.wait()
        results.append(store.login(admin, f"{100000 + i}", "10.0.0.3"))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.checked for r in results) == MAX_FAILURES
    assert sum(bool(r.lockout) for r in results) == 1


def test_lockout_survives_a_restart(tmp_path):
    app = create_app(config(tmp_path / "inst"))
    client = app.test_client()
    for _ in range(MAX_FAILURES):
        service_login(client, "999999", name="admin")
    close_app(app)
    app = create_app(config(tmp_path / "inst"))
    try:
        assert service_login(app.test_client(), "000000").status_code == 429
    finally:
        close_app(app)


def test_a_lan_flood_does_not_lock_the_administrator_out_of_the_kiosk_screen(lan_app):
    for host in range(2, 12):   # ten machines, each guessing the administrator's PIN
        attacker = from_lan(lan_app, f"10.0.0.{host}")
        for guess in range(4):
            assert service_login(attacker, f"{300000 + guess}", name="admin").status_code in (401, 429)
    assert service_login(from_lan(lan_app, "10.0.0.50"), "000000", name="admin").status_code == 429
    screen = lan_app.test_client()               # the kiosk's own screen (127.0.0.1)
    assert service_login(screen, "000000").status_code == 302
    assert screen.get("/service/audit").status_code == 200
    failed = [e for e in state(lan_app).staff.audit_log(500) if e["action"] == "login.failed"]
    assert len(failed) == MAX_FAILURES                 # the LAN got that many tries at the admin in all
    assert {e["detail"]["client"] for e in failed} <= {f"10.0.0.{h}" for h in range(2, 12)}


def test_one_lan_client_is_stopped_whoever_it_guesses(lan_app):
    attacker = from_lan(lan_app, "10.0.0.7")
    tries = 0
    for role in ("cashier", "technician", "admin"):
        for guess in range(MAX_FAILURES - 1):
            if service_login(attacker, f"{400000 + guess}", name=role).status_code == 401:
                tries += 1
    assert tries == MAX_CLIENT_FAILURES
    assert service_login(attacker, "222222", name="technician").status_code == 429   # even the right PIN
    assert service_login(from_lan(lan_app, "10.0.0.8"), "222222", name="technician").status_code == 302
    lockouts = [e for e in state(lan_app).staff.audit_log() if e["action"] == "login.lockout"]
    assert [e["detail"]["counter"] for e in lockouts] == ["client"]
    assert lockouts[0]["detail"]["client"] == "10.0.0.7"


def test_a_right_pin_clears_only_that_persons_count(app):
    screen = app.test_client()
    for _ in range(MAX_FAILURES - 1):
        service_login(screen, "999999", name="admin")
        service_login(screen, "999999", name="cashier")
    assert service_login(screen, "111111").status_code == 302           # the cashier logs in…
    assert service_login(screen, "999999", name="admin").status_code == 401
    assert service_login(screen, "000000").status_code == 429           # …which does not help the admin
    for _ in range(MAX_FAILURES - 1):                                   # the cashier's count started again
        assert service_login(screen, "999999", name="cashier").status_code == 401


def test_failures_expire_after_the_window_and_a_clock_step_back_cannot_stretch_them(app):
    store = state(app).staff
    now = [1_800_000_000.0]
    store.clock = lambda: now[0]
    screen = app.test_client()
    for _ in range(MAX_FAILURES):
        service_login(screen, "999999", name="admin")
    assert service_login(screen, "000000").status_code == 429
    now[0] -= 10 * 86400                           # the clock jumps back ten days
    assert service_login(screen, "000000").status_code == 429
    now[0] += LOCKOUT_WINDOW_S + 1                 # one window later, not ten days
    assert service_login(screen, "000000").status_code == 302


@pytest.mark.parametrize("pin", ["١٢٣٤٥٦", "۱۲۳۴۵۶", "१२३४५६", "¹²³⁴⁵⁶", "１２３４５６", "12345", "1234567890123",
                                 " 123456", "123456\n", "+123456", "12_456", ""])
def test_only_ascii_digits_make_a_pin_everywhere(app, tmp_path, pin):
    assert not valid_pin(pin)
    if pin == pin.strip():   # SERVICE_PINS is configuration: whitespace around a pair is trimmed
        with pytest.raises(ValueError):
            StaffStore(str(tmp_path / "s.sqlite")).seed(f"admin:{pin}")
    with pytest.raises(ValueError):
        state(app).staff.add("Олена", "manager", pin)
    with pytest.raises(SurveyInputError):
        state(app).surveys.add_administrator("Олена К.", "", pin)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=6, max_size=12))
def test_no_unicode_digit_other_than_0_to_9_passes(text):
    assert valid_pin(text) == all(c in "0123456789" for c in text)


def test_the_pin_rule_accepts_six_to_twelve_ascii_digits():
    assert valid_pin("000000") and valid_pin("123456789012")


@pytest.mark.parametrize("address, scope", [("127.0.0.1", "local"), ("127.3.2.1", "local"), ("::1", "local"),
                                            ("::ffff:127.0.0.1", "local"), ("10.0.0.5", "remote"),
                                            ("::ffff:10.0.0.5", "remote"), ("fe80::1", "remote"), ("", "remote"),
                                            ("unknown", "remote"), ("127.0.0.1, 10.0.0.5", "remote")])
def test_the_kiosk_screen_is_told_apart_from_the_lan(address, scope):
    assert client_scope(address) == scope
