"""Answer ingestion: validation, idempotency, anti-gaming, shifts, forwarding seam."""
import pytest
import yaml

from terminal.surveys.antigaming import mask_personal
from terminal.surveys.definitions import DEFAULT_DEFINITION
from terminal.surveys.store import Rejected
from tests.terminal.surveys.conftest import NOW, answer


def ingest(store, tablet, *answers, sent_at=None):
    return store.ingest(tablet, list(answers), sent_at=sent_at, now=NOW)


def test_a_valid_answer_is_stored_with_its_version_and_resending_changes_nothing(store, tablet):
    a = answer("bad", path=[["why_bad", "waiting"], ["waiting_where", "queue"]], nps=3, comment="Черга")
    assert ingest(store, tablet, a)[0]["status"] == "stored"
    stored = store.answer(a["uuid"])
    assert (stored["survey_id"], stored["version"], stored["score"], stored["desk"]) == ("desk", 1, 2, "Desk 3")
    before = store.answers()
    assert ingest(store, tablet, a, a)[0]["status"] == "duplicate"
    changed = dict(a, nps=10, comment="інше")
    assert ingest(store, tablet, changed)[0]["status"] == "duplicate"
    assert store.answers() == before


def test_an_answer_keeps_pointing_at_the_version_it_answered(store, tablet):
    data = yaml.safe_load(DEFAULT_DEFINITION)
    data["main"]["faces"].pop(2)
    store.save_definition(yaml.safe_dump(data, allow_unicode=True))
    old = answer("neutral", path=[["improve", "speed"]], version=1)
    new = answer("good", version=2, at=NOW - 100)
    assert [r["status"] for r in ingest(store, tablet, old, new)] == ["stored", "stored"]
    # "neutral" does not exist in version 2.
    res = ingest(store, tablet, answer("neutral", version=2, at=NOW - 50))
    assert res[0]["error"] == "unknown_option"
    assert store.answer(old["uuid"])["version"] == 1 and store.answer(new["uuid"])["scale"] == 4


@pytest.mark.parametrize("change, error", [
    ({"main": "superb"}, "unknown_option"),
    ({"path": [["liked", "speed"]], "main": "very_bad"}, "unknown_option"),  # follow-up of another face
    ({"path": [["why_bad", "bribe"]], "main": "bad"}, "unknown_option"),
    ({"path": "why_bad"}, "bad_path"),
    ({"version": 7}, "unknown_survey"),
    ({"survey": "other"}, "unknown_survey"),
    ({"nps": 11}, "out_of_range"),
    ({"nps": -1}, "out_of_range"),
    ({"nps": 7.5}, "out_of_range"),
    ({"nps": True}, "out_of_range"),
    ({"comment": "x" * 501}, "comment_too_long"),
    ({"comment": 5}, "bad_comment"),
    ({"uuid": "not-a-uuid"}, "bad_uuid"),
    ({"uuid": None}, "bad_uuid"),
    ({"answered_at": NOW + 86400}, "bad_time"),
    ({"answered_at": NOW - 400 * 86400}, "bad_time"),
    ({"answered_at": "yesterday"}, "bad_time"),
    ({"shift_id": 999}, "unknown_shift"),
])
def test_bad_answers_are_rejected_logged_and_change_nothing(store, tablet, change, error, caplog):
    good = answer()
    ingest(store, tablet, good)
    before = store.answers()
    bad = dict(answer(at=NOW - 60), **change)
    result = ingest(store, tablet, bad)[0]
    assert result["status"] == "rejected" and result["error"] == error and result["message"]
    assert store.answers() == before
    assert store.rejections()[0]["reason"] == error
    assert any("rejected" in r.message for r in caplog.records)


def test_a_bad_answer_does_not_spoil_the_good_ones_in_its_batch(store, tablet):
    results = ingest(store, tablet, answer(at=NOW - 500), answer("superb"), answer(at=NOW - 100))
    assert [r["status"] for r in results] == ["stored", "rejected", "stored"]
    assert store.count_answers() == 2


def test_a_uuid_from_another_tablet_is_rejected_and_the_original_kept(store, tablet):
    other, _ = store.register_tablet("Tablet 2", "central", "Desk 4", "desk")
    a = answer("very_good")
    ingest(store, tablet, a)
    forged = dict(a, main="very_bad")
    result = store.ingest(other, [forged], now=NOW)[0]
    assert result["error"] == "uuid_taken"
    assert store.answer(a["uuid"])["tablet_id"] == tablet.id and store.answer(a["uuid"])["main"] == "very_good"


def test_an_oversized_batch_is_refused_whole(store, tablet):
    with pytest.raises(Rejected):
        store.ingest(tablet, [answer() for _ in range(501)], now=NOW)
    assert store.count_answers() == 0


def test_the_tablet_clock_is_corrected_by_its_skew(store, tablet):
    a = answer(at=NOW - 60 + 3 * 86400)            # tablet clock three days ahead
    assert store.ingest(tablet, [a], sent_at=NOW + 3 * 86400, now=NOW)[0]["status"] == "stored"
    assert store.answer(a["uuid"])["answered_at"] == pytest.approx(NOW - 60)


def test_repeated_presses_count_once_and_are_flagged(store, tablet):
    first = answer("very_good", at=NOW - 100)
    again = answer("very_good", at=NOW - 98)        # 2 s later: a repeated press
    later = answer("good", at=NOW - 90)
    ingest(store, tablet, first, again, later)
    assert store.answer(first["uuid"])["counted"] == 1 and store.answer(first["uuid"])["flag"] is None
    repeat = store.answer(again["uuid"])
    assert (repeat["counted"], repeat["flag"], repeat["repeat_of"]) == (0, "repeat", first["uuid"])
    assert store.answer(later["uuid"])["counted"] == 1


