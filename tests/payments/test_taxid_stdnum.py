"""The РНОКПП check runs on python-stdnum (stdnum.ua.rntrc) and refuses exactly what it did.

The hand-written check digit it replaced is frozen below as the reference; on any text at all
(the old code already insisted on ASCII digits) ``normalize_id`` returns the same value or raises
the same message key as before.
"""
from __future__ import annotations

import re

from hypothesis import example, given, settings, strategies as st

from payments.taxid import PayerError, normalize_id
from tests.payments.helpers import RNOKPP

# --- frozen copy of the hand-written check (payments/taxid.py before python-stdnum) -------------

RNOKPP_WEIGHTS = (-1, 5, 7, 9, 4, 6, 10, 5, 7)


def old_rnokpp_check_digit(first9: str) -> int:
    total = sum(int(d) * w for d, w in zip(first9, RNOKPP_WEIGHTS))
    return (total % 11) % 10


def old_valid_rnokpp(value: str) -> bool:
    return len(value) == 10 and value.isascii() and value.isdigit() \
        and old_rnokpp_check_digit(value[:9]) == int(value[9])


def old_normalize_rnokpp(raw: str) -> str:
    """``normalize_id("rnokpp", raw)`` as it was; returns the value or the message key."""
    value = re.sub(r"[\s\-]", "", raw or "").upper()
    if not value:
        return "rnokpp_empty"
    if not (value.isascii() and value.isdigit()) or len(value) != 10:
        return "rnokpp_format"
    if not old_valid_rnokpp(value):
        return "rnokpp_checksum"
    return value


def new_normalize_rnokpp(raw: str) -> str:
    try:
        return normalize_id("rnokpp", raw)
    except PayerError as exc:
        assert exc.field == "id_value"
        return exc.code


DIGITS = "0123456789"
typed = st.one_of(
    st.text(DIGITS, min_size=10, max_size=10),             # about one in ten is valid
    st.text(DIGITS + " -", min_size=8, max_size=14),       # spaced or hyphenated as people type
    st.text(DIGITS + "０１２３٣³ \u00a0-aA", max_size=12),  # full-width, Arabic-Indic, NBSP
    st.text(max_size=14),
)


@settings(max_examples=3000, deadline=None)
@given(typed)
@example(RNOKPP)
@example("3652504576")
@example("3652 504 575")
@example("３６５２５０４５７５")
@example("")
@example("0000000000")
def test_rnokpp_check_refuses_exactly_what_the_hand_written_one_did(raw):
    assert new_normalize_rnokpp(raw) == old_normalize_rnokpp(raw)
