"""The catalogue's ЄДРПОУ and IBAN checks run on python-stdnum and still say what they said.

The hand-written check digits they replaced are frozen below as the reference: on every input
that is ASCII apart from letters and punctuation the new checks give exactly the old message (or
None). The one difference is deliberate: the old code trusted ``str.isdigit()``, so Arabic-Indic
or full-width digits passed and a superscript digit crashed ``int()``; those are now refused as
"not digits".
"""
from __future__ import annotations

import pytest
from hypothesis import example, given, settings, strategies as st

from terminal.catalogue.io import SAMPLE_FOLDER, edrpou_problem, iban_problem, read_folder


# --- frozen copy of the hand-written checks (terminal/catalogue/io.py before python-stdnum) -----

def old_iban_checksum_ok(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


def old_iban_check_digits(country: str, bban: str) -> str:
    digits = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{98 - int(digits) % 97:02d}"


def old_edrpou_check_digit(first7: str) -> int:
    digits = [int(d) for d in first7]
    value = int(first7)
    alternative = 3000000 <= value < 6000000
    weights = [7, 1, 2, 3, 4, 5, 6] if alternative else [1, 2, 3, 4, 5, 6, 7]
    remainder = sum(d * w for d, w in zip(digits, weights)) % 11
    if remainder >= 10:
        remainder = sum(d * (w + 2) for d, w in zip(digits, weights)) % 11
        if remainder >= 10:
            remainder = 0
    return remainder


def old_edrpou_ok(code: str) -> bool:
    return len(code) == 8 and code.isdigit() and old_edrpou_check_digit(code[:7]) == int(code[7])


def old_edrpou_problem(edrpou: str) -> str | None:
    if len(edrpou) != 8 or not edrpou.isdigit():
        return f"{edrpou!r} must be exactly 8 digits"
    if not old_edrpou_ok(edrpou):
        return (f"{edrpou!r}: check digit fails (expected "
                f"{old_edrpou_check_digit(edrpou[:7])} at the end)")
    return None


def old_iban_problem(iban: str) -> str | None:
    if " " in iban:
        return f"{iban!r}: write the IBAN without spaces"
    if not iban.startswith("UA"):
        return f"{iban!r}: must start with UA (a Ukrainian account)"
    if len(iban) != 29:
        return f"{iban!r}: must be 29 characters (UA + 27), got {len(iban)}"
    if not iban[2:].isdigit():
        return f"{iban!r}: after UA only digits are allowed"
    if not old_iban_checksum_ok(iban):
        return "checksum fails (mod-97)"
    return None


# --- inputs -----------------------------------------------------------------------------------

DIGITS = "0123456789"
# ASCII noise a person editing YAML might leave in a code, and the letters of "UA"
NOISE = DIGITS + " -.\tUAuaBO"


def _non_ascii_digit(text: str) -> bool:
    return any(ch.isdigit() and not ch.isascii() for ch in text)


edrpous = st.one_of(
    st.text(DIGITS, min_size=8, max_size=8),        # about one in ten has a valid check digit
    st.text(DIGITS, max_size=10),
    st.text(NOISE, max_size=10),
    st.text(max_size=10).filter(lambda s: not _non_ascii_digit(s)),
)


@st.composite
def ibans(draw) -> str:
    bban = draw(st.text(DIGITS, min_size=25, max_size=25))
    check = draw(st.one_of(st.just(old_iban_check_digits("UA", bban)),  # valid half the time
                           st.text(DIGITS, min_size=2, max_size=2)))
    iban = "UA" + check + bban
    # then maybe spoil it: cut or lengthen it, change a character, or change the country
    cut = draw(st.integers(-3, 3))
    iban = iban[:len(iban) + cut] if cut < 0 else iban + draw(st.text(DIGITS, min_size=cut,
                                                                       max_size=cut))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(iban) - 1))
        iban = iban[:at] + draw(st.sampled_from(NOISE)) + iban[at + 1:]
    return iban


any_ibans = st.one_of(ibans(), ibans(), ibans(), st.text(NOISE, max_size=32),
                      st.text(max_size=32).filter(lambda s: not _non_ascii_digit(s)))


# --- the comparison ---------------------------------------------------------------------------

@settings(max_examples=3000, deadline=None)
@given(edrpous)
@example("37988155")
@example("37988156")
@example("")
@example("3798 8155")
@example("30000000")
@example("59999990")
@example("60000000")
def test_edrpou_check_says_what_the_hand_written_one_said(code):
    assert edrpou_problem(code) == old_edrpou_problem(code)


@settings(max_examples=3000, deadline=None)
@given(any_ibans)
@example("UA583808050000026009702978805")
@example("ua583808050000026009702978805")
@example("UA58 3808 0500 0002 6009 7029 78805")
@example("UA58380805000002600970297880A")
@example("GB82WEST12345698765432")
def test_iban_check_says_what_the_hand_written_one_said(iban):
    assert iban_problem(iban) == old_iban_problem(iban)


def test_the_sample_catalogue_passes_both():
    for service in read_folder(SAMPLE_FOLDER).paid_services():
        details = service.fee.details
        assert edrpou_problem(details.edrpou) is None is old_edrpou_problem(details.edrpou)
        assert iban_problem(details.iban) is None is old_iban_problem(details.iban)


# --- the deliberate difference ----------------------------------------------------------------

@given(st.text(DIGITS, min_size=8, max_size=8), st.sampled_from([
    str.maketrans(DIGITS, "٠١٢٣٤٥٦٧٨٩"),      # Arabic-Indic
    str.maketrans(DIGITS, "０１２３４５６７８９"),  # full-width
    str.maketrans("3", "³"),                    # a superscript three
]))
def test_digits_other_than_ascii_are_refused_not_trusted(code, script):
    other = code.translate(script)
    if other == code:
        return
    assert edrpou_problem(other) == f"{other!r} must be exactly 8 digits"
    bban = "89999803332201250" + code
    iban = "UA" + old_iban_check_digits("UA", bban) + bban
    assert iban_problem(iban) is None
    spoiled = iban[:10] + iban[10:].translate(script)
    if spoiled != iban:
        assert iban_problem(spoiled) == f"{spoiled!r}: after UA only digits are allowed"


@pytest.mark.parametrize("code", ["٣٧٩٨٨١٥٥", "３７９８８１５５"])
def test_the_old_check_took_foreign_digits_for_a_valid_code(code):
    # the reason for the difference: a valid ЄДРПОУ written in other digits passed before
    assert old_edrpou_problem(code) is None
    assert edrpou_problem(code) is not None
