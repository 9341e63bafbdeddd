"""Filtering of repeated presses and flagging of bursts — pure decisions, no I/O.

* A press on a tablet less than ``repeat_window_s`` after the previous counted press on the same
  tablet is a *repeat*: it is stored (nothing is ever dropped) but not counted, and flagged.
* ``burst_size`` identical counted main answers in a row on one tablet, all within
  ``burst_window_s``, are a *burst*: every answer of the run is flagged for review and stays
  counted until a manager decides otherwise.
  ``burst_size`` identical answers that *reached the server* one after another within
  ``burst_window_s`` are a burst too, whatever times the tablet claims for them: a script posting
  hundreds of identical answers with spread-out, backdated times is caught by when they arrived.
  A tablet flushing a queue of real answers after being offline is not (real answers vary),
  unless ``burst_size`` identical answers follow each other in it — then a manager looks.
* An answer given more than ``late_after_s`` before an earlier delivery from the same tablet is
  *late*: the tablet was talking to the server after the answer was given and did not send it
  then, which the tablet app never does (it sends every finished answer at once, oldest first).
  It is stored, flagged and not counted: an answer cannot be slipped into the past. Deliveries of
  the last ``late_after_s`` do not count against it (a long queue arrives in several batches).
* A manager's review of a burst is either ``genuine`` (counted like any answer) or ``excluded``
  (confirmed not genuine: never counted). The flag itself is kept as history.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass

REPEAT = "repeat"
BURST = "burst"
LATE = "late"
GENUINE = "genuine"
EXCLUDED = "excluded"
REVIEW_DECISIONS = (GENUINE, EXCLUDED)


@dataclass(frozen=True)
class Rules:
    repeat_window_s: float = 5
    burst_size: int = 10
    burst_window_s: float = 120
    late_after_s: float = 600
    max_offline_s: float = 7 * 86400
    requests_per_minute: float = 120


@dataclass(frozen=True)
class Recent:
    """A counted answer already stored for the tablet."""
    uuid: str
    answered_at: float
    main: str
    flag: str | None
    received_at: float | None = None


def is_repeat(answered_at: float, previous_counted_at: float | None, rules: Rules) -> bool:
    if previous_counted_at is None or rules.repeat_window_s <= 0:
        return False
    return 0 <= answered_at - previous_counted_at < rules.repeat_window_s


def burst_members(answered_at: float, main: str, recent: list[Recent], rules: Rules,
                  arrived: list[Recent] | None = None) -> list[str] | None:
    """None when the new answer completes no burst; otherwise the UUIDs of the earlier answers
    of the run still to be flagged (empty when they already are).

    ``recent``: the tablet's latest counted answers given before this one, newest first; a run
    there is a burst when it was given within the window. ``arrived``: the tablet's answers that
    reached the server within the window before this one (counted or late), latest arrival first;
    a run there is a burst whatever times the tablet claims for it."""
    if rules.burst_size < 2:
        return None
    need = rules.burst_size - 1
    members: list[Recent] = []
    given = recent[:need]
    if len(given) == need and all(r.main == main and answered_at - r.answered_at <= rules.burst_window_s
                                  for r in given):
        members += given
    together = (arrived or [])[:need]
    if len(together) == need and all(r.main == main for r in together):
        members += together
    if not members:
        return None
    seen: set[str] = set()
    return [r.uuid for r in members if r.flag not in (BURST, LATE) and not (r.uuid in seen or seen.add(r.uuid))]


def late_window(answered_at: float, now: float, rules: Rules) -> tuple[float, float] | None:
    """Deliveries from the tablet received in (start, end] make an answer given at ``answered_at``
    and received ``now`` late; None when no delivery could."""
    if rules.late_after_s <= 0:
        return None
    start, end = answered_at + rules.late_after_s, now - rules.late_after_s
    return (start, end) if start < end else None


# Invisible characters a visitor's text has no use for: format characters (bidi overrides and
# isolates, zero-width spaces and joiners, BOM, soft hyphen, tag characters), control characters,
# lone surrogates (JSON can carry them; SQLite cannot store them) and private-use characters.
_DROPPED_CATEGORIES = frozenset(("Cf", "Cc", "Cs", "Co"))
_LINE_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def clean_text(text: str, multiline: bool = True) -> str:
    """Text from a tablet or a form as it may be stored: NFC, every line break a plain newline
    (or a space when ``multiline`` is false), a tab a space, and no invisible characters (a bidi
    override could make a comment read differently from what it says, a zero-width space could
    hide a phone number from ``mask_personal``). Leading and trailing blanks are removed."""
    text = _LINE_BREAKS.sub("\n", text).replace("\t", " ")
    if not multiline:
        text = text.replace("\n", " ")
    text = "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    return unicodedata.normalize("NFC", text).strip()


class RequestRate:
    """At most ``per_minute`` requests a minute from one tablet, in bursts of up to ``per_minute``
    (a token bucket on the monotonic clock, so a step of the wall clock neither opens nor closes
    it). A tablet flushing a long queue needs a request per 500 answers; a stolen key cannot
    hammer the store."""

    def __init__(self, per_minute: float):
        self.per_minute = per_minute
        self._buckets: dict[int, tuple[float, float]] = {}     # tablet -> (tokens, at)
        self._lock = threading.Lock()

    def wait(self, tablet_id: int, now: float) -> float:
        """0 when the request may go ahead (and is counted); otherwise seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        with self._lock:
            tokens, at = self._buckets.get(tablet_id, (self.per_minute, now))
            tokens = min(self.per_minute, tokens + max(0.0, now - at) * self.per_minute / 60)
            if tokens >= 1:
                self._buckets[tablet_id] = (tokens - 1, now)
                return 0.0
            self._buckets[tablet_id] = (tokens, now)
            return (1 - tokens) * 60 / self.per_minute


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
