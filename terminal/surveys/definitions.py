"""Survey definitions: parsing, validation and branching.

A definition is a YAML or JSON document (see ``docs/surveys.md``). Every save makes a new,
immutable version; answers keep the (survey id, version) they were given, so an edit never
changes the meaning of an old answer.

Shape::

    id: desk
    title: {uk: ..., en: ...}
    main:
      text: {uk: ..., en: ...}
      faces:                       # 4 or 5, worst first
        - {id: very_bad, label: {uk: ..., en: ...}, next: why_bad}
    questions:                     # follow-ups; ``next`` on an option branches deeper
      - id: why_bad
        text: {uk: ..., en: ...}
        options:
          - {id: wait, label: {uk: ..., en: ...}, next: wait_where}
    nps: {text: {uk: ..., en: ...}}          # optional 0–10 "would you recommend"
    comment: {text: {...}, max_length: 500}  # optional free text
    thanks: {uk: ..., en: ...}
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from terminal.surveys.antigaming import clean_text

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
MAX_QUESTIONS = 40
MAX_OPTIONS = 12
MAX_DEPTH = 6
MAX_COMMENT_LIMIT = 1000
DEFAULT_COMMENT_LIMIT = 500
MAX_TEXT = 200


class DefinitionError(ValueError):
    """Every problem found in a definition, listed so an editor can fix them all at once."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Option:
    id: str
    label: dict[str, str]
    next: str | None = None


@dataclass(frozen=True)
class Question:
    id: str
    text: dict[str, str]
    options: tuple[Option, ...]

    def option(self, option_id: str) -> Option | None:
        return next((o for o in self.options if o.id == option_id), None)


@dataclass(frozen=True)
class Definition:
    id: str
    title: dict[str, str]
    main: Question
    questions: dict[str, Question]
    thanks: dict[str, str]
    nps: dict[str, str] | None = None
    comment: dict[str, str] | None = None
    comment_max: int = DEFAULT_COMMENT_LIMIT
    raw: dict = field(default_factory=dict, compare=False)

    @property
    def scale(self) -> int:
        return len(self.main.options)

    def score_of(self, face_id: str) -> int | None:
        """Faces are listed worst first: the score is the 1-based position."""
        for position, option in enumerate(self.main.options, start=1):
            if option.id == face_id:
                return position
        return None

    def to_json(self) -> str:
        return json.dumps(self.raw, ensure_ascii=False, sort_keys=True)

    def check_path(self, face_id: str, path: list[tuple[str, str]]) -> str | None:
        """None when ``path`` (question id, option id pairs) follows the branching from the
        face; otherwise what is wrong. A path may stop early (the visitor walked away)."""
        face = self.main.option(face_id)
        if face is None:
            return f"unknown face {face_id!r}"
        expected = face.next
        for question_id, option_id in path:
            if expected is None:
                return f"question {question_id!r} does not follow here"
            if question_id != expected:
                return f"question {question_id!r} does not follow here (expected {expected!r})"
            option = self.questions[question_id].option(option_id)
            if option is None:
                return f"question {question_id!r} has no option {option_id!r}"
            expected = option.next
        return None

    def label(self, question_id: str, option_id: str, lang: str) -> str:
        question = self.main if question_id == "main" else self.questions.get(question_id)
        option = question.option(option_id) if question else None
        return option.label.get(lang) or option.label["uk"] if option else option_id

    def question_text(self, question_id: str, lang: str) -> str:
        question = self.main if question_id == "main" else self.questions.get(question_id)
        return (question.text.get(lang) or question.text["uk"]) if question else question_id