def test_repeats_are_per_tablet(store, tablet):
    other, _ = store.register_tablet("Tablet 2", "central", "Desk 4", "desk")
    ingest(store, tablet, answer(at=NOW - 100))
    store.ingest(other, [answer(at=NOW - 99)], now=NOW)
    assert all(a["counted"] for a in store.answers())


def test_a_burst_of_identical_answers_is_flagged_whole_and_still_counted(store, tablet):
    # burst_size=4 in the fixture: four identical answers 10 s apart.
    run = [answer("very_good", at=NOW - 1000 + 10 * i) for i in range(5)]
    ingest(store, tablet, answer("bad", at=NOW - 1100), *run)
    flags = [store.answer(a["uuid"])["flag"] for a in run]
    assert flags == ["burst"] * 5
    assert all(store.answer(a["uuid"])["counted"] for a in run)
    assert store.answers("main='bad'")[0]["flag"] is None


def test_identical_answers_spread_out_are_no_burst(store, tablet):
    # Given a minute apart and sent as they were given (an online tablet).
    for i in range(4):
        at = NOW - 2000 + 60 * i
        store.ingest(tablet, [answer("very_good", at=at)], sent_at=at + 5, now=at + 5)
    assert all(a["flag"] is None for a in store.answers())


def test_comments_are_stored_with_personal_data_masked(store, tablet):
    a = answer(comment="Подзвоніть +38 (067) 123-45-67 або olena.k@example.com, ІПН 3012345678")
    ingest(store, tablet, a)
    text = store.answer(a["uuid"])["comment"]
    assert "123-45-67" not in text and "olena.k@" not in text and "3012345678" not in text
    assert text.endswith("••••••••78") and "o•••@example.com" in text


def test_mask_leaves_short_numbers_alone():
    assert mask_personal("вікно 12, черга 45 хв") == "вікно 12, черга 45 хв"


def test_shift_start_by_pin_attributes_answers_to_the_administrator(store, tablet):
    olena = store.add_administrator("Олена К.", "central", "432154")
    store.add_administrator("Іван П.", "north", "555566")
    assert store.start_shift(tablet, "555566") is None          # another branch's administrator
    assert store.start_shift(tablet, "000099") is None
    shift = store.start_shift(tablet, "432154", now=NOW - 7200)
    assert shift.admin_id == olena.id and store.current_shift(tablet.id).id == shift.id
    a = answer(shift_id=shift.id)
    ingest(store, tablet, a)
    assert store.answer(a["uuid"])["admin_id"] == olena.id
    # A shift id of another tablet is refused.
    other, _ = store.register_tablet("Tablet 2", "central", "Desk 4", "desk")
    assert store.ingest(other, [answer(shift_id=shift.id, at=NOW - 10)], now=NOW)[0]["error"] == "unknown_shift"
    store.end_shift(tablet)
    assert store.current_shift(tablet.id) is None


def test_duplicate_admin_pins_in_a_branch_are_refused(store):
    from terminal.surveys.store import SurveyInputError
    store.add_administrator("Олена К.", "central", "432154")
    with pytest.raises(SurveyInputError):
        store.add_administrator("Марія С.", "central", "432154")


def test_pin_lockout_after_repeated_failures(store, tablet):
    store.add_administrator("Олена К.", "central", "432154")
    for _ in range(5):
        assert store.start_shift(tablet, "111122") is None
    assert store.start_shift(tablet, "432154") is None
    assert store.pin_locked_for(tablet.id) > 0


def test_pin_failures_survive_a_restart_and_concurrent_guesses_get_one_try_each(store, tablet, tmp_path):
    import threading

    from terminal.staff import MAX_FAILURES
    from terminal.surveys.store import SurveyStore

    store.add_administrator("Олена К.", "central", "432154")
    assert store.start_shift(tablet, "111122") is None               # one failure before the restart
    reopened = SurveyStore(store.path, store.rules)
    try:
        start = threading.Barrier(12)
        results = []

        def guess(i):
            start.wait()
            results.append(reopened.start_shift(tablet, f"{900000 + i}"))

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [None] * 12
        failures = reopened.query("SELECT COUNT(*) FROM pin_failures WHERE key=?",
                                          (f"tablet:{tablet.id}",)).fetchone()[0]
        assert failures == MAX_FAILURES            # 1 before the restart + 4 of the 12; the rest locked out
        assert reopened.pin_locked_for(tablet.id) > 0
        assert reopened.start_shift(tablet, "432154") is None          # the right PIN waits too
    finally:
        reopened.close()


def test_revoked_and_reissued_tokens(store):
    t, token = store.register_tablet("Tablet 9", "central", "Desk 9", "desk")
    assert store.tablet_by_token(token).active
    store.revoke_tablet(t.id)
    assert not store.tablet_by_token(token).active
    new_token = store.reissue_token(t.id)
    assert store.tablet_by_token(token) is None and store.tablet_by_token(new_token).active
    assert store.tablet_by_token("forged") is None


def test_forwarding_seam_hands_out_each_answer_until_marked(store, tablet):
    a, b = answer(at=NOW - 10), answer(at=NOW - 5)
    ingest(store, tablet, a, b)
    pending = store.pending_for_forwarding(10)
    assert {p["uuid"] for p in pending} == {a["uuid"], b["uuid"]}
    assert store.mark_forwarded([a["uuid"]]) == 1
    assert [p["uuid"] for p in store.pending_for_forwarding(10)] == [b["uuid"]]
    assert store.mark_forwarded([a["uuid"]]) == 0   # marking again changes nothing
