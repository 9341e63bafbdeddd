"""Service mode: login by person and PIN, roles, audit, staff administration."""
from tests.helpers import service_login as login
from terminal.state import state


def test_service_mode_needs_a_pin(client):
    response = client.get("/service/")
    assert response.status_code == 302 and "/service/login" in response.headers["Location"]


def test_login_page_lists_the_active_staff_to_choose_from(app, client):
    page = client.get("/service/login").text
    for member in state(app).staff.members(active_only=True):
        assert f'name="staff_id" value="{member["id"]}"' in page


def test_wrong_pin_is_refused_and_audited_with_the_client_address(app, client):
    response = login(client, "999999", name="admin")
    assert response.status_code == 401
    assert "Неправильний PIN-код." in response.text
    log = state(app).staff.audit_log()
    assert log[0]["action"] == "login.failed"
    assert log[0]["detail"]["client"] == "127.0.0.1"


def test_the_right_pin_on_someone_elses_name_does_not_log_in(client):
    assert login(client, "111111", name="admin").status_code == 401   # the cashier's PIN
    assert client.get("/service/").status_code == 302


def test_no_person_chosen_is_a_400_not_a_crash(client):
    assert client.post("/service/login", data={"pin": "000000"}).status_code == 400
    assert client.post("/service/login", data={"pin": "000000", "staff_id": "１"}).status_code == 400


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
    actions = [e["action"] for e in state(app).staff.audit_log()]
    assert actions[0] == "forbidden"


def test_logout_and_idle_reset_both_end_service_mode(client):
    login(client, "000000")
    client.post("/service/logout")
    assert client.get("/service/").status_code == 302
    login(client, "000000")
    client.post("/reset")
    assert client.get("/service/").status_code == 302


def test_admin_changes_a_pin_and_the_old_one_stops_working(app, client):
    login(client, "000000")
    cashier = next(m for m in state(app).staff.members() if m["role"] == "cashier")
    saved = client.post("/service/staff", data={"action": "set_pin", "staff_id": cashier["id"], "pin": "555555"})
    assert saved.status_code == 200 and "Збережено." in saved.text
    other = app.test_client()
    assert login(other, "111111", name="cashier").status_code == 401
    assert login(other, "555555", name="cashier").status_code == 302
    assert state(app).staff.audit_log()[0]["action"] == "login"
    assert any(e["action"] == "staff.set_pin" for e in state(app).staff.audit_log())


def test_staff_form_rejects_bad_pins_and_the_last_admin(app, client):
    login(client, "000000")
    members = state(app).staff.members()
    admin = next(m for m in members if m["role"] == "admin")
    for bad_pin in ("12a456", "1234", "١٢٣٤٥٦", "¹²³⁴⁵⁶", "１２３４５６", "1234567890123"):
        bad = client.post("/service/staff", data={"action": "add", "name": "Олена", "role": "manager", "pin": bad_pin})
        assert bad.status_code == 400 and "від 6 до 12 цифр" in bad.text, bad_pin
    last = client.post("/service/staff", data={"action": "deactivate", "staff_id": admin["id"]})
    assert last.status_code == 400 and "Останнього адміністратора" in last.text
    assert len(state(app).staff.members()) == len(members)   # nothing changed
    added = client.post("/service/staff", data={"action": "add", "name": "Олена", "role": "manager", "pin": "777777"})
    assert added.status_code == 200
    assert login(app.test_client(), "777777", name="Олена").status_code == 302


def test_unknown_staff_id_is_a_404_not_a_crash(client):
    login(client, "000000")
    assert client.post("/service/staff", data={"action": "set_pin", "staff_id": "999", "pin": "444444"}).status_code == 404
    assert client.post("/service/staff", data={"action": "set_pin", "staff_id": "x", "pin": "444444"}).status_code == 400


def test_no_form_input_makes_service_mode_fail(app):
    """Whatever the login, PIN and staff forms receive: an answer below 500, never a redirect off
    the kiosk."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    anonymous, admin = app.test_client(), app.test_client()
    login(admin, "000000")
    text = st.text(max_size=30) | st.sampled_from(["", "0", "-1", "99999999999999999999", "１", "000000", "123456"])

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(["/service/login", "/service/pin", "/service/staff", "/service/logout",
                                 "/service/login?next=//evil.example/"]),
           form=st.dictionaries(st.sampled_from(["staff_id", "pin", "pin2", "action", "name", "role"]), text),
           logged_in=st.booleans())
    def post(path, form, logged_in):
        response = (admin if logged_in else anonymous).post(path, data=form)
        assert response.status_code < 500, (path, form)
        assert "evil" not in response.headers.get("Location", "")

    post()


def test_a_pin_someone_else_has_is_neither_refused_nor_disclosed(app, client):
    """Log-in names the person, so PINs need not be unique; refusing a taken PIN would tell
    whoever chose it a colleague's PIN (and let anyone with service mode probe for them)."""
    login(client, "000000")
    cashier = next(m for m in state(app).staff.members() if m["role"] == "cashier")
    assert client.post("/service/staff", data={"action": "set_pin", "staff_id": cashier["id"],
                                               "pin": "583016"}).status_code == 200
    added = client.post("/service/staff", data={"action": "add", "name": "Олена", "role": "manager", "pin": "583016"})
    assert added.status_code == 200 and "Збережено." in added.text
    assert login(app.test_client(), "583016", name="Олена").status_code == 302
    assert login(app.test_client(), "583016", name="cashier").status_code == 302
    assert login(app.test_client(), "583016", name="admin").status_code == 401


def test_a_sample_pin_is_never_a_new_pin(app, client):
    login(client, "000000")
    sample = client.post("/service/staff", data={"action": "add", "name": "Олена", "role": "manager", "pin": "222222"})
    assert sample.status_code == 400 and "початкових PIN-кодів" in sample.text
