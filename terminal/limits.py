"""Guards every request passes: which listener may reach which area, body size limits, and the
parsers views use for numbers and JSON instead of int() and request.get_json().

Listeners: ``terminal.server`` tags each request's WSGI environ with the socket it arrived on
(``LISTENER_KEY``), never with anything the client sends (the Host header is the client's to
choose). The desk tablets' listener reaches only the tablet area; the main listener serves
everything to this machine (REMOTE_ADDR 127.0.0.1, ::1 or the listener's own address), all but
the pay flow and the internal API (``/internal/``: the local monitoring agent's, bearer token)
to ``SERVICE_NETWORKS``, and only the tablet area to anybody else. The guest Wi-Fi's listener
(on the guest network's gateway address) reaches only the captive portal, and the portal exists
only there: every other path on it is a phone's probe (``guest_path``).
"""
from __future__ import annotations

import ipaddress
import json
import math
import re
from urllib.parse import urlsplit
from typing import Any, Callable

from flask import Flask, abort, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import IntegerConverter
from werkzeug.utils import secure_filename

from terminal import i18n

# Interface strings looked up under names built at run time (in templates or from variables),
# listed so that pybabel extracts them; their texts are in terminal/translations/.
RUNTIME_KEYS = (
    i18n.N_("error.forbidden.body"),
    i18n.N_("error.forbidden.title"),
    i18n.N_("error.too_large.body"),
    i18n.N_("error.too_large.title"),
)

LISTENER_KEY = "cnap.listener"
LISTENER_HOST_KEY = "cnap.listener_host"  # the address the listener is bound to
KIOSK, TABLET = "kiosk", "tablet"
PAY, INTERNAL = "pay", "internal"   # areas for this machine only
GUEST, PORTAL = "guest", "portal"   # the guest Wi-Fi's listener and its only area
BROWSE = "browse"                   # the visitor's internet pages (/internet…): this machine only

# What the tablet app loads besides its own /tablet/… files (see templates/survey/tablet.html, sw.js).
TABLET_STATIC_FILES = frozenset({"kiosk.css", "kiosk.js", "i18n.js"})
TABLET_PREFIXES = ("/tablet/", "/api/survey/")
INTERNAL_PREFIX = "/internal/"
# The captive portal (terminal/views/portal.py): its pages, the RFC 8908 API and its style sheet.
PORTAL_PREFIXES = ("/portal/", "/captive-portal/")
PORTAL_STATIC_FILES = frozenset({"portal.css"})
PORTAL_PROBE_PATH = "/portal/probe"
ORIGINAL_PATH_KEY = "cnap.original_path"   # what a guest asked for before guest_path

_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")


# --- numbers ---------------------------------------------------------------------------------------
_REQUIRED: Any = object()


def ascii_int(value: Any, lo: int = 0, hi: int = 2**53, *, default: Any = _REQUIRED,
              name: str = "number") -> Any:
    """A non-negative integer written in ASCII digits only, within [lo, hi]; anything else is a
    400. int() alone accepts '٣', ' 3', '+3', '3_0' and raises on '²' (which str.isdigit() accepts),
    so views call this instead. ``default`` (returned as is) stands for a missing or empty value."""
    if value is None or value == "":
        if default is not _REQUIRED:
            return default
        abort(400, description=f"{name}: a number is required")
    if not isinstance(value, str) or not _ASCII_DIGITS.fullmatch(value):
        abort(400, description=f"{name}: only the digits 0-9 are accepted")
    number = int(value)
    if not lo <= number <= hi:
        abort(400, description=f"{name}: must be from {lo} to {hi}")
    return number


class AsciiIntConverter(IntegerConverter):
    """``<int:…>`` in routes: werkzeug's matches ``\\d+``, which in Python takes any Unicode digit
    ('٣' would name row 3), and has no upper bound (SQLite refuses integers past 2**63 - 1 with
    a 500). ASCII digits only, at most 18 of them; anything else is no such page (404)."""
    regex = r"[0-9]{1,18}"


