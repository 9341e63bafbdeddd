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


def test_admin_changes_a_pin_and_the_old_one_stops_working(app, client):
    login(client, "000000")
    cashier = next(m for m in app.extensions["cnap_staff"].members() if m["role"] == "cashier")
    saved = client.post("/service/staff", data={"action": "set_pin", "staff_id": cashier["id"], "pin": "5555"})
    assert saved.status_code == 200 and "Збережено." in saved.text
    other = app.test_client()
    assert login(other, "111111").status_code == 401
    assert login(other, "5555").status_code == 302
    assert app.extensions["cnap_staff"].audit_log()[0]["action"] == "login"
    assert any(e["action"] == "staff.set_pin" for e in app.extensions["cnap_staff"].audit_log())


def test_staff_form_rejects_bad_pins_duplicates_and_the_last_admin(app, client):
    login(client, "000000")
    members = app.extensions["cnap_staff"].members()
    admin = next(m for m in members if m["role"] == "admin")
    bad = client.post("/service/staff", data={"action": "add", "name": "Олена", "role": "manager", "pin": "12a4"})
    assert bad.status_code == 400 and "від 4 до 12 цифр" in bad.text
    taken = client.post("/service/staff", data={"action": "add", "name": "Олена", "role": "manager", "pin": "111111"})
    assert taken.status_code == 400 and "уже має інший працівник" in taken.text
    last = client.post("/service/staff", data={"action": "deactivate", "staff_id": admin["id"]})
    assert last.status_code == 400 and "Останнього адміністратора" in last.text
    assert len(app.extensions["cnap_staff"].members()) == len(members)   # nothing changed
    added = client.post("/service/staff", data={"action": "add", "name": "Олена", "role": "manager", "pin": "7777"})
    assert added.status_code == 200
    assert login(app.test_client(), "7777").status_code == 302


def test_unknown_staff_id_is_a_404_not_a_crash(client):
    login(client, "000000")
    assert client.post("/service/staff", data={"action": "set_pin", "staff_id": "999", "pin": "4444"}).status_code == 404
    assert client.post("/service/staff", data={"action": "set_pin", "staff_id": "x", "pin": "4444"}).status_code == 400
