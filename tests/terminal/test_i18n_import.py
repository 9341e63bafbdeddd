"""The helper that moves an old-style register() table into the catalogues."""
import shutil

import pytest
from babel.messages.pofile import read_po

from terminal import i18n
from terminal.i18n_import import import_file

OLD_MODULE = '''"""An area written before the catalogues."""
from terminal import i18n

i18n.register({
    "test.area.title": ("Заголовок", "Title"),
    "test.area.fill": ("Заповнено на {pct} %", "{pct} % full"),
    "test.area.status.on": ("увімкнено", ""),
})


def view():
    return i18n.gettext("test.area.title")
'''


def test_a_table_moves_into_both_catalogues_and_run_time_keys_stay_listed(tmp_path):
    translations = tmp_path / "translations"
    shutil.copytree(i18n.TRANSLATIONS_DIR, translations, ignore=shutil.ignore_patterns("*.mo", "*.pot"))
    module = tmp_path / "area.py"
    module.write_text(OLD_MODULE, encoding="utf-8")
    # test.area.title is used literally; the other two only under names built at run time.
    assert import_file(module, translations, known_keys={"test.area.title"}) == []
    catalogues = {}
    for lang in ("uk", "en"):
        with open(translations / lang / "LC_MESSAGES" / "messages.po", "rb") as fh:
            catalogues[lang] = read_po(fh, locale=lang)
    assert catalogues["uk"]["test.area.fill"].string == "Заповнено на %(pct)s %%"
    assert catalogues["en"]["test.area.fill"].string == "%(pct)s %% full"
    assert catalogues["en"]["test.area.status.on"].string == ""   # to be translated; the tests say so
    assert catalogues["uk"]["nav.home"].string == "На головну"      # the rest untouched
    text = module.read_text(encoding="utf-8")
    assert "register" not in text
    assert 'i18n.N_("test.area.fill")' in text and 'i18n.N_("test.area.status.on")' in text
    assert 'N_("test.area.title")' not in text
    compile(text, "area.py", "exec")


def test_the_old_call_fails_with_directions():
    with pytest.raises(RuntimeError, match="i18n_import"):
        i18n.register({"test.x": ("x", "x")})
