"""Shared kiosk behaviour: preferences, reset, health, metrics, error pages."""
import re

import pytest
from terminal.state import state


def test_home_is_ukrainian_first_and_switches_to_english(client):
    home = client.get("/")
    assert home.status_code == 200
    assert '<html lang="uk"' in home.text
    assert "Категорії послуг" in home.text
    switched = client.post("/lang/en", data={"next": "/"}, follow_redirects=True)
    assert '<html lang="en"' in switched.text
    assert "Service categories" in switched.text
    # The switch back is offered in the other language on every screen.
    assert 'lang="uk">Українська</button>' in switched.text


def test_text_size_steps_up_to_200_percent_and_not_beyond(client):
    for expected in (125, 150, 175, 200, 200):
        page = client.post("/prefs", data={"action": "larger", "next": "/"}, follow_redirects=True)
        assert f'class="size-{expected}' in page.text
    page = client.post("/prefs", data={"action": "smaller", "next": "/"}, follow_redirects=True)
    assert 'class="size-175' in page.text


def test_high_contrast_toggles(client):
    on = client.post("/prefs", data={"action": "contrast", "next": "/"}, follow_redirects=True)
    assert re.search(r'<html[^>]+class="size-100 contrast"', on.text)
    off = client.post("/prefs", data={"action": "contrast", "next": "/"}, follow_redirects=True)
    assert "contrast\"" not in off.text.split(">", 2)[1]


@pytest.mark.parametrize("target", ["http://example.org/", "//example.org/x", "javascript:alert(1)", "relative"])
def test_preference_redirects_never_leave_the_kiosk(client, target):
    response = client.post("/lang/en", data={"next": target})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_reset_forgets_language_size_and_contrast(client):
    client.post("/lang/en", data={"next": "/"})
    client.post("/prefs", data={"action": "larger", "next": "/"})
    client.post("/prefs", data={"action": "contrast", "next": "/"})
    page = client.post("/reset", follow_redirects=True)
    assert '<html lang="uk" class="size-100">' in page.text


def test_idle_settings_reach_the_page_with_at_least_20_seconds_warning(app):
    app.config["IDLE_WARNING_S"] = 5  # too short for WCAG 2.2.1: the page must still give 20
    page = app.test_client().get("/")
    assert 'data-idle-warning="20"' in page.text
    assert f'data-idle-timeout="{app.config["IDLE_TIMEOUT_S"]}"' in page.text


def test_healthz_reports_catalogue(client):
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok"
    assert body["checks"]["catalogue"]["ok"] is True
    assert body["checks"]["catalogue"]["services"] >= 80


def test_healthz_turns_degraded_when_a_check_fails(app):
    state(app).health["printer"] = lambda: (False, {"paper": "out"})
    state(app).health["broken"] = lambda: 1 / 0
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["checks"]["printer"] == {"ok": False, "paper": "out"}
    assert body["checks"]["broken"] == {"ok": False, "error": "ZeroDivisionError"}


def test_metrics_count_requests_and_latency(client):
    client.get("/")
    client.get("/service/no-such-thing")
    text = client.get("/metrics").text
    assert re.search(r'cnap_http_requests_total\{endpoint="catalogue.home",method="GET",status="200"\} 1\.0', text)
    assert 'status="404"' in text
    assert "cnap_http_request_seconds_bucket" in text


@pytest.mark.parametrize("path", ["/service/xyz-unknown", "/package/nope", "/category/nope", "/nowhere"])
def test_unknown_pages_are_kiosk_styled_404s_with_a_way_home(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "Сторінку не знайдено" in response.text
    assert 'href="/"' in response.text and "На головну" in response.text


def test_security_headers_keep_everything_local(client):
    headers = client.get("/").headers
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"


def test_reset_is_a_post_and_a_forged_one_changes_nothing(app, client):
    from tests.terminal.test_csrf import plain_client

    client.post("/lang/en", data={"next": "/"})
    assert client.get("/reset").status_code == 405           # no link or image can reset
    forged = client.post("/reset", csrf=False)               # no token: home, nothing forgotten
    assert forged.status_code == 302 and forged.headers["Location"] == "/"
    assert '<html lang="en"' in client.get("/").text
    stale = plain_client(app)                                # a page older than its session
    response = stale.post("/reset", data={"csrf_token": "from-before-a-restart"})
    assert response.status_code == 302 and response.headers["Location"] == "/"


# --- static files: versioned URLs, cached for good -------------------------------------------------
def _sha12(path):
    import hashlib
    from pathlib import Path

    return hashlib.sha256((Path(__file__).parents[2] / "terminal" / "static" / path).read_bytes()).hexdigest()[:12]


@pytest.mark.parametrize("page,url", [("/", "/static/kiosk.css"), ("/", "/static/kiosk.js"),
                                      ("/service/login", "/static/kiosk.css"),
                                      ("/tablet/", "/tablet/static/tablet.css"),
                                      ("/tablet/", "/tablet/static/tablet.js")])
def test_pages_link_static_files_by_content_hash(client, page, url):
    html = client.get(page).get_data(as_text=True)
    file = url.replace("/tablet/static/", "survey/").replace("/static/", "")
    assert f'{url}?v={_sha12(file)}"' in html


def test_a_versioned_static_file_is_cached_for_good_an_unversioned_one_revalidates(client):
    version = _sha12("kiosk.css")
    for url in (f"/static/kiosk.css?v={version}", f"/tablet/static/tablet.css?v={_sha12('survey/tablet.css')}"):
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable", url
    # Unversioned, or a version that is not this file's content (a page from before an update):
    # the browser must ask again, never keep it for a year.
    for url in ("/static/kiosk.css", "/static/kiosk.css?v=000000000000", "/tablet/static/tablet.css"):
        cache_control = client.get(url).headers.get("Cache-Control", "")
        assert "immutable" not in cache_control and "max-age=31536000" not in cache_control, url
    assert client.get("/").headers["Cache-Control"] == "no-store"   # pages still are never cached
