"""Catalogue search for a touch-screen visitor: forgiving, instant, ranked, highlighted.

What it forgives: case; every apostrophe variant and none at all ("обєкт" = "об'єкт"); Latin
transliteration both ways (KMU 55/2010, ``translit.py``); a whole query typed in the wrong
keyboard layout ("gfcgjhn" = "паспорт"); one typo per word of four letters or more; Ukrainian
case endings and English plurals (a light suffix-stripping stemmer); colloquial names (each
record's ``synonyms`` plus the built-in table in ``synonyms.py``). The last word of a query that
does not end in a space is matched as a prefix, so results follow the typing.

How it stays fast: every word of every record is reduced once, at build time, to a *stem* with a
compact postings array (record, field). Lookup keys (the word, its stem, their Latin forms) map to
stems; a sorted key list answers prefixes by bisection; typos are found through a deletion
neighbourhood (SymSpell): every stem-level key is filed under itself and each string made by
deleting one character, and a query word looks up itself and its own one-deletion strings, so
candidates come from a handful of dictionary probes and only they are checked with a real
(optimal string alignment) edit distance.

Ranking, best first: the whole name matched word for word; the name starts with the query; every
query word in the name; in the synonyms; in the short description; in the documents and other
details. Inside one tier fewer typos, then exact over prefix, native script over transliterated
over wrong layout, then the catalogue's own order. The tier gaps exceed the largest penalty, so a penalty
never drops a match into a lower tier. Query words that match nothing in a record make it rank
below every record that matches them all (only the best-covered records are returned).
"""
from __future__ import annotations

import heapq
import re
import unicodedata
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable

from .model import LANGUAGES, Package, Service, Text, tr
from .synonyms import COLLOQUIAL
from .translit import is_cyrillic, swap_layout, transliterate

# --- limits: absurd input is cut down, never refused --------------------------------------
MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 10
MAX_WORD_CHARS = 40
MAX_PREFIX_EXPANSION = 300   # keys one prefix may stand for
SHORT_PREFIX = 3             # shorter prefixes only look at names (else "п" matches everything)
MIN_TYPO_WORD = 4            # one typo is forgiven in words at least this long
MIN_TYPO_KEY = 3

# --- fields and scores ------------------------------------------------------------------------
NAME, SYNONYM, SHORT, DETAIL = 0, 1, 2, 3
FIELD_BASE = (600.0, 450.0, 300.0, 150.0)   # tiers 150 apart (name prefix and exact: 200)
EXACT_NAME_BASE = 1000.0
NAME_PREFIX_BASE = 800.0
PENALTY_CROSS_SCRIPT = 10.0   # a Cyrillic query word found in Latin text, via transliteration
PENALTY_LAYOUT = 20.0         # the query had to be re-read in the other keyboard layout
PENALTY_PREFIX = 30.0         # the word is still being typed
PENALTY_TYPO = 70.0
# Largest total penalty of one word: 130, below the 150 between field tiers (tested).

_FIELD_SHIFT = 22             # postings entry = field << 22 | record number
_DOC_MASK = (1 << _FIELD_SHIFT) - 1

STOPWORDS = frozenset(
    "і й та в у з із зі на до для про за від по при як що чи або а не "
    "the a an of for to in on and or with by at".split())

# --- normalisation ------------------------------------------------------------------------------
_APOSTROPHES = "'\u2019\u02bc\u2018`\u00b4\u02b9\u2032\uff07\u02bb"
_WORD_RE = re.compile(
    r"(?:[^\W_]|[\u0300-\u036f])+(?:[" + re.escape(_APOSTROPHES) + r"]+(?:[^\W_]|[\u0300-\u036f])+)*")
