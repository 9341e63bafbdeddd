from pathlib import Path

import pytest

from terminal import settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_defaults_resolve_without_any_file_or_environment(tmp_path):
    values = settings.load(environ={}, instance_path=tmp_path)
    assert values["PORT"] == 8080
    assert values["IDLE_WARNING_S"] >= 20
    assert values["BILL_VALIDATOR_URL"] == "sim"


def test_toml_then_environment_then_config_override_in_that_order(tmp_path):
    (tmp_path / "cnap.toml").write_text('idle_timeout_s = 120\nport = 9000\nterminal_id = "T-7"\n')
    env = {"CNAP_PORT": "9100", "CNAP_ALLOWED_ORIGINS": "http://127.0.0.1:9, http://127.0.0.1:10"}
    values = settings.load({"TERMINAL_ID": "T-9"}, environ=env, instance_path=tmp_path)
    assert values["IDLE_TIMEOUT_S"] == 120          # from TOML
    assert values["PORT"] == 9100                   # environment beats TOML
    assert values["TERMINAL_ID"] == "T-9"           # config beats both
    assert values["ALLOWED_ORIGINS"] == ["http://127.0.0.1:9", "http://127.0.0.1:10"]


def test_cnap_config_points_at_another_file(tmp_path):
    other = tmp_path / "elsewhere.toml"
    other.write_text("fullscreen = false\n")
    values = settings.load(environ={"CNAP_CONFIG": str(other)}, instance_path=tmp_path)
    assert values["FULLSCREEN"] is False


@pytest.mark.parametrize("toml, message", [
    ("no_such_setting = 1\n", "unknown setting 'no_such_setting'"),
    ('port = "eighty"\n', "PORT: 'eighty' is not a valid int"),
    ("port = [\n", "cannot read settings file"),
])
def test_bad_settings_file_names_the_problem(tmp_path, toml, message):
    (tmp_path / "cnap.toml").write_text(toml)
    with pytest.raises(settings.SettingError, match=message.replace("[", r"\[")):
        settings.load(environ={}, instance_path=tmp_path)


def test_bad_environment_value_is_rejected_clearly(tmp_path):
    with pytest.raises(settings.SettingError, match="FULLSCREEN: 'maybe' is not a valid bool"):
        settings.load(environ={"CNAP_FULLSCREEN": "maybe"}, instance_path=tmp_path)
    with pytest.raises(settings.SettingError, match="DEFAULT_LANGUAGE"):
        settings.load(environ={"CNAP_DEFAULT_LANGUAGE": "ru"}, instance_path=tmp_path)


def test_every_setting_is_documented_and_the_docs_are_current():
    # docs/settings.md is generated; regenerate with `make docs` after adding a setting.
    assert DOCS.read_text(encoding="utf-8") == settings.markdown(), "run `make docs`"
    for s in settings.SETTINGS:
        assert s.doc.strip(), f"{s.name} has no description"
