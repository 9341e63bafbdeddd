"""docs/facility.md keeps up with the code: every agent setting, every runner alert, and the
headings the controllers' documentation goes under."""
import re
from pathlib import Path

from terminal.settings import SETTINGS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "facility.md").read_text(encoding="utf-8")
RUNNER = (Path(__file__).resolve().parents[2] / "facility" / "runner.py").read_text(encoding="utf-8")


def test_every_agent_setting_is_explained():
    missing = [s.name for s in SETTINGS if s.area == "agent" and s.name not in DOC]
    assert missing == []


def test_every_alert_the_runner_raises_is_explained():
    raised = set(re.findall(r'"([a-z]+_(?:failed|stuck)|not_loaded)"', RUNNER))
    assert raised == {"poll_failed", "poll_stuck", "status_failed", "not_loaded"}
    assert [alert for alert in sorted(raised) if f"`{alert}`" not in DOC] == []


def test_the_controllers_have_their_headings():
    headings = re.findall(r"^## (.+)$", DOC, re.M)
    assert {"Ventilation", "Power", "Uplinks"} <= set(headings)
