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
from flask_wtf.csrf import CSRFProtect

from terminal import limits, settings as settings_module
from terminal import privacy
from terminal import state as state_module

# Each area's view module exports ``bp`` (a Blueprint) and may export ``init_app(app)``.
BLUEPRINTS = (
    "terminal.views.core",
    "terminal.views.catalogue",
    "terminal.views.service",
    "terminal.views.power",
    "terminal.views.pay",
    "terminal.views.survey",
    "terminal.views.internal",
    "terminal.views.portal",
    "terminal.views.internet",
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
    # Flask's defaults already hold these keys, so they are set, not setdefault-ed.
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SECURE"] = bool(app.config["HTTPS"])
    # A form's CSRF token lives as long as the visitor's session; the idle reset ends both.
    app.config["WTF_CSRF_TIME_LIMIT"] = None
    app.config["TEMPLATES_AUTO_RELOAD"] = False
    app.json.ensure_ascii = False
    # The areas' shared objects, health checks and shutdown hooks (terminal/state.py).
    state_module.install(app)

    logging.getLogger("cnap").setLevel(logging.INFO)
    # Listener areas and body limits first: they must run before any area's request hooks.
    limits.init_app(app)

    for name in BLUEPRINTS:
        module = import_module(name)
        if hasattr(module, "init_app"):
            module.init_app(app)
        app.register_blueprint(module.bp)
    _protect_from_csrf(app)
    return app


# The desk tablet's JSON API authenticates each request with the tablet's device token in the
# Authorization header and never reads the cookie session. A forged cross-site request cannot
# carry that header (a browser adds no Authorization by itself, and a cross-origin request that
# sets it needs a CORS preflight this app never grants), so no ambient credential exists for
# CSRF to abuse, and the offline tablet cannot hold a cookie-bound token anyway. Exactly these
# endpoints are exempt; a renamed or new one is protected (and a missing name fails loudly).
# The same holds for the monitoring agent's loopback API (terminal/views/internal.py): its bearer
# token comes from a file on this machine, never from a browser.
CSRF_EXEMPT_ENDPOINTS = ("survey.api_answers", "survey.api_shift_start", "survey.api_shift_end",
                         "internal.survey_answers_forwarded", "internal.out_of_service_set")


def _protect_from_csrf(app: Flask) -> None:
    """Flask-WTF's CSRFProtect on every POST/PUT/PATCH/DELETE: forms carry ``csrf_token()`` in a
    hidden field, scripts send it as X-CSRFToken (base.html has it in a meta tag). A missing or
    wrong token is a 400. TESTING does not switch it off (only WTF_CSRF_ENABLED would)."""
    csrf = CSRFProtect(app)
    for endpoint in CSRF_EXEMPT_ENDPOINTS:
        csrf.exempt(app.view_functions[endpoint])


def close_app(app: Flask) -> None:
    """Stop what the app started (threads, ports), newest first."""
    kiosk_state = state_module.state(app)
    for closer in reversed(kiosk_state.closers):
        try:
            closer()
        except Exception:  # a failing closer must not keep the others from running
            logging.getLogger("cnap").exception("closer failed")
    kiosk_state.closers = []
