"""CSV cells that a spreadsheet cannot run as a formula ("CSV injection", OWASP).

Every CSV file the project writes (the bank registry, survey exports) goes through ``writer`` or
``DictWriter`` here. It lives in ``payments`` because that is the lowest layer: ``terminal``
imports ``payments`` already and ``payments`` must not import ``terminal``.

A text cell whose first character that a spreadsheet looks at is a formula trigger gets a
leading ``'`` (which Excel and LibreOffice show as "this is text" and do not display). Triggers:

* ``= + - @`` (OWASP), TAB and CR (OWASP), and LF (a quoted cell may start with a line break;
  LibreOffice's import can drop it and see what follows);
* their fullwidth forms ``＝ ＋ － ＠`` (East Asian input methods type them; some Excel
  versions convert them to ASCII when a cell is entered);
* the first character *after* leading spaces and invisible characters (format characters such as
  zero-width spaces or bidi controls, other control characters): importers with "trim spaces"
  would otherwise expose the trigger.

Numbers the project computes itself are written as they are, so a spreadsheet still adds them
up: ``int``/``float``/``Decimal`` values (finite), ``Number`` strings (checked to be a plain
decimal such as ``-12.50``), and, in ``DictWriter``, the fields named ``numeric`` when their value
is such a plain decimal. Anything else — every text from a visitor, a tablet or staff — is
neutralised, even when it looks like a number (``+380…`` typed by a visitor becomes ``'+380…``).
"""
from __future__ import annotations

import csv
import math
import re
import unicodedata
from decimal import Decimal
from typing import Any, Iterable

TRIGGERS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


class Number(str):
    """A number the project wrote as text (an amount ``"-12.50"``, a mark ``"4.25"``): kept as is."""

    def __new__(cls, text: Any):
        text = str(text)
        if not PLAIN_DECIMAL.fullmatch(text):
            raise ValueError(f"not a plain decimal number: {text!r}")
        return super().__new__(cls, text)


def _first_visible(text: str) -> str:
    for ch in text:
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp"):
            if ch in TRIGGERS:      # TAB, CR, LF are triggers themselves
                return ch
            continue
        return ch
    return ""


def cell(value: Any) -> Any:
    """The value as it may go into a CSV cell: numbers the project made unchanged, text neutralised."""
    if value is None:
        return ""
    if isinstance(value, Number):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, Decimal) and value.is_finite():
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    text = str(value)
    if _first_visible(text) in TRIGGERS:
        return "'" + text
    return text


def row(values: Iterable[Any]) -> list:
    return [cell(v) for v in values]


class _Writer:
    def __init__(self, inner):
        self._inner = inner

    def writerow(self, values: Iterable[Any]):
        return self._inner.writerow(row(values))

    def writerows(self, rows: Iterable[Iterable[Any]]):
        for values in rows:
            self.writerow(values)


def writer(stream, **kwargs) -> _Writer:
    """``csv.writer`` whose every cell goes through ``cell``."""
    return _Writer(csv.writer(stream, **kwargs))


class DictWriter(csv.DictWriter):
    """``csv.DictWriter`` whose every cell goes through ``cell``; ``numeric`` names fields the
    project fills with its own numbers (plain decimals there stay numeric)."""

    def __init__(self, stream, fieldnames, numeric: Iterable[str] = (), **kwargs):
        super().__init__(stream, fieldnames, **kwargs)
        self._numeric = frozenset(numeric)

    def writeheader(self):
        return self.writer.writerow(row(self.fieldnames))

    def _dict_to_list(self, rowdict, *args):
        values = super()._dict_to_list(rowdict, *args)
        out = []
        for name, value in zip(self.fieldnames, values):
            if name in self._numeric and isinstance(value, str) and PLAIN_DECIMAL.fullmatch(value):
                value = Number(value)
            out.append(cell(value))
        return out
