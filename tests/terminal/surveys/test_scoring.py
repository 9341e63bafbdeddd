"""The one scoring rule: the Python functions (incremental roll-up, report reference) and the SQL
expressions (roll-up rebuild) agree on every possible answer."""
import sqlite3

import pytest

from terminal.surveys import scoring


def test_sql_and_python_agree_on_every_answer():
    db = sqlite3.connect(":memory:")
    cases = [(score, scale, nps) for scale in (4, 5) for score in range(1, scale + 1)
             for nps in (None, *range(11))]
    for score, scale, nps in cases:
        row = db.execute(f"SELECT {scoring.SQL_SCORE5}, {scoring.SQL_TOP}, {scoring.SQL_PROMOTER}, "
                         f"{scoring.SQL_DETRACTOR} FROM (SELECT ? AS score, ? AS scale, ? AS nps)",
                         (score, scale, nps)).fetchone()
        python = (scoring.score5(score, scale), scoring.is_top(score, scale), scoring.is_promoter(nps),
                  scoring.is_detractor(nps))
        assert row[0] == pytest.approx(python[0]) and tuple(map(bool, row[1:])) == python[1:], (score, scale, nps)


@pytest.mark.parametrize("scale, tops", [(4, {3, 4}), (5, {4, 5})])
def test_the_rule_itself(scale, tops):
    assert {s for s in range(1, scale + 1) if scoring.is_top(s, scale)} == tops
    assert scoring.score5(1, scale) == 1 and scoring.score5(scale, scale) == 5
    assert [n for n in range(11) if scoring.is_promoter(n)] == [9, 10]
    assert [n for n in range(11) if scoring.is_detractor(n)] == list(range(7))
    assert not scoring.is_promoter(None) and not scoring.is_detractor(None)
    assert len(tops) == scoring.TOP_FACES
