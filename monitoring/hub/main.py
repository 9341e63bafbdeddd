"""``cnap hub``: the monitoring hub for facility staff, as one process or spread over machines.

    cnap hub                       web app + alert evaluator + notifier (+ ingest workers when
                                   HUB_MQTT_HOST is set), until SIGTERM / Ctrl+C
    cnap hub ingest [--workers N]  ingest workers only: more of them on other machines share the
                                   central broker's stream (MQTT 5 shared subscription)
    cnap hub staff add NAME ROLE   a staff member for the web app (PIN read from standard input)

Every part talks to the others only through the store (HUB_STORE: SQLite by default, PostgreSQL
for a region or the country; see docs/monitoring.md), so any of them can run on its own machine:
ingest writes the tables, the evaluator reads them and writes alerts and notifications, the
notifier sends, the web app reads and queues staff actions.
"""
from __future__ import annotations

import argparse
import getpass
import logging
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from common import lifecycle

log = logging.getLogger("cnap.hub")

STAFF_FILE = "hub-staff.db"
STORE_FILE = "hub.db"
WEB_SETTINGS = {   # the web app's own names (monitoring/hub/web.py DEFAULTS) ← cnap settings
    "SECRET_KEY": "HUB_SECRET_KEY", "SESSION_IDLE_S": "HUB_SESSION_IDLE_S", "HTTPS": "HUB_HTTPS",
    "DEFAULT_LANGUAGE": "DEFAULT_LANGUAGE", "COMMAND_TTL_S": "HUB_COMMAND_TTL_S",
}


def add_commands(sub) -> None:
    hub = sub.add_parser("hub", help="the monitoring hub: web app, alerts, notifications, ingest")
    hub.add_argument("--port", type=int, default=None, help="web port (default HUB_PORT; 0: any free port)")
    hub.add_argument("--instance", default=None, help="instance folder (cnap.toml, the hub's SQLite files)")
    hub.add_argument("--no-ingest", action="store_true", help="do not read the broker here (ingest runs elsewhere)")
    hub.set_defaults(func=_run_hub)
    commands = hub.add_subparsers(dest="hub_command", metavar="COMMAND")
    ingest = commands.add_parser("ingest", help="ingest workers only (share the stream with other hubs)")
    ingest.add_argument("--workers", type=int, default=None, help="processes (default HUB_INGEST_WORKERS)")
    # SUPPRESS: `cnap hub --instance X ingest` keeps X (a subcommand's default would overwrite it)
    ingest.add_argument("--instance", default=argparse.SUPPRESS)
    ingest.set_defaults(func=_run_ingest_only)
    staff = commands.add_parser("staff", help="the web app's staff")
    staff_commands = staff.add_subparsers(dest="staff_command", metavar="ACTION", required=True)
    add = staff_commands.add_parser("add", help="add a member; the PIN is read from standard input")
    add.add_argument("name")
    add.add_argument("role", choices=("technician", "manager", "admin"))
    add.add_argument("--instance", default=argparse.SUPPRESS)
    add.set_defaults(func=_staff_add)


# --- settings and parts -----------------------------------------------------------------------------
def load_settings(instance: str | None) -> dict[str, Any]:
    from terminal import settings as settings_module

    values = settings_module.load({"INSTANCE_PATH": instance} if instance else None, instance_path=instance)
    folder = Path(values.get("INSTANCE_PATH") or Path.cwd() / "instance").resolve()
    values["INSTANCE_PATH"] = str(folder)
    return values


def store_url(values: Mapping[str, Any]) -> str:
    return values.get("HUB_STORE") or str(Path(values["INSTANCE_PATH"]) / STORE_FILE)


def open_staff(values: Mapping[str, Any]):
    from terminal.staff import StaffStore

    folder = Path(values["INSTANCE_PATH"])
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return StaffStore(str(folder / STAFF_FILE))


def web_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: values[setting] for name, setting in WEB_SETTINGS.items() if setting in values}


def ingest_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """IngestWorker's arguments from the HUB_MQTT_* settings."""
    return {"store_url": store_url(values), "host": values["HUB_MQTT_HOST"], "port": int(values["HUB_MQTT_PORT"]),
            "username": values["HUB_MQTT_USERNAME"] or None, "password": values["HUB_MQTT_PASSWORD"] or None,
            "ca_file": values["HUB_MQTT_CA_FILE"] or None, "group": values["HUB_SHARED_GROUP"],
            "client_id": values["HUB_MQTT_CLIENT_ID"], "protocol": values["HUB_MQTT_PROTOCOL"]}


