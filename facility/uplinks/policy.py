"""Which uplink carries the traffic: pure decisions (probe rounds + time in, states and route
commands out; no I/O, no threads, no clock).

Every probe interval each uplink sends one *round*: a probe to every target by every method
(ICMP echo, TCP connect, HTTP). The two rules below keep one rate-limiting or slow target from
failing a link, yet catch a cut in a few rounds:

- a round *answered* when any of its probes answered (a cut link answers none);
- loss and RTT are taken per *path* (target × method) over a sliding window, and the uplink's
  figure is the lower median over its paths, so fewer than half of them being bad (one of
  three, two or three of six) cannot move it.

Decision table (state → next state):

===========  ===============================================================  ===========
state        when                                                             next
===========  ===============================================================  ===========
up           ``down_rounds`` rounds in a row without any answer               down
up           ≥ ``min_rounds`` rounds and loss ≥ ``loss_down_pct``             down
up           ≥ ``min_rounds`` rounds and RTT ≥ ``rtt_down_ms``                down
down         a round answered                                                 recovering
recovering   a round without any answer; or, once ≥ ``min_rounds`` rounds,    down
             loss > ``loss_up_pct`` or RTT > ``rtt_up_ms`` since recovering
recovering   ``stable_s`` since the link came back (*), loss ≤                  up
             ``loss_up_pct`` and RTT ≤ ``rtt_up_ms`` since then
===========  ===============================================================  ===========

(*) half a probe interval before the first answered round was sent (it came back at some moment
since the round before), so failing back happens ``stable_s`` ± half a probe interval after the
link really came back.

The main route goes to the first uplink in priority order (an operator's preferred one first)
that is up; the guest uplink only carries staff traffic when no other is up. Failing over is
immediate; failing back waits for the better uplink to be up again, which takes ``stable_s``.
The guest network keeps to the guest uplink; while that is down it shares the main uplink only
when ``guest_share`` is on. An uplink that goes down has its tracked connections flushed.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from statistics import median, median_low
from typing import Iterable, Union

UP, DOWN, RECOVERING = "up", "down", "recovering"
MAIN, GUEST = "main", "guest"


@dataclass(frozen=True)
class Thresholds:
    down_rounds: int = 3          # rounds in a row with no answer at all: a cut
    window_s: float = 30.0        # sliding window for loss and RTT
    min_rounds: int = 10          # rounds in the window before loss/RTT may decide
    loss_down_pct: float = 50.0
    loss_up_pct: float = 20.0
    rtt_down_ms: float = 1500.0
    rtt_up_ms: float = 800.0
    stable_s: float = 30.0        # healthy this long before a down uplink is up again

    def problem(self) -> str:
        """A sentence saying what is wrong with these numbers, or ''."""
        if self.down_rounds < 1 or self.min_rounds < 1:
            return "UPLINKS_DOWN_ROUNDS and UPLINKS_MIN_ROUNDS must be at least 1"
        if not 0 < self.loss_up_pct < self.loss_down_pct <= 100:
            return "need 0 < UPLINKS_LOSS_UP_PCT < UPLINKS_LOSS_DOWN_PCT ≤ 100 (hysteresis)"
        if not 0 < self.rtt_up_ms < self.rtt_down_ms:
            return "need 0 < UPLINKS_RTT_UP_MS < UPLINKS_RTT_DOWN_MS (hysteresis)"
        if self.window_s <= 0 or self.stable_s < 0:
            return "UPLINKS_WINDOW_S must be positive and UPLINKS_STABLE_S not negative"
        return ""


@dataclass(frozen=True)
class Probe:
    path: str                     # "icmp:192.0.2.1", "tcp:192.0.2.1:443", "http://…"
    ok: bool
    rtt_ms: float | None = None


@dataclass(frozen=True)
class Round:
    uplink: str
    sent_at: float
    probes: tuple[Probe, ...]

    @property
    def answered(self) -> bool:
        return any(p.ok for p in self.probes)


@dataclass(frozen=True)
class SetRoute:
    role: str                     # MAIN or GUEST
    uplink: str | None            # None: no route (guest network cut off)
    previous: str | None
    reason: str                   # "start", "failover", "failback", "prefer", "guest_uplink_down", …


@dataclass(frozen=True)
class Flush:
    uplink: str                   # forget the connections pinned to this uplink


@dataclass(frozen=True)
class Transition:
    uplink: str
    old: str
    new: str
    reason: str                   # "no_answer", "loss", "latency", "stable"
    at: float
    loss_pct: float | None
    rtt_ms: float | None


Output = Union[SetRoute, Flush, Transition]


class _Link:
    def __init__(self, name: str) -> None:
        self.name = name
        self.state = UP           # optimistic: the link carrying traffic at start is kept
        self.since = -math.inf
        self.reason = "start"
        self.samples: deque[tuple[float, str, bool, float | None]] = deque()
        self.rounds: deque[tuple[float, bool]] = deque()
        self.failed_after_answer: list[float] = []   # sent times of unanswered rounds since the last answer
        self.last_answer = -math.inf
        self.healthy_since: float | None = None   # when it most likely came back
        self.streak_first: float | None = None    # sent time of the streak's first answered round

    def prune(self, now: float, window_s: float) -> None:
        horizon = now - window_s
        while self.samples and self.samples[0][0] < horizon:
            self.samples.popleft()
        while self.rounds and self.rounds[0][0] < horizon:
            self.rounds.popleft()

    def figures(self, since: float) -> tuple[int, float | None, float | None, dict]:
        """(rounds, loss %, RTT ms, per path) over samples sent at or after ``since``."""
        paths: dict[str, list] = {}
        for sent_at, path, ok, rtt in self.samples:
            if sent_at >= since:
                paths.setdefault(path, []).append((ok, rtt))
        per_path = {}
        for path, results in paths.items():
            rtts = [rtt for ok, rtt in results if ok and rtt is not None]
            per_path[path] = {
                "probes": len(results),
                "loss_pct": round(100 * sum(1 for ok, _ in results if not ok) / len(results), 1),
                "rtt_ms": round(median(rtts), 1) if rtts else None,
            }
        rounds = sum(1 for sent_at, _ in self.rounds if sent_at >= since)
        if not per_path:
            return rounds, None, None, per_path
        # The lower median: with an even number of paths, half of them may be bad (a host that
        # rate-limits ping, one that answers slowly) without moving the uplink's figure.
        loss = median_low(p["loss_pct"] for p in per_path.values())
        rtts = [p["rtt_ms"] for p in per_path.values() if p["rtt_ms"] is not None]
        return rounds, round(loss, 1), (round(median_low(rtts), 1) if rtts else None), per_path


class Policy:
    def __init__(self, uplinks: Iterable[str], thresholds: Thresholds = Thresholds(), *,
                 guest_uplink: str = "", guest_share: bool = False, interval_s: float = 0.0) -> None:
        self.order = list(uplinks)
        if not self.order:
            raise ValueError("no uplinks")
        self.t = thresholds
        self.interval_s = interval_s   # between two rounds of one uplink
        self.links = {name: _Link(name) for name in self.order}
        self.guest_uplink = guest_uplink if guest_uplink in self.links else ""
        self.guest_share = guest_share
        self.preferred = ""
        self.active: str | None = None
        self.guest_active: str | None = None

    # --- inputs ------------------------------------------------------------------------
    def start(self, now: float) -> list[Output]:
        """The routes to set when the watch begins (every uplink counts as up until probed)."""
        return self._select(now, "start")

    def observe(self, rnd: Round, now: float) -> list[Output]:
        """One uplink's finished round (all probes answered or timed out)."""
        link = self.links.get(rnd.uplink)
        if link is None:
            return []
        t = self.t
        for probe in rnd.probes:
            link.samples.append((rnd.sent_at, probe.path, probe.ok, probe.rtt_ms if probe.ok else None))
        link.rounds.append((rnd.sent_at, rnd.answered))
        link.prune(now, t.window_s)
        out: list[Output] = []
        if rnd.answered:
            link.last_answer = max(link.last_answer, rnd.sent_at)
            link.failed_after_answer = [s for s in link.failed_after_answer if s > link.last_answer]
        elif rnd.sent_at > link.last_answer:
            link.failed_after_answer.append(rnd.sent_at)
            del link.failed_after_answer[:-t.down_rounds]

        if link.state == UP:
            rounds, loss, rtt, _ = link.figures(max(link.since, now - t.window_s))
            reason = ""
            if len(link.failed_after_answer) >= t.down_rounds:
                reason = "no_answer"
            elif rounds >= t.min_rounds and loss is not None and loss >= t.loss_down_pct:
                reason = "loss"
            elif rounds >= t.min_rounds and rtt is not None and rtt >= t.rtt_down_ms:
                reason = "latency"
            if reason:
                out += self._move(link, DOWN, reason, now, loss, rtt)
                # Route first, then flush: a packet between the two would pin its connection
                # to the dead uplink again.
                out += self._select(now, "failover")
                out.append(Flush(link.name))
        else:
            if not rnd.answered:
                # A silent round sent before the first answered one is older news (rounds
                # overlap: it finishes only at its timeout, after the newer round answered).
                if link.streak_first is not None and rnd.sent_at > link.streak_first:
                    link.healthy_since = link.streak_first = None
                    link.state = DOWN
            else:
                if link.streak_first is None or rnd.sent_at < link.streak_first:
                    link.streak_first = rnd.sent_at
                    # It came back at some moment since the round before: count from halfway.
                    link.healthy_since = rnd.sent_at - self.interval_s / 2
                    link.state = RECOVERING
                rounds, loss, rtt, _ = link.figures(link.healthy_since)
                if rounds >= t.min_rounds and not self._good(loss, rtt):
                    link.healthy_since = link.streak_first = None
                    link.state = DOWN
            out += self.tick(now)
        return out

    def tick(self, now: float) -> list[Output]:
        """Let time pass: a recovering uplink that stayed good for ``stable_s`` is up again."""
        out: list[Output] = []
        for link in self.links.values():
            if link.state != RECOVERING or link.healthy_since is None:
                continue
            if now - link.healthy_since < self.t.stable_s:
                continue
            rounds, loss, rtt, _ = link.figures(link.healthy_since)
            if rounds and self._good(loss, rtt):
                since = link.healthy_since
                out += self._move(link, UP, "stable", now, loss, rtt)
                link.since = since   # the good streak counts towards the next decisions
                link.healthy_since = link.streak_first = None
            else:
                link.healthy_since = link.streak_first = None
                link.state = DOWN
        if out:
            out += self._select(now, "failback")
        return out

    def prefer(self, uplink: str, now: float) -> list[Output]:
        """Put ``uplink`` first while it is up ('' goes back to the configured order)."""
        if uplink and uplink not in self.links:
            raise ValueError(f"no uplink named {uplink!r}")
        self.preferred = uplink
        return self._select(now, "prefer")

    # --- views -------------------------------------------------------------------------
    def priority(self) -> list[str]:
        if self.preferred:
            return [self.preferred] + [n for n in self.order if n != self.preferred]
        return list(self.order)

    def snapshot(self, now: float) -> list[dict]:
        rows = []
        for name in self.order:
            link = self.links[name]
            link.prune(now, self.t.window_s)
            rounds, loss, rtt, paths = link.figures(now - self.t.window_s)
            rows.append({
                "name": name, "state": link.state, "reason": link.reason,
                "since": None if link.since == -math.inf else link.since,
                "loss_pct": loss, "rtt_ms": rtt, "rounds": rounds,
                "healthy_since": link.healthy_since, "paths": paths,
            })
        return rows

    # --- inside ------------------------------------------------------------------------
    def _good(self, loss: float | None, rtt: float | None) -> bool:
        return (loss is None or loss <= self.t.loss_up_pct) and (rtt is None or rtt <= self.t.rtt_up_ms)

    def _move(self, link: _Link, new: str, reason: str, now: float, loss, rtt) -> list[Output]:
        old = link.state if link.state != RECOVERING else DOWN
        link.state, link.since, link.reason = new, now, reason
        if new == DOWN:
            link.healthy_since = link.streak_first = None
        return [Transition(link.name, old, new, reason, now, loss, rtt)]

    def _select(self, now: float, why: str) -> list[Output]:
        out: list[Output] = []
        up = [n for n in self.priority() if self.links[n].state == UP]
        staff = [n for n in up if n != self.guest_uplink] or up
        main = staff[0] if staff else self.active  # nothing up: keep what we have
        if main is None:
            main = self.priority()[0]
        if main != self.active:
            previous = self.active
            if why in ("start", "prefer"):
                reason = why
            elif previous is not None and self.links[previous].state != UP:
                reason = "failover"
            else:
                reason = "failback"
            out.append(SetRoute(MAIN, main, previous, reason))
            self.active = main
        if self.guest_uplink:
            if self.links[self.guest_uplink].state == UP:
                guest, reason = self.guest_uplink, "guest_uplink_up"
            elif self.guest_share:
                guest, reason = self.active, "guest_uplink_down"
            else:
                guest, reason = None, "guest_uplink_down"
            if guest != self.guest_active or why == "start":
                out.append(SetRoute(GUEST, guest, self.guest_active, "start" if why == "start" else reason))
                self.guest_active = guest
        return out
