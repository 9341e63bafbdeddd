"""Paper layout of a whole receipt: composed once, by the printer driver, at the columns of the
configured printer profile (80 mm and 58 mm), rendered by the printer simulator."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from devices.printer.driver import ReceiptPrinter
from devices.printer.simulator import PrinterSimulator
from payments import receipts
from payments.machine import Payment

URL_BASE = "http://127.0.0.1:8080/receipt/"
CTX = receipts.ReceiptContext("KIOSK-01", "ЦНАП Подільського району м. Києва", URL_BASE, b"k")
PROFILES = ["generic-80mm", "generic-58mm-cp1125"]


def payment(**over) -> Payment:
    fields = dict(
        id="p1", status="paid", service_id="residence-registration",
        service_name={"uk": "Реєстрація місця проживання особи (адміністративний збір за "
                            "реєстрацію, зняття з реєстрації)"},
        details={"recipient": "ГУК у м.Києві/Подільський р-н/22012600 — отримувач ґрунтовно їжачковий",
                 "edrpou": "37993783", "iban": "UA918999980334159879000026011",
                 "purpose_code": "101", "purpose": "Адміністративний збір за реєстрацію місця проживання"},
        amount_kop=7400, commission_kop=0, total_kop=7400, credited_kop=9000,
        payer={"surname": "Шевченко-Квітка-Основ'яненко", "id_kind": "rnokpp", "id_value": "3652504575"},
        receipt_no="KIOSK-01-000123", voucher_code="ABCD-EFGH-JKLM", created_at=1_765_000_000.0,
        bills=(5000, 2000, 2000), voucher_out_kop=1600)
    fields.update(over)
    return Payment(**fields)


def printed(profile: str, blocks) -> tuple[ReceiptPrinter, PrinterSimulator]:
    """The job's bytes fed to a simulator of the profile's paper width (no socket needed)."""
    printer = ReceiptPrinter("loop://", profile=profile)
    sim = PrinterSimulator(width_dots=int(printer.profile["width_dots"]))
    sim.on_data(printer.render(blocks))
    return printer, sim


def text_lines(sim):
    return [line for line in sim.lines if line["kind"] == "text"]


def assert_fits(sim):
    for line in text_lines(sim):
        assert len(line["text"]) <= sim.columns(line), line


def assert_words_whole(sim, printer, source_texts):
    """Every word of the receipt that fits a line appears whole on some printed line."""
    width = printer.width_chars
    printed_words = {w for line in text_lines(sim) for w in line["text"].split()}
    for text in source_texts:
        for word in text.split():
            word = printer.encode_text(word).decode(printer.code_page)  # — is - in CP1125
            if len(word) <= width:
                assert word in printed_words, word


@pytest.mark.parametrize("profile", PROFILES)
def test_full_receipt_fits_the_paper_and_keeps_words_and_url_whole(profile):
    p = payment()
    printer, sim = printed(profile, receipts.build_blocks(p, CTX))
    assert_fits(sim)
    rows = [f"{label}: {value}" for label, value in receipts.lines(p, CTX)]
    assert_words_whole(sim, printer, rows + [receipts.VOUCHER_RULE])
    url = receipts.verify_url(CTX, p)
    texts = [line["text"].strip() for line in text_lines(sim)]
    if len(url) <= printer.condensed_chars:
        assert url in texts  # on one line of its own, never split
    else:  # does not fit even the condensed font: a shorter form, never a split URL
        assert not any(url[:12] in t for t in texts)
        assert url.split("://", 1)[1] in texts or any("QR" in t for t in texts)
    # Ukrainian letters decode in the profile's code page
    assert "Шевченко-Квітка-Основ'яненко" in "\n".join(texts)
    assert "ґрунтовно їжачковий" in " ".join(texts) and "є" in " ".join(texts)
    # the value of a label/value row hangs under the value, not under the label
    start = next(i for i, t in enumerate(texts) if t.startswith("Послуга:"))
    follow = text_lines(sim)[start + 1]["text"]
    assert follow.startswith(" ") and not texts[start + 1].endswith(":")


def test_58mm_receipt_is_composed_once_at_32_columns():
    """Wrapped at 48 and again at 32, lines alternated 32 and 16 characters (ragged)."""
    p = payment()
    printer, sim = printed("generic-58mm-cp1125", receipts.build_blocks(p, CTX))
    assert printer.width_chars == 32 and sim.columns() == 32
    assert b"\x1bt\x2c" in printer.render(receipts.build_blocks(p, CTX))  # ESC t 44: CP1125
    words = receipts.VOUCHER_RULE.split()
    start = next(i for i, line in enumerate(sim.lines) if line.get("text", "").startswith(" ".join(words[:2])))
    rule = []
    while len(" ".join(rule).split()) < len(words):
        rule.append(sim.lines[start + len(rule)]["text"])
    assert " ".join(rule).split() == words
    # greedy fill: no line of the rule could have taken the next line's first word
    for this, nxt in zip(rule, rule[1:]):
        assert len(this) + 1 + len(nxt.split()[0]) > 32, (this, nxt)


def test_url_in_the_condensed_font_when_it_only_fits_there():
    p = payment()
    url = receipts.verify_url(CTX, p)
    assert 48 < len(url) <= 64
    _, sim = printed("generic-80mm", receipts.build_blocks(p, CTX))
    (line,) = [line for line in text_lines(sim) if line["text"] == url]
    assert line["font"] == "b" and sim.columns(line) == 64
    # the font is back to A afterwards
    assert all(line["font"] == "a" for line in text_lines(sim) if line["text"] and line["text"] != url)


def test_58mm_url_too_long_for_any_font_is_not_split():
    p = payment()
    url = receipts.verify_url(CTX, p)
    _, sim = printed("generic-58mm-cp1125", receipts.build_blocks(p, CTX))
    assert len(url) > 42 and sim.columns(font="b") == 42
    texts = [line["text"] for line in text_lines(sim)]
    assert not any("127.0.0" in t or "receipt/" in t for t in texts)
    assert any("QR" in t for t in texts)
    assert sim.images()  # the QR carries the full address


@pytest.mark.parametrize("base, font, scheme", [
    ("https://c.ua/", "a", True),                 # 31 characters: font A
    ("https://cnap.ua/r/", "b", True),            # 36: font B
    ("https://cnap.kyiv.gov.ua/r/", "b", False),  # 45, 37 without https://: font B, no scheme
])
def test_short_urls_print_whole_on_58mm(base, font, scheme):
    ctx = receipts.ReceiptContext("K1", "ЦНАП", base, b"k")
    p = payment(receipt_no="K1-01")
    url = receipts.verify_url(ctx, p)
    _, sim = printed("generic-58mm-cp1125", receipts.build_blocks(p, ctx))
    shown = url if scheme else url.split("://", 1)[1]
    (line,) = [line for line in text_lines(sim) if shown in line["text"]]
    assert line["text"].strip() == shown and line["font"] == font
    assert not any("QR-коді" in line["text"] for line in text_lines(sim))


NAME = st.text(alphabet="абвгґдеєжзиіїйклмнопрстуфхцчшщьюяАБВГҐДЕЄЖЗИІЇЙКЛМНОПРСТУФХЦЧШЩЬЮЯ'-.,/0123456789",
               min_size=1, max_size=40)
PHRASE = st.lists(NAME, min_size=1, max_size=12).map(" ".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(PROFILES), service=PHRASE, recipient=PHRASE, surname=PHRASE)
def test_any_names_fit_and_wrap_back_to_the_same_words(profile, service, recipient, surname):
    p = payment(service_name={"uk": service}, details={**payment().details, "recipient": recipient},
                payer={**payment().payer, "surname": surname})
    printer, sim = printed(profile, receipts.build_blocks(p, CTX))
    assert_fits(sim)
    width = printer.width_chars
    got = [line["text"] for line in text_lines(sim)]
    for label, value in (("Послуга", service), ("Отримувач", recipient), ("Платник", surname)):
        source = f"{label}: {value}".split()
        i = next(i for i, t in enumerate(got) if t.startswith(f"{label}:"))
        tokens = []
        while len("".join(tokens)) < len("".join(source)):  # the row's lines, up to the next row
            tokens += got[i].split()
            i += 1
        assert "".join(tokens) == "".join(source)
        # words that fit a line are never split; longer ones are cut into full-width pieces
        k = 0
        for word in source:
            if len(word) <= width:
                assert tokens[k] == word, (word, tokens)
                k += 1
            else:
                piece = ""
                while piece != word:
                    piece += tokens[k]
                    k += 1
        assert k == len(tokens)
