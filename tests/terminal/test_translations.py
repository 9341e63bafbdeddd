"""The gettext catalogues themselves: complete, not fuzzy, compiled, in step with the source,
placeholders that agree, and the browser's JSON catalogue built from the same entries."""
import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from terminal import i18n

ROOT = Path(__file__).resolve().parents[2]
PLURAL_FORMS = {"uk": 3, "en": 2}
PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?([sd%])")


def po_path(lang):
    return i18n.TRANSLATIONS_DIR / lang / "LC_MESSAGES" / "messages.po"


def read_catalogue(lang):
    with open(po_path(lang), "rb") as fh:
        return read_po(fh, locale=lang)


def entries(catalog):
    return {m.id if isinstance(m.id, str) else m.id[0]: m for m in catalog if m.id}


def forms(message):
    return list(message.string) if isinstance(message.string, tuple) else [message.string]


@pytest.fixture(scope="module")
def source_keys():
    """What pybabel extracts from the code with babel.cfg: the same walk `make translations` does."""
    with open(ROOT / "babel.cfg") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    keywords = dict(DEFAULT_KEYWORDS)
    keywords["N_"] = None
    found = {}
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords):
        found[message if isinstance(message, str) else message[0]] = message
    return found


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_entry_is_translated_and_none_is_fuzzy_or_obsolete(lang):
    catalog = read_catalogue(lang)
    assert catalog.num_plurals == PLURAL_FORMS[lang]
    assert not catalog.fuzzy, "the header is marked fuzzy"
    untranslated = [key for key, m in entries(catalog).items() if not all(forms(m))]
    fuzzy = [key for key, m in entries(catalog).items() if m.fuzzy]
    wrong_forms = [key for key, m in entries(catalog).items() if m.pluralizable and len(forms(m)) != PLURAL_FORMS[lang]]
    assert untranslated == [] and fuzzy == [] and wrong_forms == []
    assert list(catalog.obsolete) == []


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_the_compiled_mo_is_the_po(lang):
    catalog = read_catalogue(lang)
    with open(po_path(lang).with_suffix(".mo"), "rb") as fh:
        compiled = read_mo(fh)
    def flat(value):
        return tuple(value) if isinstance(value, (list, tuple)) else value
    as_po = {flat(m.id): flat(m.string) for m in catalog if m.id}
    as_mo = {flat(m.id): flat(m.string) for m in compiled if m.id}
    assert as_mo == as_po, "run `make translations` (pybabel compile) after editing the .po"
    assert compiled.plural_forms == catalog.plural_forms


def test_both_catalogues_hold_exactly_the_keys_the_code_uses(source_keys):
    # A key the code uses but no catalogue has (a typo, a new string not yet extracted), or an
    # entry nothing uses any more (pybabel update would drop it), both fail here.
    for lang in i18n.LANGUAGES:
        keys = entries(read_catalogue(lang))
        assert sorted(set(source_keys) - set(keys)) == [], f"missing from {lang}: run `make translations`"
        assert sorted(set(keys) - set(source_keys)) == [], f"unused in {lang}: mark run-time keys with N_()"
        plurals = {k for k, m in keys.items() if m.pluralizable}
        assert plurals == {k for k, v in source_keys.items() if not isinstance(v, str)}


def test_placeholders_agree_between_languages_and_format_cleanly():
    catalogues = {lang: entries(read_catalogue(lang)) for lang in i18n.LANGUAGES}
    for key, message in catalogues["uk"].items():
        names = {}
        for lang in i18n.LANGUAGES:
            texts = forms(catalogues[lang][key])
            names[lang] = {name for text in texts for name, kind in PLACEHOLDER.findall(text) if kind != "%"}
            for text in texts:
                # Every "%" is "%%" or a named placeholder: formatting never raises at run time.
                text % {name: 1 for name in names[lang] | {"num"}}
                assert "%s" not in text.replace("%%", "") and "%d" not in text.replace("%%", ""), key
        assert names["uk"] == names["en"], key


def test_the_catalogues_ship_with_the_package():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["terminal"]
    for lang in i18n.LANGUAGES:
        for suffix in (".po", ".mo"):
            path = po_path(lang).with_suffix(suffix).relative_to(ROOT / "terminal").as_posix()
            assert any(fnmatch.fnmatch(path, p) for p in patterns), path


def test_the_browser_catalogue_has_every_key_and_the_plural_forms(client):
    uk = client.get("/i18n/uk.json").get_json()
    en = client.get("/i18n/en.json").get_json()
    keys = entries(read_catalogue("uk"))
    assert set(uk["messages"]) == set(en["messages"]) == set(keys)
    assert "nplurals=3" in uk["plural_forms"] and "nplurals=2" in en["plural_forms"]
    assert uk["messages"]["category.count"] == ["%(num)d послуга", "%(num)d послуги", "%(num)d послуг"]
    assert en["messages"]["category.count"] == ["%(num)d service", "%(num)d services"]
    assert en["messages"]["tablet.staff.start"] == "Start shift"
    assert client.get("/tablet/i18n/en.json").data == client.get("/i18n/en.json").data
    assert client.get("/i18n/de.json").status_code == 404
    assert client.get("/i18n/..%2Fsettings.py").status_code == 404


def test_the_browser_catalogue_is_cached_like_a_static_file(client):
    page = client.get("/").text
    url = re.search(r'<meta name="cnap-catalogue-uk" content="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert re.fullmatch(r"/i18n/uk\.json\?v=[0-9a-f]{12}", url)
    current = client.get(url)
    assert current.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    stale = client.get("/i18n/uk.json?v=000000000000")
    assert stale.headers["Cache-Control"] == "no-cache"
    assert client.get("/i18n/uk.json", headers={"If-None-Match": current.headers["ETag"]}).status_code == 304