class Hub:
    """The parts of one hub process; ``start`` returns the web app's URL."""

    def __init__(self, values: Mapping[str, Any], *, ingest: bool = True, clock: Callable[[], float] | None = None):
        from monitoring.hub import schema
        from monitoring.hub.db import open_store
        from monitoring.hub.evaluator import Evaluator
        from monitoring.hub.notify import Notifier, settings_from
        from monitoring.hub.web import create_hub_app

        self.values = dict(values)
        kwargs = {"clock": clock} if clock else {}
        self.store = schema.ensure(open_store(store_url(values)))
        self.staff = open_staff(values)
        self.evaluator = Evaluator.from_settings(self.store, values, **kwargs)
        self.notifier = Notifier(self.store, settings_from(values), **kwargs)
        self.app = create_hub_app(web_settings(values) | ({"CLOCK": clock} if clock else {}), self.store, self.staff)
        self.ingest = ingest and bool(values.get("HUB_MQTT_HOST"))
        self.workers = None
        self.server = None
        self.url: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, port: int | None = None) -> str:
        from terminal.server import BackgroundServer

        host = self.values["HUB_HOST"]
        self.server = BackgroundServer(self.app, host, self.values["HUB_PORT"] if port is None else port,
                                       threads=int(self.values["HUB_HTTP_THREADS"]))
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{self.server.port}"
        interval = float(self.values["HUB_EVALUATE_INTERVAL_S"])
        for name, target in (("hub-evaluator", lambda: self.evaluator.run(self._stop, interval)),
                             ("hub-notifier", lambda: self.notifier.run(self._stop, interval))):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        from monitoring.hub.web import hub_state

        sources = hub_state(self.app).metric_sources
        sources.update(evaluator=self.evaluator.metrics, notifier=self.notifier.metrics)
        if self.ingest:
            from monitoring.hub.worker import run_workers

            self.workers = run_workers(int(self.values["HUB_INGEST_WORKERS"]), **ingest_options(self.values))
            sources["ingest"] = self.ingest_counters
        return self.url

    def ingest_counters(self) -> dict[str, float]:
        """The workers' counters summed (what each reported last)."""
        totals: dict[str, float] = {}
        for counters in self.workers.snapshots().values():
            for name, value in counters.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    totals[name] = totals.get(name, 0) + value
        return totals

    def stop(self) -> None:
        """The web app first (no new staff actions), then ingest (drains what it received), then
        the evaluator and notifier finish their round."""
        if self.server is not None:
            self.server.stop()
        if self.workers is not None:
            self.workers.stop()
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        self.staff.close()
        self.store.close()


# --- commands -----------------------------------------------------------------------------------
def _settings_or_exit(args) -> dict[str, Any] | None:
    from terminal import settings as settings_module

    try:
        return load_settings(getattr(args, "instance", None))
    except settings_module.SettingError as exc:
        print(f"cnap hub: {exc}", file=sys.stderr)
        return None


def _run_hub(args) -> int:
    from monitoring.hub.db import StoreError

    values = _settings_or_exit(args)
    if values is None:
        return 2
    try:
        hub = Hub(values, ingest=not args.no_ingest)
    except (StoreError, ValueError) as exc:
        print(f"cnap hub: {exc}", file=sys.stderr)
        return 2
    try:
        url = hub.start(args.port)
    except OSError as exc:
        hub.stop()
        print(f"cnap hub: cannot listen on {values['HUB_HOST']}:{values['HUB_PORT'] if args.port is None else args.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    if not hub.staff.members(active_only=True):
        print("cnap hub: no staff yet; add one with `cnap hub staff add NAME technician`", flush=True)
    source = (f"ingest from {values['HUB_MQTT_HOST']}:{values['HUB_MQTT_PORT']} "
              f"({values['HUB_INGEST_WORKERS']} worker(s))" if hub.ingest else "no ingest here")
    print(f"cnap hub: listening on {url} (store {hub.store.engine}; {source})", flush=True)
    with lifecycle.stop_on_signals("cnap hub", log) as stop:
        try:
            lifecycle.wait(stop)
        finally:
            hub.stop()
    print("cnap hub: stopped", flush=True)
    return 0


def _run_ingest_only(args) -> int:
    from monitoring.hub import schema
    from monitoring.hub.db import StoreError, open_store
    from monitoring.hub.worker import run_workers

    values = _settings_or_exit(args)
    if values is None:
        return 2
    if not values.get("HUB_MQTT_HOST"):
        print("cnap hub ingest: HUB_MQTT_HOST is not set (the central broker to read)", file=sys.stderr)
        return 2
    try:
        schema.ensure(open_store(store_url(values))).close()
    except StoreError as exc:
        print(f"cnap hub ingest: {exc}", file=sys.stderr)
        return 2
    workers = int(args.workers or values["HUB_INGEST_WORKERS"])
    pool = run_workers(workers, **ingest_options(values))
    print(f"cnap hub ingest: {workers} worker(s) reading {values['HUB_MQTT_HOST']}:{values['HUB_MQTT_PORT']}",
          flush=True)
    with lifecycle.stop_on_signals("cnap hub ingest", log) as stop:
        try:
            lifecycle.wait(stop)
        finally:
            pool.stop()
    return 0


def _staff_add(args) -> int:
    from terminal.staff import is_published_sample, valid_pin

    values = _settings_or_exit(args)
    if values is None:
        return 2
    pin = (getpass.getpass("PIN (6-12 digits): ") if sys.stdin.isatty() else sys.stdin.readline()).strip()
    if not valid_pin(pin) or is_published_sample(pin, values["SERVICE_PINS"]):
        print("cnap hub staff add: a PIN is 6 to 12 ASCII digits and not one of the published samples",
              file=sys.stderr)
        return 2
    staff = open_staff(values)
    try:
        member = staff.add(args.name.strip()[:40], args.role, pin)
        staff.audit(None, "staff.add", id=member.id, role=args.role, via="cli")
    except ValueError as exc:
        print(f"cnap hub staff add: {exc}", file=sys.stderr)
        return 2
    finally:
        staff.close()
    print(f"cnap hub staff add: {member.name} ({args.role}) added", flush=True)
    return 0
