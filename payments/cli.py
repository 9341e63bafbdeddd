"""`cnap payments export --date YYYY-MM-DD --format csv|json [--out FILE]`,
`cnap payments encashments [--out FILE]` and `cnap payments redact [--dry-run]`.

The settings (journal file, terminal id, time zone, retention) come from the host through
``load_settings``: payments/ never imports the kiosk (terminal/cli.py passes its settings table)."""
from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from typing import Any, Callable, Mapping

from payments import registry
from payments.streams import ENCASHMENT_STREAM


# instance folder given on the command line (None: the host's default) -> resolved settings,
# with INSTANCE_PATH, JOURNAL_DB, TERMINAL_ID, TIMEZONE and PERSONAL_DATA_RETENTION_DAYS
SettingsLoader = Callable[[str | None], Mapping[str, Any]]


def add_commands(subparsers, *, load_settings: SettingsLoader) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("payments", help="payment journal tools (bank registry export)")
    parser.set_defaults(load_settings=load_settings)
    commands = parser.add_subparsers(dest="payments_command", metavar="COMMAND", required=True)
    exp = commands.add_parser("export", help="one day's completed payments per recipient account "
                              "(docs/payments.md, 'Bank registry')")
    exp.add_argument("--date", required=True, help="YYYY-MM-DD (the kiosk's time zone)")
    exp.add_argument("--format", choices=("csv", "json"), default="csv")
    exp.add_argument("--out", help="file to write (default: standard output)")
    exp.add_argument("--journal", help="journal file (default: <instance>/JOURNAL_DB from the settings)")
    exp.add_argument("--instance", help="instance folder")
    exp.set_defaults(func=run_export)
    enc = commands.add_parser("encashments", help="collection reports (per-denomination counts) as JSON")
    enc.add_argument("--out", help="file to write (default: standard output)")
    enc.add_argument("--journal", help="journal file (default: <instance>/JOURNAL_DB from the settings)")
    enc.add_argument("--instance", help="instance folder")
    enc.set_defaults(func=run_encashments)
    red = commands.add_parser("redact", help="mask payer data past PERSONAL_DATA_RETENTION_DAYS now "
                              "(the kiosk does it at start and every hour)")
    red.add_argument("--dry-run", action="store_true", help="only say what would be redacted")
    red.add_argument("--days", type=int, help="retention in days (default: the setting)")
    red.add_argument("--journal", help="journal file (default: <instance>/JOURNAL_DB from the settings)")
    red.add_argument("--instance", help="instance folder")
    red.set_defaults(func=run_redact)
    return parser


def _journal_path(args) -> tuple[str, Mapping[str, Any]]:
    values = args.load_settings(args.instance)
    return args.journal or os.path.join(values["INSTANCE_PATH"], values["JOURNAL_DB"]), values


def run_encashments(args) -> int:
    import json

    from payments.journal import read_records

    path, _ = _journal_path(args)
    if not os.path.exists(path):
        print(f"cnap payments encashments: no journal at {path}", file=sys.stderr)
        return 1
    reports = [dict(r.data, journal_id=r.id, at=r.at) for r in read_records(path)
               if r.payment_id == ENCASHMENT_STREAM and r.kind == "encashment"]
    text = json.dumps(reports, ensure_ascii=False, indent=2) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def run_export(args) -> int:
    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        print(f"cnap payments export: --date {args.date!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    path, values = _journal_path(args)
    if not os.path.exists(path):
        print(f"cnap payments export: no journal at {path}", file=sys.stderr)
        return 1
    data = registry.build(path, day, values["TERMINAL_ID"], values["TIMEZONE"])
    if data.get("payer_data_redacted"):
        print(f"cnap payments export: {data['payer_data_redacted']} payment(s) of {day} are older than the "
              f"personal data retention ({values['PERSONAL_DATA_RETENTION_DAYS']} days): their payer columns "
              "are empty and payer_id_kind says 'redacted'", file=sys.stderr)
    text = registry.to_csv(data) if args.format == "csv" else registry.to_json(data)
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def run_redact(args) -> int:
    import getpass

    from payments import retention

    path, values = _journal_path(args)
    if not os.path.exists(path):
        print(f"cnap payments redact: no journal at {path}", file=sys.stderr)
        return 1
    days = args.days if args.days is not None else values["PERSONAL_DATA_RETENTION_DAYS"]
    try:
        result = retention.redact(path, days=days, dry_run=args.dry_run, by=f"cli:{getpass.getuser()}")
    except ValueError as exc:
        print(f"cnap payments redact: {exc}", file=sys.stderr)
        return 2
    what = "would be redacted (dry run, nothing changed)" if args.dry_run else "redacted"
    print(f"{len(result.payments)} payment(s) settled more than {days} days ago, {len(result.events)} "
          f"event(s): payer data {what}")
    if not args.dry_run and result.checkpointed is False:
        print("cnap payments redact: a reader kept the WAL busy; old bytes may stay in the -wal file "
              "until the next run", file=sys.stderr)
    return 0
