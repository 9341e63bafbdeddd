"""The catalogue as a visitor uses it: real Chromium, touch, both languages, axe on every screen."""
import re

import pytest
from playwright.sync_api import expect

from tests.conftest import axe_violations
from terminal.state import state

pytestmark = pytest.mark.browser


def first_ids(app):
    cat = state(app).catalogue
    service = next(s for s in cat.services.values() if cat.packages_with(s.id) and s.paid)
    package = cat.packages_with(service.id)[0]
    return cat, service, package


def test_walk_home_search_card_package_in_ukrainian(live_server, page, app):
    page.goto(live_server.url + "/")
    expect(page.locator("h1")).to_have_text("Вітаємо в ЦНАП!")
    # Instant results while typing: no submit press.
    page.locator("#q").press_sequentially("pasport", delay=20)
    first = page.locator("#results li a").first
    expect(first).to_contain_text(re.compile("паспорт", re.I))
    expect(page.locator("#results mark").first).to_be_visible()
    first.tap()
    expect(page).to_have_url(re.compile(r"/service/"))
    expect(page.locator("h1")).to_contain_text(re.compile("паспорт", re.I))
    expect(page.get_by_role("heading", name="Які документи потрібні")).to_be_visible()
    cat, service, package = first_ids(app)
    page.goto(f"{live_server.url}/service/{service.id}")
    page.get_by_role("link", name=package.name["uk"]).tap()
    expect(page.locator("h1")).to_have_text(package.name["uk"])
    expect(page.locator(".package-steps li")).to_have_count(len(cat.package_services(package)))


def test_walk_in_english_after_switching_language(live_server, page, app):
    page.goto(live_server.url + "/")
    page.get_by_role("button", name="English").tap()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text("Welcome to the ЦНАП!")
    page.locator("#q").press_sequentially("prop", delay=20)  # wrong word start still finds "propyska" synonyms etc.
    page.locator("#q").fill("")
    page.locator("#q").press_sequentially("passport", delay=20)
    expect(page.locator("#results li a").first).to_contain_text(re.compile("passport", re.I))
    page.locator("#results li a").first.tap()
    expect(page.get_by_role("heading", name="Documents required")).to_be_visible()
    cat, service, package = first_ids(app)
    page.goto(f"{live_server.url}/package/{package.id}")
    expect(page.locator("h1")).to_have_text(package.name["en"])


def test_wrong_keyboard_layout_and_on_screen_keyboard(live_server, page):
    page.goto(live_server.url + "/")
    page.get_by_role("button", name=re.compile("Клавіатура")).tap()
    osk = page.locator("#osk")
    expect(osk).to_be_visible()
    for ch in "прописка":
        osk.locator(f'.osk-layout:not([hidden]) [data-key="{ch}"]').tap()
    expect(page.locator("#q")).to_have_value("прописка")
    expect(page.locator("#results li a").first).to_contain_text(re.compile("місця проживання", re.I))
    osk.get_by_role("button", name=re.compile("Очистити")).tap()
    expect(page.locator("#q")).to_have_value("")
    # ґ є і ї and the apostrophe are on the Ukrainian layout.
    for ch in "ґєіїʼ":
        expect(osk.locator(f'[data-layout="uk"] [data-key="{ch}"]')).to_have_count(1)
    page.locator("#q").fill("gfcgjhn")
    page.locator("#q").dispatch_event("input")
    expect(page.locator("#results li a").first).to_contain_text(re.compile("паспорт", re.I))


def screens(app):
    cat, service, package = first_ids(app)
    category = cat.categories[0]
    return ["/", "/search?q=паспорт", f"/category/{category.id}", f"/service/{service.id}",
            f"/package/{package.id}", "/branches", "/service/nope", "/service/login"]


@pytest.mark.parametrize("lang", ["uk", "en"])
def test_axe_finds_no_wcag22_aa_violation_on_any_catalogue_screen(live_server, page, app, lang):
    page.goto(live_server.url + "/")
    if lang == "en":
        page.get_by_role("button", name="English").click()
    for path in screens(app):
        page.goto(live_server.url + path)
        assert axe_violations(page) == [], path


def test_axe_clean_in_high_contrast_at_200_percent_text(live_server, page, app):
    page.goto(live_server.url + "/")
    page.get_by_role("button", name="Висока контрастність").click()
    for _ in range(4):
        page.get_by_role("button", name="Більший текст").click()
    expect(page.locator("html")).to_have_class("size-200 contrast")
    for path in screens(app)[:6]:
        page.goto(live_server.url + path)
        assert axe_violations(page) == [], path
        # 200 % text must reflow, not scroll sideways.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path


