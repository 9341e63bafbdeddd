"""The desk tablet's text-size control in real Chromium: it steps 100 → 150 → 200 → 100 % on the
page alone (no server), the survey reflows at 200 % in portrait and landscape without sideways
scrolling or text spilling out of its buttons, axe stays clean, and the next visitor starts at
100 % again."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import axe_violations
from terminal.state import state

pytestmark = pytest.mark.browser

PORTRAIT = {"width": 768, "height": 1024}
LANDSCAPE = {"width": 1024, "height": 768}
LABEL = {"uk": "Розмір тексту: {} %", "en": "Text size: {} %"}
THANKS_S = 6   # SURVEY_THANKS_S of the test app (the default)


def open_tablet(browser, live_server, app, viewport, clock=False):
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    _, token = store.register_tablet("Планшет 1", branch, "Вікно 1", "desk")
    context = browser.new_context(viewport=viewport, has_touch=True, locale="uk-UA")
    page = context.new_page()
    if clock:
        page.clock.install()
    page.goto(f"{live_server.url}/tablet/#token={token}")
    expect(page.locator("#screen-main")).to_be_visible()
    expect(page.locator("#faces .face")).to_have_count(5)
    return context, page


def size_button(page, pct, lang="uk"):
    return page.get_by_role("button", name=LABEL[lang].format(pct), exact=True)


def set_size(page, pct, lang="uk"):
    """Tap the control until it names `pct` (it starts at 100 %)."""
    steps = {100: 0, 150: 1, 200: 2}[pct]
    for _ in range(steps):
        page.locator("#size-toggle").tap()
    expect(size_button(page, pct, lang)).to_be_visible()


def font_px(locator) -> float:
    return locator.evaluate("el => parseFloat(getComputedStyle(el).fontSize)")


def overflowing(page) -> list[str]:
    """Visible buttons and headings whose text spills out of their own box, sideways."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('button, h1, .question, p'))
        .filter(el => el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1)
        .map(el => el.id || el.className || el.textContent.trim())""")


def broken_words(page) -> list[str]:
    """Words of the visible page (the keyboard aside) that wrap in the middle, across two lines."""
    return page.evaluate("""() => {
        const broken = [];
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const owner = node.parentElement;
            if (!owner || owner.offsetParent === null || owner.closest('#osk')) continue;
            for (const word of node.data.matchAll(/\\S+/g)) {
                const range = document.createRange();
                range.setStart(node, word.index);
                range.setEnd(node, word.index + word[0].length);
                const lines = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0)
                                           .map(r => Math.round(r.top)));
                if (lines.size > 1) broken.push(word[0]);
            }
        }
        return broken;
    }""")


def assert_reflows(page, viewport, where):
    scroll_width, client_width = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert scroll_width <= client_width, f"{where}: horizontal scroll ({scroll_width} > {client_width})"
    assert overflowing(page) == [], f"{where}: text spills out of its box"
    assert broken_words(page) == [], f"{where}: words broken across lines"


def answer_and_skip_the_rest(page):
    page.locator('#faces [data-option="good"]').tap()
    if page.locator("#screen-followup").is_visible():
        page.locator("#screen-followup .step-skip").tap()
    expect(page.locator("#screen-nps")).to_be_visible()
    page.locator("#screen-nps .step-skip").tap()
    expect(page.locator("#screen-comment")).to_be_visible()
    page.locator("#screen-comment .step-skip").tap()
    expect(page.locator("#screen-thanks")).to_be_visible()


def test_the_control_steps_the_text_up_and_back_without_the_server(browser, live_server, app):
    context, page = open_tablet(browser, live_server, app, LANDSCAPE)
    try:
        question, face_label = page.locator("#main-question"), page.locator("#faces .face span").first
        base_question, base_label = font_px(question), font_px(face_label)
        button = size_button(page, 100)
        expect(button).to_be_visible()
        box = button.bounding_box()
        assert box["width"] >= 44 and box["height"] >= 44
        context.set_offline(True)     # client-side state: no round trip is needed

        button.tap()
        expect(size_button(page, 150)).to_be_visible()
        expect(page.locator("html")).to_have_class("tablet-html size-150")
        assert font_px(question) == pytest.approx(base_question * 1.5, rel=0.01)
        assert font_px(face_label) == pytest.approx(base_label * 1.5, rel=0.01)

        size_button(page, 150).tap()
        expect(size_button(page, 200)).to_be_visible()
        assert font_px(question) == pytest.approx(base_question * 2, rel=0.01)
        assert font_px(face_label) == pytest.approx(base_label * 2, rel=0.01)
        assert size_button(page, 200).bounding_box()["height"] >= 44

        size_button(page, 200).tap()
        expect(size_button(page, 100)).to_be_visible()
        expect(page.locator("html")).to_have_class("tablet-html")
        assert font_px(question) == pytest.approx(base_question, rel=0.01)

        # The label follows the language, and the size survives switching it.
        page.locator("#size-toggle").tap()
        page.locator("#lang-toggle").tap()
        expect(size_button(page, 150, "en")).to_be_visible()
        assert font_px(question) == pytest.approx(base_question * 1.5, rel=0.01)
    finally:
        context.close()


@pytest.mark.parametrize("viewport", [PORTRAIT, LANDSCAPE], ids=["portrait", "landscape"])
def test_at_200_percent_the_survey_reflows_without_sideways_scrolling(browser, live_server, app, viewport):
    context, page = open_tablet(browser, live_server, app, viewport)
    try:
        assert_reflows(page, viewport, "main at 100 %")
        set_size(page, 200)
        for lang in ("uk", "en"):
            if lang == "en":
                page.locator("#lang-toggle").tap()
                expect(size_button(page, 200, "en")).to_be_visible()
            assert_reflows(page, viewport, f"main, {lang}")
            faces = page.locator("#faces .face")
            expect(faces).to_have_count(5)
            for face in faces.all():
                expect(face).to_be_visible()
                box = face.bounding_box()
                assert box["width"] >= 44 and box["height"] >= 44
                assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
            for control in page.locator(".tablet-bar .btn").all():
                box = control.bounding_box()
                assert box["height"] >= 44 and box["x"] + box["width"] <= viewport["width"]

        page.locator('#faces [data-option="bad"]').tap()
        expect(page.locator("#screen-followup")).to_be_visible()
        assert_reflows(page, viewport, "follow-up")
        page.locator('#choices [data-option="waiting"]').tap()
        page.locator('#choices [data-option="queue"]').tap()
        expect(page.locator("#screen-nps")).to_be_visible()
        assert_reflows(page, viewport, "nps")
        page.locator('#nps [data-value="10"]').tap()
        expect(page.locator("#screen-comment")).to_be_visible()
        page.mouse.wheel(0, 2000)     # the visitor has scrolled down to see what comes next
        page.locator("#comment").tap()
        expect(page.locator("#osk")).to_be_visible()
        assert_reflows(page, viewport, "comment with keyboard")
        # The field stays above the keyboard, so the visitor sees what they type.
        field, keyboard = page.locator("#comment").bounding_box(), page.locator("#osk").bounding_box()
        assert field["y"] >= 0 and field["y"] + field["height"] <= keyboard["y"]
        page.locator('#osk .osk-layout:not([hidden]) [data-key="о"]').tap()
        page.locator('#osk .osk-layout:not([hidden]) [data-key="к"]').tap()
        expect(page.locator("#comment")).to_have_value("ок")
        page.locator('#osk [data-action="hide"]').tap()
        page.locator("#comment-send").tap()
        expect(page.locator("#screen-thanks")).to_be_visible()
        assert_reflows(page, viewport, "thanks")
    finally:
        context.close()


def test_the_next_visitor_starts_at_100_percent_in_ukrainian_without_contrast(browser, live_server, app):
    context, page = open_tablet(browser, live_server, app, PORTRAIT, clock=True)
    try:
        question = page.locator("#main-question")
        base = font_px(question)
        page.locator("#lang-toggle").tap()
        page.locator("#contrast-toggle").tap()
        set_size(page, 200, "en")
        expect(question).to_have_text("How were you served today?")
        answer_and_skip_the_rest(page)
        # The visitor still reads the thank-you in their language, contrast and size ...
        expect(page.locator("html")).to_have_class("tablet-html contrast size-200")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        page.clock.run_for((THANKS_S + 1) * 1000)
        # ... and the tablet is back at the start for the next one, as the desk set it up.
        expect(page.locator("#screen-main")).to_be_visible()
        expect(size_button(page, 100)).to_be_visible()
        expect(page.locator("html")).to_have_class("tablet-html")
        expect(page.locator("html")).to_have_attribute("lang", "uk")
        expect(question).to_have_text("Як вас обслужили сьогодні?")
        expect(page.locator("#contrast-toggle")).to_have_attribute("aria-pressed", "false")
        assert font_px(question) == pytest.approx(base, rel=0.01)

        # A visitor who changes them and walks away without answering: the attract loop starts,
        # and whoever touches the tablet next finds the defaults too.
        page.locator("#lang-toggle").tap()
        page.locator("#contrast-toggle").tap()
        set_size(page, 150, "en")
        page.clock.run_for(31_000)
        expect(page.locator("#attract")).to_be_visible()
        page.locator("#attract").tap()
        expect(page.locator("#attract")).to_be_hidden()
        expect(size_button(page, 100)).to_be_visible()
        expect(page.locator("html")).to_have_class("tablet-html")
        expect(question).to_have_text("Як вас обслужили сьогодні?")
        assert font_px(question) == pytest.approx(base, rel=0.01)
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["uk", "en"])
def test_axe_is_clean_at_200_percent(browser, live_server, app, lang):
    context, page = open_tablet(browser, live_server, app, PORTRAIT)
    try:
        if lang == "en":
            page.locator("#lang-toggle").tap()
            expect(page.locator("#main-question")).to_have_text("How were you served today?")
        set_size(page, 200, lang)

        def check(where):
            violations = axe_violations(page)
            assert violations == [], f"{where} ({lang}, 200 %): {violations}"

        check("main")
        page.locator('#faces [data-option="bad"]').tap()
        expect(page.locator("#screen-followup")).to_be_visible()
        check("follow-up")
        page.locator("#screen-followup .step-skip").tap()
        expect(page.locator("#screen-nps")).to_be_visible()
        check("nps")
        page.locator('#nps [data-value="3"]').tap()
        page.locator("#comment").tap()
        expect(page.locator("#osk")).to_be_visible()
        check("comment with keyboard")
        page.locator('#osk [data-action="hide"]').tap()
        page.locator("#comment-send").tap()
        expect(page.locator("#screen-thanks")).to_be_visible()
        check("thanks")
    finally:
        context.close()