# --- JSON ------------------------------------------------------------------------------------------
def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: inf would reach timestamps and sums
        raise ValueError(text)
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # Python's json would accept NaN and Infinity


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True when arrays/objects in a parsed document nest deeper than ``limit`` (iterative: a
    recursive walk would fail on the very documents it is meant to refuse)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def json_body(*, kind: type = dict, default: Any = None) -> Any:
    """The request's JSON body, checked: at most the route's body limit, valid
    UTF-8 JSON without NaN/Infinity, nested at most MAX_JSON_DEPTH deep, and of ``kind`` (dict or
    list) — otherwise 400. An empty body gives ``default`` when one is given."""
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:  # a JSON client gets 400 with a JSON error, as for any bad document
        abort(400, description=f"the JSON body is larger than {request.max_content_length} bytes")
    if not raw.strip() and default is not None:
        return default
    try:
        # The C parser recurses: a few thousand brackets raise RecursionError, which is caught
        # here; shallower excess is measured below.
        value = json.loads(raw.decode("utf-8"), parse_float=_finite_float, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        abort(400, description="the body is not valid JSON")
    limit = current_app.config["MAX_JSON_DEPTH"]
    if isinstance(value, (dict, list)) and json_depth_exceeds(value, limit):
        abort(400, description=f"JSON nested deeper than {limit} levels")
    if not isinstance(value, kind):
        abort(400, description=f"a JSON {'object' if kind is dict else 'array'} is expected")
    return value


# --- per-route body limits -------------------------------------------------------------------------
def local_path(target: str | None) -> str | None:
    """``target`` when it is a path on this kiosk, else None. An absolute URL, //host, a backslash
    (browsers read "/\\host" as "//host") or a control character (it would end the Location
    header) could lead the window off the kiosk."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


def attachment(filename: str) -> dict[str, str]:
    """The Content-Disposition header for a download whose name holds request values (ids, dates,
    filter words): reduced to letters, digits, dots, dashes and underscores, so no value a client
    sends can end the header or add another one."""
    return {"Content-Disposition": f"attachment; filename={secure_filename(filename) or 'download'}"}


def body_limit(max_bytes: int) -> Callable:
    """Let one view accept a larger (or demand a smaller) body than MAX_CONTENT_LENGTH. Applied
    before any before_request hook (CSRF reads the form), so the form is parsed under this limit."""
    def decorator(view):
        view.max_body_bytes = max_bytes
        return view
    return decorator


# --- listeners and areas ---------------------------------------------------------------------------
def guest_path(path: str) -> str:
    """Where a request on the guest listener goes: the portal's own paths as they are, anything
    else (a phone's connectivity probe to any host, any page a captive guest asks for) to the
    probe view, which answers it."""
    if path.startswith(PORTAL_PREFIXES) or path.removeprefix("/static/") in PORTAL_STATIC_FILES:
        return path
    return PORTAL_PROBE_PATH


def area_of(path: str, rule=None, view_args=None) -> str:
    """'tablet' (any listener, any client), 'pay', 'internal' and 'browse' (this machine only),
    'portal' (the guest listener only) or 'kiosk' (the rest)."""
    target = rule.rule if rule is not None else path
    if target.startswith(PORTAL_PREFIXES) or path.startswith(PORTAL_PREFIXES):
        return PORTAL
    if (rule is not None and rule.endpoint == "static"
            and (view_args or {}).get("filename") in PORTAL_STATIC_FILES) or (
            rule is None and path.removeprefix("/static/") in PORTAL_STATIC_FILES):
        return PORTAL
    if target == "/tablet" or target.startswith(TABLET_PREFIXES):
        return TABLET
    if rule is not None and rule.endpoint == "static":
        return TABLET if (view_args or {}).get("filename") in TABLET_STATIC_FILES else KIOSK
    if rule is None and path.startswith("/static/") and path[len("/static/"):] in TABLET_STATIC_FILES:
        return TABLET
    if target == "/pay" or target.startswith("/pay/"):
        return PAY
    if target.startswith(INTERNAL_PREFIX) or path.startswith(INTERNAL_PREFIX):
        return INTERNAL
    if target == "/internet" or target.startswith("/internet/"):
        return BROWSE   # a session opens on the kiosk's own screen: never from another machine
    return KIOSK


def client_address(remote_addr: str | None):
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


# The kiosk's own window and the local monitoring agent connect to the listener's address: the
# kernel gives them 127.0.0.1 (or ::1) as source for a loopback or wildcard listener, and the
# listener's own address for one bound to a LAN address. Other 127.x addresses are not "this
# machine" here: nothing local uses them, and it keeps the rule testable over loopback.
THIS_MACHINE = frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})


def refusal(listener: str, area: str, remote_addr: str | None, networks=(),
            listener_host: str | None = None) -> int | None:
    """The status a request gets instead of its page (404 off the tablet listener, 403 for a
    client not allowed on the main one), or None when it may go on."""
    if listener == GUEST or area == PORTAL:
        # Guests reach the portal and nothing else; the portal makes no sense elsewhere.
        return None if listener == GUEST and area == PORTAL else 404
    if area == TABLET:
        return None
    if listener == TABLET:
        return 404  # on the tablets' listener nothing else exists
    address = client_address(remote_addr)
    if address is None:
        return 403
    if address in THIS_MACHINE or address == client_address(listener_host):
        return None
    if area not in (PAY, INTERNAL, BROWSE) and any(address in net for net in networks if net.version == address.version):
        return None
    return 403


def init_app(app: Flask) -> None:
    """Called by create_app before any blueprint is registered (their rules take this converter)."""
    app.url_map.converters["int"] = AsciiIntConverter
    networks = tuple(ipaddress.ip_network(n, strict=False) for n in app.config["SERVICE_NETWORKS"])

    # A url_value_preprocessor runs before every before_request hook (sessions, CSRF), so a refused
    # request touches nothing, and a route's own body limit is in place before anyone reads the form.
    @app.url_value_preprocessor
    def _guard(endpoint, view_args):
        listener = request.environ.get(LISTENER_KEY, KIOSK)
        status = refusal(listener, area_of(request.path, request.url_rule, view_args),
                         request.remote_addr, networks, request.environ.get(LISTENER_HOST_KEY))
        if status is not None:
            abort(status)
        view = app.view_functions.get(endpoint) if endpoint else None
        limit = getattr(view, "max_body_bytes", None)
        if limit is not None:
            request.max_content_length = limit
        if request.mimetype == "multipart/form-data":
            _drop_unnamed_parts()


def _drop_unnamed_parts() -> None:
    """A multipart part without a name comes out of werkzeug under the key None; code that walks
    a form's keys expects strings (Flask-WTF's CSRF check raised AttributeError: a 500). Parsed
    here under the route's body limit."""
    for attribute in ("form", "files"):
        values = getattr(request, attribute)
        if any(not isinstance(key, str) for key in values.keys()):
            setattr(request, attribute, type(values)(
                [(key, value) for key, value in values.items(multi=True) if isinstance(key, str)]))