# Russian letters a visitor may type: read as the Ukrainian letter they stand for; ъ works as the
# apostrophe does ("объект" ~ "об'єкт").
_RUSSIAN_FOLD = {"ы": "и", "э": "е", "ё": "е", "ъ": ""}
# Letters that look the same in both scripts, for words typed with one stray wrong-script letter.
_LATIN_TO_CYRILLIC_LOOKALIKE = dict(zip("aceiopxykmthb", "асеіорхукмтнв"))
_CYRILLIC_TO_LATIN_LOOKALIKE = {c: l for l, c in _LATIN_TO_CYRILLIC_LOOKALIKE.items()}


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """One (NFC) character as the index sees it: lower case, no accents, no apostrophes."""
    if ch in _APOSTROPHES:
        return ""
    folded = unicodedata.normalize("NFKC", ch).casefold()
    out = []
    for c in folded:
        if c in _RUSSIAN_FOLD:
            out.append(_RUSSIAN_FOLD[c])
        elif "\u0400" <= c <= "\u04ff":
            out.append(c)  # й ї stay whole
        elif c.isascii():
            if c.isalnum():
                out.append(c)
        else:
            # Latin letters with diacritics lose them; combining marks (stress) vanish.
            for base in unicodedata.normalize("NFD", c):
                if base.isalnum():
                    out.append(base)
    return "".join(out)


def _fix_mixed_script(word: str) -> str:
    """A word mixing scripts is read in its majority script, via look-alike letters."""
    if word.isascii() or not _HAS_LATIN.search(word):
        return word
    cyr = sum(1 for c in word if "\u0400" <= c <= "\u04ff")
    lat = sum(1 for c in word if "a" <= c <= "z")
    if not cyr or not lat:
        return word
    table = _LATIN_TO_CYRILLIC_LOOKALIKE if cyr >= lat else _CYRILLIC_TO_LATIN_LOOKALIKE
    return "".join(table.get(c, c) for c in word)


_HAS_LATIN = re.compile(r"[a-z]")
# Fast path for the usual word: after lower-casing and dropping apostrophes it is plain
# Latin, digits or Ukrainian letters, and the per-character folding would change nothing.
_FAST_FOLD = str.maketrans({**{a: None for a in _APOSTROPHES}, **_RUSSIAN_FOLD})
_PLAIN_WORD = re.compile(r"[a-z0-9\u0430-\u045f\u0491]*\Z")


def normalize_word(raw: str) -> str:
    fast = raw.lower().translate(_FAST_FOLD)
    if _PLAIN_WORD.match(fast):
        return _fix_mixed_script(fast)
    return _fix_mixed_script("".join(_fold_char(c) for c in raw))


def _word_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, normalised word) for each word of an NFC text; empty words dropped."""
    spans = []
    for match in _WORD_RE.finditer(text):
        norm = normalize_word(match.group())
        if norm:
            spans.append((match.start(), match.end(), norm))
    return spans


def words(text: str) -> list[str]:
    return [norm for _, _, norm in _word_spans(unicodedata.normalize("NFC", text))]


# --- stemming ---------------------------------------------------------------------------------
# Noun and adjective endings (case, number); verb endings are left alone because stripping
# "-ти" would also cut "паспорти" to "паспор".
_UK_ENDINGS = tuple(sorted(set("""
    анням енням ання ення анні енні ості істю ість ень
    ями ами ові еві єві ого ому ими іми ої ею єю ою ією ію ії ія ій
    ах ях ям ам ом ем ів їв ей ий их іх им ім ую юю ая яя
    а я у ю і ї о е є и ь й
