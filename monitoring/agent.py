"""``cnap agent``: the long-lived process that runs the facility controllers (facility/runner.py)
and serves their state on a loopback-only JSON endpoint, apart from the kiosk, so that a kiosk
crash or restart leaves ventilation, the UPS watch and uplink failover running.

Endpoint (``AGENT_HOST``:``AGENT_PORT``, loopback only; every request carries
``Authorization: Bearer <token>``, the secret in ``<instance>/AGENT_TOKEN_FILE``, 0600):

- ``GET /status`` → ``{"at": ISO-8601, "controllers": {name: status}}`` (facility/base.py)
- ``POST /command/<controller>`` with ``{"action": str, "args": {…}}`` → ``{"ok": bool, "message": str}``
- ``GET /metrics`` → Prometheus text: controller availability and last poll age, and with MQTT
  the connection, outbox depth and messages published (monitoring/metrics below)

Errors are JSON ``{"error": …}``: 400 bad or oversized body, 401 no or wrong token, 403 a client
that is not on loopback, 404/405 no such route. Logs go to stderr (the journal under systemd).

Reporting seam: ``Agent.status_listeners`` is a list of ``(name, snapshot)`` callables run after
each poll and command; with MQTT_HOST set the MQTT reporter (monitoring/mqtt_agent.py) is added
there and started and stopped with the agent.
"""
from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from flask import Flask, abort, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from common import lifecycle
from facility.runner import Runner, load_controllers

log = logging.getLogger("cnap.agent")

TOKEN_BYTES = 32
FIRST_POLLS_S = 5.0   # at start, how long to wait for the first polls before saying what runs
# waitress refuses (413) a body larger than this before buffering it; the app answers 400 to one
# larger than AGENT_MAX_BODY, so a client sees a JSON error for any mistake short of a flood.
DOOR_LIMIT = 1024 * 1024
ACTION = re.compile(r"[a-z][a-z0-9_]{0,63}")


class _ControllerName(BaseConverter):
    regex = r"[a-z][a-z0-9_]{0,31}"


# --- the shared secret --------------------------------------------------------------------------
def instance_folder(settings: Mapping[str, Any]) -> Path:
    """The same folder the kiosk uses (terminal.create_app): INSTANCE_PATH, else ./instance."""
    return Path(settings.get("INSTANCE_PATH") or Path.cwd() / "instance").resolve()


def token_path(settings: Mapping[str, Any]) -> Path:
    return instance_folder(settings) / settings["AGENT_TOKEN_FILE"]


def read_token(path: Path) -> str | None:
    """The token in ``path``, or None when there is none (yet) or it is not a usable one."""
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token if len(token) >= TOKEN_BYTES and token.isascii() and token.isprintable() else None


def ensure_token(path: Path) -> str:
    """The agent's secret: kept across restarts (the kiosk may hold it), created 0600 when missing
    or unusable. The folder is made 0700 like the rest of the instance folder."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = read_token(path)
    if token is None:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        fresh = path.with_name(path.name + f".{os.getpid()}.tmp")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(token + "\n")
        os.replace(fresh, path)   # whole or not at all: a kiosk never reads half a token
        log.info("agent token written to %s", path)
    os.chmod(path, 0o600)
    return token


# --- the endpoint -------------------------------------------------------------------------------
def _is_loopback(address: str | None) -> bool:
    from terminal.limits import client_address

    parsed = client_address(address)
    return parsed is not None and parsed.is_loopback


def metrics_text(runner: Runner, reporter: Any = None, now: float | None = None) -> bytes:
    """The Prometheus exposition of the agent (a registry of its own, read at scrape time)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from monitoring.mqtt_map import timestamp

    now = time.time() if now is None else now

    class _Collector:
        def collect(self):
            status = runner.status()["controllers"]
            available = GaugeMetricFamily("cnap_agent_controller_available",
                                          "1 when the controller reads and commands its equipment",
                                          labels=["controller"])
            age = GaugeMetricFamily("cnap_agent_controller_last_poll_age_seconds",
                                    "Seconds since the controller's last poll ended", labels=["controller"])
            for name, view in status.items():
                available.add_metric([name], 1.0 if view.get("available") is True else 0.0)
                polled = timestamp(view.get("polled_at"))
                if polled is not None:
                    age.add_metric([name], max(0.0, now - polled.timestamp()))
            yield available
            yield age
            if reporter is None:
                return
            figures = reporter.metrics()
            yield GaugeMetricFamily("cnap_agent_mqtt_connected", "1 while connected to the site broker",
                                    value=1.0 if figures["connected"] else 0.0)
            depth = GaugeMetricFamily("cnap_agent_mqtt_outbox_depth",
                                      "Outbox rows waiting, by kind (state, answer, answer_acked)", labels=["kind"])
            for kind, rows in figures["outbox"].items():
                depth.add_metric([kind], float(rows))
            yield depth
            published = CounterMetricFamily("cnap_agent_mqtt_published", "Messages the broker acknowledged")
            published.add_metric([], float(figures["published"]))
            yield published
            refused = CounterMetricFamily("cnap_agent_mqtt_refused", "Messages the broker refused")
            refused.add_metric([], float(figures["refused"]))
            yield refused

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


