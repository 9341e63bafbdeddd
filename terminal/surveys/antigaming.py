"""Filtering of repeated presses and flagging of bursts — pure decisions, no I/O.

* A press on a tablet less than ``repeat_window_s`` after the previous counted press on the same
  tablet is a *repeat*: it is stored (nothing is ever dropped) but not counted, and flagged.
* ``burst_size`` identical counted main answers in a row on one tablet, all within
  ``burst_window_s``, are a *burst*: every answer of the run is flagged for review and stays
  counted until a manager decides otherwise.
* A manager's review of a burst is either ``genuine`` (counted like any answer) or ``excluded``
  (confirmed not genuine: never counted). The flag itself is kept as history.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

REPEAT = "repeat"
BURST = "burst"
GENUINE = "genuine"
EXCLUDED = "excluded"
REVIEW_DECISIONS = (GENUINE, EXCLUDED)


@dataclass(frozen=True)
class Rules:
    repeat_window_s: float = 5
    burst_size: int = 10
    burst_window_s: float = 120


@dataclass(frozen=True)
class Recent:
    """A counted answer already stored for the tablet."""
    uuid: str
    answered_at: float
    main: str
    flag: str | None


def is_repeat(answered_at: float, previous_counted_at: float | None, rules: Rules) -> bool:
    if previous_counted_at is None or rules.repeat_window_s <= 0:
        return False
    return 0 <= answered_at - previous_counted_at < rules.repeat_window_s


def burst_members(answered_at: float, main: str, recent: list[Recent], rules: Rules) -> list[str] | None:
    """None when the new answer completes no burst; otherwise the UUIDs of the earlier answers
    of the run still to be flagged (empty when they already are).

    ``recent``: the tablet's latest counted answers before this one, newest first."""
    if rules.burst_size < 2:
        return None
    run = recent[:rules.burst_size - 1]
    if len(run) < rules.burst_size - 1:
        return None
    if any(r.main != main or answered_at - r.answered_at > rules.burst_window_s for r in run):
        return None
    return [r.uuid for r in run if r.flag != BURST]


_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# Seven or more digits, possibly split by spaces, dashes, dots, brackets (phones, tax numbers).
_DIGITS = re.compile(r"\+?\d(?:[\s().-]{0,2}\d){6,}")


def mask_personal(text: str) -> str:
    """Phone numbers, tax numbers and e-mail addresses masked: comments are shown to staff and
    forwarded to the hub, where personal data has no business."""
    def digits(match: re.Match) -> str:
        only = re.sub(r"\D", "", match.group(0))
        return "•" * (len(only) - 2) + only[-2:]

    text = _EMAIL.sub(lambda m: f"{m.group(1)}•••@{m.group(2)}", text)
    return _DIGITS.sub(digits, text)
