"""Survey definitions: validation, branching, versions."""
import pytest
import yaml

from terminal.surveys.definitions import DEFAULT_DEFINITION, DefinitionError, parse


def base():
    return yaml.safe_load(DEFAULT_DEFINITION)


def test_default_definition_is_valid_and_faces_score_worst_first():
    d = parse(DEFAULT_DEFINITION)
    assert d.scale == 5
    assert d.score_of("very_bad") == 1 and d.score_of("very_good") == 5
    assert d.nps is not None and d.comment_max == 500


def test_branching_paths_follow_the_answers_several_levels_deep():
    d = parse(DEFAULT_DEFINITION)
    assert d.check_path("bad", [("why_bad", "waiting"), ("waiting_where", "queue")]) is None
    assert d.check_path("bad", [("why_bad", "waiting")]) is None          # walked away: fine
    assert "does not follow" in d.check_path("very_good", [("why_bad", "waiting")])
    assert "does not follow" in d.check_path("bad", [("why_bad", "politeness"), ("waiting_where", "queue")])
    assert "no option" in d.check_path("bad", [("why_bad", "nope")])
    assert "unknown face" in d.check_path("superb", [])


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["main"]["faces"].pop() and d["main"]["faces"].pop(), "4 or 5"),          # 3 faces
    (lambda d: d["main"]["faces"].append({"id": "wow", "label": {"uk": "а", "en": "b"}}), "4 or 5"),  # 6
    (lambda d: d["main"]["faces"][0]["label"].pop("en"), "en text is missing"),
    (lambda d: d["main"]["faces"][0].__setitem__("next", "ghost"), "does not exist"),
    (lambda d: d["questions"][1]["options"][0].__setitem__("next", "why_bad"), "loop"),
    (lambda d: d["questions"][0]["options"].append({"id": "waiting", "label": {"uk": "а", "en": "b"}}),
     "used twice"),
    (lambda d: d["comment"].__setitem__("max_length", 5000), "max_length"),
    (lambda d: d.__setitem__("id", "Bad Id"), "id must be"),
    (lambda d: d.__setitem__("colour", "red"), "unknown keys"),
])
def test_invalid_definitions_are_refused_with_a_clear_message(mutate, message):
    data = base()
    mutate(data)
    with pytest.raises(DefinitionError) as exc:
        parse(data)
    assert any(message in p for p in exc.value.problems), exc.value.problems


def test_broken_yaml_is_a_definition_error():
    with pytest.raises(DefinitionError, match="not valid YAML"):
        parse("id: [unclosed")


def test_saving_makes_a_new_version_and_old_versions_stay(store):
    data = base()
    data["main"]["faces"].pop(2)           # a 4-face version
    data["main"]["faces"][1]["next"] = "why_bad"
    survey_id, version = store.save_definition(yaml.safe_dump(data, allow_unicode=True), created_by="test")
    assert (survey_id, version) == ("desk", 2)
    assert store.current("desk")[0] == 2
    assert store.definition("desk", 1).scale == 5 and store.definition("desk", 2).scale == 4
    # Saving the same text again adds nothing.
    assert store.save_definition(yaml.safe_dump(data, allow_unicode=True)) == ("desk", 2)
    store.activate_version("desk", 1)
    assert store.current("desk")[0] == 1
    assert [v["version"] for v in store.versions("desk")] == [2, 1]


def test_invalid_save_changes_nothing(store):
    with pytest.raises(DefinitionError):
        store.save_definition("id: desk\nmain: {}\n")
    assert store.current("desk")[0] == 1 and len(store.versions("desk")) == 1
