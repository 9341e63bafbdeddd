"""The MQTT agent's disk-backed outbox (SQLite, common/storage.py): what must survive an agent
restart and a broker outage.

Two kinds of rows:

``state``   the newest retained payload per topic (a newer one replaces it: coalesced), with a
            ``dirty`` flag that says it has not reached the broker since it last changed.
``answer``  survey answers taken from the kiosk, kept until the broker's PUBACK (``acked``), then
            until the kiosk has been told (``mark_forwarded``); only then are they deleted.

Limits and policy: at most ``max_answers`` answer rows and ``max_bytes`` payload bytes in all.
``room_for_answers()`` says how many more answers may be pulled; when it is 0 the agent stops
pulling and the kiosk keeps them (it holds every answer until forwarded), so no answer is ever
dropped here. State is small (one row per topic) but still bounded: past ``max_bytes`` the
oldest state rows go first. Readers fetch in batches, so memory stays bounded whatever the depth.

One thread uses an Outbox (the agent's reporter thread); it holds one connection.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from common import storage

MIGRATIONS = [
    """
    CREATE TABLE state (
        topic   TEXT PRIMARY KEY,
        payload BLOB NOT NULL,
        qos     INTEGER NOT NULL,
        retain  INTEGER NOT NULL,
        content BLOB NOT NULL,        -- the payload without its ts: what "changed" compares
        dirty   INTEGER NOT NULL,     -- 1: not yet accepted by the broker since it changed
        version INTEGER NOT NULL,     -- bumps on every put, so a late PUBACK of an older one is ignored
        updated REAL NOT NULL
    );
    CREATE TABLE answer (
        uuid    TEXT PRIMARY KEY,
        topic   TEXT NOT NULL,
        payload BLOB NOT NULL,
        acked   INTEGER NOT NULL DEFAULT 0,   -- 1: the broker has it; the kiosk is still to be told
        added   REAL NOT NULL
    );
    CREATE INDEX answer_order ON answer (acked, added);
    """,
]


@dataclass(frozen=True)
class StateRow:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    version: int


@dataclass(frozen=True)
class AnswerRow:
    uuid: str
    topic: str
    payload: bytes


class Outbox:
    def __init__(self, path: str | os.PathLike, *, max_answers: int = 5000, max_bytes: int = 8 * 1024 * 1024):
        if max_answers < 1 or max_bytes < 64 * 1024:
            raise ValueError("the outbox needs room for at least one answer and 64 KiB")
        self.path = path
        self.max_answers, self.max_bytes = max_answers, max_bytes
        # NORMAL: a power cut may lose the last transaction, which the kiosk still holds (answers)
        # or the next poll gives again (state); FULL would fsync on every 1 Hz state change.
        self.db = storage.connect(path, synchronous="NORMAL")
        storage.migrate(self.db, MIGRATIONS, name="mqtt outbox")
        self.dropped_states = 0

    def close(self) -> None:
        self.db = storage.close_quietly(self.db)

    # --- state ------------------------------------------------------------------------------
    def put_state(self, topic: str, payload: bytes, qos: int, retain: bool, content: bytes,
                  now: float, force: bool = False) -> bool:
        """Keep ``payload`` as the topic's newest; True when it is to be sent (it says something
        new, or ``force``: the periodic refresh)."""
        with storage.transaction(self.db):
            row = self.db.execute("SELECT content, dirty FROM state WHERE topic = ?", (topic,)).fetchone()
            if row is not None and row[0] == content and not force:
                return bool(row[1])
            self.db.execute(
                "INSERT INTO state (topic, payload, qos, retain, content, dirty, version, updated) "
                "VALUES (?, ?, ?, ?, ?, 1, 1, ?) ON CONFLICT (topic) DO UPDATE SET payload = excluded.payload, "
                "qos = excluded.qos, retain = excluded.retain, content = excluded.content, dirty = 1, "
                "version = state.version + 1, updated = excluded.updated",
                (topic, payload, qos, int(retain), content, now))
            self._trim_states()
        return True

    def _trim_states(self) -> None:
        over = self._bytes() - self.max_bytes
        while over > 0:
            oldest = self.db.execute("SELECT topic, length(payload) FROM state ORDER BY updated, rowid LIMIT 1").fetchone()
            if oldest is None:
                return
            self.db.execute("DELETE FROM state WHERE topic = ?", (oldest[0],))
            self.dropped_states += 1
            over -= oldest[1]

    def dirty_states(self, limit: int) -> list[StateRow]:
        rows = self.db.execute("SELECT topic, payload, qos, retain, version FROM state WHERE dirty = 1 "
                               "ORDER BY updated, rowid LIMIT ?", (limit,)).fetchall()
        return [StateRow(t, bytes(p), q, bool(r), v) for t, p, q, r, v in rows]

    def state_sent(self, topic: str, version: int) -> None:
        """The broker accepted ``version`` of the topic; a newer one put meanwhile stays dirty."""
        with storage.transaction(self.db):
            self.db.execute("UPDATE state SET dirty = 0 WHERE topic = ? AND version = ?", (topic, version))

    def mark_all_dirty(self) -> None:
        """After a reconnect: the broker may have lost retained messages (no persistence)."""
        with storage.transaction(self.db):
            self.db.execute("UPDATE state SET dirty = 1")

    # --- answers ----------------------------------------------------------------------------
    def room_for_answers(self) -> int:
        """How many answers may be pulled from the kiosk now (0: leave them there)."""
        count = self.db.execute("SELECT count(*) FROM answer").fetchone()[0]
        if self._bytes() >= self.max_bytes:
            return 0
        return max(0, self.max_answers - count)

    def answers_held(self) -> int:
        """Answers here that the kiosk has not been told about (acked or not)."""
        return self.db.execute("SELECT count(*) FROM answer").fetchone()[0]

    def add_answers(self, answers: list[tuple[str, str, bytes]], now: float) -> int:
        """(uuid, topic, payload) each; an answer already here is not added twice. Returns how
        many are new."""
        with storage.transaction(self.db):
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO answer (uuid, topic, payload, added) VALUES (?, ?, ?, ?)",
                                [(u, t, p, now) for u, t, p in answers])
            return self.db.total_changes - before

    def unsent_answers(self, limit: int, exclude: set[str] = frozenset()) -> list[AnswerRow]:
        rows = self.db.execute("SELECT uuid, topic, payload FROM answer WHERE acked = 0 ORDER BY added, rowid "
                               "LIMIT ?", (limit + len(exclude),)).fetchall()
        return [AnswerRow(u, t, bytes(p)) for u, t, p in rows if u not in exclude][:limit]

    def answer_acked(self, uuid: str) -> None:
        with storage.transaction(self.db):
            self.db.execute("UPDATE answer SET acked = 1 WHERE uuid = ?", (uuid,))

    def acked_answers(self, limit: int) -> list[str]:
        """Answers the broker has and the kiosk is still to be told about."""
        return [row[0] for row in self.db.execute(
            "SELECT uuid FROM answer WHERE acked = 1 ORDER BY added, rowid LIMIT ?", (limit,))]

    def forget_answers(self, uuids: list[str]) -> None:
        """The kiosk knows these are forwarded: they are done."""
        with storage.transaction(self.db):
            self.db.executemany("DELETE FROM answer WHERE uuid = ? AND acked = 1", [(u,) for u in uuids])

    # --- figures ------------------------------------------------------------------------------
    def _bytes(self) -> int:
        return (self.db.execute("SELECT coalesce(sum(length(payload)), 0) FROM state").fetchone()[0]
                + self.db.execute("SELECT coalesce(sum(length(payload)), 0) FROM answer").fetchone()[0])

    def depth(self) -> dict[str, int]:
        """Rows waiting, by kind: state not yet sent, answers not yet acknowledged, answers the
        kiosk is still to be told about."""
        dirty = self.db.execute("SELECT count(*) FROM state WHERE dirty = 1").fetchone()[0]
        unsent, acked = self.db.execute(
            "SELECT coalesce(sum(acked = 0), 0), coalesce(sum(acked = 1), 0) FROM answer").fetchone()
        return {"state": dirty, "answer": unsent, "answer_acked": acked}


__all__ = ["Outbox", "StateRow", "AnswerRow"]
