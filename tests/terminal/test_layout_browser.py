"""Every screen in Chromium at the three screens the kiosk is used on — the kiosk itself
(1080×1920 portrait), service mode on a desk PC (1280×1024) and a tablet (800×1280) — at 100 %
and 200 % text: the page never scrolls sideways, and no table header, label, term or legend
breaks a word in the middle ("Отримува/ч"). Tables may scroll inside their own wrapper."""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer
from tests.helpers import choose_staff
from tests.payments.helpers import SERVICE, Kiosk, make_app
from terminal.state import state

pytestmark = pytest.mark.browser

VIEWPORTS = {"kiosk": {"width": 1080, "height": 1920}, "desk-pc": {"width": 1280, "height": 1024},
             "tablet": {"width": 800, "height": 1280}}

# Overflow of the page, and words of headers/labels that wrap across two lines. A break after a
# hyphen or slash ("PIN-/код") is a line-break opportunity, not a broken word.
CHECK = """() => {
    const found = {overflow: document.documentElement.scrollWidth - window.innerWidth, broken: []};
    const owners = document.querySelectorAll('th, label, dt, legend, caption, .btn, h1, h2, h3');
    for (const owner of owners) {
        if (owner.offsetParent === null || owner.closest('#osk, .visually-hidden')) continue;
        const walker = document.createTreeWalker(owner, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (const word of node.data.matchAll(/[^\\s\\-\\u2010-\\u2014\\/]+/g)) {
                const range = document.createRange();
                range.setStart(node, word.index);
                range.setEnd(node, word.index + word[0].length);
                const lines = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0)
                                           .map(r => Math.round(r.top)));
                if (lines.size > 1) found.broken.push(owner.tagName.toLowerCase() + ': ' + word[0]);
            }
        }
    }
    return found;
}"""


@pytest.fixture(scope="module")
def kiosk(tmp_path_factory):
    from tests.terminal.surveys.conftest import answer

    # Module-scoped, so built before the autouse fixture that marks sample PINs as replaced.
    k = Kiosk(make_app(tmp_path_factory.mktemp("layout") / "instance", SERVICE_PINS_MUST_CHANGE=False))
    surveys = state(k.app).surveys
    branch = state(k.app).catalogue.branches[0].id
    tablet, k.tablet_token = surveys.register_tablet("Планшет біля вікна 1", branch, "Вікно 1", "desk")
    surveys.add_administrator("Олена Коваленко", branch, "432154")
    now = time.time()
    surveys.ingest(tablet, [answer("bad", at=now - 3600 * (i + 1), path=[["why_bad", "premises"]], nps=i,
                                   comment="Довго чекала у черзі, але адміністраторка допомогла")
                            for i in range(3)], now=now)
    server = LiveServer(k.app)
    k.url = server.url
    yield k
    server.stop()
    k.close()


def check(page, where, failures):
    page.wait_for_load_state("load")
    found = page.evaluate(CHECK)
    if found["overflow"] > 1:
        failures.append(f"{where}: page scrolls sideways by {found['overflow']} px")
    if found["broken"]:
        failures.append(f"{where}: words broken mid-word: {found['broken'][:6]}")


def visit(page, url, where, failures):
    page.goto(url)
    check(page, where, failures)


def kiosk_screens(kiosk):
    catalogue = state(kiosk.app).catalogue
    paths = ["/", f"/category/{catalogue.categories[0].id}", f"/service/{SERVICE}", "/service/id-card-lost",
             "/branches", "/search?q=паспорт", "/pay", f"/pay/service/{SERVICE}"]
    if catalogue.packages:
        paths.append(f"/package/{next(iter(catalogue.packages))}")
    return paths


def pay_by_card(kiosk, page, label, failures):
    """Payer form → confirmation → card payment → receipt, checking each screen; the receipt's URL."""
    page.goto(kiosk.url + f"/pay/service/{SERVICE}")
    page.locator("#surname").fill("Шевченко")
    page.locator("#id_value").fill("3652504575")
    # dispatched, not clicked: at 200 % the on-screen keyboard may cover the button
    page.get_by_role("button", name="Далі").dispatch_event("click")
    expect(page.locator("h1")).to_have_text("Перевірте платіж")
    check(page, f"{label} /pay/confirm", failures)
    page.get_by_role("button", name="Карткою").dispatch_event("click")
    expect(page.locator(".pay-receipt")).to_be_visible(timeout=10000)
    check(page, f"{label} receipt", failures)
    receipt_url = page.url
    from payments.receipts import check_code
    payment = next(p for p in kiosk.till.payments.values() if p.id in receipt_url)
    visit(page, kiosk.url + f"/receipt/{payment.receipt_no}?c={check_code(kiosk.till.config.receipt_key, payment)}",
          f"{label} receipt verification", failures)
    page.goto(receipt_url)
    page.get_by_role("button", name="Готово").dispatch_event("click")
    expect(page.locator("h1")).to_have_text("Вітаємо в ЦНАП!")


def service_screens(page, kiosk):
    page.goto(kiosk.url + "/service/")
    links = page.eval_on_selector_all("main a.tile", "els => els.map(a => a.getAttribute('href'))")
    assert len(links) >= 8, links
    extra = ["/service/", "/service/pin", "/service/surveys/definitions/desk/edit",
             "/service/surveys/reports?group=admin"]
    return [link for link in links if link != "/service/stop"] + extra


