"""monitoring/hub/worker.py against a real Mosquitto (the central broker with its ACL) and a real
PostgreSQL: two worker processes in one share group store every message exactly once."""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

import pytest

from monitoring import topics as t
from monitoring.hub.db import open_store
from monitoring.hub.worker import (DEFAULT_GROUP, LAG_BUCKETS_MS, IngestWorker, lag_quantile_ms, merged_lag_counts,
                                   run_workers, subscription)
from tests.monitoring.conftest import PASSWORDS
from tests.monitoring.mqtt import Client

SETTLE_S = 120   # an upper bound on a loaded 2-core machine; the polls end as soon as the rows are there


def wait_until(check, timeout=SETTLE_S, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def hub_options(central, store_url):
    return dict(host="127.0.0.1", port=central.local_port, username="hub.central",
                password=PASSWORDS["hub.central"], store_url=store_url, reconnect_max_s=2.0)


def connected(central, username):
    client = Client(central.local_port, username, PASSWORDS[username], client_id=f"{username}-{uuid.uuid4().hex[:6]}")
    assert client.connect() == 0
    return client


def test_the_default_group_is_the_one_the_hub_acl_allows(central):
    hub = connected(central, "hub.central")
    try:
        # (Mosquitto checks a shared subscription's filter without its $share/<group>/ prefix, so
        # the ACL's `$share/hub/…` line does not by itself keep the hub out of other groups.)
        assert hub.subscribe(subscription(DEFAULT_GROUP)) == 1
        assert f"$share/{DEFAULT_GROUP}/{t.HUB_FILTER}" in (central.dir / "acl").read_text()
    finally:
        hub.close()


def test_two_worker_processes_store_every_message_exactly_once(central, pg_url):
    open_store(pg_url).close()
    pool = run_workers(2, client_id=f"hub-test-{uuid.uuid4().hex[:6]}", batch_max=200, **hub_options(central, pg_url))
    publishers = {name: connected(central, name) for name in ("kyiv-1", "lviv-2", "tablet.kyiv-1.desk-3")}
    try:
        wait_until(lambda: len(pool.snapshots()) == 2 and all(c["subscribed"] for c in pool.snapshots().values()),
                   what="both workers subscribed")
        now = time.time()
        answers, states = [], []
        for index in range(1700):
            site = ("kyiv-1", "lviv-2")[index % 2]
            answer_uuid = str(uuid.uuid4())
            answers.append(answer_uuid)
            out = t.outgoing(site, t.SurveyAnswer(
                ts=datetime.fromtimestamp(now - index, timezone.utc), uuid=answer_uuid, tablet_id=1, branch_id="b",
                desk="1", survey_id="s", version=1, main="q", score=index % 6, scale=5))
            sender = publishers["tablet.kyiv-1.desk-3"] if site == "kyiv-1" and index % 4 == 0 else publishers[site]
            assert sender.publish(out.topic, out.payload) == 0
        for index in range(300):
            site = ("kyiv-1", "lviv-2")[index % 2]
            out = t.outgoing(site, t.UplinkState(ts=datetime.fromtimestamp(now, timezone.utc), available=True,
                                                 state="ok", up=True, active=index == 0, latency_ms=index),
                             f"u{index}")
            states.append((site, f"uplink/u{index}"))
            assert publishers[site].publish(out.topic, out.payload, retain=True) == 0
        published = len(answers) + len(states)

        store = open_store(pg_url)
        try:
            wait_until(lambda: store.query_one("SELECT count(*) FROM survey_answers")[0] >= len(answers)
                       and store.query_one("SELECT count(*) FROM entities")[0] >= len(states), what="all rows stored")
            wait_until(lambda: pool.total("stored") + pool.total("duplicates") >= published, what="workers' counters")
            stored_uuids = [u for (u,) in store.query("SELECT uuid FROM survey_answers")]
            assert sorted(stored_uuids) == sorted(answers)   # none lost, none twice
            assert sorted(store.query("SELECT site, entity FROM entities")) == sorted(states)
            assert store.query("SELECT count(*) FROM dropped") == [(0,)]
            assert sorted(s for (s,) in store.query("SELECT site FROM sites")) == ["kyiv-1", "lviv-2"]
        finally:
            store.close()
        final = pool.stop()
        assert len(final) == 2
        shares = [counters["messages"] for counters in final.values()]
        assert all(share > 0 for share in shares), shares   # the broker split the stream between them
        assert sum(c["stored"] for c in final.values()) == published
        assert sum(c["dropped"].get("schema", 0) for c in final.values()) == 0
        assert sum(merged_lag_counts(final)) == len(states)   # each live state's lag counted once
    finally:
        pool.stop()
        for client in publishers.values():
            client.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path}/hub.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_a_pending_command_goes_to_its_site_and_its_result_comes_back(central, store_url):
    worker = IngestWorker(client_id=f"hub-cmd-{uuid.uuid4().hex[:6]}", commands_every_s=0.2,
                          **hub_options(central, store_url)).start()
    site = connected(central, "kyiv-1")
    store = open_store(store_url)
    try:
        assert site.subscribe(t.command_filter("kyiv-1")) == 1
        wait_until(worker.subscribed.is_set, what="worker subscribed")
        command_id, expired_id = str(uuid.uuid4()), str(uuid.uuid4())
        now = time.time()
        with store.transaction() as tx:
            tx.executemany(
                "INSERT INTO commands (id, site, controller, action, args, requested_by, requested_at, expires_at) "
                "VALUES (?, 'kyiv-1', 'ventilation', 'set_level', ?, 'staff.olena', ?, ?)",
                [(command_id, json.dumps({"level": 3}), now, now + 120), (expired_id, "{}", now - 300, now - 60)])
        message = site.next_message(t.topic("cmd", "kyiv-1", "ventilation"))
        parsed = t.parse(message.topic, message.payload, now=time.time())
        assert isinstance(parsed, t.Message)
        assert (parsed.payload.id, parsed.payload.action, parsed.payload.args) == (command_id, "set_level", {"level": 3})
        assert 1 <= parsed.payload.ttl_s <= 120
        out = t.outgoing("kyiv-1", t.CommandResult(ts=datetime.now(timezone.utc), id=command_id, ok=True,
                                                   message="level 3"), "ventilation")
        assert site.publish(out.topic, out.payload) == 0
        wait_until(lambda: store.query_one("SELECT result_ok FROM commands WHERE id = ?", (command_id,))[0] is not None,
                   what="the command's result")
        assert store.query("SELECT result_ok, result_message FROM commands WHERE id = ?", (command_id,)) == [(1, "level 3")]
        assert store.query("SELECT sent_at FROM commands WHERE id = ?", (expired_id,)) == [(None,)]   # never sent
        assert worker.counters()["commands_sent"] == 1
        # Its own command comes back through cnap/+/# and is ignored, not dropped.
        wait_until(lambda: worker.counters()["ignored"] >= 1, what="the echoed command ignored")
        assert worker.counters()["dropped"] == {}
    finally:
        store.close()
        site.close()
        worker.stop()


