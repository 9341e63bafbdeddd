"""Service-mode pages in the kiosk window (its User-Agent carries WINDOW_USER_AGENT_MARK) offer no
download link and no file picker: the window would refuse them and the screen would just sit
there. They say to use a LAN browser or `cnap export` instead. Checked over every service-mode
page reachable from the URL map, and every link on them."""
from __future__ import annotations

import re

import pytest

from terminal.shell import WINDOW_USER_AGENT_MARK
from tests.helpers import service_login

WINDOW_UA = f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/605.1.15 (KHTML, like Gecko) {WINDOW_USER_AGENT_MARK}/1"
LAN_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HREF = re.compile(r'href="(/[^"#]*)"')


def service_pages(app) -> list[str]:
    return sorted({rule.rule for rule in app.url_map.iter_rules()
                   if rule.rule.startswith("/service") and "GET" in rule.methods and not rule.arguments
                   and rule.endpoint != "service.stop_kiosk"})


def is_file(response) -> bool:
    disposition = response.headers.get("Content-Disposition", "").split(";")[0].strip().lower()
    return bool(disposition and disposition != "inline") or response.mimetype not in ("text/html", "")


@pytest.fixture
def admin(client):
    assert service_login(client, "000000").status_code == 302
    return client


def test_window_pages_have_no_file_picker_and_no_link_to_a_file(admin):
    pages = service_pages(admin.application)
    assert "/service/surveys/reports" in pages and "/service/surveys/definitions" in pages
    checked_links = 0
    for path in pages:
        page = admin.get(path, headers={"User-Agent": WINDOW_UA})
        html = page.get_data(as_text=True)
        assert 'type="file"' not in html, f"{path} offers a file picker in the kiosk window"
        for link in set(HREF.findall(html.replace("&amp;", "&"))):
            if not link.startswith("/service"):
                continue
            target = admin.get(link, headers={"User-Agent": WINDOW_UA})
            checked_links += 1
            assert not is_file(target), f"{path} links to a file ({link}) in the kiosk window"
    assert checked_links > 10


def test_the_same_pages_in_a_lan_browser_keep_downloads_and_pickers(admin):
    reports = admin.get("/service/surveys/reports", headers={"User-Agent": LAN_UA}).get_data(as_text=True)
    csv_links = [link for link in HREF.findall(reports.replace("&amp;", "&")) if "reports.csv" in link]
    assert len(csv_links) == 2
    assert is_file(admin.get(csv_links[0], headers={"User-Agent": LAN_UA}))
    definitions = admin.get("/service/surveys/definitions", headers={"User-Agent": LAN_UA}).get_data(as_text=True)
    yaml_links = [link for link in HREF.findall(definitions) if link.endswith(".yaml")]
    assert yaml_links and is_file(admin.get(yaml_links[0], headers={"User-Agent": LAN_UA}))
    for path in ("/service/surveys/definitions", "/service/surveys/media"):
        assert 'type="file"' in admin.get(path, headers={"User-Agent": LAN_UA}).get_data(as_text=True)
    on_window = admin.get("/service/surveys/reports", headers={"User-Agent": WINDOW_UA}).get_data(as_text=True)
    assert "cnap export" in on_window and "reports.csv" not in on_window