# Measured two frames after the keyboard opened: the page scrolls the field into view in the next frame.
KEYBOARD_GEOMETRY = """() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => {
    const osk = document.getElementById('osk').getBoundingClientRect();
    const layout = document.querySelector('#osk .osk-layout:not([hidden])');
    const rows = [...layout.querySelectorAll('.osk-row')].map(row =>
        [...row.querySelectorAll('.osk-key')].map(k => k.getBoundingClientRect()));
    const field = document.activeElement.getBoundingClientRect();
    done({top: osk.top, height: osk.height, viewport: window.innerHeight,
          rowTops: rows.map(keys => [...new Set(keys.map(k => Math.round(k.top)))].length),
          smallest: Math.min(...rows.flat().map(k => Math.min(k.width, k.height))),
          fieldBottom: field.bottom, fieldTop: field.top,
          sideways: document.documentElement.scrollWidth > window.innerWidth + 1});
})))"""


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, {"width": 1080, "height": 1920}],
                         ids=["landscape", "portrait"])
def test_keyboard_keeps_its_rows_and_the_field_in_view_at_200_percent(live_server, browser, viewport):
    context = browser.new_context(viewport=viewport, has_touch=True, locale="uk-UA")
    page = context.new_page()
    try:
        page.goto(live_server.url + "/")
        sizes = {}
        for step in range(5):   # 100 % and each step up to 200 %
            page.locator("#q").tap()
            expect(page.locator("#osk")).to_be_visible()
            geometry = page.evaluate(KEYBOARD_GEOMETRY)
            sizes[page.locator("html").get_attribute("class") or "size-100"] = geometry
            assert geometry["rowTops"] == [1] * len(geometry["rowTops"]), geometry   # no row wraps
            assert geometry["smallest"] >= 44, geometry
            assert geometry["height"] <= 0.6 * geometry["viewport"], geometry
            assert geometry["fieldTop"] >= 0 and geometry["fieldBottom"] <= geometry["top"], geometry
            assert not geometry["sideways"], geometry
            page.locator('#osk [data-action="hide"]').tap()
            expect(page.locator("#osk")).to_be_hidden()
            if step < 4:
                page.get_by_role("button", name="Більший текст").click()
        assert "size-200" in sizes
        # The keyboard is the same size at 200 % as at 100 %: text grew, the keyboard did not.
        assert sizes["size-200"]["height"] == pytest.approx(sizes["size-100"]["height"], rel=0.15)
    finally:
        context.close()


def test_touch_targets_are_at_least_44px(live_server, page, app):
    cat, service, package = first_ids(app)
    for path in ("/", f"/service/{service.id}"):
        page.goto(live_server.url + path)
        page.get_by_role("button", name=re.compile("Клавіатура")).first.tap() if path == "/" else None
        small = page.evaluate("""() => [...document.querySelectorAll('.btn, .tile, .osk-key')]
            .filter(e => e.offsetParent !== null)
            .map(e => [e.textContent.trim().slice(0, 30), e.getBoundingClientRect()])
            .filter(([t, r]) => r.width < 44 || r.height < 44)""")
        assert small == [], path


def test_idle_warning_counts_down_then_forgets_the_visitor(live_server, page, app):
    app.config["IDLE_TIMEOUT_S"] = 60
    page.clock.install()
    page.goto(live_server.url + "/")
    page.get_by_role("button", name="English").tap()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.wait_for_load_state("load")
    page.locator("#q").fill("passport")
    page.clock.fast_forward(61_000)
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("forget everything")
    dialog.get_by_role("button", name="Continue").tap()
    expect(dialog).to_be_hidden()
    expect(page.locator("#q")).to_have_value("passport")   # Continue keeps what was entered
    page.clock.fast_forward(61_000)
    expect(dialog).to_be_visible()
    page.clock.run_for(31_000)
    page.wait_for_url(live_server.url + "/")
    expect(page.locator("html")).to_have_attribute("lang", "uk")   # back to the default language
    expect(page.locator("#q")).to_have_value("")


def test_hidden_attribute_beats_every_layout_class(live_server, page):
    # Live screens toggle `hidden` on flex/grid blocks (payment retry buttons, results);
    # a class's display rule must never make a hidden block visible again.
    page.goto(live_server.url + "/")
    displays = page.evaluate("""() => ['actions', 'grid', 'tile', 'btn', 'panel', 'osk-row'].map(cls => {
        const el = document.createElement('div');
        el.className = cls; el.hidden = true; document.body.appendChild(el);
        return getComputedStyle(el).display; })""")
    assert displays == ["none"] * 6
