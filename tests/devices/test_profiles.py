import copy

import pytest

from devices import DEVICE_KINDS
from devices.printer.driver import ReceiptPrinter
from devices.profiles import ProfileError, all_profiles, find_profile, load_profile, validate

PROFILES = all_profiles()


def test_there_is_a_profile_for_every_kind():
    assert {path.parent.name for path in PROFILES} == set(DEVICE_KINDS)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_profile_is_valid(path):
    profile = load_profile(path)
    assert profile["model"] == path.stem


def test_validation_catches_mistakes():
    good = load_profile(next(p for p in PROFILES if p.stem == "cashcode-sm"))
    for mutate, message in [
        (lambda p: p.update(poll_interval_ms=50), "poll_interval_ms"),
        (lambda p: p.update(denominations_kop=[20.0]), "denominations_kop"),
        (lambda p: p.update(cassette_capacity=0), "cassette_capacity"),
        (lambda p: p.pop("cassette_capacity"), "cassette_capacity"),
        (lambda p: p["port"].update(url="socket://10.0.0.5:7001"), "loopback"),
        (lambda p: p["port"].update(baudrate=9601), "baudrate"),
        (lambda p: p.update(kind="printer"), "kind"),
    ]:
        bad = copy.deepcopy(good)
        mutate(bad)
        with pytest.raises(ProfileError, match=message):
            validate(bad, "bill_validator")
    printer = load_profile(next(p for p in PROFILES if p.stem == "generic-80mm"))
    printer["code_page"] = "cp866"
    with pytest.raises(ProfileError, match="code_page"):
        validate(printer, "printer")
    printer = load_profile(next(p for p in PROFILES if p.stem == "generic-58mm-cp1125"))
    for value in (31, 97, 42.0, True):  # fewer columns than font A, or not a count
        printer["width_chars_condensed"] = value
        with pytest.raises(ProfileError, match="width_chars_condensed"):
            validate(printer, "printer")


def test_printer_profile_by_name_sets_code_page_and_width():
    assert find_profile("printer", "generic-58mm-cp1125")["code_page"] == "cp1125"
    printer = ReceiptPrinter("loop://", profile="generic-58mm-cp1125")
    assert printer.code_page == "cp1125" and printer.width_chars == 32 and printer.condensed_chars == 42
    assert b"\x1bt\x2c" in printer.render([("text", "ї")])  # ESC t 44 selects CP1125


def test_devices_package_imports_nothing_from_the_app():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "devices"
    pattern = re.compile(r"^\s*(from|import)\s+(terminal|payments)\b", re.M)
    offenders = [str(p) for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
