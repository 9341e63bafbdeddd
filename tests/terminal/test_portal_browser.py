"""The guest Wi-Fi's captive portal in Chromium, as a visitor's phone sees it on the guest listener
(waitress, as `cnap kiosk` serves it, with the agent faked): a connectivity probe lands on the
terms page, accepting by touch gives the connected page, and an agent that does not answer or
refuses gives the honest unavailable page. Every page axe-clean (WCAG 2.2 AA) in Ukrainian and in
English, on a phone's screen, with targets of at least 44 px, and still whole at 200 % text."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from terminal import close_app, create_app
from terminal.server import BackgroundServer
from terminal.views import portal
from tests.conftest import axe_violations
from tests.terminal.test_portal import FakeAgent

pytestmark = pytest.mark.browser

PHONE = {"width": 360, "height": 740}      # a common small Android screen
NARROW = {"width": 320, "height": 640}     # WCAG 1.4.10's reflow width
TEXTS = {
    "uk": {"terms": "Безкоштовний інтернет для відвідувачів", "accept": "Погоджуюсь, підключити",
           "connected": "Ви в інтернеті", "minutes": "Доступ відкрито ще на 60 хв.",
           "unknown": "Зараз не вдалося перевірити стан мережі", "unavailable": "Інтернет тимчасово недоступний",
           "retry": "Спробувати ще раз", "switch": "English"},
    "en": {"terms": "Free internet for visitors", "accept": "I agree, connect me", "connected": "You are online",
           "minutes": "Access is open for another 60 min.", "unknown": "The network's state could not be checked",
           "unavailable": "The internet is unavailable for now", "retry": "Try again", "switch": "Українська"},
}


class PortalAgent(FakeAgent):
    """The agent as the portal asks it; ``refuse``: the guest network says no (not set up)."""

    def __init__(self):
        super().__init__()
        self.refuse = False

    def command(self, controller, action, args):
        if self.refuse and action == "admit":
            self.calls.append((controller, action, dict(args)))
            return {"ok": False, "message": "the guest network is not set up: starting"}
        return super().command(controller, action, args)


@pytest.fixture
def portal_server(tmp_path, monkeypatch):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "test", "GUEST_INTERFACE": "wlan1",
                      "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": ""})
    agent = PortalAgent()
    monkeypatch.setattr(portal, "_agent", lambda: agent)
    server = BackgroundServer(app, guest_host="127.0.0.1", guest_port=0)
    assert server.guest_url, server.guest_error
    app.config["GUEST_PORTAL_PORT"] = int(server.guest_url.rsplit(":", 1)[1])   # where probes are sent
    server.agent = agent
    yield server
    server.stop()
    close_app(app)


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True, locale="uk-UA")
    page = context.new_page()
    yield page
    context.close()


def in_language(page, lang):
    current = page.locator("html").get_attribute("lang")
    if current != lang:   # the switch is named in the other language ("English" on a Ukrainian page)
        page.get_by_role("link", name=TEXTS[current]["switch"]).tap()
    expect(page.locator("html")).to_have_attribute("lang", lang)


def check_page(page, label):
    """axe-clean, every target ≥ 44 × 44 px, nothing wider than the screen."""
    assert axe_violations(page) == [], label
    for target in page.locator("a, button, input:not([type=hidden])").all():
        box = target.bounding_box()
        assert box and box["width"] >= 44 and box["height"] >= 44, (label, target.inner_text(), box)
    overflow = page.evaluate("""() => {
        const root = document.documentElement;
        const wide = [...document.querySelectorAll('body *')].filter(el =>
            el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === 'visible' && el.clientWidth > 0);
        return {page: root.scrollWidth - root.clientWidth, clipped: wide.map(el => el.className || el.tagName)};
    }""")
    assert overflow == {"page": 0, "clipped": []}, (label, overflow)


@pytest.mark.parametrize("lang", ["uk", "en"])
def test_a_probe_opens_the_terms_and_accepting_connects(portal_server, phone, lang):
    words = TEXTS[lang]
    phone.goto(portal_server.guest_url + "/generate_204")   # Android's probe, redirected by the portal
    expect(phone.locator("h1")).to_have_text(TEXTS["uk"]["terms"])
    in_language(phone, lang)
    expect(phone.locator("h1")).to_have_text(words["terms"])
    check_page(phone, f"terms {lang}")
    phone.get_by_role("button", name=words["accept"]).tap()
    expect(phone.locator("h1")).to_have_text(words["connected"])
    expect(phone.get_by_role("status")).to_have_text(words["minutes"])
    assert phone.locator("html").get_attribute("lang") == lang
    assert [call[1] for call in portal_server.agent.calls].count("admit") == 1
    check_page(phone, f"connected {lang}")
    # The language switch on the accepted page leads to a page, not to "method not allowed".
    other = "en" if lang == "uk" else "uk"
    phone.get_by_role("link", name=words["switch"]).tap()
    expect(phone.locator("html")).to_have_attribute("lang", other)
    expect(phone.locator("h1")).to_have_text(TEXTS[other]["connected"])
    # Admitted: the phone's next probe says "online".
    assert phone.request.get(portal_server.guest_url + "/generate_204", max_redirects=0).status == 204


@pytest.mark.parametrize("lang", ["uk", "en"])
@pytest.mark.parametrize("failure", ["unreachable", "refused"])
def test_an_agent_that_does_not_answer_or_refuses_gets_an_honest_page(portal_server, phone, lang, failure):
    words = TEXTS[lang]
    if failure == "unreachable":
        portal_server.agent.down = True
    else:
        portal_server.agent.refuse = True
    phone.goto(portal_server.guest_url + "/portal/")
    in_language(phone, lang)
    if failure == "unreachable":   # the terms page says the state is unknown before anyone taps
        expect(phone.get_by_role("status")).to_contain_text(words["unknown"])
    check_page(phone, f"terms {failure} {lang}")
    phone.get_by_role("button", name=words["accept"]).tap()
    expect(phone.locator("h1")).to_have_text(words["unavailable"])
    expect(phone.get_by_role("alert")).to_be_visible()
    check_page(phone, f"unavailable {failure} {lang}")
    portal_server.agent.down = portal_server.agent.refuse = False
    phone.get_by_role("link", name=words["retry"]).tap()
    expect(phone.locator("h1")).to_have_text(words["terms"])


def larger_text(page, percent=200):
    """Text at ``percent`` of its size, as a phone's font-size setting does: the root size scales,
    and every size in rem or em with it (px sizes do not: that is what this finds)."""
    page.evaluate("""(percent) => {
        const root = document.documentElement;
        root.style.fontSize = '';
        const base = parseFloat(getComputedStyle(root).fontSize);
        root.style.fontSize = (base * percent / 100) + 'px';
    }""", percent)


@pytest.mark.parametrize("lang", ["uk", "en"])
def test_every_page_stays_whole_at_200_percent_text_on_a_narrow_phone(portal_server, browser, lang):
    context = browser.new_context(viewport=NARROW, has_touch=True, is_mobile=True, locale="uk-UA")
    page = context.new_page()
    try:
        words = TEXTS[lang]
        page.goto(portal_server.guest_url + f"/portal/?lang={lang}")
        sizes = {}
        for name, show in (("terms", lambda: None),
                           ("unknown", lambda: setattr(portal_server.agent, "down", True))):
            show()
            page.goto(portal_server.guest_url + f"/portal/?lang={lang}")
            sizes[name] = page.evaluate("parseFloat(getComputedStyle(document.querySelector('h1')).fontSize)")
            larger_text(page)
            assert page.evaluate("parseFloat(getComputedStyle(document.querySelector('h1')).fontSize)") == \
                pytest.approx(2 * sizes[name])
            check_page(page, f"{name} 200% {lang}")
        page.get_by_role("button", name=words["accept"]).tap()        # the agent is down: unavailable
        expect(page.locator("h1")).to_have_text(words["unavailable"])
        larger_text(page)
        check_page(page, f"unavailable 200% {lang}")
        portal_server.agent.down = False
        page.goto(portal_server.guest_url + f"/portal/?lang={lang}")
        page.get_by_role("button", name=words["accept"]).tap()
        expect(page.locator("h1")).to_have_text(words["connected"])
        larger_text(page)
        check_page(page, f"connected 200% {lang}")
    finally:
        context.close()
