"""The MQTT outbox on a real SQLite file: state coalesced per topic, answers kept until PUBACK and
the kiosk's acknowledgement, limits, and a restart in between."""
from __future__ import annotations

import pytest

from monitoring.outbox import Outbox


def put(box, topic, payload, now=0.0, force=False):
    return box.put_state(topic, payload, 1, True, payload.replace(b"ts", b""), now, force)


def test_state_is_coalesced_per_topic_and_sent_versions_are_tracked(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    assert put(box, "cnap/s/power", b"a", 1) and put(box, "cnap/s/power", b"b", 2) and put(box, "cnap/s/air", b"x", 3)
    rows = box.dirty_states(10)
    assert [(r.topic, r.payload) for r in rows] == [("cnap/s/power", b"b"), ("cnap/s/air", b"x")]
    power = rows[0]
    put(box, "cnap/s/power", b"c", 4)            # changes while version b is in flight
    box.state_sent(power.topic, power.version)    # b's PUBACK does not clear c
    assert [r.payload for r in box.dirty_states(10)] == [b"x", b"c"]
    for row in box.dirty_states(10):
        box.state_sent(row.topic, row.version)
    assert box.dirty_states(10) == [] and not put(box, "cnap/s/air", b"x", 5)   # same content: nothing to send
    assert put(box, "cnap/s/air", b"x", 6, force=True)                          # the refresh sends it anyway
    box.mark_all_dirty()
    assert len(box.dirty_states(10)) == 2


def test_answers_survive_a_restart_until_acked_and_forwarded(tmp_path):
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    answers = [(f"u{i}", "cnap/s/survey/answer", b"{%d}" % i) for i in range(5)]
    assert box.add_answers(answers, 1.0) == 5 and box.add_answers(answers[:2], 2.0) == 0   # never twice
    box.answer_acked("u0")
    box.close()
    box = Outbox(path)                                                      # the agent restarted
    assert [a.uuid for a in box.unsent_answers(10)] == ["u1", "u2", "u3", "u4"]
    assert [a.uuid for a in box.unsent_answers(2, exclude={"u1"})] == ["u2", "u3"]
    assert box.acked_answers(10) == ["u0"]
    box.forget_answers(["u0", "u1"])                                        # u1 was never acked: kept
    assert box.depth() == {"state": 0, "answer": 4, "answer_acked": 0}
    assert box.add_answers(answers[:1], 3.0) == 1   # forwarded and forgotten: the kiosk would not give it again


def test_limits_stop_pulling_answers_and_drop_oldest_state_first(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_answers=3, max_bytes=64 * 1024)
    assert box.room_for_answers() == 3
    box.add_answers([(f"u{i}", "t", b"x") for i in range(3)], 1.0)
    assert box.room_for_answers() == 0                       # the kiosk keeps the rest
    put(box, "cnap/s/old", b"o" * 30000, 1)
    put(box, "cnap/s/mid", b"m" * 30000, 2)
    put(box, "cnap/s/new", b"n" * 30000, 3)                  # over 64 KiB: the oldest state goes
    assert [r.topic for r in box.dirty_states(10)] == ["cnap/s/mid", "cnap/s/new"] and box.dropped_states == 1
    assert len(box.unsent_answers(10)) == 3                  # answers are never dropped
    assert box.room_for_answers() == 0


def test_refuses_limits_that_cannot_work(tmp_path):
    with pytest.raises(ValueError):
        Outbox(tmp_path / "o.sqlite3", max_answers=0)