@pytest.mark.parametrize("snapshot", [False, True], ids=["mosquitto-shared", "plain-snapshot"])
def test_a_starting_worker_takes_the_retained_states_and_drops_long_gone_sites(central, tmp_path, snapshot):
    site = connected(central, "kyiv-1")
    now = time.time()
    fresh = t.outgoing("kyiv-1", t.UplinkState(ts=datetime.fromtimestamp(now - 60, timezone.utc), available=True,
                                               state="ok", up=True, active=True), "snapshot")
    gone = t.outgoing("kyiv-1", t.UplinkState(ts=datetime.fromtimestamp(now - 30 * 86400, timezone.utc),
                                              available=False, state="down", up=False, active=False), "old-isp")
    store_url = f"sqlite:///{tmp_path}/hub.db"
    worker = None
    try:
        for out in (fresh, gone):   # retained before the hub runs
            assert site.publish(out.topic, out.payload, retain=True) in (0, 16)   # 16: no subscriber yet
        worker = IngestWorker(client_id=f"hub-snap-{uuid.uuid4().hex[:6]}", retained_snapshot=snapshot,
                              **hub_options(central, store_url)).start()
        store = open_store(store_url)
        try:
            wait_until(lambda: store.query("SELECT sent_at FROM entities WHERE site = 'kyiv-1' AND entity = ?",
                                           ("uplink/snapshot",)), what="the retained state stored")
            wait_until(lambda: store.query("SELECT reason FROM dropped WHERE topic = ?", (gone.topic,)),
                       what="the old retained state dropped")
            assert {r for (r,) in store.query("SELECT reason FROM dropped WHERE topic = ?", (gone.topic,))} == \
                {"retained_old"}
            assert store.query("SELECT count(*) FROM entities WHERE entity = 'uplink/old-isp'") == [(0,)]
            # A live state afterwards replaces it.
            live_at = time.time()
            live = t.outgoing("kyiv-1", t.UplinkState(ts=datetime.fromtimestamp(live_at, timezone.utc),
                                                      available=True, state="ok", up=True, active=True), "snapshot")
            assert site.publish(live.topic, live.payload, retain=True) == 0
            wait_until(lambda: store.query("SELECT sent_at FROM entities WHERE entity = 'uplink/snapshot'")
                       == [(pytest.approx(live_at, abs=1e-3),)], what="the live state applied")
        finally:
            store.close()
    finally:
        for out in (fresh, gone):
            site.publish(out.topic, b"", retain=True)   # clear them for the other tests
        site.close()
        if worker is not None:
            worker.stop()


def test_lag_quantiles_come_from_the_bucket_holding_them():
    counts = [0] * (len(LAG_BUCKETS_MS) + 1)
    assert lag_quantile_ms(counts, 0.99) != lag_quantile_ms(counts, 0.99)   # nan: nothing counted
    counts[10], counts[50] = 98, 2
    assert lag_quantile_ms(counts, 0.5) == LAG_BUCKETS_MS[10]
    assert lag_quantile_ms(counts, 0.99) == LAG_BUCKETS_MS[50]
    counts[-1] = 100   # beyond the last bucket
    assert lag_quantile_ms(counts, 0.99) == float("inf")
