"""docs/monitoring-broker.md cannot rot: every topic, payload and field of monitoring/topics.py is in it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from monitoring import topics

DOC = (Path(__file__).resolve().parents[2] / "docs" / "monitoring-broker.md").read_text(encoding="utf-8")
MODELS = [topics.VentilationState, topics.AirQualityState, topics.AirSensor, topics.PowerState, topics.Ups,
          topics.PowerInput, topics.UplinkState, topics.BillValidatorState, topics.PrinterState,
          topics.CardTerminalState, topics.SurveyAnswer, topics.Command, topics.CommandResult,
          topics.InternetState, topics.BlockedHost, topics.GuestNetworkState]


@pytest.mark.parametrize("spec", topics.TOPICS, ids=lambda spec: spec.kind)
def test_every_topic_is_in_the_tree_table(spec):
    shape = re.escape(spec.pattern).replace(r"\{site\}", "<site>").replace(r"\{name\}", "<[a-z]+>")
    row = re.search(rf"^\| `{shape}` \| (\d) \| (yes|no) \|", DOC, re.M)
    assert row, spec.pattern
    assert (int(row[1]), row[2] == "yes") == (spec.qos, spec.retain)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_payload_field_is_documented(model: type[BaseModel]):
    if model.__name__ not in ("AirSensor", "Ups", "PowerInput", "BlockedHost"):
        assert model.__name__ in DOC
    for field in model.model_fields:
        assert f"`{field}`" in DOC, f"{model.__name__}.{field}"


def test_every_rejection_reason_is_documented():
    reasons = set(re.findall(r'Rejected\("([a-z_]+)"', Path(topics.__file__).read_text(encoding="utf-8")))
    assert reasons and all(f"`{reason}`" in DOC for reason in reasons), reasons
