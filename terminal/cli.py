"""``cnap``: the one command-line front door of the appliance."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from importlib import import_module
from pathlib import Path

from terminal import settings as settings_module
from terminal import privacy
from terminal.server import BackgroundServer
from terminal.state import state

# Areas add their own subcommands through ``add_commands(subparsers)``; those outside terminal/
# that need the settings get ``load_settings`` (``settings_for_instance``) instead of importing them.
COMMAND_MODULES = (
    "terminal.catalogue.cli",
    "devices.cli",
    "payments.cli",
    "terminal.exports",
    "monitoring.cli",
    "monitoring.hub.main",
    "facility.power.cli",
)
TAKES_SETTINGS = {"payments.cli"}


def settings_for_instance(instance: str | None) -> dict:
    """The settings of ``instance`` (a command's --instance), else of $CNAP_INSTANCE_PATH or
    ./instance; INSTANCE_PATH is always set."""
    folder = instance or os.environ.get("CNAP_INSTANCE_PATH") or "instance"
    values = settings_module.load({"INSTANCE_PATH": folder} if instance else None, instance_path=folder)
    values["INSTANCE_PATH"] = values.get("INSTANCE_PATH") or folder
    return values


# Seconds before a window that ended without a stop request is opened again.
REOPEN_DELAY_S = 2


def run_window(url: str, *, fullscreen: bool, allowed_origins: list[str], stop: threading.Event) -> None:
    """The native window runs in its own process: WebKit needs ~200 MB and may crash; neither
    should touch the process that holds the payment journal. Only a deliberate stop (``stop`` set
    by SIGTERM/SIGINT to `cnap kiosk` or by service mode) ends it: a window that crashed, was
    killed or closed any other way is opened again."""
    command = [sys.executable, "-m", "terminal.shell", "--url", url, "--parent-pid", str(os.getpid())]
    if not fullscreen:
        command.append("--windowed")
    for origin in allowed_origins:
        command += ["--allow-origin", origin]
    log = logging.getLogger("cnap.kiosk")
    while not stop.is_set():
        child = subprocess.Popen(command)
        while child.poll() is None and not stop.wait(0.5):
            pass
        if stop.is_set():
            child.terminate()  # the window closes itself on SIGTERM
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            return
        log.error("kiosk window ended (exit status %s) without a stop request; reopening in %s s",
                  child.returncode, REOPEN_DELAY_S)
        stop.wait(REOPEN_DELAY_S)


def _stop_on_signals(stop: threading.Event) -> dict:
    """SIGTERM and SIGINT (Ctrl+C) are the command line's deliberate stop; returns the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum, _frame):
        logging.getLogger("cnap.kiosk").info("cnap kiosk: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    return {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}


def run_kiosk(args, extra_config: dict | None = None, on_ready=None) -> int:
    from terminal import close_app, create_app

    config = dict(extra_config or {})
    if args.instance:
        config["INSTANCE_PATH"] = args.instance
    app = create_app(config)
    host, port = app.config["HOST"], args.port if args.port is not None else app.config["PORT"]
    tablet_port = args.tablet_port if args.tablet_port is not None else app.config["TABLET_PORT"]
    if args.port == 0 and args.tablet_port is None:
        tablet_port = 0  # "any free port" is meant for both listeners (tests, a second demo)
    try:
        server = BackgroundServer(app, host, port, threads=app.config["HTTP_THREADS"],
                                  tablet_host=app.config["TABLET_HOST"], tablet_port=tablet_port)
    except OSError as exc:  # port taken (a second kiosk?) or address not on this machine
        close_app(app)
        where = "{}:{}".format(*getattr(exc, "listen_address", (host, port)))
        print(f"cnap kiosk: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    url = server.url + "/"
    if server.tablet_url:
        # Service mode offers this as the tablets' server address (change it there for a LAN name).
        app.config["TABLET_URL"] = server.tablet_url
        print(f"cnap kiosk: desk tablets' listener on {server.tablet_url}/tablet/ "
              f"(only the tablet app and the survey API)", flush=True)
    stop = threading.Event()
    previous_handlers = _stop_on_signals(stop)

    def request_stop(reason: str) -> None:
        logging.getLogger("cnap.kiosk").info("cnap kiosk: stop requested (%s)", reason)
        stop.set()

    state(app).kiosk_stop = request_stop  # service mode's "Stop the kiosk"
    try:
        if on_ready is not None:
            on_ready(app, (server.tablet_url or server.url) + "/")
        from terminal import shell  # the only module that imports webview

        if not args.no_window and shell.display_available():
            print(f"cnap kiosk: window open on {url}", flush=True)
            run_window(url, fullscreen=app.config["FULLSCREEN"] and not args.windowed,
                       allowed_origins=app.config["ALLOWED_ORIGINS"], stop=stop)
        else:
            print(f"cnap kiosk: no display; open {url} in a browser (Ctrl+C stops)", flush=True)
            while not stop.wait(1):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        server.stop()
        close_app(app)
    print("cnap kiosk: stopped", flush=True)
    return 0


def cmd_kiosk(args) -> int:
    return run_kiosk(args)


def cmd_demo(args) -> int:
    """The whole appliance on wire-true simulators (separate threads, loopback TCP) and the
    sample catalogue; the simulators' control API lets a presenter insert bills or fail devices.
    The facility controllers run in `cnap agent`, a separate process pointed at the facility
    simulators, as on a real site: a kiosk crash leaves it running (its pid is printed)."""
    from devices import sim as device_sims

    try:
        values = settings_module.load({"INSTANCE_PATH": args.instance} if args.instance else None,
                                      instance_path=args.instance)
    except settings_module.SettingError as exc:
        print(f"cnap demo: {exc}", file=sys.stderr)
        return 2
    sims = device_sims.start_all(host="127.0.0.1")
    for name, url in sims.urls.items():
        print(f"cnap demo: simulator {name} at {url}", flush=True)
    print(f"cnap demo: simulator control API at {sims.http_url} "
          f"(e.g. cnap sim ctl bill_validator insert_bill amount_kop=20000)", flush=True)
    config = {"BILL_VALIDATOR_URL": sims.urls["bill_validator"],
              "CARD_TERMINAL_URL": sims.urls["card_terminal"],
              "PRINTER_URL": sims.urls["printer"]}
    facility_sims, overrides = start_facility_simulators(values)
    # The kiosk gets the same overrides: it may read facility settings of its own (power state).
    config.update({name.upper(): value for name, value in overrides.items()
                   if name.upper() in settings_module.BY_NAME})
    agent = None
    try:
        instance = Path(args.instance or os.environ.get("CNAP_INSTANCE_PATH") or Path.cwd() / "instance").resolve()
        agent, agent_port = start_agent_process(instance, overrides)
        if agent_port is not None:
            config["AGENT_PORT"] = agent_port
        return run_kiosk(args, config, on_ready=print_demo_tablet)
    finally:
        if agent is not None:
            stop_agent_process(agent)
        for simulator in facility_sims:
            try:
                simulator.stop()
            except Exception:
                logging.getLogger("cnap.demo").exception("a facility simulator failed to stop")
        sims.stop()


def start_facility_simulators(values: dict) -> tuple[list, dict]:
    """Each controller package's simulator (facility/base.py); a package that is missing or whose
    simulator fails to start is skipped with a note (the agent then shows it unavailable).
    Returns the simulators and the setting overrides that point the controllers at them."""
    simulators, overrides = [], {}
    for module_name in values["FACILITY_CONTROLLERS"]:
        try:
            module = import_module(module_name)
            real = getattr(module, "real_equipment_configured", None)
            if real is not None and real(values):
                print(f"cnap demo: {module_name} is configured for real equipment; no simulator", flush=True)
                continue
            simulator = module.start_simulator(dict(values))
        except ImportError as exc:
            print(f"cnap demo: no facility package {module_name} ({exc}); skipping its simulator", flush=True)
            continue
        except Exception as exc:
            print(f"cnap demo: simulator of {module_name} did not start ({type(exc).__name__}: {exc}); "
                  "skipping it", flush=True)
            continue
        simulators.append(simulator)
        overrides.update(getattr(simulator, "settings", None) or {})
        print(f"cnap demo: facility simulator {module_name} started"
              + (f": {simulator.description}" if getattr(simulator, "description", "") else ""), flush=True)
    return simulators, overrides


AGENT_READY_S = 30   # how long the demo waits for `cnap agent` to say where it listens


def start_agent_process(instance: Path, overrides: dict) -> tuple[subprocess.Popen | None, int | None]:
    """`cnap agent` as its own process in its own session (a Ctrl+C meant for the kiosk, or a
    kill of the kiosk's process group, does not reach it), on a free loopback port, with the
    simulators' settings as CNAP_* environment. Returns the process and its port (None, None when
    it did not start: the kiosk then shows the agent unavailable)."""
    env = dict(os.environ)
    for name, value in overrides.items():
        if name.upper() not in settings_module.BY_NAME:
            print(f"cnap demo: facility simulator setting {name} is not a known setting; ignored", flush=True)
            continue
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else (
            ("1" if value else "0") if isinstance(value, bool) else str(value))
        env[settings_module.ENV_PREFIX + name.upper()] = text
    command = [sys.executable, "-m", "terminal.cli", "agent", "--port", "0", "--instance", str(instance)]
    agent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    ready: list[str] = []
    found = threading.Event()

    def relay() -> None:   # the agent's own lines, echoed; logs go to stderr directly
        for line in agent.stdout:
            print(line, end="", flush=True)
            if not found.is_set() and "listening on http://" in line:
                ready.append(line)
                found.set()
        found.set()

    threading.Thread(target=relay, name="cnap-agent-stdout", daemon=True).start()
    found.wait(AGENT_READY_S)
    if not ready:
        print("cnap demo: cnap agent did not start; the Facility section will show it unavailable", flush=True)
        stop_agent_process(agent)
        return None, None
    address = ready[0].split("listening on http://", 1)[1].split()[0]
    port = int(address.rsplit(":", 1)[1])
    print(f"cnap demo: agent (pid {agent.pid}) at http://{address}; it keeps running if the kiosk "
          f"crashes (stop it with kill {agent.pid})", flush=True)
    return agent, port


def stop_agent_process(agent: subprocess.Popen) -> None:
    """SIGTERM: the agent closes its controllers (equipment in its safe state) and exits."""
    if agent.poll() is None:
        agent.terminate()
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


DEMO_TABLET, DEMO_DESK, DEMO_ADMIN, DEMO_PIN = "Демо-планшет", "Вікно 1", "Олена К. (демо)", "432100"  # a 6–12 digit PIN, as every PIN


def print_demo_tablet(app, url: str) -> None:
    """A desk tablet ready to open in a second browser window, so the demo shows surveys too.
    Its link is new on every start (tokens are stored hashed; the old link stops working).
    ``url`` is the tablets' listener when there is one."""
    from flask import url_for

    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    tablet = next((t for t in store.tablets() if t.label == DEMO_TABLET), None)
    token = store.reissue_token(tablet.id) if tablet else store.register_tablet(DEMO_TABLET, branch, DEMO_DESK,
                                                                               "desk")[1]
    if not any(a.name == DEMO_ADMIN for a in store.administrators()):
        store.add_administrator(DEMO_ADMIN, branch, DEMO_PIN)
    with app.test_request_context():
        path = url_for("survey.tablet_app")
    print(f"cnap demo: desk tablet at {url.rstrip('/')}{path}#token={token} "
          f"(administrator PIN {DEMO_PIN})", flush=True)


def cmd_settings(args) -> int:
    if args.markdown:
        sys.stdout.write(settings_module.markdown())
        return 0
    try:
        values = settings_module.load()
    except settings_module.SettingError as exc:
        print(f"cnap settings: {exc}", file=sys.stderr)
        return 2
    for name in sorted(values):
        print(f"{name} = {values[name]!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnap", description="ЦНАП self-service appliance")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("kiosk", cmd_kiosk, "run the kiosk (window when a display exists)"),
                             ("demo", cmd_demo, "run the kiosk on device simulators and sample data")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--port", type=int, default=None, help="web server port (0: any free port)")
        p.add_argument("--tablet-port", type=int, default=None,
                       help="desk tablets' listener port (0, or --port 0: any free port)")
        p.add_argument("--instance", default=None, help="instance folder (databases, cnap.toml)")
        p.add_argument("--no-window", action="store_true", help="serve only; do not open a window")
        p.add_argument("--windowed", action="store_true", help="a normal window instead of full screen")
        p.set_defaults(func=func)
    p = sub.add_parser("settings", help="show resolved settings, or their reference")
    p.add_argument("--markdown", action="store_true", help="print docs/settings.md")
    p.set_defaults(func=cmd_settings)
    for module_name in COMMAND_MODULES:
        extra = {"load_settings": settings_for_instance} if module_name in TAKES_SETTINGS else {}
        import_module(module_name).add_commands(sub, **extra)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Whatever cnap writes (registry exports, journal, logs) may hold personal data: owner only.
    privacy.restrict_umask()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
