"""The survey scoring rule, in one place.

An answer's main face (1..scale, scale 4 or 5) and its optional 0–10 recommendation make the
report's figures: CSAT counts the top two faces, the mean is on a common 1–5 mark so survey
versions with 4 and 5 faces compare, and the loyalty index counts promoters (9–10) against
detractors (0–6). The store's incremental roll-up and the report's reference computation call
the Python functions below; the SQL rebuild of the roll-ups uses the SQL expressions built from
the same constants, and a test checks that both agree on every possible answer.
"""
from __future__ import annotations

TOP_FACES = 2          # CSAT: the top two faces of the scale
PROMOTER_MIN = 9       # recommendation 9–10
DETRACTOR_MAX = 6      # recommendation 0–6


def score5(score: int, scale: int) -> float:
    """A face on a 4- or 5-face scale as a mark from 1 to 5, so versions can be compared."""
    return 1 + (score - 1) * 4 / (scale - 1)


def is_top(score: int, scale: int) -> bool:
    return score > scale - TOP_FACES


def is_promoter(nps: int | None) -> bool:
    return nps is not None and nps >= PROMOTER_MIN


def is_detractor(nps: int | None) -> bool:
    return nps is not None and nps <= DETRACTOR_MAX


# The same rules over the columns of the ``answers`` table (score, scale, nps), for SQL.
SQL_SCORE5 = "(1 + (score - 1) * 4.0 / (scale - 1))"
SQL_TOP = f"(score > scale - {TOP_FACES})"
SQL_PROMOTER = f"COALESCE(nps >= {PROMOTER_MIN}, 0)"
SQL_DETRACTOR = f"COALESCE(nps <= {DETRACTOR_MAX}, 0)"