def _text(value: Any, where: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        problems.append(f"{where}: needs Ukrainian and English text ({{uk: ..., en: ...}})")
        return {"uk": "?", "en": "?"}
    result = {}
    for lang in ("uk", "en"):
        text = value.get(lang)
        if isinstance(text, str):
            text = clean_text(text, multiline=False)   # shown to visitors: nothing invisible
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: the {lang} text is missing")
            text = "?"
        elif len(text) > MAX_TEXT:
            problems.append(f"{where}: the {lang} text is longer than {MAX_TEXT} characters")
        result[lang] = text.strip()
    return result


def _options(items: Any, where: str, problems: list[str]) -> tuple[Option, ...]:
    if not isinstance(items, list) or not items:
        problems.append(f"{where}: needs a list of options")
        return ()
    if len(items) > MAX_OPTIONS:
        problems.append(f"{where}: at most {MAX_OPTIONS} options")
    options, seen = [], set()
    for i, item in enumerate(items):
        here = f"{where} option {i + 1}"
        if not isinstance(item, dict):
            problems.append(f"{here}: must be a mapping with id and label")
            continue
        option_id = item.get("id")
        if not isinstance(option_id, str) or not ID_RE.match(option_id):
            problems.append(f"{here}: id must be lower-case letters, digits, - or _ (got {option_id!r})")
            continue
        if option_id in seen:
            problems.append(f"{here}: id {option_id!r} is used twice")
        seen.add(option_id)
        nxt = item.get("next")
        if nxt is not None and not isinstance(nxt, str):
            problems.append(f"{here}: next must be a question id")
            nxt = None
        options.append(Option(option_id, _text(item.get("label"), f"{here} label", problems), nxt))
    return tuple(options)


def parse(source: str | bytes | dict) -> Definition:
    """A definition from YAML/JSON text (or an already parsed mapping); raises DefinitionError."""
    if isinstance(source, (str, bytes)):
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise DefinitionError([f"not valid YAML/JSON: {exc}"]) from None
    else:
        data = source
    if not isinstance(data, dict):
        raise DefinitionError(["the file must describe one survey (a mapping with id, main, …)"])
    problems: list[str] = []
    unknown = set(data) - {"id", "title", "main", "questions", "nps", "comment", "thanks"}
    if unknown:
        problems.append(f"unknown keys: {', '.join(sorted(map(str, unknown)))}")
    survey_id = data.get("id")
    if not isinstance(survey_id, str) or not ID_RE.match(survey_id):
        problems.append(f"id must be lower-case letters, digits, - or _ (got {survey_id!r})")
        survey_id = "?"
    title = _text(data.get("title"), "title", problems)
    main_raw = data.get("main")
    if not isinstance(main_raw, dict):
        problems.append("main: the one-touch question is missing")
        main_raw = {}
    faces = _options(main_raw.get("faces"), "main faces", problems)
    if faces and not 4 <= len(faces) <= 5:
        problems.append("main faces: there must be 4 or 5 faces, worst first")
    main = Question("main", _text(main_raw.get("text"), "main text", problems), faces)

    questions: dict[str, Question] = {}
    raw_questions = data.get("questions") or []
    if not isinstance(raw_questions, list):
        problems.append("questions: must be a list")
        raw_questions = []
    if len(raw_questions) > MAX_QUESTIONS:
        problems.append(f"questions: at most {MAX_QUESTIONS}")
    for i, item in enumerate(raw_questions):
        if not isinstance(item, dict):
            problems.append(f"question {i + 1}: must be a mapping")
            continue
        qid = item.get("id")
        if not isinstance(qid, str) or not ID_RE.match(qid) or qid == "main":
            problems.append(f"question {i + 1}: id must be lower-case letters, digits, - or _ "
                            f"and not 'main' (got {qid!r})")
            continue
        if qid in questions:
            problems.append(f"question {qid!r}: id is used twice")
        questions[qid] = Question(qid, _text(item.get("text"), f"question {qid!r} text", problems),
                                  _options(item.get("options"), f"question {qid!r}", problems))

    for question in (main, *questions.values()):
        for option in question.options:
            if option.next is not None and option.next not in questions:
                problems.append(f"{question.id} option {option.id!r}: next question {option.next!r} "
                                f"does not exist")

    # Branching must end: no cycles and no deeper than MAX_DEPTH follow-ups.
    def depth(qid: str, trail: tuple[str, ...]) -> int:
        if qid in trail:
            problems.append(f"questions loop: {' → '.join(trail + (qid,))}")
            return 0
        q = questions.get(qid)
        if q is None:
            return 0
        return 1 + max((depth(o.next, trail + (qid,)) for o in q.options if o.next), default=0)

    deepest = max((depth(o.next, ()) for o in main.options if o.next), default=0)
    if deepest > MAX_DEPTH:
        problems.append(f"follow-ups go {deepest} levels deep; at most {MAX_DEPTH}")

    nps = None
    if data.get("nps") not in (None, False):
        nps_raw = data["nps"] if isinstance(data["nps"], dict) else {}
        nps = _text(nps_raw.get("text"), "nps text", problems)
    comment, comment_max = None, DEFAULT_COMMENT_LIMIT
    if data.get("comment") not in (None, False):
        comment_raw = data["comment"] if isinstance(data["comment"], dict) else {}
        comment = _text(comment_raw.get("text"), "comment text", problems)
        comment_max = comment_raw.get("max_length", DEFAULT_COMMENT_LIMIT)
        if not isinstance(comment_max, int) or isinstance(comment_max, bool) or \
                not 1 <= comment_max <= MAX_COMMENT_LIMIT:
            problems.append(f"comment max_length: a whole number from 1 to {MAX_COMMENT_LIMIT}")
            comment_max = DEFAULT_COMMENT_LIMIT
    thanks = _text(data.get("thanks"), "thanks", problems)
    if problems:
        raise DefinitionError(problems)
    return Definition(survey_id, title, main, questions, thanks, nps, comment, comment_max, raw=data)


def client_view(definition: Definition, version: int) -> dict:
    """What the tablet needs to run the survey (no server-only fields)."""
    def question(q: Question) -> dict:
        return {"id": q.id, "text": q.text,
                "options": [{"id": o.id, "label": o.label, "next": o.next} for o in q.options]}

    return {"id": definition.id, "version": version, "title": definition.title,
            "main": question(definition.main),
            "questions": {qid: question(q) for qid, q in definition.questions.items()},
            "nps": definition.nps, "comment": definition.comment, "comment_max": definition.comment_max,
            "thanks": definition.thanks}


DEFAULT_DEFINITION = """\
# The survey every new installation starts with. Edit it in service mode (a new version is saved).
id: desk
title: {uk: Оцінка обслуговування, en: Service rating}
main:
  text: {uk: "Як вас обслужили сьогодні?", en: "How were you served today?"}
  faces:
    - {id: very_bad, label: {uk: Дуже погано, en: Very poor}, next: why_bad}
    - {id: bad, label: {uk: Погано, en: Poor}, next: why_bad}
    - {id: neutral, label: {uk: Задовільно, en: Fair}, next: improve}
    - {id: good, label: {uk: Добре, en: Good}, next: liked}
    - {id: very_good, label: {uk: Чудово, en: Excellent}, next: liked}
questions:
  - id: why_bad
    text: {uk: "Що саме не сподобалося?", en: "What went wrong?"}
    options:
      - {id: waiting, label: {uk: Довге очікування, en: Long wait}, next: waiting_where}
      - {id: politeness, label: {uk: Неввічливість, en: Impoliteness}}
      - {id: competence, label: {uk: Некомпетентність, en: Lack of competence}}
      - {id: documents, label: {uk: Незрозуміло, які документи, en: Unclear which documents}}
      - {id: premises, label: {uk: Приміщення, en: Premises}}
  - id: waiting_where
    text: {uk: "Де довелося чекати?", en: "Where did you have to wait?"}
    options:
      - {id: queue, label: {uk: У черзі до вікна, en: In the queue for a desk}}
      - {id: at_desk, label: {uk: Біля вікна, en: At the desk}}
      - {id: payment, label: {uk: Під час оплати, en: While paying}}
  - id: improve
    text: {uk: "Що покращити?", en: "What should we improve?"}
    options:
      - {id: speed, label: {uk: Швидкість, en: Speed}}
      - {id: information, label: {uk: Інформування, en: Information}}
      - {id: comfort, label: {uk: Комфорт, en: Comfort}}
  - id: liked
    text: {uk: "Що сподобалося найбільше?", en: "What did you like most?"}
    options:
      - {id: speed, label: {uk: Швидкість, en: Speed}}
      - {id: politeness, label: {uk: Ввічливість, en: Politeness}}
      - {id: competence, label: {uk: Компетентність, en: Competence}}
      - {id: comfort, label: {uk: Комфорт, en: Comfort}}
nps:
  text: {uk: "Наскільки ймовірно, що ви порекомендуєте ЦНАП знайомим?",
         en: "How likely are you to recommend the ЦНАП to friends?"}
comment:
  text: {uk: "Бажаєте щось додати?", en: "Anything to add?"}
  max_length: 500
thanks: {uk: Дякуємо за вашу оцінку!, en: Thank you for your rating!}
"""
