"""Service mode's "Будівля / Facility" section: read from a real `cnap agent` endpoint (fake
controllers behind it) over loopback; roles, the agent down, the ventilation override form."""
from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from facility.runner import Runner
from monitoring.agent import Agent
from terminal import settings as settings_module
from terminal.state import state
from tests.facility.fakes import FakeController, wait_until
from tests.helpers import service_login

TECHNICIAN, ADMIN, CASHIER, MANAGER_NAME = "222222", "000000", "111111", "Марія Керівник"


def start_agent(app, controllers, unavailable=None) -> Agent:
    """A real agent endpoint on a free loopback port, sharing the kiosk's instance folder (and so
    its token file); the kiosk app is pointed at it."""
    values = settings_module.load({"INSTANCE_PATH": app.config["INSTANCE_PATH"]}, environ={})
    agent = Agent(values, runner=Runner(controllers, unavailable))
    agent.start(port=0)
    app.config["AGENT_PORT"] = agent.server.port
    return agent


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # nothing listens there once the socket is closed


@pytest.fixture
def vent():
    return FakeController("ventilation", state="demand", extra={"co2_ppm": 812, "fan_percent": 40,
                                                                "filter_dirty": False})


@pytest.fixture
def agent(app, vent):
    power = FakeController("power", state="online", extra={"battery_charge": 100})
    running = start_agent(app, [vent, power], {"uplinks": "cannot import facility.uplinks: No module named x"})
    assert wait_until(lambda: vent.polls and power.polls)
    yield running
    running.stop()


@pytest.fixture
def agent_down(app):
    app.config["AGENT_PORT"] = closed_port()


def test_only_technicians_and_admins_see_the_facility(app, client, agent):
    assert client.get("/service/facility").status_code == 302          # log in first
    store = state(app).staff
    store.add(MANAGER_NAME, "manager", "468024")
    for pin in (CASHIER, "468024"):
        other = app.test_client()
        service_login(other, pin)
        assert other.get("/service/facility").status_code == 403
        assert other.post("/service/facility/override", data={"level": "50", "minutes": "10"}).status_code == 403
        assert "Будівля" not in other.get("/service/").text
    for pin in (TECHNICIAN, ADMIN):
        staff = app.test_client()
        service_login(staff, pin)
        assert "Будівля" in staff.get("/service/").text
        assert staff.get("/service/facility").status_code == 200
    assert agent.runner._slots["ventilation"].controller.commands == []


def test_the_screen_shows_each_controller_as_the_agent_reports_it(client, agent, vent):
    vent.events.insert(0, {"at": "2026-12-05T10:00:00+00:00", "kind": "filter",
                           "text_uk": "Фільтр забруднений", "text_en": "Filter dirty"})
    service_login(client, TECHNICIAN)
    page = client.get("/service/facility").text
    for text in ("Вентиляція", "Живлення", "Інтернет-канали", "за потребою (CO₂)", "від мережі",
                 "co2 ppm", "812", "контролер не завантажено", "No module named x",
                 "2026-12-05 12:00:00", "Фільтр забруднений", "Ручний режим вентиляції"):
        assert text in page, text
    assert page.count("Недоступний") == 1          # uplinks only
    client.post("/lang/en", data={"next": "/service/facility"})
    page = client.get("/service/facility").text
    for text in ("Facility", "Ventilation", "on demand (CO₂)", "Filter dirty", "Start the override"):
        assert text in page, text


def test_agent_down_is_an_honest_panel_never_an_error(app, client, agent_down):
    service_login(client, TECHNICIAN)
    response = client.get("/service/facility")
    assert response.status_code == 200
    assert "Агент недоступний" in response.text and "cnap agent" in response.text
    assert 'name="level"' not in response.text      # nothing to command
    sent = client.post("/service/facility/override", data={"level": "50", "minutes": "10"})
    assert sent.status_code == 503 and "агент недоступний" in sent.text
    assert state(app).staff.audit_log()[0]["action"] == "facility.override"