""".split()), key=len, reverse=True))
# The same endings as a transliterated word ends ("pasportom", "reiestratsii").
_UK_ENDINGS_LATIN = tuple(sorted(
    {e for e in (transliterate(x, word_start=False) for x in _UK_ENDINGS) if e},
    key=len, reverse=True))
_MIN_STEM = 3


def _strip_ending(word: str, endings: tuple[str, ...]) -> str:
    for ending in endings:
        if word.endswith(ending) and len(word) - len(ending) >= _MIN_STEM:
            return word[: -len(ending)]
    return word


# Query-time caches stay small; the index builder keeps its own per-build word table.
@lru_cache(maxsize=4096)
def stem_uk(word: str) -> str:
    return _strip_ending(word, _UK_ENDINGS)


@lru_cache(maxsize=4096)
def stem_uk_latin(word: str) -> str:
    return _strip_ending(word, _UK_ENDINGS_LATIN)


@lru_cache(maxsize=4096)
def stem_en(word: str) -> str:
    if len(word) <= 3 or not word.endswith("s"):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is")):
        return word
    return word[:-1]


def _is_latin(word: str) -> bool:
    return any("a" <= c <= "z" for c in word)


@dataclass(frozen=True)
class _WordForms:
    """How one normalised word of a record is filed."""
    stem: str                # the native stem: postings are per stem
    keys: tuple[str, ...]    # exact lookup keys (word, stem, their Latin forms)
    words: tuple[str, ...]   # whole-word keys, for prefix lookup
    typo_keys: tuple[str, ...]  # native stem: a typo may be forgiven against it
    latin_typo_keys: tuple[str, ...]  # a Cyrillic stem's Latin form, for Latin queries only


@lru_cache(maxsize=4096)
def _record_word_forms(word: str) -> _WordForms:
    return _compute_word_forms(word)


def _compute_word_forms(word: str) -> _WordForms:
    if is_cyrillic(word):
        stem = _strip_ending(word, _UK_ENDINGS)
        latin_word, latin_stem = transliterate(word), transliterate(stem)
        keys = (word, stem, latin_word, latin_stem)
        return _WordForms(stem, keys, (word, latin_word), (stem,), (latin_stem,))
    if _is_latin(word):
        stem = stem_en(word)
        return _WordForms(stem, (word, stem), (word,), (stem,), ())
    return _WordForms(word, (word,), (word,), (), ())  # numbers


def _deletions(key: str) -> list[str]:
    return [key[:i] + key[i + 1:] for i in range(len(key))]


def osa_distance_at_most_one(a: str, b: str) -> bool:
    """True when ``a`` becomes ``b`` by at most one insertion, deletion, substitution or
    transposition of adjacent characters."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    i = 0
    while i < min(la, lb) and a[i] == b[i]:
        i += 1
    if la == lb:
        if a[i + 1:] == b[i + 1:]:
            return True  # substitution
        return i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2:] == b[i + 2:]
    if la > lb:
        return a[i + 1:] == b[i:]
    return a[i:] == b[i + 1:]


# --- query analysis -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _QueryWord:
    norm: str
    required: bool                                  # stopwords are not
    exact: tuple[tuple[str, float], ...]            # (key, penalty)
    prefix: tuple[tuple[str, float], ...]           # (prefix, penalty); last word only
    # (key, penalty, also against transliterated Cyrillic) for one-typo lookup. A Cyrillic
    # query word's Latin form only looks for English words: its Cyrillic form already had its
    # chance against the Cyrillic originals.
    typo: tuple[tuple[str, float, bool], ...]
    also_highlight: frozenset[str]                  # canonical stems of a colloquial word


@dataclass(frozen=True)
class _Plan:
    words: tuple[_QueryWord, ...]
    penalty: float                                  # added to every match of this plan


def _analyse_query_word(norm: str, is_last_open: bool, penalty: float) -> _QueryWord:
    exact: dict[str, float] = {}
    typo: dict[str, float] = {}
    prefix: dict[str, float] = {}
    latin_query = _is_latin(norm) and not is_cyrillic(norm)

    def add(table: dict[str, float], key: str, pen: float) -> None:
        if key and pen + penalty < table.get(key, 1e9):
            table[key] = pen + penalty

    typo_ok = len(norm) >= MIN_TYPO_WORD
    if is_cyrillic(norm):
        stem = stem_uk(norm)
        for key in (norm, stem):
            add(exact, key, 0.0)
        latin_word, latin_stem = transliterate(norm), transliterate(stem)
        for key in (latin_word, latin_stem, stem_en(latin_word)):
            add(exact, key, PENALTY_CROSS_SCRIPT)
        if typo_ok:
            add(typo, stem, PENALTY_TYPO)
            add(typo, norm, PENALTY_TYPO)
            add(typo, latin_word, PENALTY_TYPO + PENALTY_CROSS_SCRIPT)
            add(typo, latin_stem, PENALTY_TYPO + PENALTY_CROSS_SCRIPT)
        if is_last_open:
            add(prefix, norm, PENALTY_PREFIX)
            add(prefix, latin_word, PENALTY_PREFIX + PENALTY_CROSS_SCRIPT)
    elif _is_latin(norm):
        # A Latin word may be English or transliterated Ukrainian: try both stemmers.
        for key in (norm, stem_en(norm), stem_uk_latin(norm)):
            add(exact, key, 0.0)
            if typo_ok:
                add(typo, key, PENALTY_TYPO)
        if is_last_open:
            add(prefix, norm, PENALTY_PREFIX)
    else:
        add(exact, norm, 0.0)
        if is_last_open:
            add(prefix, norm, PENALTY_PREFIX)
    colloquial = _COLLOQUIAL_BY_STEM.get(_forms_stem(norm), frozenset())
    return _QueryWord(norm, norm not in STOPWORDS, tuple(exact.items()), tuple(prefix.items()),
                      tuple((k, p, latin_query) for k, p in typo.items()), colloquial)


