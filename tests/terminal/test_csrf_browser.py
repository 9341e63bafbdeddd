"""Cross-site requests in real Chromium: a page from another site (127.0.0.2, a different site
than the kiosk on 127.0.0.1 — loopback only) posts forms to the kiosk and links into service mode
while an administrator is logged in. Nothing changes: the session cookie is SameSite=Strict (the
browser does not send it), and the forms carry no CSRF token."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from tests.helpers import choose_staff
from terminal.state import state

pytestmark = pytest.mark.browser


class AttackerSite:
    """A plain HTTP server on 127.0.0.2 serving one HTML page."""

    def __init__(self, html: str):
        page = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def log_in_as_admin(page, kiosk_url):
    page.goto(kiosk_url + "/service/login")
    choose_staff(page, "admin")
    page.locator("#pin").fill("000000")
    page.get_by_role("button", name="Увійти").tap()
    expect(page.locator("h1")).to_have_text("Сервісний режим")


def test_a_cross_site_form_cannot_add_staff_or_change_preferences(live_server, page):
    app, kiosk = live_server.app, live_server.url
    log_in_as_admin(page, kiosk)
    staff_before = state(app).staff.members()
    attacker = AttackerSite(f"""<!doctype html><title>x</title>
<form id="f" method="post" action="{kiosk}/service/staff">
<input name="action" value="add"><input name="name" value="Intruder"><input name="role" value="admin">
<input name="pin" value="135791"></form>
<script>document.getElementById("f").submit();</script>""")
    try:
        page.goto(attacker.url)
        page.wait_for_url(kiosk + "/service/staff")
        assert page.locator("body").inner_text() != ""
        assert state(app).staff.members() == staff_before
    finally:
        attacker.close()
    page.goto(kiosk + "/service/")          # and the administrator is still logged in
    expect(page.locator("h1")).to_have_text("Сервісний режим")


def test_a_cross_site_link_into_service_mode_arrives_without_the_session(live_server, page):
    kiosk = live_server.url
    log_in_as_admin(page, kiosk)
    attacker = AttackerSite(f'<!doctype html><title>x</title><a id="go" href="{kiosk}/service/audit">go</a>')
    try:
        page.goto(attacker.url)
        page.click("#go")
        # A top-level link from another site: a Lax cookie would be sent, a Strict one is not.
        page.wait_for_url(kiosk + "/service/login?next=/service/audit")
        expect(page.locator("h1")).to_have_text("Сервісний режим")
        expect(page.locator("#pin")).to_be_visible()
    finally:
        attacker.close()