def test_an_agent_that_stops_or_holds_another_token_is_shown_as_down(app, client, agent):
    service_login(client, TECHNICIAN)
    assert "Агент недоступний" not in client.get("/service/facility").text
    token_file = app.config["INSTANCE_PATH"] + "/agent.token"
    with open(token_file, "w") as fh:
        fh.write("x" * 43)
    page = client.get("/service/facility")
    assert page.status_code == 200 and "Агент недоступний" in page.text and "401" in page.text
    agent.stop()
    page = client.get("/service/facility")
    assert page.status_code == 200 and "Агент недоступний" in page.text


def test_an_override_goes_to_the_ventilation_controller_and_its_answer_is_shown(app, client, agent, vent):
    service_login(client, TECHNICIAN)
    response = client.post("/service/facility/override", data={"level": "60", "minutes": "30"})
    assert response.status_code == 200
    assert vent.commands == [("override", {"level": 60, "minutes": 30})]
    assert "Ручний режим увімкнено." in response.text and "level 60 for 30 min" in response.text
    assert "ручний режим" in response.text                   # its state, read after the command
    entry = state(app).staff.audit_log()[0]
    assert entry["action"] == "facility.override"


def test_a_refused_override_says_so(client, agent, vent):
    vent.command = lambda action, args: {"ok": False, "message": "frost protection active"}
    service_login(client, TECHNICIAN)
    response = client.post("/service/facility/override", data={"level": "100", "minutes": "240"})
    assert response.status_code == 409
    assert "Вентиляція не прийняла команду." in response.text and "frost protection active" in response.text


BAD_OVERRIDES = [
    ("101", "10", ["level"]), ("50", "0", ["minutes"]), ("50", "241", ["minutes"]), ("", "", ["level", "minutes"]),
    ("-5", "10", ["level"]), ("٣", "10", ["level"]), ("5.5", "10", ["level"]), ("50", "1e3", ["minutes"]),
    (" 50", "10\x00", ["minutes"]), ("9" * 5000, "10", ["level"]), ("50", "²", ["minutes"]),
]


def test_override_limits_are_checked_before_anything_is_sent(client, agent, vent):
    service_login(client, TECHNICIAN)
    for level, minutes, bad in BAD_OVERRIDES:
        response = client.post("/service/facility/override", data={"level": level, "minutes": minutes})
        assert response.status_code == 400, (level, minutes)
        for field in bad:
            assert f'id="override-{field}-error"' in response.text, (level, minutes, field)
        assert 'aria-invalid="true"' in response.text
    assert vent.commands == []


def test_an_override_without_the_csrf_token_does_nothing(client, agent, vent):
    service_login(client, TECHNICIAN)
    assert client.post("/service/facility/override", data={"level": "60", "minutes": "30"}, csrf=False).status_code == 400
    assert vent.commands == []


def test_the_facility_limit_is_a_setting(app, client, agent, vent):
    app.config["VENT_OVERRIDE_MAX_MIN"] = 60
    service_login(client, TECHNICIAN)
    assert "1–60" in client.get("/service/facility").text
    assert client.post("/service/facility/override", data={"level": "60", "minutes": "61"}).status_code == 400
    assert vent.commands == []


def test_a_controller_not_configured_on_this_site_is_not_shown_as_a_fault(app, client):
    idle = FakeController("uplinks", state="disabled")
    idle.status = lambda: {"available": False, "state": "disabled", "alerts": [], "events": []}
    running = start_agent(app, [idle])
    try:
        assert wait_until(lambda: idle.polls)
        service_login(client, TECHNICIAN)
        page = client.get("/service/facility").text
        assert "не налаштовано" in page and "Недоступний" not in page and "facility-unavailable" not in page
    finally:
        running.stop()