def _forms_stem(norm: str) -> str:
    return _record_word_forms(norm).stem


def _query_plans(query: str) -> list[_Plan]:
    """The query as typed, and (when it reads differently) in the other keyboard layout."""
    if not isinstance(query, str):
        return []
    text = unicodedata.normalize("NFC", query[: MAX_QUERY_CHARS * 2])[:MAX_QUERY_CHARS]
    plans = []
    for variant, penalty in ((text, 0.0), (swap_layout(text), PENALTY_LAYOUT)):
        if penalty and variant == text.lower():
            continue
        spans = _word_spans(variant)[:MAX_QUERY_WORDS]
        if not spans:
            continue
        open_end = spans[-1][1] == len(variant)  # no space after the last word: still typing
        query_words = tuple(
            _analyse_query_word(norm[:MAX_WORD_CHARS], open_end and i == len(spans) - 1, penalty)
            for i, (_, _, norm) in enumerate(spans))
        plans.append(_Plan(query_words, penalty))
    return plans


# --- colloquial table, prepared once ---------------------------------------------------------------
def _phrase_stems(phrase: str) -> frozenset[str]:
    return frozenset(_forms_stem(w) for w in words(phrase) if w not in STOPWORDS)


_COLLOQUIAL_CANONICAL: tuple[tuple[str, tuple[frozenset[str], ...]], ...] = tuple(
    (colloquial, tuple(_phrase_stems(p) for p in canonical))
    for colloquial, canonical in COLLOQUIAL.items())
# A one-word colloquialism's stem -> the canonical stems to highlight in a name it found.
_COLLOQUIAL_BY_STEM: dict[str, frozenset[str]] = {}
for _colloquial, _canonicals in _COLLOQUIAL_CANONICAL:
    _w = words(_colloquial)
    if len(_w) == 1:
        _COLLOQUIAL_BY_STEM[_forms_stem(_w[0])] = frozenset().union(*_canonicals)


# --- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hit:
    kind: str                                  # "service" | "package"
    id: str
    score: float
    name_segments: list[tuple[str, bool]]      # display name in `lang`, matched parts True


@dataclass(frozen=True)
class _Record:
    kind: str
    id: str
    name: Text
    name_stems: tuple[tuple[int, ...], ...]    # per language: the name's stem ids in order


@dataclass(frozen=True)
class _Match:
    """How one query word reached one stem."""
    penalty: float
    names_only: bool      # a short prefix: only name occurrences count
    whole_word: bool      # exact, stem or typo (False: a prefix of the word)


