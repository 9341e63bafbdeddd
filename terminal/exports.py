"""``cnap export payments|surveys … --to DIR``: staff exports written to a folder, usually a USB
stick, instead of being downloaded in the kiosk window (which refuses every download).

Each export is a new file in ``DIR``, created owner-read/write only (0600, where the file system
keeps modes), written completely and fsync'ed together with its folder before the command says it
is done, so pulling the stick right after the message loses nothing. An existing file is never
overwritten; a file system that fills up leaves no partial file behind. The files hold payers'
personal data (bank registry) or staff names (survey answers): see docs/payments.md and
docs/surveys.md for who may carry them.

    cnap export payments --date 2026-11-23 --to /media/usb   # the day's bank registry (CSV or --format json)
    cnap export surveys --from 2026-11-01 --until 2026-11-30 --to /media/usb   # raw survey answers (CSV)
"""
from __future__ import annotations

import argparse
import errno
import io
import os
import sys
from datetime import date
from typing import Iterable

# Text is handed to the file in pieces of about this many characters (a year of survey answers
# is not held in memory).
_CHUNK_CHARS = 256 * 1024


class ExportError(Exception):
    """A problem the staff member can fix (wrong folder, file already there, stick full)."""


def add_commands(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("export", help="write the bank registry or survey answers to a folder "
                                   "(a USB stick), never as a download in the kiosk window")
    commands = parser.add_subparsers(dest="export_command", metavar="WHAT", required=True)
    pay = commands.add_parser("payments", help="one day's bank registry (docs/payments.md, 'Bank registry')")
    pay.add_argument("--date", required=True, help="YYYY-MM-DD (the kiosk's time zone)")
    pay.add_argument("--format", choices=("csv", "json"), default="csv")
    pay.set_defaults(func=run_payments)
    surveys = commands.add_parser("surveys", help="raw survey answers of a period (docs/surveys.md, 'Reports')")
    surveys.add_argument("--from", dest="date_from", required=True, help="first day, YYYY-MM-DD")
    surveys.add_argument("--until", dest="date_until", help="last day, YYYY-MM-DD (default: the first day)")
    surveys.set_defaults(func=run_surveys)
    for command in (pay, surveys):
        command.add_argument("--to", required=True, metavar="DIR",
                             help="existing folder to write the file into, e.g. /media/usb")
        command.add_argument("--instance", help="instance folder (default: CNAP_INSTANCE_PATH or ./instance)")
    return parser


def write_new_file(directory: str, name: str, chunks: Iterable[str]) -> tuple[str, int]:
    """Writes ``chunks`` (UTF-8) to a new file ``directory/name``, mode 0600, fsync'ed with its
    folder. Returns (path, bytes written). Raises ExportError, leaving no partial file."""
    if not os.path.isdir(directory):
        raise ExportError(f"{directory} is not a folder (is the USB stick mounted?)")
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise ExportError(f"{path} already exists; not overwritten (move it away or choose another folder)")
    except OSError as exc:
        raise ExportError(f"cannot create {path}: {exc.strerror}") from exc
    written = 0
    try:
        with os.fdopen(fd, "wb", closefd=True) as out:
            for chunk in chunks:
                data = chunk.encode("utf-8")
                out.write(data)
                written += len(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException as exc:
        try:
            os.unlink(path)
        except OSError:
            pass
        if isinstance(exc, OSError):
            why = "the folder's file system is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror
            raise ExportError(f"cannot write {path}: {why}; nothing was left behind") from exc
        raise
    _fsync_folder(directory)
    return path, written


def _fsync_folder(directory: str) -> None:
    # The new directory entry must reach the stick too, not only the file's data.
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (vfat on a few kernels) refuse fsync on a folder; the file is synced
    finally:
        os.close(fd)


def _settings(args) -> dict:
    from terminal import settings as settings_module

    instance = args.instance or os.environ.get("CNAP_INSTANCE_PATH") or "instance"
    values = settings_module.load({"INSTANCE_PATH": instance} if args.instance else None, instance_path=instance)
    values.setdefault("INSTANCE_PATH", instance)
    values["INSTANCE_PATH"] = values["INSTANCE_PATH"] or instance
    return values


def _day(text: str | None, what: str) -> date:
    try:
        return date.fromisoformat(text or "")
    except ValueError:
        raise ExportError(f"{what} {text!r} is not YYYY-MM-DD") from None


def _chunked(text: str) -> Iterable[str]:
    for start in range(0, len(text), _CHUNK_CHARS):
        yield text[start:start + _CHUNK_CHARS]


def run_payments(args) -> int:
    from payments import registry

    try:
        day = _day(args.date, "--date")
        values = _settings(args)
        journal = os.path.join(values["INSTANCE_PATH"], values["JOURNAL_DB"])
        if not os.path.exists(journal):
            raise ExportError(f"no payment journal at {journal}")
        data = registry.build(journal, day, values["TERMINAL_ID"], values["TIMEZONE"])
        text = registry.to_csv(data) if args.format == "csv" else registry.to_json(data)
        name = f"bank-registry-{_safe(values['TERMINAL_ID'])}-{day.isoformat()}.{args.format}"
        path, size = write_new_file(args.to, name, _chunked(text))
    except ExportError as exc:
        return _fail("payments", exc)
    if data.get("payer_data_redacted"):
        print(f"cnap export payments: {data['payer_data_redacted']} payment(s) are older than the personal "
              "data retention: their payer columns are empty", file=sys.stderr)
    print(f"cnap export payments: wrote {path} ({size} bytes, {data['totals']['count']} payment(s)); "
          "it holds payers' personal data", flush=True)
    return 0


def run_surveys(args) -> int:
    from payments import csvsafe
    from terminal.surveys import reports
    from terminal.surveys.store import SurveyStore

    try:
        first = _day(args.date_from, "--from")
        last = _day(args.date_until, "--until") if args.date_until else first
        if last < first:
            raise ExportError("--until is before --from")
        values = _settings(args)
        db = os.path.join(values["INSTANCE_PATH"], values["SURVEYS_DB"])
        if not os.path.exists(db):
            raise ExportError(f"no survey database at {db}")
        store = SurveyStore(db, timezone=values["TIMEZONE"])
        try:
            admin_names = {a.id: a.name for a in store.administrators()}
            filters = reports.Filters(first, last)

            def chunks():
                buffer = io.StringIO()
                writer = csvsafe.writer(buffer)  # the same cells as service mode's CSV download
                buffer.write("\ufeff")  # Excel opens UTF-8 Ukrainian text correctly only with a BOM
                writer.writerow(reports.CSV_COLUMNS)
                for row in reports.csv_rows(store, filters, admin_names):
                    writer.writerow(row)
                    if buffer.tell() >= _CHUNK_CHARS:
                        yield buffer.getvalue()
                        buffer.seek(0)
                        buffer.truncate()
                yield buffer.getvalue()

            name = f"survey-answers-{first.isoformat()}-{last.isoformat()}.csv"
            path, size = write_new_file(args.to, name, chunks())
        finally:
            store.close()
    except ExportError as exc:
        return _fail("surveys", exc)
    print(f"cnap export surveys: wrote {path} ({size} bytes)", flush=True)
    return 0


def _safe(text: str) -> str:
    """A setting's value as part of a file name: letters, digits, dot, dash, underscore."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in str(text))[:40] or "kiosk"


def _fail(what: str, exc: ExportError) -> int:
    print(f"cnap export {what}: {exc}", file=sys.stderr)
    return 1