def test_an_agent_that_takes_the_request_and_never_answers(app, client):
    """Status: shown as unavailable after AGENT_TIMEOUT_S. A command: it may have been carried out,
    so the screen says to check the state instead of claiming it was not sent."""
    from monitoring.agent import ensure_token

    ensure_token(__import__("pathlib").Path(app.config["INSTANCE_PATH"]) / "agent.token")
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        app.config.update(AGENT_PORT=mute.getsockname()[1], AGENT_TIMEOUT_S=0.3)
        service_login(client, TECHNICIAN)
        page = client.get("/service/facility")
        assert page.status_code == 200 and "Агент недоступний" in page.text
        sent = client.post("/service/facility/override", data={"level": "50", "minutes": "10"})
        assert sent.status_code == 503 and "команда могла виконатися" in sent.text


def test_the_level_limit_is_the_ventilations_own_and_an_override_can_be_cancelled(app, client):
    vent = FakeController("ventilation", state="demand", extra={"max_level": 3})

    def command(action, args):
        vent.commands.append((action, args))
        vent.state = "override" if action == "override" else "demand"
        return {"ok": True, "message": "override cancelled" if action == "cancel_override" else "level 3 for 10 min"}

    vent.command = command
    running = start_agent(app, [vent])
    try:
        assert wait_until(lambda: vent.polls)
        service_login(client, TECHNICIAN)
        page = client.get("/service/facility").text
        assert "Рівень (0–3)" in page and "Повернути автоматичне керування" not in page
        refused = client.post("/service/facility/override", data={"level": "4", "minutes": "10"})
        assert refused.status_code == 400 and "від 0 до 3" in refused.text and vent.commands == []
        done = client.post("/service/facility/override", data={"level": "3", "minutes": "10"})
        assert done.status_code == 200 and "Повернути автоматичне керування" in done.text
        cancelled = client.post("/service/facility/override/cancel")
        assert cancelled.status_code == 200 and "Ручний режим вимкнено" in cancelled.text
        assert vent.commands == [("override", {"level": 3, "minutes": 10}), ("cancel_override", {})]
        assert [e["action"] for e in state(app).staff.audit_log()[:2]] == ["facility.override_cancel",
                                                                          "facility.override"]
        assert client.post("/service/facility/override/cancel", csrf=False).status_code == 400
        assert len(vent.commands) == 2
    finally:
        running.stop()


def test_nested_readings_are_rows_of_their_own(app, client):
    uplinks = FakeController("uplinks", state="degraded", extra={
        "readings": {"co2_ppm": 640.5}, "override": {"level": 2, "until": "2026-12-05T12:00:00+00:00"},
        "uplinks": [{"name": "wan0", "state": "up"}, {"name": "lte0", "state": "down", "since": None,
                                                      "paths": {"http://127.0.0.1:9/": {"loss_pct": 100}}}],
        "error": None})
    running = start_agent(app, [uplinks])
    try:
        assert wait_until(lambda: uplinks.polls)
        service_login(client, TECHNICIAN)
        page = client.get("/service/facility").text
        for cell in ('<th scope="row">co2 ppm</th><td>640.5</td>', '<th scope="row">ручний режим: level</th><td>2</td>',
                     '<th scope="row">ручний режим: until</th><td>2026-12-05 14:00:00</td>',
                     '<th scope="row">uplinks: lte0</th><td>state: down</td>', "частина каналів не працює"):
            assert cell in page, cell
        assert '<th scope="row">error</th>' not in page
    finally:
        running.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-12-05T10:00:00Z"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15)
controller_status = st.dictionaries(
    st.sampled_from(["available", "state", "alerts", "events", "fault", "polled_at", "max_level",
                     "readings", "uplinks", "other"]), json_values, max_size=8)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["ventilation", "power", "uplinks", "x_y"]), controller_status, max_size=4),
       json_values)
def test_whatever_the_agent_reports_the_screen_renders(app, controllers, at):
    """The agent's answer is input too: any JSON in the status's shape renders, never a 500."""
    from flask import g, render_template

    from terminal.views.service import _facility_view

    with app.test_request_context("/service/facility"):
        g.staff = None
        view = _facility_view({"at": at, "controllers": controllers})
        html = render_template("service/facility.html", view=view, problem=None, result=None, errors={},
                               values={"level": "", "minutes": ""}, max_minutes=240, max_level=view["max_level"])
    assert html.count('data-controller="') == len(controllers)
