"""Input limits: request bodies (MAX_CONTENT_LENGTH and the routes that may take more), JSON depth,
size and type, and numbers that must be written in ASCII digits."""
from __future__ import annotations

import io
import json

import pytest
from flask.testing import FlaskClient

from tests.terminal.limits_helpers import csrf_token, log_in_admin, register_tablet
from terminal import limits
from terminal.state import state

NOT_ASCII_NUMBERS = ["²", "³", "٣", "１２", "𝟙", "Ⅻ", "½", " 2", "2 ", "+2", "-2", "2_0", "0x10", "2.0",
                     "1e3", "\u202e2", "2\x00", "9" * 19, "1" * 5000]


@pytest.fixture
def staff(app):
    client = FlaskClient(app, app.response_class, use_cookies=True)
    log_in_admin(client)
    client.csrf = csrf_token(client)
    return client


def post(client, path, data=None, **kwargs):
    data = dict(data or {})
    if client.csrf:
        data["csrf_token"] = client.csrf
    return client.post(path, data=data, **kwargs)


# --- numbers -----------------------------------------------------------------------------------
def test_ascii_int_accepts_only_ascii_digits_in_range(app):
    with app.test_request_context():
        assert limits.ascii_int("0") == 0
        assert limits.ascii_int("0042", 0, 100) == 42
        assert limits.ascii_int("", default=7) == 7
        assert limits.ascii_int(None, default=None) is None
        for bad in NOT_ASCII_NUMBERS + ["", "101"]:
            with pytest.raises(Exception) as caught:
                limits.ascii_int(bad, 0, 100)
            assert getattr(caught.value, "code", None) == 400, bad


@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS)
def test_numeric_query_parameters_answer_400(staff, value):
    assert staff.get("/service/surveys/bursts", query_string={"page": value}).status_code == 400
    assert staff.get("/service/surveys/reports", query_string={"admin": value}).status_code == 400
    assert staff.get("/service/surveys/reports.csv", query_string={"admin": value}).status_code == 400


@pytest.mark.parametrize("value", ["²", "٣", "１２", " 3", "-1", "9" * 25])
def test_numeric_form_fields_answer_400(staff, value):
    assert post(staff, "/service/surveys/bursts/1/review",
                {"decision": "genuine", "answers": value}).status_code == 400
    assert post(staff, "/service/surveys/definitions/default/activate", {"version": value}).status_code == 400
    assert post(staff, "/service/staff", {"action": "deactivate", "staff_id": value}).status_code == 400
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    assert post(staff, "/service/surveys/media", {"file": (io.BytesIO(png), "a.png"), "alt_uk": "Лого",
                                                  "alt_en": "Logo", "duration": value},
                content_type="multipart/form-data").status_code == 400


def test_valid_numbers_still_work(staff):
    assert staff.get("/service/surveys/bursts", query_string={"page": "2"}).status_code == 200
    assert staff.get("/service/surveys/reports", query_string={"admin": "1"}).status_code == 200


@pytest.mark.parametrize("segment", ["٣", "１", "²", "99999999999999999999999", "-1", "+1"])
def test_integer_path_segments_are_ascii_and_bounded(app, staff, segment):
    """<int:…> in a route matches ASCII digits only, up to SQLite's INTEGER: a Unicode digit or a
    huge number is no such page (404), never another tablet or a 500."""
    tablet_id, _ = register_tablet(app)
    assert segment != str(tablet_id)
    assert post(staff, f"/service/surveys/tablets/{segment}/revoke").status_code == 404
    assert post(staff, f"/service/surveys/media/{segment}/remove").status_code == 404
    assert staff.get(f"/service/surveys/definitions/default/{segment}.yaml").status_code == 404
    assert state(app).surveys.tablet(tablet_id).active


# --- bodies ------------------------------------------------------------------------------------
def test_max_content_length_is_a_setting(app):
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    client = app.test_client()
    too_big = client.post("/prefs", data={"action": "larger", "next": "/" + "x" * (1024 * 1024)})
    assert too_big.status_code == 413
    assert "Завеликий запит" in too_big.text


def test_answer_batches_may_be_larger_than_the_default_limit_but_not_unbounded(app):
    _, token = register_tablet(app)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    client = app.test_client()
    padding = "x" * (1024 * 1024 + 200_000)   # over MAX_CONTENT_LENGTH, under the API's 2 MiB
    ok = client.post("/api/survey/answers", data=json.dumps({"sent_at": 0, "answers": [], "pad": padding}),
                     headers=headers)
    assert ok.status_code != 413 and ok.is_json
    huge = json.dumps({"answers": [], "pad": "x" * (3 * 1024 * 1024)})
    for path in ("/api/survey/answers", "/api/survey/shift"):   # 2 MiB and 1 MiB
        response = client.post(path, data=huge, headers=headers)
        assert response.status_code == 400 and response.is_json, path   # a bad document, like any other


def test_media_uploads_may_be_larger_than_the_default_limit(staff, app):
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * (3 * 1024 * 1024)
    response = post(staff, "/service/surveys/media", {"file": (io.BytesIO(png), "big.png"), "alt_uk": "Лого",
                                                      "alt_en": "Logo", "duration": "5"},
                    content_type="multipart/form-data")
    assert response.status_code == 302
    assert any(m["kind"] == "image" for m in state(app).surveys.media())


