"""A real survey store on a temporary SQLite file, with one registered tablet."""
from __future__ import annotations

import uuid as uuidlib

import pytest

from terminal.surveys.antigaming import Rules
from terminal.surveys.store import SurveyStore

NOW = 1_760_000_000.0  # a fixed "now" keeps the day boundaries of the tests stable


@pytest.fixture
def store(tmp_path):
    s = SurveyStore(str(tmp_path / "surveys.sqlite"), Rules(repeat_window_s=5, burst_size=4, burst_window_s=120))
    s.ensure_default_survey()
    yield s
    s.close()


@pytest.fixture
def tablet(store):
    t, token = store.register_tablet("Tablet 1", "central", "Desk 3", "desk")
    return t


def answer(main="good", at=NOW - 3600, path=None, nps=None, comment=None, shift_id=None, version=1, **extra):
    data = {"uuid": str(uuidlib.uuid4()), "survey": "desk", "version": version, "answered_at": at, "main": main,
            "path": path if path is not None else [], "nps": nps, "comment": comment, "shift_id": shift_id,
            "lang": "uk"}
    data.update(extra)
    return data
