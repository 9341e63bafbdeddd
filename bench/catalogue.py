"""Catalogue bench: search latency, service-page latency and memory with 5,000 services.

    .venv/bin/python bench/catalogue.py [--services 5000] [--searches 1200] [--pages 300]

1. A child process builds a catalogue of N services (variations of the sample catalogue, with a
   synthetic vocabulary so the index is as varied as a real regional catalogue) and writes it into
   a fresh instance folder's SQLite database. It runs in a child so that building it does not
   count towards the kiosk's memory.
2. This process starts the kiosk app (``terminal.create_app``) on that instance folder, which
   loads the catalogue and builds the search index as the kiosk does, and times searches against
   the app's index: exact words, prefixes, two-word phrases, Latin transliteration, the wrong
   keyboard layout and one-typo words.
3. It renders service pages through the Flask test client.
4. It reads the peak resident set size (VmHWM) of this process.

Targets: search p99 <= 10 ms, whole-process RSS <= 120 MB. The last line is the result:
``services=5000 search_p50_ms=… search_p99_ms=… page_p99_ms=… rss_mb=…``
"""
from __future__ import annotations

import argparse
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED = 20240527
SYLLABLES = ("ба бо ве ви га го ді до же за зо ка ки ко ку ла ле ли ло лу ма ме ми мо на не ні но "
             "па пе пи по ра ре ри ро ру са се си со та те ти то ту ха хо ча чи ша ще ць ян юк їв "
             "єв ів ськ цьк ор ал ин ен ар").split()


def _base_catalogue():
    """The sample catalogue if it exists, else the search tests' fixture."""
    from terminal.catalogue import io as catalogue_io
    from terminal.catalogue.store import Catalogue

    sample = getattr(catalogue_io, "SAMPLE_FOLDER", None)
    if sample is not None and Path(sample).is_dir():
        return catalogue_io.read_folder(sample), f"sample catalogue ({sample})"
    # TODO: drop this fallback once terminal/catalogue/sample ships with the repo.
    from tests.terminal.catalogue.search_fixture import PACKAGES, SERVICES
    from terminal.catalogue.model import Category
    return (Catalogue(services=SERVICES, packages=PACKAGES,
                      categories=[Category("test", {"uk": "Тест", "en": "Test"})]),
            "search test fixture (no sample catalogue yet)")


def _synthetic_vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def _vary(text: dict[str, str], extra: list[str]) -> dict[str, str]:
    tail = " ".join(extra)
    return {lang: f"{value} {tail}" if lang == "uk" else f"{value} ({tail})"
            for lang, value in text.items()}


def build_catalogue(count: int):
    """N services: every base service repeated with its own place and wording variations."""
    from terminal.catalogue.store import Catalogue

    base, source = _base_catalogue()
    rng = random.Random(SEED)
    vocabulary = _synthetic_vocabulary(rng, 12000)
    services = []
    originals = list(base.services.values())
    for n in range(count):
        original = originals[n % len(originals)]
        if n < len(originals):
            services.append(original)  # the originals keep their ids, so packages resolve
            continue
        services.append(replace(
            original,
            id=f"{original.id[:50]}-v{n}",
            name=_vary(original.name, rng.sample(vocabulary, 2)),
            short=_vary(original.short, rng.sample(vocabulary, 4)),
            documents=tuple(_vary(d, rng.sample(vocabulary, 2)) for d in original.documents)
            + ({"uk": " ".join(rng.sample(vocabulary, 6)), "en": "Supporting document"},),
        ))
    catalogue = Catalogue(services=services, categories=base.categories,
                          packages=base.packages.values(), branches=base.branches,
                          news=base.news, note=base.note)
    return catalogue, source


def write_instance(instance: Path, count: int) -> None:
    """Child-process entry: the catalogue of ``count`` services in the instance's database."""
    from terminal import settings as settings_module
    from terminal.catalogue.store import CatalogueStore

    catalogue, source = build_catalogue(count)
    instance.mkdir(parents=True, exist_ok=True)
    db_name = settings_module.load({}, instance_path=instance).get("CATALOGUE_DB",
                                                                    "catalogue.sqlite")
    CatalogueStore(instance / db_name).replace_all(catalogue)
    print(f"catalogue: {len(catalogue.services)} services from the {source}", flush=True)