class SearchIndex:
    """An immutable index over services and packages; build once, search from any thread.

    Postings live in one flat ``array('I')`` of record numbers: for stem ``s`` and field ``f``
    the records are ``_docs[_bounds[4*s+f]:_bounds[4*s+f+1]]``, sorted. That keeps 5,000
    services' index at a few megabytes and lets a whole field's records be merged into a result
    dictionary at C speed.
    """

    def __init__(self) -> None:
        self._records: list[_Record] = []
        self._stem_ids: dict[str, int] = {}
        self._docs = array("I")
        self._bounds = array("I", [0])
        self._name_starts: dict[int, array] = {}   # first name word's stem -> records
        self._key_stems: dict[str, int | tuple[int, ...]] = {}
        self._prefix_keys: list[str] = []
        self._prefix_stems: list[int | tuple[int, ...]] = []
        self._name_prefix_keys: list[str] = []
        self._name_prefix_stems: list[int | tuple[int, ...]] = []
        self._deletes = _DeletionTable()
        self._latin_deletes = _DeletionTable()

    # -- building --
    @classmethod
    def build(cls, services: Iterable[Service], packages: Iterable[Package] = ()) -> "SearchIndex":
        index = cls()
        builder = _Builder(index)
        for service in services:
            builder.add(
                "service", service.id, service.name,
                {
                    SYNONYM: [{"_": s} for s in service.synonyms],
                    SHORT: [service.short],
                    DETAIL: [*service.documents, service.result, service.provider,
                             *service.receive_ways],
                })
        for package in packages:
            builder.add(
                "package", package.id, package.name,
                {
                    SYNONYM: [{"_": s} for s in package.synonyms],
                    SHORT: [package.description],
                })
        builder.finish()
        return index

    def __len__(self) -> int:
        return len(self._records)

    # -- searching --
    def search(self, query: str, lang: str = "uk", limit: int = 20) -> list[Hit]:
        """Best records for what the visitor typed; never raises on any text."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0 \
                or not self._records:
            return []
        plans = _query_plans(query)
        matched = [[self._match_word(word) for word in plan.words] for plan in plans]
        full: dict[int, float] = {}
        partial: dict[int, tuple[float, float]] = {}
        for plan, word_matches in zip(plans, matched):
            coverage, scores = self._score_plan(plan, word_matches, lang)
            if coverage == 1.0:
                if not full:
                    full = scores
                else:
                    for doc, score in scores.items():
                        if score > full.get(doc, -1e9):
                            full[doc] = score
            elif not full:
                for doc, ranked in scores.items():
                    if ranked > partial.get(doc, (-1.0, 0.0)):
                        partial[doc] = ranked
        if full:
            ranked_docs = self._top(full, limit, lang)
            scores_out = full
        elif partial:
            top_coverage = max(c for c, _ in partial.values())
            flat = {doc: s for doc, (c, s) in partial.items() if c == top_coverage}
            ranked_docs = self._top(flat, limit, lang)
            scores_out = flat
        else:
            return []
        hits = []
        for doc in ranked_docs:
            record = self._records[doc]
            name = tr(record.name, lang)
            hits.append(Hit(record.kind, record.id, round(scores_out[doc], 3),
                            self._highlight_name(name, plans, matched)))
        return hits

    def _top(self, scores: dict[int, float], limit: int, lang: str) -> list[int]:
        """The ``limit`` best records; ties go to the catalogue's own order (the ЦНАП orders
        categories and services by prominence: ID card before a building passport)."""
        if len(scores) > limit:
            cut = heapq.nlargest(limit, scores.values())[-1]
            docs = [doc for doc, score in scores.items() if score >= cut]
        else:
            docs = list(scores)
        return sorted(docs, key=lambda doc: (-scores[doc], doc))[:limit]

    def _stems_for_key(self, key: str) -> tuple[int, ...]:
        found = self._key_stems.get(key)
        if found is None:
            return ()
        return (found,) if isinstance(found, int) else found

    def _match_word(self, word: _QueryWord) -> dict[int, _Match]:
        """stem id -> how the query word matched it."""
        matches: dict[int, _Match] = {}

        def offer(stem: int, pen: float, names_only: bool = False, whole: bool = True) -> None:
            old = matches.get(stem)
            if old is None or pen < old.penalty or (
                    pen == old.penalty and old.names_only and not names_only):
                matches[stem] = _Match(pen, names_only, whole)

        for key, pen in word.exact:
            for stem in self._stems_for_key(key):
                offer(stem, pen)
        for key, pen, with_translit in word.typo:
            if len(key) < MIN_TYPO_KEY:
                continue
            candidates: set[str] = set()
            tables = (self._deletes, self._latin_deletes) if with_translit else (self._deletes,)
            for probe in {_probe_hash(p) for p in (key, *_deletions(key))}:
                for table in tables:
                    table.collect(probe, candidates)
            for candidate in candidates:
                if candidate != key and osa_distance_at_most_one(key, candidate):
                    for stem in self._stems_for_key(candidate):
                        offer(stem, pen)
        for prefix, pen in word.prefix:
            names_only = len(prefix) < SHORT_PREFIX
            keys = self._name_prefix_keys if names_only else self._prefix_keys
            stems = self._name_prefix_stems if names_only else self._prefix_stems
            start = bisect_left(keys, prefix)
            end = min(len(keys), start + MAX_PREFIX_EXPANSION)
            for i in range(start, end):
                if not keys[i].startswith(prefix):
                    break
                found = stems[i]
                for stem in (found,) if isinstance(found, int) else found:
                    offer(stem, pen, names_only, whole=False)
        return matches

    def _word_scores(self, matches: dict[int, _Match]) -> dict[int, float]:
        """record -> best score of one query word (its best field, least penalty)."""
        bounds, docs = self._bounds, self._docs
        segments = []
        for stem, match in matches.items():
            base = 4 * stem
            for field in (NAME,) if match.names_only else (NAME, SYNONYM, SHORT, DETAIL):
                lo, hi = bounds[base + field], bounds[base + field + 1]
                if hi > lo:
                    segments.append((FIELD_BASE[field] - match.penalty, lo, hi))
        segments.sort(reverse=True)  # best first: the first score a record gets is its best
        best: dict[int, float] = {}
        for score, lo, hi in segments:
            if hi - lo < 48 or hi - lo < len(best) // 8:
                setdefault = best.setdefault
                for doc in docs[lo:hi]:
                    setdefault(doc, score)
            else:  # merge a long run at C speed; earlier (better) scores win
                fresh = dict.fromkeys(docs[lo:hi], score)
                fresh.update(best)
                best = fresh
        return best

    def _score_plan(self, plan: _Plan, word_matches: list[dict[int, _Match]], lang: str
                    ) -> tuple[float, dict]:
        """(1.0, record -> score) when some records match every required word, else
        (below 1.0, record -> (coverage, score)) for the records that match some."""
        per_word = [self._word_scores(m) for m in word_matches]
        required = [i for i, w in enumerate(plan.words) if w.required] or \
            list(range(len(plan.words)))
        required_scores = [per_word[i] for i in required]
        smallest = min(required_scores, key=len)
        if len(required_scores) == 1:
            complete = smallest.keys()
        else:
            complete = set(smallest)
            for other in required_scores:
                if other is not smallest:
                    complete &= other.keys()
        if complete:
            if len(per_word) == 1:
                scores = dict(per_word[0])
            elif len(per_word) == 2 and len(required_scores) == 2:  # the usual phrase
                a, b = per_word
                scores = {doc: min(a[doc], b[doc]) + 0.001 * (a[doc] + b[doc])
                          for doc in complete}
            else:
                scores = {}
                for doc in complete:
                    weakest = min(s[doc] for s in required_scores)
                    scores[doc] = weakest + 0.001 * sum(s.get(doc, 0.0) for s in per_word)
            self._add_name_sequence_scores(scores, word_matches, lang)
            return 1.0, scores
        partial: dict[int, tuple[float, float]] = {}
        candidates: set[int] = set()
        for s in required_scores:
            candidates.update(s)
        for doc in candidates:
            present = [s[doc] for s in required_scores if doc in s]
            partial[doc] = (len(present) / len(required_scores),
                            min(present) + 0.001 * sum(s.get(doc, 0.0) for s in per_word))
        return 0.0, partial

    def _add_name_sequence_scores(self, scores: dict[int, float],
                                  word_matches: list[dict[int, _Match]], lang: str) -> None:
        """Lift records whose name is the query (exact) or starts with it (name prefix).

        Judged on the name the visitor sees (``lang``; another language only when that name is
        missing), so an English name starting with "Passport" does not lift a Ukrainian one.
        """
        if not word_matches:
            return
        lang_index = LANGUAGES.index(lang) if lang in LANGUAGES else 0
        name_tier = FIELD_BASE[SYNONYM]
        n = len(word_matches)
        seen: set[int] = set()
        for stem in word_matches[0]:
            for doc in self._name_starts.get(stem, ()):
                if doc in seen:
                    continue
                seen.add(doc)
                current = scores.get(doc)
                if current is None or current <= name_tier:
                    continue  # some query word is not in the name
                sequences = self._records[doc].name_stems
                if sequences[lang_index]:
                    sequences = (sequences[lang_index],)
                for sequence in sequences:
                    if len(sequence) < n:
                        continue
                    penalties = []
                    for name_stem, matches in zip(sequence, word_matches):
                        found = matches.get(name_stem)
                        if found is None:
                            break
                        penalties.append(found.penalty)
                    else:
                        base = EXACT_NAME_BASE if len(sequence) == n else NAME_PREFIX_BASE
                        lifted = base - max(penalties) - 0.01 * sum(penalties) + (current % 1)
                        if lifted > scores[doc]:
                            scores[doc] = lifted

    def _highlight_name(self, name: str, plans: list[_Plan],
                        matched: list[list[dict[int, _Match]]]) -> list[tuple[str, bool]]:
        """The name's words that the search matched, as highlight segments."""
        stem_ids = self._stem_ids

        def matched_length(norm: str) -> int:
            forms = _record_word_forms(norm)
            stem = stem_ids.get(forms.stem)
            best = 0
            for plan, word_matches in zip(plans, matched):
                for word, matches in zip(plan.words, word_matches):
                    if forms.stem in word.also_highlight:
                        return len(norm)
                    found = matches.get(stem) if stem is not None else None
                    if found is None:
                        continue
                    if found.whole_word or not norm.startswith(word.norm):
                        return len(norm)
                    best = max(best, len(word.norm))
            return best

        return _segments(name, matched_length)


