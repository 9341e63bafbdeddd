"""Fixtures for the internet tests: the fake internet (tests/terminal/internet/fakenet.py)."""
from __future__ import annotations

import pytest

from tests.terminal.internet.fakenet import FakeInternet


@pytest.fixture
def fake_internet():
    """A running FakeInternet on loopback; ``.url`` is its proxy URL."""
    with FakeInternet() as net:
        yield net
