"""The kiosk's internet file (``internet.sqlite`` in the instance folder): the allowlist as
service mode edits it, and the browsing counters the monitoring agent reports.

Allowlist
    Seeded once from the setting INTERNET_ALLOWLIST when the file is new; from then on the file
    is the truth (a site removed in service mode stays removed after a restart, and an emptied
    list stays empty). Who changed what and when is written to service mode's audit log by the
    view (terminal/views/internet.py), not here.

Counters, per local day
    sessions started, sessions ended by reason, minutes browsed (stored as seconds), and blocked
    attempts per host per layer ("hook": the window's navigation hook, "proxy": the filtering
    proxy). Hosts are ASCII host names only — never a path, a query or anything about the
    visitor. A day holds at most ``max_hosts`` distinct hosts; attempts at further hosts are
    counted under the host "other", so a page that tries thousands of random names cannot fill
    the disk. Days older than ``keep_days`` are deleted.

Writes come from the web server's threads and from the window's event thread: one writer thread
runs them (common/storage.py SingleWriter); reads use short-lived connections (WAL).
"""
from __future__ import annotations

import contextlib
import re
import time
from datetime import date, datetime, timedelta
from typing import Callable, Iterable

from common import storage
from terminal.internet.allowlist import MAX_DOMAINS, DomainError, normalise_domain

FILE_NAME = "internet.sqlite"
OTHER_HOST = "other"            # where attempts beyond the day's distinct-host cap are counted
MAX_HOSTS_PER_DAY = 1000
KEEP_DAYS = 90
LAYERS = ("hook", "proxy")
END_REASONS = ("user", "session_limit", "idle", "stopped", "error")
MAX_HOST_CHARS = 253
_HOST = re.compile(r"[a-z0-9.-]{1,253}")
# One ended session counts at most this long (a window's clock gone wrong must not add days).
MAX_SESSION_S = 24 * 3600

MIGRATIONS = (
    """
    CREATE TABLE allowlist (domain TEXT PRIMARY KEY, added_at REAL NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE daily (day TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL DEFAULT 0,
                        PRIMARY KEY (day, name));
    CREATE TABLE blocked (day TEXT NOT NULL, layer TEXT NOT NULL, host TEXT NOT NULL,
                          attempts INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (day, layer, host));
    """,
)


def safe_host(host) -> str:
    """``host`` as the counters keep it: lower-case ASCII host name characters only, else "other"."""
    if not isinstance(host, str):
        return OTHER_HOST
    name = host.strip().rstrip(".").lower()[:MAX_HOST_CHARS]
    return name if _HOST.fullmatch(name) else OTHER_HOST


