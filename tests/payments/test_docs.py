"""docs/payments.md cannot fall behind the code: every event kind, status, journal column and
registry column is documented."""
from pathlib import Path

import pytest

from payments.machine import FINAL, TABLE
from payments.registry import CSV_FIELDS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "payments.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", sorted(TABLE))
def test_every_event_kind_is_documented(kind):
    assert f"`{kind}`" in DOC


@pytest.mark.parametrize("status", sorted(FINAL | {"new", "cash", "card"}))
def test_every_status_is_documented(status):
    assert f"| `{status}` |" in DOC


@pytest.mark.parametrize("column", CSV_FIELDS)
def test_every_registry_column_is_documented(column):
    assert column in DOC


@pytest.mark.parametrize("heading", ["## States", "## The journal", "## Recovery", "## Receipts", "## Bank registry"])
def test_sections(heading):
    assert heading in DOC
