"""ESC/POS status codec, stream parser and the printer driver against its simulator."""
import itertools
import socket

import pytest
from escpos.printer import Dummy
from hypothesis import given, settings, strategies as st
from PIL import Image

from devices.printer import codec as c
from devices.printer.driver import ReceiptPrinter
from devices.printer.simulator import PrinterSimulator

UKRAINIAN = "Квитанція: і ї є ґ І Ї Є Ґ — сплачено"


# ---------------------------------------------------------------- codec
@pytest.mark.parametrize("online, cover, paper, error",
                         list(itertools.product([True, False], [True, False], ["ok", "near_end", "out"], [True, False])))
def test_status_bytes_round_trip(online, cover, paper, error):
    b1 = c.encode_status(1, online=online, cover_open=cover, paper=paper, error=error)
    b2 = c.encode_status(2, online=online, cover_open=cover, paper=paper, error=error)
    b4 = c.encode_status(4, online=online, cover_open=cover, paper=paper, error=error)
    assert all(c.status_byte_valid(b) for b in (b1, b2, b4))
    assert c.decode_printer_status(b1)["online"] is online
    assert c.decode_offline_cause(b2)["cover_open"] is cover
    assert c.decode_offline_cause(b2)["error"] is error
    assert c.decode_paper_status(b4) == paper


def test_status_request_bytes():
    assert c.status_request(1) == b"\x10\x04\x01"
    assert c.status_request(4) == b"\x10\x04\x04"
    assert not c.status_byte_valid(0xFF) and not c.status_byte_valid(0x00)


def test_parser_reads_python_escpos_output():
    printer = Dummy()
    printer._raw(b"\x1b@\x1bt\x2e")
    printer.set(align="center", bold=True, double_height=True, double_width=True)
    printer._raw("Сума".encode("cp1251") + b"\n")
    printer.qr("https://bank.gov.ua/qr/x", native=False)
    printer.cut()
    ops = c.EscPosParser().feed(printer.output)
    kinds = [op.kind for op in ops]
    assert kinds[:2] == ["init", "codepage"] and ops[1].value == 46
    assert ("align", "center") in [(op.kind, op.value) for op in ops]
    assert ("bold", True) in [(op.kind, op.value) for op in ops]
    assert any(op.kind == "text" and op.value.decode("cp1251") == "Сума" for op in ops)
    assert "raster" in kinds and kinds[-1] in ("cut", "newline") and "cut" in kinds


def test_parser_waits_for_split_commands():
    parser = c.EscPosParser()
    assert parser.feed(b"\x1d") == []
    assert parser.feed(b"v0\x00\x01\x00") == []
    ops = parser.feed(b"\x02\x00\xff\x00")
    assert ops == [c.Op("raster", (1, 2, b"\xff\x00"))]


def test_parser_survives_a_huge_raster_header():
    ops = c.EscPosParser().feed(b"\x1dv0\x00\xff\xff\xff\xffHello\n")
    assert ops[0].kind == "skipped" and c.Op("text", b"Hello") in ops


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=500), st.integers(min_value=1, max_value=40))
def test_parser_never_raises(data, chunk):
    parser = c.EscPosParser()
    for i in range(0, len(data), chunk):
        for op in parser.feed(data[i : i + chunk]):
            assert isinstance(op, c.Op)
    assert len(parser.buffer) <= c.MAX_RASTER_BYTES + 16


@given(st.integers(min_value=0, max_value=255))
def test_any_status_byte_decodes(value):
    assert c.decode_paper_status(value) in ("ok", "near_end", "out")
    c.decode_offline_cause(value)


# ---------------------------------------------------------------- driver against simulator
@pytest.fixture(params=["tcp", "pty"])
def rig(request):
    sim = PrinterSimulator()
    url = sim.start_tcp() if request.param == "tcp" else sim.start_pty()
    yield sim, url
    sim.stop()


RECEIPT = [
    ("text", "ЦНАП м. Київ", {"bold": True, "align": "center", "double": True}),
    ("text", UKRAINIAN, {}),
    ("text", "Сума: 200.00 грн", {"align": "right"}),
    ("qr", "https://bank.gov.ua/qr/QkNECjAwMgox"),
    ("text", "Після QR: їжак ґанок Є"),   # python-escpos switches to PC437 for the image
    ("feed", 2),
    ("cut",),
]