# --- queries ------------------------------------------------------------------------------------
def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) - 1)
    op = rng.choice(("insert", "delete", "substitute", "transpose"))
    if op == "insert":
        return word[:i] + rng.choice("аоеинрстклв") + word[i:]
    if op == "delete":
        return word[:i] + word[i + 1:]
    if op == "substitute":
        return word[:i] + rng.choice("аоеинрстклв") + word[i + 1:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def make_queries(catalogue, count: int) -> list[tuple[str, str]]:
    """(kind, query) pairs drawn from the catalogue's own names, plus everyday visitor queries."""
    from terminal.catalogue.search import words
    from terminal.catalogue.translit import swap_layout, transliterate

    rng = random.Random(SEED + 1)
    names = [s.name.get("uk", "") for s in catalogue.services.values()]
    fixed = [("exact", q) for q in ("паспорт", "прописка", "ІПН", "довідка", "субсидія",
                                     "реєстрація місця проживання", "пенсія", "ФОП")]
    fixed += [("translit", "pasport"), ("layout", "gfcgjhn"), ("layout", "зфіізщке"),
              ("typo", "пасорт"), ("prefix", "п"), ("prefix", "ре")]
    queries = list(fixed)
    kinds = ("exact", "prefix", "phrase", "translit", "layout", "typo")
    while len(queries) < count:
        name_words = [w for w in words(rng.choice(names)) if len(w) >= 5]
        if not name_words:
            continue
        word = rng.choice(name_words)
        kind = kinds[len(queries) % len(kinds)]
        if kind == "exact":
            query = word
        elif kind == "prefix":
            query = word[: rng.randint(1, min(5, len(word)))]
        elif kind == "phrase":
            query = " ".join(rng.sample(name_words, min(2, len(name_words))))
        elif kind == "translit":
            query = transliterate(word)
        elif kind == "layout":
            query = swap_layout(word)
        else:
            query = _typo(word, rng)
        queries.append((kind, query))
    return queries


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=5000)
    parser.add_argument("--searches", type=int, default=1200)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--write-instance", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_instance:
        write_instance(Path(args.write_instance), args.services)
        return 0

    with tempfile.TemporaryDirectory(prefix="cnap-bench-") as tmp:
        instance = Path(tmp) / "instance"
        subprocess.run([sys.executable, __file__, "--services", str(args.services),
                        "--write-instance", str(instance)], check=True, cwd=ROOT)

        from terminal import close_app, create_app
        from terminal.state import state as app_state

        started = time.perf_counter()
        app = create_app({"INSTANCE_PATH": str(instance), "TESTING": True, "SECRET_KEY": "bench",
                          "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": ""})
        print(f"app start (catalogue load + index build): {time.perf_counter() - started:.2f} s")
        try:
            catalogue = app_state(app).catalogue
            index = app_state(app).search
            services = len(catalogue.services)

            queries = make_queries(catalogue, args.searches)
            for _, query in queries[:50]:  # warm caches, as a running kiosk has them
                index.search(query)
            by_kind: dict[str, list[float]] = {}
            timings = []
            empty = 0
            for kind, query in queries:
                t0 = time.perf_counter()
                hits = index.search(query, lang="uk", limit=20)
                elapsed = (time.perf_counter() - t0) * 1000
                timings.append(elapsed)
                by_kind.setdefault(kind, []).append(elapsed)
                empty += not hits
            for kind, values in sorted(by_kind.items()):
                print(f"search {kind:8s} n={len(values):4d} p50={percentile(values, .5):.2f} ms "
                      f"p99={percentile(values, .99):.2f} ms max={max(values):.2f} ms")
            print(f"searches: {len(timings)}, with no result: {empty}")

            page_timings = []
            rng = random.Random(SEED + 2)
            ids = list(catalogue.services)
            if "catalogue.service" not in app.view_functions:
                print("page: /service/<id> route missing; page_p99_ms=nan")
            else:
                client = app.test_client()
                failures = 0
                for service_id in rng.sample(ids, min(args.pages, len(ids))):
                    t0 = time.perf_counter()
                    response = client.get(f"/service/{service_id}")
                    page_timings.append((time.perf_counter() - t0) * 1000)
                    failures += response.status_code != 200
                if failures:
                    print(f"page: {failures} of {len(page_timings)} service pages did not answer "
                          "200; page_p99_ms=nan")
                    page_timings = []
                else:
                    print(f"pages: {len(page_timings)} service pages, "
                          f"p50={percentile(page_timings, .5):.2f} ms")
        finally:
            close_app(app)

    print(f"services={services} search_p50_ms={percentile(timings, .5):.2f} "
          f"search_p99_ms={percentile(timings, .99):.2f} "
          f"page_p99_ms={percentile(page_timings, .99):.2f} rss_mb={peak_rss_mb():.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
