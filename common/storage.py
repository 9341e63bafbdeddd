"""SQLite for every store of the appliance: one way to open, version, write and close a file.

Connections (``connect``, ``opened``)
    WAL, ``synchronous=FULL`` unless a store asks otherwise, a busy timeout, foreign keys on,
    ``isolation_level=None`` (transactions are explicit: ``BEGIN IMMEDIATE`` takes the write lock
    at once, so a read-then-write decision cannot interleave with another writer's) and
    ``check_same_thread=False`` (a connection may be closed by the thread that shuts a store
    down). ``opened`` closes the connection whatever happens; ``sqlite3.Connection`` used as a
    context manager only commits, it never closes.

Files
    The instance folder holds personal data (terminal/privacy.py), so a database file is created
    0600 before SQLite opens it (its -wal and -shm take the main file's mode) and missing parent
    folders are created 0700. Existing files and folders keep their mode (``privacy.make_private``
    tightens an older instance folder once at start). ``readonly=True`` opens an existing file
    with ``mode=ro`` and creates nothing.

Schema versions (``migrate``)
    SQLite's ``user_version`` counts the migrations a file has had. A store lists its migrations
    in order — SQL text or a function of the connection — and ``migrate`` applies the missing ones
    in one transaction (a second process opening the file meanwhile waits, then finds it done). A
    file newer than the list is refused with ``SchemaTooNew``: this program does not know what it
    would break. Files from before ``user_version`` was used can be given their version by a
    ``legacy_version`` function.

One writer (``SingleWriter``)
    Where writes come from several threads (the web server's pool), one thread owns the write
    connection and runs the writes handed to it through a queue, one after another (the pattern
    of datasette's ``_execute_writes``). Callers wait for their write's result; readers use their
    own connections (``ThreadConnections``), which WAL lets read while the writer writes. Items
    that can share a transaction (the payment journal's events) are batched: whatever queued up
    while one transaction committed goes into the next (group commit).
"""
from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Union

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
BUSY_TIMEOUT_S = 30.0
WRITE_TIMEOUT_S = 300.0      # how long a caller waits for the writer thread before giving up
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

Migration = Union[str, Callable[[sqlite3.Connection], None]]


class StorageError(RuntimeError):
    """A database that cannot be used as asked (closed store, file that cannot be opened)."""


class SchemaTooNew(StorageError):
    """The file was written by a newer release: its schema is unknown to this one."""


# --- files ------------------------------------------------------------------------------------

def prepare_file(path: str | os.PathLike) -> None:
    """Create the missing parent folders (0700) and the file itself (0600) before SQLite does."""
    target = Path(path).absolute()
    missing = []
    parent = target.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:   # made by another thread or process meanwhile
            pass
    if not target.exists():
        # O_CREAT without O_EXCL: a file made meanwhile by another opener is simply used.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE))


# --- connections ------------------------------------------------------------------------------

def connect(path: str | os.PathLike, *, readonly: bool = False, query_only: bool = False,
            synchronous: str = "FULL", busy_timeout_s: float = BUSY_TIMEOUT_S, foreign_keys: bool = True,
            wal: bool = True, secure_delete: bool = False) -> sqlite3.Connection:
    """A connection with the appliance's settings (see the module's docstring).

    ``readonly`` opens an existing file with ``mode=ro`` (tools beside the kiosk; nothing is
    created, not even the file). ``query_only`` keeps a normal connection from writing (a store's
    reader connections, which may still maintain the WAL index). ``secure_delete`` overwrites
    deleted content (payments/retention.py)."""
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS}")
    try:
        if readonly:
            uri = Path(path).absolute().as_uri() + "?mode=ro"
            db = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None,
                                 check_same_thread=False)
        else:
            prepare_file(path)
            db = sqlite3.connect(os.fspath(path), timeout=busy_timeout_s, isolation_level=None,
                                 check_same_thread=False)
    except OSError as exc:
        raise sqlite3.OperationalError(f"unable to open database file {os.fspath(path)!r}: {exc}") from exc
    try:
        if wal and not readonly:
            db.execute("PRAGMA journal_mode=WAL")
        if secure_delete:
            db.execute("PRAGMA secure_delete=ON")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        if query_only:
            db.execute("PRAGMA query_only=ON")
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def opened(path: str | os.PathLike, **options: Any) -> Iterator[sqlite3.Connection]:
    """``connect(path, **options)``, closed when the block ends, however it ends."""
    db = connect(path, **options)
    try:
        yield db
    finally:
        db.close()