@pytest.mark.parametrize("code_page", ["cp1251", "cp1125"])
def test_ukrainian_receipt_prints_in_the_profile_code_page(rig, code_page):
    sim, url = rig
    result = ReceiptPrinter(url, code_page=code_page).print_job(RECEIPT)
    assert result.ok, result.error
    assert result.before.paper == "ok" and result.after.online
    text = sim.received_text()
    assert "ЦНАП м. Київ" in text
    assert "і ї є ґ І Ї Є Ґ" in text
    assert "Сума: 200.00 грн" in text
    assert "Після QR: їжак ґанок Є" in text
    assert "[image " in text and text.rstrip().endswith("--- cut ---")
    title = next(line for line in sim.lines if line.get("text") == "ЦНАП м. Київ")
    assert title["bold"] and title["align"] == "center" and title["size"] == (2, 2)
    assert next(line for line in sim.lines if line.get("text", "").startswith("Сума"))["align"] == "right"


def test_qr_is_printed_as_a_square_image(rig):
    sim, url = rig
    assert ReceiptPrinter(url).print_job([("qr", "https://bank.gov.ua/qr/abc")]).ok
    (image,) = sim.images()
    assert abs(image.width - image.height) <= 8 and image.width >= 100
    dark = sum(image.histogram()[:128])
    assert 0.2 < dark / (image.width * image.height) < 0.8


def test_png_preview(rig, tmp_path):
    sim, url = rig
    ReceiptPrinter(url).print_job(RECEIPT)
    path = tmp_path / "receipt.png"
    sim.render_png(path)
    with Image.open(path) as preview:
        assert preview.width == 576 and preview.height > 300
        assert preview.convert("L").getextrema()[0] == 0  # something black was drawn


def test_paper_near_end_still_prints_and_says_so(rig):
    sim, url = rig
    sim.set_paper("near_end")
    printer = ReceiptPrinter(url)
    assert printer.status().paper == "near_end"
    result = printer.print_job([("text", "ok")])
    assert result.ok and result.after.paper == "near_end"


@pytest.mark.parametrize("fault, check", [
    (lambda s: s.set_paper("out"), lambda st: st.paper == "out" and not st.online),
    (lambda s: s.set_cover_open(True), lambda st: st.cover_open and not st.online),
    (lambda s: s.set_error(True), lambda st: st.error),
])
def test_not_ready_printer_refuses_the_job(rig, fault, check):
    sim, url = rig
    fault(sim)
    printer = ReceiptPrinter(url)
    assert check(printer.status())
    result = printer.print_job([("text", "Не надруковано")])
    assert not result.ok and "not ready" in result.error and check(result.before)
    assert "Не надруковано" not in sim.received_text()


def test_paper_running_out_mid_job_is_reported(rig):
    sim, url = rig
    sim.run_out_of_paper_after(2)
    result = ReceiptPrinter(url).print_job([("text", f"рядок {i}") for i in range(6)])
    assert not result.ok and result.before.paper == "ok" and result.after.paper == "out"
    assert "after the job" in result.error


def test_silent_printer_is_offline_not_an_exception(rig):
    sim, url = rig
    sim.set_silent(True)
    printer = ReceiptPrinter(url, profile={"status_timeout_s": 0.1})
    status = printer.status()
    assert not status.online and status.paper == "unknown"
    assert not printer.print_job(RECEIPT).ok


def test_bad_block_is_an_error_result(rig):
    sim, url = rig
    result = ReceiptPrinter(url).print_job([("text", "a"), ("hologram", 1)])
    assert not result.ok and "hologram" in result.error


def test_absent_printer():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    printer = ReceiptPrinter(f"socket://127.0.0.1:{port}")
    assert printer.status().online is False
    result = printer.print_job(RECEIPT)
    assert not result.ok and "cannot open" in result.error