class InternetStore:
    def __init__(self, path: str, *, clock: Callable[[], float] = time.time,
                 today: Callable[[], date] | None = None, max_hosts: int = MAX_HOSTS_PER_DAY,
                 keep_days: int = KEEP_DAYS):
        self.path = path
        self.clock = clock
        self.today = today or (lambda: datetime.fromtimestamp(self.clock()).date())
        self.max_hosts = max_hosts
        self.keep_days = keep_days
        with self._read() as db:
            storage.migrate(db, MIGRATIONS, name=f"internet database {path}")
        self._writer = storage.SingleWriter(
            lambda: storage.connect(path, busy_timeout_s=10, synchronous="NORMAL"),
            name="internet-writer", label="internet database").start()
        self._pruned_for: str | None = None

    def close(self) -> None:
        self._writer.close()

    @contextlib.contextmanager
    def _read(self):
        with storage.opened(self.path, busy_timeout_s=10) as db:
            yield db

    # --- allowlist -----------------------------------------------------------------------
    def seed(self, domains: Iterable[str]) -> int:
        """Put ``domains`` on a list that was never seeded; returns how many were added (0 on a
        seeded file). Entries that are not domains are skipped (the settings check names them)."""
        names = []
        for domain in domains:
            try:
                name = normalise_domain(domain)
            except DomainError:
                continue
            if name not in names:
                names.append(name)

        def write(db):
            if db.execute("SELECT 1 FROM meta WHERE key='seeded'").fetchone():
                return 0
            now = self.clock()
            db.executemany("INSERT OR IGNORE INTO allowlist(domain, added_at) VALUES (?,?)",
                           [(n, now) for n in names[:MAX_DOMAINS]])
            db.execute("INSERT INTO meta(key, value) VALUES ('seeded', ?)", (str(now),))
            return min(len(names), MAX_DOMAINS)
        return self._writer.write(write)

    def domains(self) -> list[str]:
        with self._read() as db:
            return [row[0] for row in db.execute("SELECT domain FROM allowlist ORDER BY domain")]

    def add(self, text: str) -> tuple[str, bool]:
        """Normalise and add; ``(domain, added)`` — added False when it was already there.
        DomainError (``code``) when it is not a domain or the list is full."""
        name = normalise_domain(text)

        def write(db):
            if db.execute("SELECT 1 FROM allowlist WHERE domain=?", (name,)).fetchone():
                return False
            if db.execute("SELECT COUNT(*) FROM allowlist").fetchone()[0] >= MAX_DOMAINS:
                raise DomainError("too_many", f"an allowlist holds at most {MAX_DOMAINS} domains")
            db.execute("INSERT INTO allowlist(domain, added_at) VALUES (?,?)", (name, self.clock()))
            return True
        return name, self._writer.write(write)

    def remove(self, domain: str) -> bool:
        if not isinstance(domain, str) or len(domain) > MAX_HOST_CHARS:
            return False
        return self._writer.write(
            lambda db: db.execute("DELETE FROM allowlist WHERE domain=?", (domain,)).rowcount > 0)

    # --- counters ------------------------------------------------------------------------
    def _day(self) -> str:
        return self.today().isoformat()

    def _bump(self, db, day: str, name: str, amount: int = 1) -> None:
        db.execute("INSERT INTO daily(day, name, value) VALUES (?,?,?) "
                   "ON CONFLICT(day, name) DO UPDATE SET value = value + excluded.value", (day, name, amount))

    def _prune(self, db, day: str) -> None:
        if self._pruned_for == day:
            return
        oldest = (date.fromisoformat(day) - timedelta(days=self.keep_days)).isoformat()
        db.execute("DELETE FROM daily WHERE day < ?", (oldest,))
        db.execute("DELETE FROM blocked WHERE day < ?", (oldest,))
        self._pruned_for = day

    def session_started(self) -> None:
        day = self._day()

        def write(db):
            self._prune(db, day)
            self._bump(db, day, "sessions_started")
        self._writer.write(write)

    def session_ended(self, reason: str, seconds) -> None:
        day = self._day()
        reason = reason if reason in END_REASONS else "error"
        try:
            whole = int(min(max(float(seconds), 0.0), MAX_SESSION_S))
        except (TypeError, ValueError, OverflowError):
            whole = 0

        def write(db):
            self._bump(db, day, f"ended_{reason}")
            self._bump(db, day, "seconds", whole)
        self._writer.write(write)

    def blocked(self, layer: str, host) -> None:
        day, layer, host = self._day(), (layer if layer in LAYERS else "hook"), safe_host(host)

        def write(db):
            self._prune(db, day)
            known = db.execute("SELECT 1 FROM blocked WHERE day=? AND host=?", (day, host)).fetchone()
            target = host
            if not known and host != OTHER_HOST:
                distinct = db.execute("SELECT COUNT(DISTINCT host) FROM blocked WHERE day=? AND host != ?",
                                      (day, OTHER_HOST)).fetchone()[0]
                if distinct >= self.max_hosts:
                    target = OTHER_HOST
            db.execute("INSERT INTO blocked(day, layer, host, attempts) VALUES (?,?,?,1) "
                       "ON CONFLICT(day, layer, host) DO UPDATE SET attempts = attempts + 1", (day, layer, target))
            self._bump(db, day, f"blocked_{layer}")
        self._writer.write(write)

    def day_counters(self, day: date | None = None, top: int = 10) -> dict:
        """One day's counters (today by default): ``{"day", "sessions_started", "sessions_ended":
        {reason: n}, "minutes", "blocked": {layer: n}, "top_blocked": [{"host", "attempts"}]}``,
        the top list merged over both layers, most attempts first."""
        key = (day or self.today()).isoformat()
        with self._read() as db:
            values = dict(db.execute("SELECT name, value FROM daily WHERE day=?", (key,)).fetchall())
            rows = db.execute("SELECT host, SUM(attempts) AS n FROM blocked WHERE day=? GROUP BY host "
                              "ORDER BY n DESC, host LIMIT ?", (key, max(0, int(top)))).fetchall()
        return {"day": key,
                "sessions_started": values.get("sessions_started", 0),
                "sessions_ended": {reason: values.get(f"ended_{reason}", 0) for reason in END_REASONS},
                "minutes": round(values.get("seconds", 0) / 60, 1),
                "blocked": {layer: values.get(f"blocked_{layer}", 0) for layer in LAYERS},
                "top_blocked": [{"host": host, "attempts": n} for host, n in rows]}
