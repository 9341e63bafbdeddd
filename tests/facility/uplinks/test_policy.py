"""The pure uplink policy: cuts are caught in a few rounds, one bad target or random loss below
the thresholds never fails a link, failing back waits for the stable period, switches are bounded."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from facility.uplinks.policy import (DOWN, GUEST, MAIN, RECOVERING, UP, Flush, Policy, Probe, Round,
                                     SetRoute, Thresholds, Transition)

PATHS = ("icmp:192.0.2.1", "icmp:192.0.2.2", "icmp:192.0.2.3", "tcp:192.0.2.1:443",
         "tcp:192.0.2.2:443", "tcp:192.0.2.3:443")
INTERVAL = 0.5
T = Thresholds(down_rounds=3, window_s=30, min_rounds=10, loss_down_pct=50, loss_up_pct=20,
               rtt_down_ms=1500, rtt_up_ms=800, stable_s=30)


def rnd(uplink, at, failed=(), rtt=20.0, slow=None):
    """A round at ``at``; ``failed`` paths got no answer; ``slow`` maps path → RTT."""
    slow = slow or {}
    return Round(uplink, at, tuple(Probe(p, p not in failed, slow.get(p, rtt)) for p in PATHS))


def run(policy, uplinks, start, rounds, failed_for=lambda name, i: (), slow_for=lambda name, i: None):
    """Feed ``rounds`` rounds per uplink from ``start``; returns every output and the end time."""
    outputs = []
    for i in range(rounds):
        at = start + i * INTERVAL
        for name in uplinks:
            outputs += policy.observe(rnd(name, at, failed_for(name, i), slow=slow_for(name, i)),
                                      at + 0.1)
        outputs += policy.tick(at + 0.2)
    return outputs, start + rounds * INTERVAL


def routes(outputs, role=MAIN):
    return [o for o in outputs if isinstance(o, SetRoute) and o.role == role]


def test_start_routes_through_the_first_uplink_and_keeps_guests_on_theirs():
    policy = Policy(["a", "b", "c"], T, guest_uplink="c")
    out = policy.start(0)
    assert SetRoute(MAIN, "a", None, "start") in out
    assert SetRoute(GUEST, "c", None, "start") in out


def test_a_total_cut_fails_over_after_down_rounds_and_flushes_the_dead_uplink():
    policy = Policy(["a", "b"], T)
    policy.start(0)
    run(policy, "ab", 0, 20)
    cut_at = 10.0
    out = []
    for i in range(3):
        at = cut_at + i * INTERVAL
        out += policy.observe(rnd("a", at, PATHS), at + 0.8)
        out += policy.observe(rnd("b", at), at + 0.1)
        if i < 2:
            assert policy.active == "a"
    assert policy.active == "b"
    assert SetRoute(MAIN, "b", "a", "failover") in out
    # The route moves before the flush, or a packet in between would pin to "a" again.
    assert out.index(SetRoute(MAIN, "b", "a", "failover")) < out.index(Flush("a"))
    assert [o.reason for o in out if isinstance(o, Transition)] == ["no_answer"]


def test_failback_waits_for_the_stable_period_from_the_first_good_round():
    policy = Policy(["a", "b"], T, interval_s=INTERVAL)
    policy.start(0)
    run(policy, "ab", 0, 4, failed_for=lambda n, i: PATHS if n == "a" else ())
    assert policy.active == "b" and policy.links["a"].state == DOWN
    restored = 2.0
    switched_at = None
    for i in range(200):
        at = restored + i * INTERVAL
        for name in "ab":
            if any(isinstance(o, SetRoute) for o in policy.observe(rnd(name, at), at + 0.05)):
                switched_at = switched_at or at + 0.05
        for step in range(1, 5):
            now = at + step * INTERVAL / 5
            if any(isinstance(o, SetRoute) for o in policy.tick(now)) and switched_at is None:
                switched_at = now
        if switched_at:
            break
    assert policy.active == "a"
    # The link came back between the last silent round (1.5) and the first answered one (2.0).
    assert abs(switched_at - (restored - INTERVAL / 2) - T.stable_s) <= INTERVAL / 2


def test_a_silent_round_finishing_after_a_newer_answered_one_does_not_restart_the_stable_period():
    policy = Policy(["a", "b"], T, interval_s=INTERVAL)
    policy.start(0)
    run(policy, "ab", 0, 4, failed_for=lambda n, i: PATHS if n == "a" else ())
    # Rounds overlap: the one sent at 10.0 times out at 10.8, after the one sent at 10.5 answered.
    policy.observe(rnd("a", 10.5), 10.51)
    policy.observe(rnd("a", 10.0, PATHS), 10.8)
    assert policy.links["a"].state == RECOVERING
    assert policy.links["a"].healthy_since == 10.25
    policy.observe(rnd("a", 11.0, PATHS), 11.8)     # a newer silent round does break it
    assert policy.links["a"].state == DOWN and policy.links["a"].healthy_since is None


def test_one_silent_and_one_slow_target_do_not_fail_a_link():
    policy = Policy(["a", "b"], T)
    policy.start(0)
    out, _ = run(policy, "ab", 0, 200,
                 failed_for=lambda n, i: ("icmp:192.0.2.1",) if n == "a" else (),
                 slow_for=lambda n, i: {"tcp:192.0.2.2:443": 5000.0} if n == "a" else None)
    assert [o for o in out if isinstance(o, Transition)] == []
    row = policy.snapshot(100)[0]
    assert row["paths"]["icmp:192.0.2.1"]["loss_pct"] == 100
    assert row["loss_pct"] == 0 and row["rtt_ms"] == 20


def test_heavy_loss_and_high_latency_bring_a_link_down():
    for failed, slow, reason in (
        (PATHS[:4], None, "loss"),
        ((), {p: 2000.0 for p in PATHS}, "latency"),
    ):
        policy = Policy(["a", "b"], T)
        policy.start(0)
        out, _ = run(policy, "ab", 0, 30,
                     failed_for=lambda n, i: failed if n == "a" and i % 2 else (),
                     slow_for=lambda n, i: slow if n == "a" else None)
        assert [o.reason for o in out if isinstance(o, Transition)] == [reason]
        assert policy.active == "b"


def test_a_lossy_recovering_link_stays_down():
    policy = Policy(["a", "b"], T)
    policy.start(0)
    run(policy, "ab", 0, 4, failed_for=lambda n, i: PATHS if n == "a" else ())
    out, _ = run(policy, "ab", 2, 200, failed_for=lambda n, i: PATHS[:4] if n == "a" and i % 2 else ())
    assert policy.links["a"].state in (DOWN, RECOVERING)
    assert routes(out) == []


def test_guest_network_shares_only_when_allowed():
    for share, expected in ((False, None), (True, "a")):
        policy = Policy(["a", "b", "g"], T, guest_uplink="g", guest_share=share)
        policy.start(0)
        out, _ = run(policy, "abg", 0, 4, failed_for=lambda n, i: PATHS if n == "g" else ())
        assert routes(out, GUEST) == [SetRoute(GUEST, expected, "g", "guest_uplink_down")]
        assert routes(out, MAIN) == []


def test_guest_uplink_carries_staff_only_as_the_last_resort():
    policy = Policy(["a", "g"], T, guest_uplink="g")
    policy.start(0)
    out, _ = run(policy, "ag", 0, 4, failed_for=lambda n, i: PATHS if n == "a" else ())
    assert routes(out) == [SetRoute(MAIN, "g", "a", "failover")]
    assert policy.guest_active == "g"


def test_prefer_moves_the_main_route_and_back():
    policy = Policy(["a", "b"], T)
    policy.start(0)
    assert policy.prefer("b", 1) == [SetRoute(MAIN, "b", "a", "prefer")]
    assert policy.prefer("", 2) == [SetRoute(MAIN, "a", "b", "prefer")]
    with pytest.raises(ValueError):
        policy.prefer("nope", 3)


def test_all_down_keeps_the_last_route():
    policy = Policy(["a", "b"], T)
    policy.start(0)
    out, _ = run(policy, "ab", 0, 6, failed_for=lambda n, i: PATHS)
    assert [o.uplink for o in out if isinstance(o, Flush)] == ["a", "b"]
    assert routes(out) == [SetRoute(MAIN, "b", "a", "failover")]
    assert policy.active == "b"


def test_thresholds_must_have_hysteresis():
    assert Thresholds().problem() == ""
    assert Thresholds(loss_up_pct=60, loss_down_pct=50).problem()
    assert Thresholds(rtt_up_ms=2000, rtt_down_ms=1500).problem()


# --- properties ------------------------------------------------------------------------

@st.composite
def loss_below_thresholds(draw):
    """Per round and path losses at most one in four, plus rare whole-round blackouts shorter
    than ``down_rounds`` at least ten rounds apart, and one target that may do anything."""
    n = draw(st.integers(20, 160))
    lost = draw(st.lists(st.lists(st.booleans(), min_size=len(PATHS), max_size=len(PATHS)),
                         min_size=n, max_size=n))
    lost = [[flag and i % 4 == phase for phase, flag in enumerate(row)] for i, row in enumerate(lost)]
    blackouts = draw(st.lists(st.tuples(st.integers(0, n), st.integers(1, T.down_rounds - 1)), max_size=8))
    blackout_rounds, last_end = set(), -100
    for start, length in sorted(blackouts):
        if start >= last_end + 10:
            blackout_rounds.update(range(start, start + length))
            last_end = start + length
    bad_target = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    rtts = draw(st.lists(st.floats(1, T.rtt_up_ms), min_size=n, max_size=n))
    rows = []
    for i in range(n):
        failed = tuple(PATHS if i in blackout_rounds else
                       [p for p, flag in zip(PATHS, lost[i]) if flag] + (["icmp:192.0.2.1"] if bad_target[i] else []))
        rows.append((failed, rtts[i]))
    return rows


@settings(max_examples=150, deadline=None)
@given(pattern=loss_below_thresholds())
def test_loss_below_thresholds_never_fails_a_link(pattern):
    policy = Policy(["a", "b"], T)
    policy.start(0)
    out = []
    for i, (failed, rtt) in enumerate(pattern):
        at = i * INTERVAL
        out += policy.observe(rnd("a", at, failed, rtt=rtt, slow={"tcp:192.0.2.3:443": 9000.0}), at + 0.8)
        out += policy.observe(rnd("b", at), at + 0.1)
        out += policy.tick(at + 0.3)
    assert out == []
    assert policy.links["a"].state == UP and policy.active == "a"


@settings(max_examples=150, deadline=None)
@given(pattern=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 100),
                                  st.integers(0, len(PATHS))), max_size=400),
       stable_s=st.sampled_from([0.0, 2.0, 10.0, 30.0]))
def test_switches_are_bounded_by_the_stable_period(pattern, stable_s):
    """Any pattern at all (cuts, bursts, partial loss): each uplink comes up at most once per
    stable period, so the main route changes at most a bounded number of times."""
    t = Thresholds(down_rounds=3, window_s=30, min_rounds=10, stable_s=stable_s)
    policy = Policy(["a", "b", "c"], t)
    policy.start(0)
    switches = ups = 0
    now = 0.0
    for uplink, dt, n_failed in pattern:
        now += dt / 100
        for o in policy.observe(rnd(uplink, now, PATHS[:n_failed]), now) + policy.tick(now):
            switches += isinstance(o, SetRoute)
            ups += isinstance(o, Transition) and o.new == UP
    if stable_s:
        assert ups <= 3 * (now // stable_s + 1)
    downs_at_most = ups + 3
    assert switches <= ups + downs_at_most
