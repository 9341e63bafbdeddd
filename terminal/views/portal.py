"""The guest Wi-Fi's captive portal, served only on the guest listener (terminal/limits.py).

Guests' HTTP is redirected here by the agent's firewall (facility/guestnet) until they accept
the terms. Every path other than the portal's own comes to ``probe`` (terminal.limits.guest_path):
phones' connectivity checks (Android /generate_204, Apple /hotspot-detect.html, Windows
/connecttest.txt and /ncsi.txt) and any page a captive guest opens get a redirect to the terms
page; an admitted client gets the answer its system expects, so it says "connected".
``/captive-portal/api`` is the RFC 8908 API announced by DHCP option 114 (RFC 8910).

Accepting asks the agent (``cnap agent``, the ``guestnet`` controller) to admit the client's
address; the page says honestly when that cannot be done. Addresses are never logged.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, g, jsonify, redirect, render_template, request

from terminal import i18n
from terminal.limits import LISTENER_HOST_KEY, ORIGINAL_PATH_KEY

log = logging.getLogger("cnap.portal")

bp = Blueprint("portal", __name__)
CONTROLLER = "guestnet"

# What each system's probe expects from a network that lets it out (path → status, type, body).
SUCCESS = {
    "/generate_204": (204, "text/plain", b""),
    "/gen_204": (204, "text/plain", b""),
    "/hotspot-detect.html": (200, "text/html", b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"),
    "/library/test/success.html": (200, "text/html", b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"),
    "/connecttest.txt": (200, "text/plain", b"Microsoft Connect Test"),
    "/ncsi.txt": (200, "text/plain", b"Microsoft NCSI"),
}
NO_STORE = {"Cache-Control": "no-store, private"}


@bp.before_request
def _language():
    lang = request.args.get("lang") or request.form.get("lang")
    if lang in i18n.LANGUAGES:
        g.lang = lang


def _portal_url() -> str:
    """The terms page by the gateway's address (the Host header is whatever the probe asked)."""
    host = request.environ.get(LISTENER_HOST_KEY) or request.host.split(":")[0]
    return f"http://{host}:{current_app.config['GUEST_PORTAL_PORT']}/portal/"


def _agent():
    from monitoring.agent_client import AgentClient
    return AgentClient.from_settings(current_app.config)


def _seconds_left() -> int | None:
    """Seconds this client is still let out (0: captive), None when the agent cannot tell."""
    from monitoring.agent_client import AgentUnavailable
    try:
        answer = _agent().command(CONTROLLER, "check", {"ip": request.remote_addr or ""})
    except AgentUnavailable:
        return None
    message = answer.get("message", "")
    if not answer.get("ok") or not message.isascii() or not message.isdigit():
        return None
    return int(message)


def _page(template: str, status: int = 200, **values) -> Response:
    lang = g.get("lang", "uk")
    response = Response(render_template(f"portal/{template}", lang=lang, other_lang="en" if lang == "uk" else "uk",
                                        **values), status=status, mimetype="text/html")
    response.headers.update(NO_STORE)
    return response


@bp.route("/portal/probe", methods=["GET", "HEAD", "POST"])
def probe():
    original = request.environ.get(ORIGINAL_PATH_KEY, "")
    if original in SUCCESS and (_seconds_left() or 0) > 0:
        status, mimetype, body = SUCCESS[original]
        return Response(body, status=status, mimetype=mimetype, headers=NO_STORE)
    response = redirect(_portal_url(), 302)
    response.headers.update(NO_STORE)
    return response


@bp.get("/portal/")
def terms():
    left = _seconds_left()
    if left:
        return _page("connected.html", minutes=max(1, round(left / 60)))
    return _page("terms.html", agent_known=left is not None,
                 admit_minutes=current_app.config["GUEST_ADMIT_MINUTES"])


@bp.post("/portal/accept")
def accept():
    from monitoring.agent_client import AgentUnavailable
    try:
        answer = _agent().command(CONTROLLER, "admit", {"ip": request.remote_addr or ""})
    except AgentUnavailable as exc:
        log.warning("portal: the agent is unavailable (%s)", type(exc).__name__)
        return _page("unavailable.html", status=503)
    if not answer.get("ok"):
        log.warning("portal: the guest network refused an admission")
        return _page("unavailable.html", status=503)
    message = answer.get("message", "")
    seconds = int(message) if message.isascii() and message.isdigit() else current_app.config["GUEST_ADMIT_MINUTES"] * 60
    return _page("connected.html", minutes=max(1, round(seconds / 60)), just_now=True)


@bp.get("/captive-portal/api")
def api():
    """RFC 8908: is this client captive, where is the portal, how long is it let out."""
    left = _seconds_left()
    body = {"captive": not left, "user-portal-url": _portal_url()}
    if left:
        body["seconds-remaining"] = left
    response = jsonify(body)
    response.mimetype = "application/captive+json"
    response.headers.update(NO_STORE)
    return response