def test_text_is_wrapped_to_the_paper_width(rig):
    sim, url = rig
    ReceiptPrinter(url, width_chars=32).print_job([("text", "слово " * 20)])
    lines = [line["text"] for line in sim.lines if line["kind"] == "text" and line["text"]]
    assert len(lines) >= 4 and max(len(line) for line in lines) <= 32


# ---------------------------------------------------------------- line composition (driver only)
def test_compose_hangs_the_value_and_keeps_words_whole():
    from devices.printer.driver import compose

    lines = compose("Отримувач: Головне управління Казначейства у м. Києві", 24, hang=11)
    assert lines == ["Отримувач: Головне", "           управління", "           Казначейства",
                     "           у м. Києві"]
    # a word that fits the line but not beside the indent gets less indent, not a cut
    assert compose("Платник: Шевченко-Квітка-Основ'яненко", 32, hang=9) == [
        "Платник:", "    Шевченко-Квітка-Основ'яненко"]
    # only a word longer than the line is cut, into full-width pieces; hyphens are no break points
    assert compose("IBAN: UA918999980334159879000026011 ok", 16, hang=6) == [
        "IBAN:", "UA91899998033415", "9879000026011 ok"]
    assert compose("a\n\nb", 10) == ["a", "", "b"] and compose("", 10) == [""]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="абвгґєіїжAZ09-/.'", min_size=1, max_size=50), max_size=30),
       st.integers(min_value=8, max_value=64), st.integers(min_value=0, max_value=40))
def test_compose_fills_lines_and_gives_back_the_words(words, width, hang):
    from devices.printer.driver import compose

    lines = compose(" ".join(words), width, hang)
    assert all(len(line) <= width for line in lines)
    tokens = [t for line in lines for t in line.split()]
    k = 0
    for word in words:
        if len(word) <= width:
            assert tokens[k] == word
            k += 1
        else:
            piece = ""
            while piece != word:
                piece += tokens[k]
                k += 1
    assert k == len(tokens)


def test_driver_composes_once_at_its_own_width(rig):
    """A long block wraps at the printer's columns; pre-composed 48-column lines would be
    wrapped again at 32 into ragged 32 + 16 pairs."""
    sim, url = rig
    text = "Призначення: 101 Адміністративний збір за реєстрацію місця проживання особи"
    ReceiptPrinter(url, profile="generic-58mm-cp1125").print_job([("text", text, {"hang": 13})])
    lines = [line["text"] for line in sim.lines if line["kind"] == "text"]
    assert lines == ["Призначення: 101", "             Адміністративний", "             збір за реєстрацію",
                     "             місця проживання", "             особи"]


def test_unbreakable_text_goes_condensed_then_to_its_fallback():
    printer = ReceiptPrinter("loop://", profile="generic-58mm-cp1125")
    assert (printer.width_chars, printer.condensed_chars) == (32, 42)
    short, mid, long = "https://a.ua/" + "x" * 10, "https://a.ua/" + "x" * 25, "https://a.ua/" + "x" * 40
    sim = PrinterSimulator(width_dots=384)
    fallback = [("text", "див. QR / see the QR", {})]
    sim.on_data(printer.render([("text", u, {"nobreak": True, "align": "center", "fallback": fallback})
                                for u in (short, mid, long)] + [("text", "після / after")]))
    got = [(line["text"], line["font"]) for line in sim.lines if line["kind"] == "text"]
    assert got == [(short, "a"), (mid, "b"), ("див. QR / see the QR", "a"), ("після / after", "a")]
    assert sim.columns(font="b") == 42 and all(len(t) <= sim.columns(font=f) for t, f in got)


def test_parser_reads_font_selection():
    ops = c.EscPosParser().feed(b"\x1bM\x01\x1b!\x00\x1bM\x31")
    assert [(op.kind, op.value) for op in ops] == [("font", "b"), ("size", (1, 1, False, "a")), ("font", "b")]


def test_condensed_columns_follow_an_overridden_width():
    assert ReceiptPrinter("loop://", profile="generic-80mm").condensed_chars == 64
    assert ReceiptPrinter("loop://", profile="generic-80mm", width_chars=32).condensed_chars == 42
    assert ReceiptPrinter("loop://", profile={"width_chars": 48}).condensed_chars == 64
