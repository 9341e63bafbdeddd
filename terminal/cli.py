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


def run_window(url: str, *, fullscreen: bool, allowed_origins: list[str], stop: threading.Event,
               channel=None) -> None:
    """The native window runs in its own process: WebKit needs ~200 MB and may crash; neither
    should touch the process that holds the payment journal. Only a deliberate stop (``stop`` set
    by SIGTERM/SIGINT to `cnap kiosk` or by service mode) ends it: a window that crashed, was
    killed or closed any other way is opened again. ``channel`` (terminal/internet/channel.py
    WindowChannel): every window process gets a fresh control socket of it."""
    command = [sys.executable, "-m", "terminal.shell", "--url", url, "--parent-pid", str(os.getpid())]
    if not fullscreen:
        command.append("--windowed")
    for origin in allowed_origins:
        command += ["--allow-origin", origin]
    log = logging.getLogger("cnap.kiosk")
    while not stop.is_set():
        if channel is not None:
            theirs = channel.connect()
            child = subprocess.Popen(command + ["--control-fd", str(theirs.fileno())], pass_fds=[theirs.fileno()])
            theirs.close()
        else:
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
                                  tablet_host=app.config["TABLET_HOST"], tablet_port=tablet_port,
                                  **guest_listener(app.config))
    except OSError as exc:  # port taken (a second kiosk?) or address not on this machine
        close_app(app)
        where = "{}:{}".format(*getattr(exc, "listen_address", (host, port)))
        print(f"cnap kiosk: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    url = server.url + "/"
    if server.guest_url:
        print(f"cnap kiosk: guest Wi-Fi portal on {server.guest_url}/portal/ (only the portal)", flush=True)
    elif server.guest_error:
        print(f"cnap kiosk: no guest Wi-Fi portal: cannot listen on {server.guest_error}", flush=True)
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
            from terminal.internet.channel import WindowChannel
            from terminal.views import internet as internet_views

            channel = WindowChannel()
            state(app).internet_window = channel
            # The filtering proxy the window's browsing view goes through (stopped by close_app).
            internet_views.start_services(app)
            print(f"cnap kiosk: window open on {url}", flush=True)
            try:
                run_window(url, fullscreen=app.config["FULLSCREEN"] and not args.windowed,
                           allowed_origins=app.config["ALLOWED_ORIGINS"], stop=stop, channel=channel)
            finally:
                state(app).internet_window = None
                channel.disconnect()
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


def guest_listener(config) -> dict:
    """The captive portal's listener (GUEST_INTERFACE set): the gateway's address on the guest
    network, in GUEST_NETNS when set; {} when there is no guest network."""
    if not config.get("GUEST_INTERFACE"):
        return {}
    import ipaddress
    try:
        host = str(ipaddress.IPv4Interface(config["GUEST_ADDRESS"]).ip)
    except ValueError:
        print(f"cnap kiosk: GUEST_ADDRESS {config['GUEST_ADDRESS']!r} is not an address; no guest portal",
              file=sys.stderr)
        return {}
    return {"guest_host": host, "guest_port": config["GUEST_PORTAL_PORT"], "guest_netns": config["GUEST_NETNS"]}


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
    agent, monitoring_stops = None, []
    try:
        instance = Path(args.instance or os.environ.get("CNAP_INSTANCE_PATH") or Path.cwd() / "instance").resolve()
        if args.port == 0:   # the agent reads the kiosk on its port: choose the free port now
            args.port = free_loopback_port()
            if args.tablet_port is None:
                args.tablet_port = 0   # "any free port" still meant for both listeners
        monitoring_stops, mqtt = start_demo_monitoring(instance, values)
        kiosk_port = {"PORT": args.port} if args.port is not None else {}
        agent, agent_port = start_agent_process(instance, overrides | mqtt | kiosk_port)
        if agent_port is not None:
            config["AGENT_PORT"] = agent_port
        return run_kiosk(args, config, on_ready=print_demo_tablet)
    finally:
        if agent is not None:
            stop_agent_process(agent)
        for stop in reversed(monitoring_stops):
            try:
                stop()
            except Exception:
                logging.getLogger("cnap.demo").exception("a monitoring part failed to stop")
        for simulator in facility_sims:
            try:
                simulator.stop()
            except Exception:
                logging.getLogger("cnap.demo").exception("a facility simulator failed to stop")
        sims.stop()


def free_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


AGENT_READY_S = 30   # how long the demo waits for `cnap agent` or `cnap hub` to say where it listens


def demo_env(overrides: dict) -> dict:
    """The environment of a demo child process: ours plus ``overrides`` as CNAP_* settings."""
    env = dict(os.environ)
    for name, value in overrides.items():
        if name.upper() not in settings_module.BY_NAME:
            print(f"cnap demo: setting {name} is not a known setting; ignored", flush=True)
            continue
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else (
            ("1" if value else "0") if isinstance(value, bool) else str(value))
        env[settings_module.ENV_PREFIX + name.upper()] = text
    return env


def start_child_process(label: str, arguments: list[str], env: dict) -> tuple[subprocess.Popen | None, str | None]:
    """``python -m terminal.cli <arguments>`` in its own session (a Ctrl+C meant for the kiosk, or a
    kill of the kiosk's process group, does not reach it). Its lines are echoed; returns the
    process and the host:port it printed after "listening on http://" (None, None when it did not
    start in time)."""
    child = subprocess.Popen([sys.executable, "-m", "terminal.cli", *arguments], env=env, stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    ready: list[str] = []
    found = threading.Event()

    def relay() -> None:   # the child's own lines, echoed; logs go to stderr directly
        for line in child.stdout:
            print(line, end="", flush=True)
            if not found.is_set() and "listening on http://" in line:
                ready.append(line)
                found.set()
        found.set()

    threading.Thread(target=relay, name=f"{label}-stdout", daemon=True).start()
    found.wait(AGENT_READY_S)
    if not ready:
        stop_agent_process(child)
        return None, None
    return child, ready[0].split("listening on http://", 1)[1].split()[0]


def start_agent_process(instance: Path, overrides: dict) -> tuple[subprocess.Popen | None, int | None]:
    """`cnap agent` as its own process on a free loopback port, with the simulators' settings as
    CNAP_* environment. Returns the process and its port (None, None when it did not start: the
    kiosk then shows the agent unavailable)."""
    agent, address = start_child_process("cnap-agent", ["agent", "--port", "0", "--instance", str(instance)],
                                         demo_env(overrides))
    if agent is None:
        print("cnap demo: cnap agent did not start; the Facility section will show it unavailable", flush=True)
        return None, None
    print(f"cnap demo: agent (pid {agent.pid}) at http://{address}; it keeps running if the kiosk "
          f"crashes (stop it with kill {agent.pid})", flush=True)
    return agent, int(address.rsplit(":", 1)[1])


DEMO_SITE = "demo"
DEMO_TECHNICIAN, DEMO_TECHNICIAN_PIN = "Технік (демо)", "432100"


def start_demo_monitoring(instance: Path, values: dict) -> tuple[list, dict]:
    """The demo's MQTT broker (Mosquitto, else embedded) and `cnap hub` reading it, with a demo
    technician. Returns what to stop (callables) and the agent's MQTT settings (empty when the
    broker did not start: the agent then runs without reporting)."""
    from monitoring.demo_broker import start_demo_broker
    from monitoring.hub.main import STAFF_FILE
    from terminal.staff import StaffStore

    stops: list = []
    site = values.get("MQTT_SITE") or DEMO_SITE
    try:
        broker = start_demo_broker(instance / "demo-broker", site=site)
    except Exception as exc:   # the kiosk and the agent run on without monitoring
        print(f"cnap demo: no MQTT broker ({type(exc).__name__}: {exc}); monitoring is off", flush=True)
        return stops, {}
    stops.append(broker.stop)
    print(f"cnap demo: MQTT broker ({broker.kind}, MQTT {broker.mqtt_protocol}) at {broker.host}:{broker.port}",
          flush=True)
    password_file = instance / values["MQTT_PASSWORD_FILE"]
    password_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(broker.accounts[site] + "\n")
    hub_folder = instance / "hub"
    hub_folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    staff = StaffStore(str(hub_folder / STAFF_FILE))
    try:
        if not any(m["name"] == DEMO_TECHNICIAN for m in staff.members()):
            staff.add(DEMO_TECHNICIAN, "technician", DEMO_TECHNICIAN_PIN)
    finally:
        staff.close()
    hub, address = start_child_process("cnap-hub", ["hub", "--port", "0", "--instance", str(hub_folder)], demo_env({
        "HUB_MQTT_HOST": broker.host, "HUB_MQTT_PORT": broker.port, "HUB_MQTT_USERNAME": "hub.demo",
        "HUB_MQTT_PASSWORD": broker.accounts["hub.demo"], "HUB_MQTT_PROTOCOL": broker.mqtt_protocol,
        "HUB_MQTT_CA_FILE": "", "HUB_EVALUATE_INTERVAL_S": 1.0}))
    if hub is None:
        print("cnap demo: cnap hub did not start; the agent reports to the broker only", flush=True)
    else:
        stops.append(lambda: stop_agent_process(hub))
        print(f"cnap demo: monitoring hub (pid {hub.pid}) at http://{address}/ — log in as {DEMO_TECHNICIAN}, "
              f"PIN {DEMO_TECHNICIAN_PIN}; it shows site '{site}'", flush=True)
    return stops, {"MQTT_HOST": broker.host, "MQTT_PORT": broker.port, "MQTT_SITE": site,
                   "MQTT_PROTOCOL": broker.mqtt_protocol, "MQTT_TLS_CA_FILE": ""}


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
