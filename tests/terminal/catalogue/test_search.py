"""Catalogue search: what a visitor at a touch screen types, and what must come first."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.catalogue.search import (Hit, SearchIndex, normalize_word,
                                       osa_distance_at_most_one, stem_uk)
from terminal.catalogue.translit import swap_layout, transliterate

from .search_fixture import PACKAGES, SERVICES

PASSPORTS = {"passport-abroad", "id-card"}


@pytest.fixture(scope="module")
def index() -> SearchIndex:
    return SearchIndex.build(SERVICES, PACKAGES)


def ids(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


def top(index: SearchIndex, query: str, lang: str = "uk") -> str:
    hits = index.search(query, lang=lang)
    assert hits, f"no result for {query!r}"
    return hits[0].id


def marked(hit: Hit) -> list[str]:
    return [text for text, flag in hit.name_segments if flag]


# --- building blocks ---------------------------------------------------------------------------

def test_transliteration_follows_kmu_55_2010():
    assert transliterate("згорани") == "zghorany"
    assert transliterate("єнакієве") == "yenakiieve"
    assert transliterate("юрій") == "yurii"
    assert transliterate("яготин") == "yahotyn"
    assert transliterate("ґорґани") == "gorgany"
    assert transliterate("щастя") == "shchastia"
    assert transliterate("харків") == "kharkiv"
    assert transliterate("львів") == "lviv"          # soft sign dropped
    assert transliterate("мар'янівка") == "marianivka"  # apostrophe dropped


def test_layout_swap_both_ways():
    assert swap_layout("gfcgjhn") == "паспорт"
    assert swap_layout("зфіізщке") == "passport"
    assert swap_layout("j,`'rn") == "об'єкт"          # punctuation keys carry letters
    assert swap_layout("\\fyjr") == "ґанок"


def test_normalisation_folds_case_apostrophes_and_scripts():
    variants = ["об'єкт", "обʼєкт", "об’єкт", "об`єкт", "обєкт", "ОБ'ЄКТ", "Об‘єкт"]
    assert {normalize_word(v) for v in variants} == {"обєкт"}
    assert normalize_word("ПaСПОРТ") == "паспорт"    # a stray Latin "a" among Cyrillic
    assert normalize_word("Café") == "cafe"


def test_stemmer_conflates_case_endings():
    assert len({stem_uk(w) for w in ("паспорт", "паспорта", "паспортом", "паспорти", "паспортів",
                                     "паспорту")}) == 1
    assert stem_uk("довідку") == stem_uk("довідка") == stem_uk("довідки")
    assert stem_uk("реєстрації") == stem_uk("реєстрація") == stem_uk("реєстрацію")
    assert stem_uk("закордонного") == stem_uk("закордонний")
    assert stem_uk("іпн") == "іпн"                    # too short to lose anything


@pytest.mark.parametrize("a,b,expected", [
    ("паспорт", "паспорт", True), ("паспорт", "пасорт", True), ("паспорт", "паспортт", True),
    ("паспорт", "пвспорт", True), ("паспорт", "пасопрт", True), ("паспорт", "пасотр", False),
    ("abcd", "badc", False), ("abc", "abcde", False),
])
def test_one_edit_distance(a, b, expected):
    assert osa_distance_at_most_one(a, b) is expected
    assert osa_distance_at_most_one(b, a) is expected


# --- requirements, one by one ------------------------------------------------------------------

@pytest.mark.parametrize("query", ["ОБ'ЄКТ", "обʼєкт", "об’єкт", "об`єкт", "обєкт", "Обєкт"])
def test_case_and_apostrophe_variants(index, query):
    assert top(index, query) == "object-ownership"


@pytest.mark.parametrize("query,expected", [
    ("pasport", PASSPORTS),
    ("pasporta", PASSPORTS),
    ("reiestratsiia mistsia prozhyvannia", {"residence-registration"}),
    ("dovidka sudymosti", {"criminal-record"}),
    ("viza", {"visa-invitation"}),
])
def test_latin_transliteration_finds_ukrainian(index, query, expected):
    assert top(index, query) in expected


def test_cyrillic_query_finds_english_only_text(index):
    # The "foreigners" package has an English name only ("visa support").
    hits = index.search("віза")
    assert ids(hits)[0] == "visa-invitation"        # the Ukrainian text itself wins
    assert "foreigners" in ids(hits)


def test_english_query_finds_english_names(index):
    assert top(index, "passport", lang="en") in PASSPORTS
    assert top(index, "driving licence", lang="en") == "driving-licence"


@pytest.mark.parametrize("query,expected", [
    ("gfcgjhn", PASSPORTS),                          # "паспорт" typed on QWERTY
    ("pfrjhljyybq gfcgjhn", {"passport-abroad"}),   # "закордонний паспорт"
    ("зфіізщке", PASSPORTS),                         # "passport" typed on ЙЦУКЕН
    ("зфііщке", PASSPORTS),                          # ... with a key missed: layout and a typo
    ("j,`'rn", {"object-ownership"}),                # "об'єкт" with punctuation keys
])
def test_wrong_keyboard_layout(index, query, expected):
    assert top(index, query) in expected


@pytest.mark.parametrize("query", ["пасорт", "паспортт", "пвспорт", "пасопрт", "аспорт"])
def test_one_typo_is_forgiven(index, query):
    assert top(index, query) in PASSPORTS


def test_typo_and_ending_together(index):
    assert top(index, "реєстарції") == "residence-registration"
    assert top(index, "довідкку") == "criminal-record"


def test_short_words_get_no_typo_tolerance(index):
    assert top(index, "ІПН") == "tax-number"
    assert index.search("ІПМ") == []                 # 3 letters: one off is another word
    assert index.search("ІП ") == []


@pytest.mark.parametrize("query,expected", [
    ("паспорта", PASSPORTS), ("паспортом", PASSPORTS), ("паспорти", PASSPORTS),
    ("довідку", {"criminal-record"}), ("довідка", {"criminal-record"}),
    ("реєстрації місця проживання", {"residence-registration"}),
    ("реєстрація місця проживання", {"residence-registration"}),
    ("passports", PASSPORTS),                        # English plural
    ("водію", {"driving-licence"}),
])
def test_word_endings(index, query, expected):
    assert top(index, query) in expected


@pytest.mark.parametrize("query,expected", [
    ("прописка", "residence-registration"),          # built-in table
    ("прописку", "residence-registration"),          # ... with an ending
    ("загранпаспорт", "passport-abroad"),            # built-in table
    ("закордонний паспорт", "passport-abroad"),      # built-in table, two words
    ("ІПН", "tax-number"),                           # the service's own synonym
    ("ідентифікаційний код", "tax-number"),          # the service's own synonym
    ("ІНН", "tax-number"),                           # built-in table
    ("розлучення", None),                            # in the table, but no such service here
    ("малятко", "emalyatko"),                        # a package's synonym
])
def test_colloquial_synonyms(index, query, expected):
    hits = index.search(query)
    if expected is None:
        assert hits == []
    else:
        assert hits and hits[0].id == expected


def test_builtin_synonym_highlights_the_canonical_words(index):
    hit = index.search("прописка")[0]
    assert marked(hit) == ["Реєстрація", "місця", "проживання"]


# --- ranking -----------------------------------------------------------------------------------

def test_exact_name_beats_name_prefix_beats_name_word_beats_description(index):
    hits = index.search("реєстрація місця проживання особи")
    assert hits[0].id == "residence-registration"
    assert hits[0].score >= 1000                     # the whole name

    hits = index.search("реєстрація місця")
    order = ids(hits)
    # name starts with the query > query words somewhere in the name > in a description
    assert order[:2] == ["residence-registration", "deregistration"]
    assert set(order[2:]) == {"welcome", "emalyatko"}
    assert hits[0].score > hits[1].score > hits[2].score


def test_name_word_beats_synonym_beats_details(index):
    hits = index.search("права")
    # "права власності" in a name; "права" -> "посвідчення водія" (built-in synonym);
    # "право на житло" in a required document.
    assert ids(hits) == ["object-ownership", "driving-licence", "deregistration"]
    assert hits[0].score > hits[1].score > hits[2].score


def test_fewer_typos_rank_higher(index):
    exact = index.search("паспорт")[0]
    typo = index.search("пасорт")[0]
    assert exact.id == typo.id
    assert exact.score > typo.score
    # "візи" is in one name as typed and in another (English "visa") only through a letter off.
    hits = index.search("візи")
    assert ids(hits)[0] == "visa-invitation"


def test_services_and_packages_both_come_back_with_their_kind(index):
    hits = index.search("реєстрація місця")
    kinds = {h.id: h.kind for h in hits}
    assert kinds["residence-registration"] == "service"
    assert kinds["welcome"] == "package"
    assert index.search("малятко")[0].kind == "package"


def test_only_records_matching_every_word_are_returned_when_there_are_some(index):
    order = ids(index.search("паспорт кордон"))
    assert order == ["passport-abroad"]
    # No record has both words: the best partial matches are offered instead of nothing.
    assert set(ids(index.search("паспорт розлучення"))) >= PASSPORTS


def test_limit(index):
    assert len(index.search("реєстрація", limit=2)) == 2
    assert index.search("реєстрація", limit=0) == []


# --- instant search ----------------------------------------------------------------------------

@pytest.mark.parametrize("query,expected", [
    ("пасп", PASSPORTS), ("Пас", PASSPORTS), ("реєстр", {"residence-registration"}),
    ("паспорт для виї", {"passport-abroad"}), ("посвідч", {"driving-licence"}),
    ("pasp", PASSPORTS), ("gfcg", PASSPORTS),
])
def test_last_word_is_a_prefix_while_typing(index, query, expected):
    assert top(index, query) in expected


def test_a_finished_word_is_not_a_prefix(index):
    assert index.search("пасп ") == []
    # "пасп" is finished here, so only "громадянина" matches (the best partial match).
    hit = index.search("пасп громадянина")[0]
    assert marked(hit) == ["громадянина"]


def test_prefix_highlight_marks_only_the_typed_part(index):
    hit = index.search("пасп")[0]
    assert "пасп" in marked(hit)
    assert "".join(t for t, _ in hit.name_segments) == \
        next(s for s in SERVICES if s.id == hit.id).name["uk"]


# --- highlights ----------------------------------------------------------------------------------

def test_name_segments_mark_the_matched_words(index):
    hit = index.search("паспорта громадянина")[0]
    assert hit.id in PASSPORTS
    assert marked(hit) == ["паспорта", "громадянина"]  # words, not the space between
    assert "".join(t for t, _ in hit.name_segments) == \
        next(s for s in SERVICES if s.id == hit.id).name["uk"]


def test_segments_follow_the_display_language(index):
    hit = index.search("passport", lang="en")[0]
    name = next(s for s in SERVICES if s.id == hit.id).name["en"]
    assert "".join(t for t, _ in hit.name_segments) == name
    assert "passport" in marked(hit)


# --- absurd input ------------------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    "", " ", "\t\n", "!!!", "?!.,;:—«»", "😀😀😀", "\x00\x01\x1f\x7f", "\u200b\u200d",
    "'" * 50, "ʼ", "-" * 10_000, "а" * 100_000, "паспорт " * 5_000, "\ud800", "🇺🇦",
])
def test_absurd_input_never_raises(index, query):
    hits = index.search(query)
    assert isinstance(hits, list) and len(hits) <= 20


def test_very_long_query_is_cut_not_refused(index):
    hits = index.search("паспорт " + "x" * 1_000_000)
    assert hits == [] or hits[0].id in PASSPORTS
    assert top(index, "паспорт" + " " * 100_000) in PASSPORTS


def test_not_a_string_query(index):
    assert index.search(None) == []  # type: ignore[arg-type]
    assert index.search(b"pasport") == []  # type: ignore[arg-type]


def test_empty_index():
    assert SearchIndex.build([]).search("паспорт") == []


def test_records_with_missing_texts():
    service = SERVICES[0]
    bare = type(service)(id="bare", name={"uk": ""}, short={}, category="x", provider={},
                         documents=(), term={}, result={}, receive_ways=(), legal_acts=())
    index = SearchIndex.build([bare, service])
    assert ids(index.search("паспорт")) == [service.id]
    assert index.search("bare") == []


@settings(max_examples=300, deadline=None)
@given(query=st.text(max_size=300), limit=st.integers(min_value=-2, max_value=30),
       lang=st.sampled_from(["uk", "en", "de", ""]))
def test_fuzzed_queries(index, query, limit, lang):
    hits = index.search(query, lang=lang, limit=limit)
    assert len(hits) <= max(limit, 0)
    for hit in hits:
        assert hit.kind in ("service", "package")
        assert all(isinstance(t, str) and isinstance(f, bool) for t, f in hit.name_segments)
        assert "".join(t for t, _ in hit.name_segments)


@settings(max_examples=100, deadline=None)
@given(query=st.text(alphabet="абвгґдеєжзиіїйклмнопрстуфхцчшщьюя'ʼ ", max_size=40))
def test_fuzzed_ukrainian_text(index, query):
    assert len(index.search(query)) <= 20


# --- the shipped sample catalogue ---------------------------------------------------------------

@pytest.fixture(scope="module")
def sample_index() -> SearchIndex:
    from terminal.catalogue import io as catalogue_io
    catalogue = catalogue_io.read_folder(catalogue_io.SAMPLE_FOLDER)
    return SearchIndex.build(catalogue.services.values(), catalogue.packages.values())


@pytest.mark.parametrize("query,expected", [
    ("прописка", {"residence-registration"}),
    ("ІПН", {"ipn"}),
    ("загранпаспорт", {"passport-abroad"}),
    ("закордонний паспорт", {"passport-abroad"}),
    ("довідку про несудимість", {"criminal-record"}),
    ("техпаспорт", {"vehicle-certificate"}),
    ("розлучення", {"divorce-registration"}),
    ("субсидія", {"housing-subsidy"}),
    ("малятко", {"maliatko"}),
    ("реєстрація місця проживання", {"residence-registration"}),
    ("pfuhfygfcgjhn", {"passport-abroad"}),         # "загранпаспорт" on QWERTY
])
def test_sample_catalogue_everyday_queries(sample_index, query, expected):
    # Where several services are right, all of them and nothing else come first.
    top = {hit.id for hit in sample_index.search(query)[:len(expected)]}
    assert top == expected


def test_sample_catalogue_passport_family(sample_index):
    for query in ("паспорт", "pasport", "gfcgjhn", "пасорт", "паспорта"):
        found = ids(sample_index.search(query))
        assert {"passport-abroad", "id-card"} <= set(found[:5]), query
        # Ties follow the catalogue's order: citizens' passports before a building passport.
        assert found[0] in {"passport-abroad", "id-card"}, query


def test_no_penalty_drops_a_match_into_a_lower_tier():
    """The ranking's promise (module docstring): tiers lie further apart than the largest total
    penalty one word can collect, so a typo never ranks a name match below a description match."""
    from terminal.catalogue import search as s

    largest = s.PENALTY_CROSS_SCRIPT + s.PENALTY_LAYOUT + s.PENALTY_PREFIX + s.PENALTY_TYPO
    tiers = sorted((s.EXACT_NAME_BASE, s.NAME_PREFIX_BASE, *s.FIELD_BASE), reverse=True)
    assert all(upper - lower > largest for upper, lower in zip(tiers, tiers[1:])), tiers
    assert tiers[-1] - largest > 0       # the lowest tier still scores above "no match"
