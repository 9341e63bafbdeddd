"""``cnap catalogue import | export | validate``: the catalogue's YAML folder and its database.

Exit codes: 0 done, 1 the catalogue has problems (each printed as file: record: field: message),
2 the command could not run (missing folder, unreadable database, refused overwrite).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence, TextIO

from .io import CatalogueError, check_folder, export_folder, import_folder
from .store import CatalogueStoreError

EXIT_OK, EXIT_INVALID, EXIT_FAILED = 0, 1, 2


def default_db_path() -> Path:
    """The catalogue database the kiosk would use, from the settings (instance folder +
    CATALOGUE_DB)."""
    from terminal import settings

    values = settings.load()
    instance = Path(values["INSTANCE_PATH"] or "instance")
    return instance / values["CATALOGUE_DB"]


def add_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("catalogue", help="import, export or validate the service "
                                   "catalogue (YAML folder, see docs/catalogue.md)")
    commands = parser.add_subparsers(dest="catalogue_command", metavar="COMMAND", required=True)

    db_help = "catalogue database (default: <instance>/CATALOGUE_DB from the settings)"
    imp = commands.add_parser("import", help="validate a catalogue folder and replace the stored "
                              "catalogue with it (all or nothing)")
    imp.add_argument("folder", type=Path)
    imp.add_argument("--db", type=Path, help=db_help)
    imp.set_defaults(func=run_import)

    exp = commands.add_parser("export", help="write the stored catalogue as a catalogue folder")
    exp.add_argument("folder", type=Path)
    exp.add_argument("--db", type=Path, help=db_help)
    exp.add_argument("--force", action="store_true",
                     help="replace the catalogue files already in the folder")
    exp.set_defaults(func=run_export)

    val = commands.add_parser("validate", help="check a catalogue folder and list every problem")
    val.add_argument("folder", type=Path)
    val.set_defaults(func=run_validate)
    return parser


def _print_problems(problems: Sequence[object], err: TextIO) -> None:
    for problem in problems:
        print(problem, file=err)
    count = len(problems)
    print(f"{count} problem{'s' if count != 1 else ''} found; nothing was imported.", file=err)


def run_import(args: argparse.Namespace, out: TextIO = sys.stdout,
               err: TextIO = sys.stderr) -> int:
    db = args.db or default_db_path()
    try:
        catalogue = import_folder(args.folder, db)
    except CatalogueError as exc:
        _print_problems(exc.problems, err)
        return EXIT_INVALID
    except (CatalogueStoreError, OSError) as exc:
        print(f"cannot import: {exc}", file=err)
        return EXIT_FAILED
    print(f"imported {len(catalogue.services)} services, {len(catalogue.packages)} packages, "
          f"{len(catalogue.categories)} categories, {len(catalogue.branches)} branches, "
          f"{len(catalogue.news)} news items into {db}", file=out)
    return EXIT_OK


def run_export(args: argparse.Namespace, out: TextIO = sys.stdout,
               err: TextIO = sys.stderr) -> int:
    db = args.db or default_db_path()
    if not Path(db).is_file():
        print(f"cannot export: {db}: no such catalogue database", file=err)
        return EXIT_FAILED
    try:
        catalogue = export_folder(db, args.folder, overwrite=args.force)
    except FileExistsError as exc:
        print(f"cannot export: {exc} (use --force)", file=err)
        return EXIT_FAILED
    except (CatalogueStoreError, OSError) as exc:
        print(f"cannot export: {exc}", file=err)
        return EXIT_FAILED
    print(f"exported {len(catalogue.services)} services to {args.folder}", file=out)
    return EXIT_OK


def run_validate(args: argparse.Namespace, out: TextIO = sys.stdout,
                 err: TextIO = sys.stderr) -> int:
    catalogue, problems = check_folder(args.folder)
    if catalogue is None:
        for problem in problems:
            print(problem, file=err)
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found.", file=err)
        return EXIT_INVALID
    print(f"{args.folder}: valid ({len(catalogue.services)} services, "
          f"{len(catalogue.paid_services())} paid, {len(catalogue.packages)} packages, "
          f"{len(catalogue.categories)} categories, {len(catalogue.branches)} branches, "
          f"{len(catalogue.news)} news items)", file=out)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m terminal.catalogue.cli catalogue validate FOLDER``) until the
    commands are reached through ``cnap``."""
    parser = argparse.ArgumentParser(prog="cnap")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
