"""The kiosk's web application. ``create_app`` builds one; nothing is created at import time,
so tests, the pywebview shell and the demo each build their own."""
from __future__ import annotations

import logging
import os
import secrets
from importlib import import_module
from pathlib import Path
from typing import Any, Mapping

from flask import Flask

from terminal import limits, settings as settings_module
from terminal import privacy

# Each area's view module exports ``bp`` (a Blueprint) and may export ``init_app(app)``.
BLUEPRINTS = (
    "terminal.views.core",
    "terminal.views.catalogue",
    "terminal.views.service",
    "terminal.views.pay",
    "terminal.views.survey",
)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    env_instance = os.environ.get("CNAP_INSTANCE_PATH")
    wanted = (config or {}).get("INSTANCE_PATH") or env_instance or str(Path.cwd() / "instance")
    instance = Path(wanted).resolve()
    values = settings_module.load(config, instance_path=instance)
    # The instance folder holds personal data: private to the kiosk's user (terminal/privacy.py).
    privacy.restrict_umask()
    instance.mkdir(parents=True, exist_ok=True)
    privacy.make_private(instance)

    app = Flask(__name__, instance_path=str(instance), instance_relative_config=True)
    app.config.update(values)
    app.config["INSTANCE_PATH"] = str(instance)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = secrets.token_hex(32)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Strict")
    app.config["TEMPLATES_AUTO_RELOAD"] = False
    app.json.ensure_ascii = False
    # Every area keeps its shutdown hooks here (device drivers, writer threads).
    app.extensions.setdefault("cnap_closers", [])
    # name -> callable returning (ok: bool, detail: dict); read by /healthz and, later, the agent.
    app.extensions.setdefault("cnap_health", {})

    logging.getLogger("cnap").setLevel(logging.INFO)
    # Listener areas and body limits first: they must run before any area's request hooks.
    limits.init_app(app)

    for name in BLUEPRINTS:
        module = import_module(name)
        if hasattr(module, "init_app"):
            module.init_app(app)
        app.register_blueprint(module.bp)
    return app


def close_app(app: Flask) -> None:
    """Stop what the app started (threads, ports), newest first."""
    for closer in reversed(app.extensions.get("cnap_closers", [])):
        try:
            closer()
        except Exception:  # a failing closer must not keep the others from running
            logging.getLogger("cnap").exception("closer failed")
    app.extensions["cnap_closers"] = []
