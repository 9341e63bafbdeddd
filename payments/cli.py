"""`cnap payments export --date YYYY-MM-DD --format csv|json [--out FILE]` and
`cnap payments encashments [--out FILE]`."""
from __future__ import annotations

import argparse
import os
import sys
from datetime import date

from payments import registry


def add_commands(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("payments", help="payment journal tools (bank registry export)")
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
    return parser


def _journal_path(args) -> tuple[str, dict]:
    from terminal import settings as settings_module

    instance = args.instance or os.environ.get("CNAP_INSTANCE_PATH") or "instance"
    values = settings_module.load({"INSTANCE_PATH": instance} if args.instance else None, instance_path=instance)
    return args.journal or os.path.join(values.get("INSTANCE_PATH") or instance, values["JOURNAL_DB"]), values


def run_encashments(args) -> int:
    import json

    from payments.journal import read_records

    path, _ = _journal_path(args)
    if not os.path.exists(path):
        print(f"cnap payments encashments: no journal at {path}", file=sys.stderr)
        return 1
    reports = [dict(r.data, journal_id=r.id, at=r.at) for r in read_records(path)
               if r.payment_id == "encashment" and r.kind == "encashment"]
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
    text = registry.to_csv(data) if args.format == "csv" else registry.to_json(data)
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0
