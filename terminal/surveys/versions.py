"""Survey definitions, versioned: every saved text is a new version; one version is current."""
from __future__ import annotations

import json
import time

from terminal.surveys.database import SurveyDatabase
from terminal.surveys.definitions import DEFAULT_DEFINITION, Definition, parse
from terminal.surveys.errors import SurveyInputError


class SurveyVersions:
    def __init__(self, db: SurveyDatabase):
        self.db = db
        self._parsed: dict[tuple[str, int], Definition] = {}   # versions never change once saved

    def ensure_default_survey(self) -> None:
        if not self.db.query("SELECT 1 FROM surveys LIMIT 1").fetchone():
            self.save_definition(DEFAULT_DEFINITION, created_by="installation")

    def save_definition(self, source: str, created_by: str | None = None) -> tuple[str, int]:
        """Validate and store as the next version of its survey; returns (survey id, version).
        Saving text identical to the current version creates no new version."""
        definition = parse(source)
        now = time.time()

        def save(db) -> int:
            row = db.execute("SELECT current_version FROM surveys WHERE id=?", (definition.id,)).fetchone()
            if row:
                latest = db.execute("SELECT MAX(version) FROM survey_versions WHERE survey_id=?",
                                    (definition.id,)).fetchone()[0]
                current = db.execute("SELECT definition FROM survey_versions WHERE survey_id=? AND version=?",
                                     (definition.id, row[0])).fetchone()[0]
                if current == definition.to_json():
                    return row[0]
                version = latest + 1
                db.execute("UPDATE surveys SET current_version=? WHERE id=?", (version, definition.id))
            else:
                version = 1
                db.execute("INSERT INTO surveys(id, current_version, created_at) VALUES (?,?,?)",
                           (definition.id, version, now))
            db.execute("INSERT INTO survey_versions(survey_id, version, definition, source, created_at, created_by)"
                       " VALUES (?,?,?,?,?,?)", (definition.id, version, definition.to_json(),
                                                 source if isinstance(source, str) else definition.to_json(),
                                                 now, created_by))
            return version

        version = self.db.write(save)
        self._parsed[(definition.id, version)] = definition
        return definition.id, version

    def activate_version(self, survey_id: str, version: int) -> None:
        """Make an older version current again (a roll-back keeps the version numbers)."""
        def activate(db) -> None:
            if not db.execute("SELECT 1 FROM survey_versions WHERE survey_id=? AND version=?",
                              (survey_id, version)).fetchone():
                raise SurveyInputError(f"survey {survey_id!r} has no version {version}")
            db.execute("UPDATE surveys SET current_version=? WHERE id=?", (version, survey_id))
        self.db.write(activate)

    def definition(self, survey_id: str, version: int) -> Definition | None:
        key = (survey_id, version)
        cached = self._parsed.get(key)
        if cached is not None:
            return cached
        row = self.db.query("SELECT definition FROM survey_versions WHERE survey_id=? AND version=?", key).fetchone()
        if row is None:
            return None
        definition = parse(json.loads(row[0]))
        self._parsed[key] = definition
        return definition

    def current(self, survey_id: str) -> tuple[int, Definition] | None:
        row = self.db.query("SELECT current_version FROM surveys WHERE id=?", (survey_id,)).fetchone()
        if row is None:
            return None
        return row[0], self.definition(survey_id, row[0])

    def surveys(self) -> list[dict]:
        rows = self.db.query(
            "SELECT s.id, s.current_version, COUNT(v.version), MAX(v.created_at) FROM surveys s "
            "JOIN survey_versions v ON v.survey_id = s.id GROUP BY s.id ORDER BY s.id").fetchall()
        return [{"id": r[0], "current_version": r[1], "versions": r[2], "updated_at": r[3],
                 "title": self.definition(r[0], r[1]).title} for r in rows]

    def versions(self, survey_id: str) -> list[dict]:
        rows = self.db.query(
            "SELECT v.version, v.created_at, v.created_by, "
            "(SELECT COUNT(*) FROM answers a WHERE a.survey_id=v.survey_id AND a.version=v.version) "
            "FROM survey_versions v WHERE v.survey_id=? ORDER BY v.version DESC", (survey_id,)).fetchall()
        return [{"version": r[0], "created_at": r[1], "created_by": r[2], "answers": r[3]} for r in rows]

    def source(self, survey_id: str, version: int) -> str | None:
        row = self.db.query("SELECT source FROM survey_versions WHERE survey_id=? AND version=?",
                            (survey_id, version)).fetchone()
        return row[0] if row else None