def close_quietly(db: sqlite3.Connection | None) -> None:
    """Close ``db`` (None is fine); returns None so callers can write ``db = close_quietly(db)``."""
    if db is not None:
        try:
            db.close()
        except sqlite3.Error:
            pass
    return None


def rollback_quietly(db: sqlite3.Connection) -> None:
    """End a transaction that failed; nothing to do when none is open."""
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error:
        pass


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """``BEGIN <mode>`` … ``COMMIT``; any error (the commit's too) rolls back and is raised."""
    if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
        raise ValueError(f"bad transaction mode {mode!r}")
    db.execute(f"BEGIN {mode}")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        rollback_quietly(db)
        raise


class ThreadConnections:
    """One connection per thread, opened on first use by ``open_connection``; ``close`` closes
    every one of them (a store's readers: sqlite3 connections are not to be shared by threads)."""

    def __init__(self, open_connection: Callable[[], sqlite3.Connection]) -> None:
        self._open = open_connection
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._open()
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def __len__(self) -> int:
        with self._lock:
            return len(self._all)

    def close(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
            self._local = threading.local()
        for db in connections:
            close_quietly(db)


# --- schema versions ---------------------------------------------------------------------------

def statements(script: str) -> list[str]:
    """The statements of an SQL script, one by one (``executescript`` would commit the open
    transaction first). Semicolons in strings, comments and trigger bodies are kept."""
    found, buffer = [], ""
    pieces = script.split(";")
    for piece in pieces[:-1]:
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            found.append(buffer.strip())
            buffer = ""
    found.append((buffer + pieces[-1]).strip())   # the text after the last semicolon
    return [s for s in found if s.strip(" \t\r\n;")]


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Execute every statement of ``script`` inside the caller's transaction."""
    for statement in statements(script):
        db.execute(statement)


def user_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration], *, name: str,
            legacy_version: Callable[[sqlite3.Connection], int] | None = None,
            ensure: str | None = None) -> int:
    """Apply the migrations ``db`` has not had yet, in order, in one transaction, and set
    ``user_version`` to their number. Returns the version the file had before (0: a new file).

    ``legacy_version(db)`` gives the version of a file whose ``user_version`` is still 0 (written
    before this scheme; 0 when it is really new). ``ensure``: ``CREATE … IF NOT EXISTS`` script
    run at every opening before the migrations, for a store whose earlier releases added tables
    without counting a version. ``SchemaTooNew`` when the file has more migrations than this
    program knows: nothing is changed."""
    known = len(migrations)
    with transaction(db):
        version = user_version(db)
        if version == 0 and legacy_version is not None:
            version = legacy_version(db)
        if version > known:
            raise SchemaTooNew(f"{name}: schema version {version} is newer than this program understands "
                               f"({known}); upgrade the program")
        if ensure:
            run_script(db, ensure)
        for step in migrations[version:]:
            if isinstance(step, str):
                run_script(db, step)
            else:
                step(db)
        if user_version(db) != known:
            db.execute(f"PRAGMA user_version={known:d}")
    return version


# --- one writer ----------------------------------------------------------------------------------

class _Call:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        self.fn = fn
        self.future: Future = Future()


_STOP = object()