def create_agent_app(runner: Runner, token: str, *, max_body: int = 16384, max_json_depth: int = 20,
                     reporter: Any = None) -> Flask:
    app = Flask("cnap.agent")
    app.config.update(MAX_CONTENT_LENGTH=max_body, MAX_JSON_DEPTH=max_json_depth)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.url_map.converters["controller"] = _ControllerName
    expected = f"Bearer {token}".encode()

    @app.before_request
    def _only_loopback_with_the_token():
        # Bound to loopback already (AGENT_HOST is checked); this holds even if that changes.
        if not _is_loopback(request.remote_addr):
            abort(403, description="the agent answers only this machine")
        given = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            abort(401, description="a valid agent token is required")

    @app.get("/status")
    def status():
        return jsonify(runner.status())

    @app.get("/metrics")
    def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST

        return app.response_class(metrics_text(runner, reporter), mimetype=None,
                                  headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.post("/command/<controller:controller>")
    def command(controller: str):
        from terminal.limits import json_body

        body = json_body(kind=dict)
        action, args = body.get("action"), body.get("args", {})
        if not isinstance(action, str) or not ACTION.fullmatch(action):
            abort(400, description="action: a word of a-z, 0-9 and _ (at most 64) is required")
        if not isinstance(args, dict):
            abort(400, description="args: a JSON object is expected")
        if controller not in runner.names():
            abort(404, description=f"no controller {controller!r}")
        return jsonify(runner.command(controller, action, args))

    @app.errorhandler(HTTPException)
    def _json_error(error: HTTPException):
        code = error.code or 500
        if code == 413:   # oversized: a JSON client gets 400 like for any bad document
            code, description = 400, f"the body is larger than {max_body} bytes"
        else:
            description = error.description
        response = jsonify({"error": description})
        response.status_code = code
        if code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="cnap-agent"'
        return response

    return app


# --- the process ----------------------------------------------------------------------------------
class Agent:
    """The controllers' runner plus the endpoint. ``start`` returns the endpoint's URL."""

    def __init__(self, settings: Mapping[str, Any], runner: Runner | None = None,
                 modules: Iterable[str] | None = None):
        self.settings = dict(settings)
        self.token = ensure_token(token_path(settings))
        if runner is None:
            if modules is None:
                modules = self.settings.get("FACILITY_CONTROLLERS") or ()
            controllers, unavailable = load_controllers(self.settings, modules)
            # A command waits for a poll in progress at most half the kiosk's patience, so the
            # kiosk hears "busy" rather than giving up while the command might still run.
            runner = Runner(controllers, unavailable, stop_timeout_s=settings["AGENT_STOP_TIMEOUT_S"],
                            command_wait_s=settings["AGENT_TIMEOUT_S"] / 2,
                            order=[module.rsplit(".", 1)[-1] for module in modules])
        self.runner = runner
        self.status_listeners = runner.listeners   # the reporting seam (MQTT comes here)
        self.reporter = None
        if self.settings.get("MQTT_HOST"):   # imported only then: paho and the models cost memory
            from monitoring.mqtt_agent import from_settings

            # The reporter adds itself to status_listeners when it starts.
            self.reporter = from_settings(self.settings, runner, token=self.token)
        self.app = create_agent_app(runner, self.token, max_body=settings["AGENT_MAX_BODY"],
                                    max_json_depth=settings.get("MAX_JSON_DEPTH", 20), reporter=self.reporter)
        self.server = None
        self.url: str | None = None

    def start(self, port: int | None = None) -> str:
        from terminal.server import BackgroundServer

        self.server = BackgroundServer(self.app, self.settings["AGENT_HOST"],
                                       self.settings["AGENT_PORT"] if port is None else port, threads=4,
                                       max_request_body_size=max(DOOR_LIMIT, self.settings["AGENT_MAX_BODY"]))
        host = self.settings["AGENT_HOST"]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{self.server.port}"
        if self.reporter is not None:
            self.reporter.start()
        self.runner.start()
        return self.url

    def stop(self) -> None:
        """The endpoint first (no new commands), then the controllers (each closed, safe state)."""
        if self.server is not None:
            self.server.stop()
        self.runner.stop()
        if self.reporter is not None:   # last, so its final state and "offline" go out
            self.reporter.stop()


def kiosk_listening(host: str, port: int, timeout: float = 1.0) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ShutdownOnPowerLoss:
    """A status listener: when the power controller reports ``shutdown`` (low battery or FSD),
    the agent stops in order too, but only after the kiosk has stopped (it closes the payment
    journal first) or ``wait_s`` has passed; upsmon then powers the machine off."""

    def __init__(self, stop: threading.Event, kiosk: tuple[str, int], wait_s: float,
                 is_listening=kiosk_listening):
        self.stop, self.kiosk, self.wait_s = stop, kiosk, wait_s
        self.is_listening = is_listening
        self.started = threading.Event()

    def __call__(self, name: str, snapshot: Mapping[str, Any]) -> None:
        if name != "power" or snapshot.get("shutdown") is not True or self.started.is_set():
            return
        self.started.set()
        threading.Thread(target=self._wait_then_stop, name="cnap-agent-shutdown", daemon=True).start()

    def _wait_then_stop(self) -> None:
        log.warning("cnap agent: the UPS asks for shutdown; stopping once the kiosk has stopped "
                    "(at most %.0f s)", self.wait_s)
        deadline = time.monotonic() + self.wait_s
        while self.is_listening(*self.kiosk) and time.monotonic() < deadline and not self.stop.is_set():
            self.stop.wait(0.5)
        log.warning("cnap agent: stopping for the UPS shutdown")
        self.stop.set()


def run_agent(args) -> int:
    from terminal import settings as settings_module

    config = {"INSTANCE_PATH": args.instance} if args.instance else {}
    try:
        settings = settings_module.load(config, instance_path=args.instance)
    except settings_module.SettingError as exc:
        print(f"cnap agent: {exc}", file=sys.stderr)
        return 2
    settings["INSTANCE_PATH"] = str(instance_folder(settings))
    agent = Agent(settings)
    try:
        url = agent.start(args.port)
    except OSError as exc:
        agent.runner.stop()
        print(f"cnap agent: cannot listen on {settings['AGENT_HOST']}:{args.port if args.port is not None else settings['AGENT_PORT']}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    with lifecycle.stop_on_signals("cnap agent", log) as stop:
        agent.status_listeners.append(ShutdownOnPowerLoss(
            stop, (settings["HOST"], int(settings["PORT"])), settings["AGENT_SHUTDOWN_WAIT_S"]))
        agent.runner.wait_first_polls(FIRST_POLLS_S)
        names = ", ".join(f"{name} ({view['state']})"
                          for name, view in agent.runner.status()["controllers"].items())
        print(f"cnap agent: listening on {url} (controllers: {names})", flush=True)
        try:
            lifecycle.wait(stop)
        finally:
            agent.stop()
    print("cnap agent: stopped", flush=True)
    return 0