class _Builder:
    """Collects postings per stem in small arrays, then packs them into the flat layout."""

    def __init__(self, index: SearchIndex) -> None:
        self.index = index
        self.entries: list[array] = []                 # stem -> field << 22 | record
        self.key_stems: dict[str, int | set[int]] = {}
        self.word_keys: dict[str, int | set[int]] = {}
        self.name_word_keys: dict[str, int | set[int]] = {}
        self.typo_keys: set[str] = set()
        self.latin_typo_keys: set[str] = set()
        self.words_seen: dict[str, int] = {}           # normalised word -> stem id
        self.doc_seen: set[int] = set()                # (stem << 2 | field) filed for this record
        self.name_starts: dict[int, set[int]] = {}

    @staticmethod
    def _add_key(table: dict[str, int | set[int]], key: str, stem: int) -> None:
        old = table.get(key)
        if old is None:
            table[key] = stem
        elif isinstance(old, int):
            if old != stem:
                table[key] = {old, stem}
        else:
            old.add(stem)

    def _stem_of(self, norm: str) -> int:
        stem = self.words_seen.get(norm)
        if stem is not None:
            return stem
        forms = _compute_word_forms(norm)
        ids = self.index._stem_ids
        stem = ids.get(forms.stem)
        if stem is None:
            stem = ids[forms.stem] = len(self.entries)
            self.entries.append(array("I"))
        for key in forms.keys:
            self._add_key(self.key_stems, key, stem)
        for key in forms.words:
            self._add_key(self.word_keys, key, stem)
        self.typo_keys.update(k for k in forms.typo_keys if len(k) >= MIN_TYPO_KEY)
        self.latin_typo_keys.update(k for k in forms.latin_typo_keys if len(k) >= MIN_TYPO_KEY)
        self.words_seen[norm] = stem
        return stem

    def _words(self, text: str) -> list[str]:
        return words(text)

    def _file(self, norm: str, doc: int, field: int) -> int:
        stem = self._stem_of(norm)
        mark = stem << 2 | field
        if mark not in self.doc_seen:
            self.doc_seen.add(mark)
            self.entries[stem].append(field << _FIELD_SHIFT | doc)
        if field == NAME:
            forms = _record_word_forms(norm)
            for key in forms.words:
                self._add_key(self.name_word_keys, key, stem)
        return stem

    def add(self, kind: str, record_id: str, name: Text, fields: dict[int, list[Text]]) -> None:
        doc = len(self.index._records)
        if doc > _DOC_MASK:
            raise ValueError("too many catalogue records for the search index")
        self.doc_seen.clear()
        name = dict(name or {})
        name_stems = []
        stems_of_names: set[str] = set()
        for lang in LANGUAGES:
            name_words = self._words(name.get(lang, ""))
            sequence = tuple(self._file(w, doc, NAME) for w in name_words)
            name_stems.append(sequence)
            if sequence:
                self.name_starts.setdefault(sequence[0], set()).add(doc)
            stems_of_names.update(_record_word_forms(w).stem for w in name_words)
        for field, texts in fields.items():
            for text in texts:
                for value in (text or {}).values():
                    for w in self._words(value or ""):
                        self._file(w, doc, field)
                        if field == SYNONYM:
                            stems_of_names.add(_record_word_forms(w).stem)
        for colloquial, canonicals in _COLLOQUIAL_CANONICAL:
            if any(c and c <= stems_of_names for c in canonicals):
                for w in words(colloquial):
                    self._file(w, doc, SYNONYM)
        self.index._records.append(_Record(kind, record_id, name, tuple(name_stems)))

    def finish(self) -> None:
        index = self.index

        def pack(stems: int | set[int]) -> int | tuple[int, ...]:
            return stems if isinstance(stems, int) else tuple(sorted(stems))

        docs, bounds = array("I"), array("I", [0])
        for entries in self.entries:
            ordered = sorted(entries)
            for field in (NAME, SYNONYM, SHORT, DETAIL):
                docs.extend(e & _DOC_MASK for e in ordered if e >> _FIELD_SHIFT == field)
                bounds.append(len(docs))
        self.entries = []
        index._docs, index._bounds = docs, bounds
        index._name_starts = {stem: array("I", sorted(d)) for stem, d in self.name_starts.items()}
        index._key_stems = {k: pack(v) for k, v in self.key_stems.items()}
        index._prefix_keys = sorted(self.word_keys)
        index._prefix_stems = [pack(self.word_keys[k]) for k in index._prefix_keys]
        index._name_prefix_keys = sorted(self.name_word_keys)
        index._name_prefix_stems = [pack(self.name_word_keys[k]) for k in index._name_prefix_keys]
        index._deletes = _DeletionTable(self.typo_keys)
        index._latin_deletes = _DeletionTable(self.latin_typo_keys)