class SingleWriter:
    """One thread owns the write connection; writes reach it through a queue.

    ``write(fn)`` runs ``fn(db)`` inside ``BEGIN IMMEDIATE … COMMIT`` on the writer thread and
    returns its result (or raises its exception, after a rollback); ``call(fn)`` runs it without a
    transaction (work that manages its own, such as a checkpoint). Called from the writer thread
    itself (a write that needs another), both run ``fn`` at once on the same connection.

    Batching (optional): ``put(item)`` queues an item for ``write_batch(db, items) -> bool``,
    which gets everything that queued up meanwhile (at most ``batch_max``) and resolves the
    items' own futures; False means the write failed and the connection is replaced before the
    next one. ``fail_batch(items, exc)`` is told when no connection could be opened for them.

    The connection is opened on demand with ``open_connection()`` and opened afresh after a
    write that failed with an SQLite error: a connection that failed may stay unable to write
    once the cause is gone (SQLite opens a file it may not write read-only, for good)."""

    def __init__(self, open_connection: Callable[[], sqlite3.Connection], *, name: str = "sqlite-writer",
                 write_batch: Callable[[sqlite3.Connection, list], bool] | None = None,
                 fail_batch: Callable[[list, Exception], None] | None = None, batch_max: int = 512,
                 error: type[Exception] = StorageError, label: str = "database") -> None:
        self._open = open_connection
        self._name = name
        self._write_batch = write_batch
        self._fail_batch = fail_batch
        self._batch_max = batch_max
        self._error = error
        self._label = label
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._db: sqlite3.Connection | None = None
        self._closed = False

    # --- lifecycle
    def start(self) -> "SingleWriter":
        if self._closed:
            raise self._error(f"{self._label} is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._closed

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, close the connection and stop the thread."""
        thread, self._thread = self._thread, None
        self._closed = True
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout=timeout)

    def in_writer_thread(self) -> bool:
        return threading.get_ident() == self._thread_id

    # --- handing work to the writer
    def put(self, item: Any) -> None:
        if self._write_batch is None:
            raise TypeError("this writer takes no batch items")
        self._check_running()
        self._queue.put(item)

    def call(self, fn: Callable[[sqlite3.Connection], Any], timeout: float | None = WRITE_TIMEOUT_S) -> Any:
        if self.in_writer_thread() and self._db is not None:
            return fn(self._db)
        self._check_running()
        item = _Call(fn)
        self._queue.put(item)
        return item.future.result(timeout=timeout)

    def write(self, fn: Callable[[sqlite3.Connection], Any], timeout: float | None = WRITE_TIMEOUT_S) -> Any:
        if self.in_writer_thread() and self._db is not None:
            return fn(self._db)   # already inside the transaction of the call that got here

        def in_transaction(db: sqlite3.Connection) -> Any:
            with transaction(db):
                return fn(db)
        return self.call(in_transaction, timeout)

    def _check_running(self) -> None:
        if not self.running:
            raise self._error(f"{self._label} is not running")

    # --- the writer thread
    def _run(self) -> None:
        self._thread_id = threading.get_ident()
        db = None
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is _STOP:
                    break
                if isinstance(first, _Call):
                    db = self._run_call(db, first)
                    continue
                batch = [first]
                call = None
                while len(batch) < self._batch_max:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    if isinstance(item, _Call):   # runs after the items queued before it
                        call = item
                        break
                    batch.append(item)
                try:
                    db = db or self._open()
                except Exception as exc:
                    if self._fail_batch is not None:
                        self._fail_batch(batch, exc)
                else:
                    if not self._write_batch(db, batch):
                        db = close_quietly(db)
                if call is not None:
                    db = self._run_call(db, call)
        finally:
            close_quietly(db)
            self._refuse_the_rest()

    def _run_call(self, db: sqlite3.Connection | None, call: _Call) -> sqlite3.Connection | None:
        try:
            db = db or self._open()
        except Exception as exc:
            call.future.set_exception(self._error(f"{self._label} cannot be opened for writing: {exc}"))
            return None
        self._db = db
        try:
            result = call.fn(db)
        except BaseException as exc:   # the caller gets it; the writer carries on
            rollback_quietly(db)
            call.future.set_exception(exc)
            if isinstance(exc, sqlite3.Error):
                db = close_quietly(db)
        else:
            call.future.set_result(result)
        finally:
            self._db = None
        return db

    def _refuse_the_rest(self) -> None:
        """Calls that raced with ``close`` get an error instead of waiting for ever."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Call):
                item.future.set_exception(self._error(f"{self._label} is closed"))
