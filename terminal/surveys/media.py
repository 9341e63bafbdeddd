"""The tablets' attract loop: which uploaded images and videos it shows, in order, with their
alternative texts (the files themselves live in the instance folder's ``survey_media``)."""
from __future__ import annotations

import time

from terminal.surveys.database import SurveyDatabase


class MediaLibrary:
    def __init__(self, db: SurveyDatabase):
        self.db = db

    def add(self, filename: str, kind: str, alt_uk: str, alt_en: str, duration_s: int, size: int) -> int:
        def add(db) -> int:
            position = db.execute("SELECT COALESCE(MAX(position), 0) + 1 FROM media").fetchone()[0]
            return db.execute("INSERT INTO media(filename, kind, alt_uk, alt_en, duration_s, position, size, "
                              "created_at) VALUES (?,?,?,?,?,?,?,?)",
                              (filename, kind, alt_uk, alt_en, duration_s, position, size, time.time())).lastrowid
        return self.db.write(add)

    def all(self) -> list[dict]:
        rows = self.db.query("SELECT id, filename, kind, alt_uk, alt_en, duration_s, size FROM media "
                             "ORDER BY position, id").fetchall()
        return [{"id": r[0], "filename": r[1], "kind": r[2], "alt": {"uk": r[3], "en": r[4]},
                 "duration_s": r[5], "size": r[6]} for r in rows]

    def remove(self, media_id: int) -> str | None:
        """Forget one item; returns its file name for the caller to delete (None: unknown)."""
        def remove(db) -> str | None:
            row = db.execute("SELECT filename FROM media WHERE id=?", (media_id,)).fetchone()
            db.execute("DELETE FROM media WHERE id=?", (media_id,))
            return row[0] if row else None
        return self.db.write(remove)
