"""The sync API and the service-mode pages through Flask's test client."""
import io
import re
import time
import uuid

import pytest

from tests.helpers import service_login
from terminal.state import state


def login(client, pin="000000"):
    assert service_login(client, pin).status_code == 302


@pytest.fixture
def token(app, client):
    login(client)
    branch = state(app).catalogue.branches[0].id
    page = client.post("/service/surveys/tablets", data={"label": "Планшет 1", "branch": branch, "desk": "Вікно 1",
                                                         "survey": "desk", "base": "http://10.0.0.2:8080"})
    assert page.status_code == 200
    link = re.search(r'id="tablet-link" href="([^"]+)"', page.text).group(1)
    assert link.startswith("http://10.0.0.2:8080/tablet/#token=")
    return link.split("#token=")[1]


def answer(**extra):
    data = {"uuid": str(uuid.uuid4()), "survey": "desk", "version": 1, "answered_at": time.time() - 60,
            "main": "good", "path": [["liked", "speed"]], "nps": 9, "comment": None}
    data.update(extra)
    return data


def post(client, token, answers, **body):
    return client.post("/api/survey/answers", json={"sent_at": time.time(), "answers": answers, **body},
                       headers={"Authorization": f"Bearer {token}"})


def test_config_and_batch_sync(client, token):
    config = client.get("/api/survey/config", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert config["survey"]["version"] == 1 and config["tablet"]["desk"] == "Вікно 1"
    # The tablet's strings come from the catalogue (i18n.js), not with the configuration.
    assert "ui" not in config
    assert client.get("/tablet/i18n/en.json").get_json()["messages"]["tablet.staff.start"] == "Start shift"
    answers = [answer(answered_at=time.time() - 600 + i * 10) for i in range(50)]
    response = post(client, token, answers)
    assert [r["status"] for r in response.get_json()["results"]] == ["stored"] * 50
    assert [r["status"] for r in post(client, token, answers).get_json()["results"]] == ["duplicate"] * 50


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer forged"}, {"Authorization": "Basic abc"}])
def test_unknown_tokens_are_refused(client, token, headers, caplog):
    response = client.post("/api/survey/answers", json={"answers": [answer()]}, headers=headers)
    assert response.status_code == 401 and response.get_json()["error"] == "unknown_token"
    assert any("refused" in r.message for r in caplog.records)


def test_revoked_token_is_refused_and_stores_nothing(app, client, token):
    store = state(app).surveys
    tablet = store.tablet_by_token(token)
    assert client.post(f"/service/surveys/tablets/{tablet.id}/revoke").status_code == 302
    response = post(client, token, [answer()])
    assert response.status_code == 401 and response.get_json()["error"] == "revoked_token"
    assert store.count_answers() == 0


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"answers": "x"}', b'{"answers": [], "sent_at": "now"}'])
def test_malformed_batches_get_a_clear_400(client, token, body):
    response = client.post("/api/survey/answers", data=body, content_type="application/json",
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400 and response.get_json()["message"]


def test_oversized_batch_is_refused(client, token):
    response = post(client, token, [answer() for _ in range(501)])
    assert response.status_code == 400 and response.get_json()["error"] == "batch_too_large"


def test_shift_api(app, client, token):
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    client.post("/service/surveys/administrators", data={"name": "Олена К.", "branch": branch, "pin": "432154"})
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/survey/shift", json={"pin": "111122"}, headers=headers).status_code == 403
    shift = client.post("/api/survey/shift", json={"pin": "432154"}, headers=headers).get_json()["shift"]
    assert shift["admin_name"] == "Олена К."
    assert post(client, token, [answer(shift_id=shift["id"], answered_at=time.time())]).get_json()["results"][0]["status"] == "stored"
    assert store.answers()[0]["admin_id"] == store.administrators()[0].id
    client.post("/api/survey/shift/end", headers=headers)
    assert client.get("/api/survey/config", headers=headers).get_json()["shift"] is None


def test_service_pages_need_a_manager(app, client):
    login(client, "111111")        # a cashier
    assert client.get("/service/surveys/reports").status_code == 403
    assert client.get("/service/surveys/tablets").status_code == 403


def test_a_manager_can_use_the_survey_pages(app, client):
    state(app).staff.add("Марія", "manager", "555566")
    login(client, "555566")
    for path in ("/service/surveys/tablets", "/service/surveys/administrators", "/service/surveys/definitions",
                 "/service/surveys/media", "/service/surveys/reports", "/service/surveys/reports.csv"):
        assert client.get(path).status_code == 200, path


def test_definition_import_edit_and_export(app, client):
    login(client)
    store = state(app).surveys
    source = store.source("desk", 1).replace("Чудово", "Відмінно")
    response = client.post("/service/surveys/definitions/import",
                           data={"file": (io.BytesIO(source.encode()), "desk.yaml")})
    assert response.status_code == 302 and store.current("desk")[0] == 2
    bad = client.post("/service/surveys/definitions/desk/edit", data={"source": "id: desk\nmain: {}"})
    assert bad.status_code == 400 and "main faces" in bad.text and store.current("desk")[0] == 2
    exported = client.get("/service/surveys/definitions/desk/2.yaml")
    assert "Відмінно" in exported.text and exported.headers["Content-Disposition"].endswith("desk-v2.yaml")
    assert client.post("/service/surveys/definitions/desk/activate", data={"version": "1"}).status_code == 302
    assert store.current("desk")[0] == 1
    log = [e["action"] for e in state(app).staff.audit_log()]
    assert "survey.definition.import" in log and "survey.definition.activate" in log


def test_media_upload_checks_type_and_description(app, client):
    login(client)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    bad = client.post("/service/surveys/media", data={"file": (io.BytesIO(b"<script>"), "x.png"),
                                                      "alt_uk": "а", "alt_en": "b"})
    assert bad.status_code == 400
    no_alt = client.post("/service/surveys/media", data={"file": (io.BytesIO(png), "x.png"), "alt_uk": "", "alt_en": ""})
    assert no_alt.status_code == 400
    ok = client.post("/service/surveys/media", data={"file": (io.BytesIO(png), "x.png"), "alt_uk": "Логотип",
                                                     "alt_en": "Logo", "duration": "5"})
    assert ok.status_code == 302
    media = state(app).surveys.media()
    assert media[0]["alt"] == {"uk": "Логотип", "en": "Logo"}
    served = client.get(f"/tablet/media/{media[0]['filename']}")
    assert served.status_code == 200 and served.data == png


def test_report_csv_matches_the_stored_answers(app, client, token):
    post(client, token, [answer(main="bad", path=[["why_bad", "waiting"]], comment="дзвоніть 0501234567",
                                answered_at=time.time() - 100), answer(answered_at=time.time() - 50)])
    csv_text = client.get("/service/surveys/reports.csv").data.decode("utf-8-sig")
    lines = csv_text.strip().splitlines()
    assert len(lines) == 3 and "0501234567" not in csv_text and "why_bad=waiting" in csv_text
    page = client.get("/service/surveys/reports")
    assert re.search(r'id="kpi-count">2<', page.text) and re.search(r'id="kpi-csat">50.0 %<', page.text)
    assert "<svg" in page.text and "chart-title" in page.text
