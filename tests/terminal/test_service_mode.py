"""Service mode: PIN login, roles, lockout, audit."""
from terminal.staff import MAX_FAILURES


def login(client, pin):
    return client.post("/service/login", data={"pin": pin})


def test_service_mode_needs_a_pin(client):
    response = client.get("/service/")
    assert response.status_code == 302 and "/service/login" in response.headers["Location"]


def test_wrong_pin_is_refused_and_audited(app, client):
    response = login(client, "999999")
    assert response.status_code == 401
    assert "Неправильний PIN-код." in response.text
    log = app.extensions["cnap_staff"].audit_log()
    assert log[0]["action"] == "login.failed"


def test_lockout_after_repeated_wrong_pins_even_for_the_right_one(client):
    for _ in range(MAX_FAILURES):
        login(client, "999999")
    response = login(client, "000000")
    assert response.status_code == 401
    assert "Забагато спроб" in response.text


def test_admin_sees_sections_and_the_audit_log(client):
    assert login(client, "000000").status_code == 302
    index = client.get("/service/")
    assert "Журнал дій працівників" in index.text
    audit = client.get("/service/audit")
    assert audit.status_code == 200
    assert "login" in audit.text


def test_a_cashier_cannot_read_the_audit_log_and_the_attempt_is_audited(app, client):
    login(client, "111111")
    assert client.get("/service/audit").status_code == 403
    actions = [e["action"] for e in app.extensions["cnap_staff"].audit_log()]
    assert actions[0] == "forbidden"


def test_logout_and_idle_reset_both_end_service_mode(client):
    login(client, "000000")
    client.post("/service/logout")
    assert client.get("/service/").status_code == 302
    login(client, "000000")
    client.get("/reset")
    assert client.get("/service/").status_code == 302