def _probe_hash(probe: str) -> int:
    """Deletion strings are filed by a 32-bit hash; a collision only adds a candidate, which the
    edit-distance check then drops."""
    return hash(probe) & 0xFFFFFFFF


class _DeletionTable:
    """Deletion neighbourhood (SymSpell) in two parallel sorted arrays: 8 bytes per entry.

    Every key is filed under the hash of itself and of each string made by deleting one of its
    characters. A dictionary of strings would cost some 100 bytes per entry.
    """

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self.keys = sorted(keys)
        combined = array("Q")
        for key_id, key in enumerate(self.keys):
            combined.extend(h << 32 | key_id
                            for h in {_probe_hash(p) for p in (key, *_deletions(key))})
        combined = array("Q", sorted(combined))
        self.hashes = array("I", (c >> 32 for c in combined))
        self.key_ids = array("I", (c & 0xFFFFFFFF for c in combined))

    def __len__(self) -> int:
        return len(self.hashes)

    def collect(self, probe_hash: int, into: set[str]) -> None:
        hashes, key_ids, keys = self.hashes, self.key_ids, self.keys
        i = bisect_left(hashes, probe_hash)
        while i < len(hashes) and hashes[i] == probe_hash:
            into.add(keys[key_ids[i]])
            i += 1