@pytest.mark.parametrize("name", list(VIEWPORTS))
def test_no_screen_scrolls_sideways_or_breaks_a_word(kiosk, browser, name):
    context = browser.new_context(viewport=VIEWPORTS[name], has_touch=True, locale="uk-UA")
    page = context.new_page()
    failures: list[str] = []
    try:
        visit(page, kiosk.url + "/service/login", f"{name} /service/login", failures)
        choose_staff(page, "admin")
        page.locator("#pin").fill("000000")
        page.get_by_role("button", name="Увійти").click()
        expect(page.locator("h1")).to_have_text("Сервісний режим")
        service = service_screens(page, kiosk)
        for size in (100, 200):
            label = f"{name} {size}%"
            page.goto(kiosk.url + "/")
            while size > 100 and not page.locator(".size-value").inner_text().endswith(f" {size} %"):
                page.locator('button[name="action"][value="larger"]').click()
                page.wait_for_load_state("load")
            expect(page.locator("html")).to_have_class(re.compile(rf"\bsize-{size}\b"))
            for path in kiosk_screens(kiosk) + service:
                visit(page, kiosk.url + path, f"{label} {path}", failures)
            pay_by_card(kiosk, page, label, failures)

        tablet = context.new_page()
        tablet.goto(f"{kiosk.url}/tablet/#token={kiosk.tablet_token}")
        expect(tablet.locator("#faces .face")).to_have_count(5)
        for size in (100, 150, 200):
            if size > 100:
                tablet.locator("#size-toggle").tap()
            expect(tablet.locator("html")).to_have_class(re.compile(rf"\bsize-{size}\b") if size > 100
                                                         else re.compile(r"^(?!.*size-)"))
            check(tablet, f"{name} tablet {size}% main", failures)
            if size == 200:
                tablet.locator('#faces [data-option="bad"]').tap()
                expect(tablet.locator("#screen-followup")).to_be_visible()
                check(tablet, f"{name} tablet {size}% follow-up", failures)
        assert not failures, "\n".join(failures)
    finally:
        context.close()


def test_static_files_are_fetched_once_not_on_every_page(kiosk, browser):
    """Versioned static URLs are immutable: moving between screens asks the server for no
    stylesheet or script again (each page load used to revalidate them all)."""
    registry = state(kiosk.app).metrics

    def static_requests():
        return sum(registry.get_sample_value("cnap_http_requests_total",
                                             {"endpoint": "static", "method": "GET", "status": status}) or 0
                   for status in ("200", "304"))

    context = browser.new_context(viewport=VIEWPORTS["kiosk"], locale="uk-UA")
    page = context.new_page()
    try:
        screens = ("/", "/branches", "/search?q=паспорт", f"/service/{SERVICE}", "/pay")
        for path in screens:   # the first visit of each loads its files (icons, search.js, …)
            page.goto(kiosk.url + path)
            page.wait_for_load_state("networkidle")
        before = static_requests()
        assert before > 0
        for path in screens + screens[::-1]:
            page.goto(kiosk.url + path)
            page.wait_for_load_state("networkidle")
        assert static_requests() == before
    finally:
        context.close()


@pytest.mark.parametrize("name", list(VIEWPORTS))
def test_the_on_screen_keyboard_keeps_its_words_and_leaves_the_next_button_reachable(kiosk, browser, name):
    """At 200 % the keyboard's wide keys ("Сховати клавіатуру") broke mid-word, and a visitor
    typing their surname must still be able to scroll the form's button above the keyboard."""
    context = browser.new_context(viewport=VIEWPORTS[name], has_touch=True, locale="uk-UA")
    page = context.new_page()
    failures: list[str] = []
    try:
        for lang in ("uk", "en"):
            page.goto(kiosk.url + "/")
            if lang == "en":
                page.get_by_role("button", name="English").click()
            while "size-200" not in (page.locator("html").get_attribute("class") or ""):
                page.locator('button[name="action"][value="larger"]').click()
                page.wait_for_load_state("load")
            page.goto(kiosk.url + f"/pay/service/{SERVICE}")
            page.locator("input[name=surname]").tap()
            expect(page.locator("#osk")).to_be_visible()
            found = page.evaluate(CHECK.replace("'th, label, dt, legend, caption, .btn, h1, h2, h3'", "'#osk .osk-key'")
                                  .replace("owner.closest('#osk, .visually-hidden')", "owner.closest('.visually-hidden')"))
            if found["broken"]:
                failures.append(f"{name} {lang}: keyboard keys broken mid-word: {found['broken']}")
            page.mouse.wheel(0, 10000)
            page.wait_for_timeout(300)
            button = page.locator("form button[type=submit]").last.bounding_box()
            keyboard = page.locator("#osk").bounding_box()
            if button["y"] + button["height"] > keyboard["y"] + 1:
                failures.append(f"{name} {lang}: the form's button stays under the keyboard: {button} {keyboard}")
            page.locator("#osk").get_by_role("button", name=re.compile("Сховати|Hide")).tap()
        assert not failures, "\n".join(failures)
    finally:
        context.close()