def test_forms_with_too_many_parts_are_refused(staff):
    fields = {f"f{i}": "x" for i in range(150)}
    response = post(staff, "/service/surveys/administrators", fields, content_type="multipart/form-data")
    assert response.status_code == 413


# --- JSON ----------------------------------------------------------------------------------------
def nested(depth: int):
    """``depth`` arrays, one inside the other."""
    value: list = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.fixture
def tablet_client(app):
    _, token = register_tablet(app)
    client = app.test_client()
    client.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return client


def send(client, path, raw: str | bytes):
    return client.post(path, data=raw, headers=client.headers)


@pytest.mark.parametrize("path", ["/api/survey/answers", "/api/survey/shift"])
def test_deeply_nested_json_is_400_not_500(tablet_client, path):
    for depth in (21, 200, 5_000, 100_000):
        body = '{"pin": ' + "[" * depth + "]" * depth + "}"
        response = send(tablet_client, path, body)
        assert response.status_code == 400, depth
        assert response.is_json


def test_json_within_the_depth_limit_is_read(tablet_client):
    within = json.dumps({"sent_at": 0, "answers": [], "extra": nested(19)})
    assert send(tablet_client, "/api/survey/answers", within).status_code == 200


@pytest.mark.parametrize("raw", ["[1, 2]", '"text"', "17", "null", "true", '{"pin": NaN}', '{"pin": Infinity}',
                                 '{"sent_at": 1e999, "answers": []}', "{", "\ufeff{}", b"\xff\xfe{}",
                                 '{"a": 1}' + " " * 10 + "x"])
@pytest.mark.parametrize("path", ["/api/survey/answers", "/api/survey/shift"])
def test_json_that_is_not_an_object_or_not_json_is_400(tablet_client, path, raw):
    response = send(tablet_client, path, raw)
    assert response.status_code == 400 and response.is_json


def test_json_depth_limit_is_a_setting(app):
    assert app.config["MAX_JSON_DEPTH"] == 20
    assert not limits.json_depth_exceeds(nested(20), 20)
    assert limits.json_depth_exceeds(nested(21), 20)
    assert limits.json_depth_exceeds({"a": [{"b": nested(19)}]}, 20)


def test_multipart_parts_without_a_name_are_ignored_not_a_500(staff):
    """werkzeug files such a part under the key None; Flask-WTF's CSRF check then crashed."""
    body = (b"--x\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n"
            b"--x\r\nContent-Disposition: form-data; filename=\"a.png\"\r\n\r\n\x89PNG\r\n--x--\r\n")
    for path in ("/service/logout", "/prefs", "/service/surveys/media"):
        response = staff.post(path, data=body, content_type="multipart/form-data; boundary=x")
        assert response.status_code in (302, 400), (path, response.status_code)


@pytest.mark.parametrize("query", [{"to": "0001-01-05"}, {"from": "0001-01-01", "to": "9999-12-31"},
                                   {"from": "9999-12-31"}, {"to": "9999-12-30", "group": "admin"}])
def test_report_dates_at_the_ends_of_the_calendar_are_no_500(staff, query):
    """Reports add days and take epoch times around their dates; years 1 and 9999 overflowed."""
    for path in ("/service/surveys/reports", "/service/surveys/reports.csv"):
        for kind in ("answers", "summary"):
            response = staff.get(path, query_string={**query, "kind": kind})
            response.get_data()
            assert response.status_code == 200, (path, kind)


# ---- request values that end up in response headers ----------------------------------------------
@pytest.mark.parametrize("target, kept", [
    ("/service/staff", True), ("/", True), ("/services?q=a%20b", True),
    ("//evil.example/x", False), ("/\\evil.example", False), ("https://evil.example/", False),
    ("/service/\r\nSet-Cookie: x=1", False), ("/service/\x00", False), ("service", False), ("", False),
])
def test_local_path_keeps_only_paths_on_the_kiosk(target, kept):
    assert (limits.local_path(target) == target) is kept
    if not kept:
        assert limits.local_path(target) is None


@pytest.mark.parametrize("name", ["a\r\nSet-Cookie: x=1.csv", "../../etc/passwd", "звіт.csv", "\x00", ""])
def test_attachment_names_cannot_break_the_header(name):
    value = limits.attachment(name)["Content-Disposition"]
    assert value.startswith("attachment; filename=")
    filename = value.split("=", 1)[1]
    assert filename and all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in filename)


@pytest.mark.parametrize("kind", ["\r", "answers\r\nX: 1", "other", ""])
def test_report_export_refuses_unknown_kinds(staff, kind):
    response = staff.get("/service/surveys/reports.csv", query_string={"kind": kind})
    assert response.status_code == 400


def test_report_export_names_the_file_from_checked_values(staff):
    response = staff.get("/service/surveys/reports.csv", query_string={"kind": "summary"})
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment; filename=survey-summary-")


@pytest.mark.parametrize("target", ["/\\evil.example", "/service/\r\nX: 1", "//evil.example", "https://e.example/",
                                    "/pay/"])
def test_service_next_cannot_leave_the_service_area(app, target):
    from terminal.views import service
    with app.test_request_context("/service/login"):
        assert service._safe_service_target(target) == "/service/"
        assert service._safe_service_target("/service/staff") == "/service/staff"