# --- highlighting ---------------------------------------------------------------------------------
@lru_cache(maxsize=2048)
def _display_spans(text: str) -> tuple[str, tuple[tuple[int, int, str], ...]]:
    """A display name in NFC and its words; names repeat across searches, so this is cached."""
    text = unicodedata.normalize("NFC", text)
    return text, tuple(_word_spans(text))


def _segments(text: str, matched_length: Callable[[str], int]) -> list[tuple[str, bool]]:
    """Cut ``text`` (NFC) into runs; ``matched_length(normalised word)`` says how many leading
    normalised characters of each word to mark."""
    text, spans = _display_spans(text)
    segments: list[tuple[str, bool]] = []
    plain_from = 0   # start of the pending unmarked run
    for start, end, norm in spans:
        matched = matched_length(norm)
        if not matched:
            continue
        if matched >= len(norm):
            cut = end
        else:  # mark the original characters that fold into the matched prefix
            folded, cut = 0, start
            while cut < end and folded < matched:
                folded += len(_fold_char(text[cut]))
                cut += 1
        if start > plain_from:
            segments.append((text[plain_from:start], False))
        if segments and segments[-1][1] and start == plain_from:
            segments[-1] = (segments[-1][0] + text[start:cut], True)
        else:
            segments.append((text[start:cut], True))
        plain_from = cut
    if plain_from < len(text):
        segments.append((text[plain_from:], False))
    return segments
