"""Move old-style string tables into the gettext catalogues (for branches written before them).

    .venv/bin/python -m terminal.i18n_import terminal/views/foo.py [more.py …]
    make translations

Each ``i18n.register({"key": ("українською", "in English")})`` call in the given files (read
with ``ast``; nothing is imported) becomes entries of both ``messages.po`` files, placeholders
``{name}`` turned into ``%(name)s`` and ``%`` into ``%%``. The call is removed from the file; keys
that pybabel cannot find anywhere in the code (looked up under names built at run time) are left
in its place as ``RUNTIME_KEYS = (i18n.N_("key"), …)`` so ``make translations`` keeps them.
A key the catalogues already hold keeps its catalogue text (reported). See docs/translations.md.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from terminal import i18n

ROOT = Path(__file__).resolve().parents[1]


def convert(text: str) -> str:
    """``str.format`` placeholders to gettext's Python format, a literal % doubled."""
    return re.sub(r"\{(\w+)\}", r"%(\1)s", text.replace("%", "%%"))


def register_calls(source: str) -> list[tuple[int, int, dict[str, tuple[str, str]]]]:
    """(first line, last line, table) of every module-level ``i18n.register({...})`` call."""
    found = []
    for node in ast.parse(source).body:
        call = node.value if isinstance(node, ast.Expr) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "register"
                and getattr(call.func.value, "id", "") == "i18n" and call.args):
            try:
                table = ast.literal_eval(call.args[0])
            except ValueError:
                raise SystemExit(f"line {node.lineno}: register() of a non-literal table; inline it first")
            found.append((node.lineno, node.end_lineno, table))
    return found


def extracted_keys(root: Path = ROOT) -> set[str]:
    """The keys pybabel finds with babel.cfg (what `make translations` would keep)."""
    with open(root / "babel.cfg") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    keywords = dict(DEFAULT_KEYWORDS, N_=None)
    return {m if isinstance(m, str) else m[0]
            for _f, _l, m, _c, _x in extract_from_dir(str(root), method_map, options_map, keywords=keywords)}


def add_to_catalogues(table: dict[str, tuple[str, str]], translations_dir: Path) -> list[str]:
    """Adds the table's texts to each language's .po; returns keys that were already there."""
    kept = []
    for index, lang in enumerate(("uk", "en")):
        path = translations_dir / lang / "LC_MESSAGES" / "messages.po"
        with open(path, "rb") as fh:
            catalog = read_po(fh, locale=lang)
        for key, texts in table.items():
            if key in catalog:
                kept.append(key)
                continue
            # An empty English text stays empty: the tests then ask for a translation.
            catalog.add(key, convert(texts[index]) if texts[index] else "")
        with open(path, "wb") as fh:
            write_po(fh, catalog, width=100, sort_output=True)
    return sorted(set(kept))


def import_file(path: Path, translations_dir: Path, known_keys: set[str]) -> list[str]:
    source = path.read_text(encoding="utf-8")
    calls = register_calls(source)
    if not calls:
        return []
    lines = source.split("\n")
    runtime: list[str] = []
    kept: list[str] = []
    for first, last, table in reversed(calls):
        kept += add_to_catalogues(table, translations_dir)
        runtime += [key for key in table if key not in known_keys]
        del lines[first - 1:last]
    first_line = calls[0][0] - 1
    if runtime:
        block = ["# Interface strings looked up under names built at run time (in templates or from variables),",
                 "# listed so that pybabel extracts them; their texts are in terminal/translations/.",
                 "RUNTIME_KEYS = ("] + [f'    i18n.N_("{key}"),' for key in sorted(set(runtime))] + [")"]
        lines[first_line:first_line] = block
    path.write_text("\n".join(lines), encoding="utf-8")
    return kept


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    # Keys in use anywhere, not counting the tables about to be removed (they are no calls).
    known = extracted_keys()
    for name in argv:
        kept = import_file(Path(name), i18n.TRANSLATIONS_DIR, known)
        print(f"{name}: moved into the catalogues" + (f"; already there, catalogue text kept: {', '.join(kept)}"
                                                       if kept else ""))
    print("now: make translations, then check both .po files and run tests/terminal/test_translations.py")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
