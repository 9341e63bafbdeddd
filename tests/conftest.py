"""Shared fixtures: an app over a temporary instance folder, a live server on loopback, and
Debian's Chromium driven by Playwright."""
from __future__ import annotations

import os
import shutil

import pytest

from terminal import close_app, create_app
from terminal.server import BackgroundServer

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21aa", "wcag22aa"]


@pytest.fixture(autouse=True)
def _kiosk_past_its_first_day(monkeypatch):
    """Every app a test builds: test clients send the CSRF token their page gave them (CSRF
    protection stays on, see tests/helpers.py), and the seeded sample PINs count as already
    replaced, so tests keep logging in with 000000/111111/222222. The forced first change is
    tested on its own in tests/terminal/test_staff_sessions.py (SERVICE_PINS_MUST_CHANGE on)."""
    from flask import Flask

    from tests.helpers import BrowserLikeClient

    monkeypatch.setattr(Flask, "test_client_class", BrowserLikeClient)
    monkeypatch.setenv("CNAP_SERVICE_PINS_MUST_CHANGE", "0")


@pytest.fixture
def app(tmp_path):
    application = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "TESTING": True,
                              "SECRET_KEY": "test", "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "",
                              "PRINTER_URL": ""})
    yield application
    close_app(application)


@pytest.fixture
def client(app):
    return app.test_client()


class LiveServer(BackgroundServer):
    """The app served for real (waitress, as `cnap kiosk` serves it), for browsers and HTTP clients."""

    def __init__(self, app):
        self.app = app
        super().__init__(app)


@pytest.fixture
def live_server(app):
    server = LiveServer(app)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None or shutil.which("xvfb-run") is None and CHROMIUM is None:
        pytest.fail("Debian's chromium is not installed: run `make test`, which installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, has_touch=True, locale="uk-UA")
    pg = context.new_page()
    yield pg
    context.close()


def axe_violations(page) -> list[dict]:
    """axe-core over the current page with the WCAG 2.2 AA tags; returns the violations."""
    from axe_playwright_python.sync_playwright import Axe

    result = Axe().run(page, options={"runOnly": {"type": "tag", "values": AXE_TAGS},
                                      "resultTypes": ["violations"]})
    return [{"id": v["id"], "impact": v.get("impact"), "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result.response["violations"]]
