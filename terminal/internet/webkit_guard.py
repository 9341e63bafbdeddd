"""What every WebKit2 view of the kiosk window refuses, shared by the kiosk's own view
(terminal/shell.py) and the visitor's browsing view (terminal/internet/browser.py).

Pure helpers (no GTK at import time): ``refusal_reason`` (which responses are never shown or
saved) and ``loggable_target`` (what a log line or an event may say about a URL). The GTK part,
``lock_down(view, report)``, switches off developer tools, zoom, file access, clipboard, camera and
microphone, and refuses context menus, permission requests, printing, native dialogs (file, colour
and log-in choosers) and downloads — each refusal is reported as ``report(kind, uri)`` so the
caller can log it (shell) or count it (browsing view).
"""
from __future__ import annotations

import re
from typing import Callable
from urllib.parse import urlsplit

# The only kinds of document a view shows (main page or frame). Everything else a link or a
# server can send (CSV, PDF, JSON, plain text, images, archives…) is refused rather than shown or
# saved; sub-resources (images, CSS, fetch) are not affected.
SHOWN_DOCUMENT_TYPES = frozenset({"text/html", "application/xhtml+xml"})

# kind -> what the shell's log says; the same kinds go into the browsing view's events.
REFUSALS = {
    "print": "print dialog",
    "file_chooser": "file chooser",
    "color_chooser": "colour chooser",
    "authenticate": "log-in dialog",
    "download": "download",
    "permission": "permission request",
}

Report = Callable[[str, str], None]   # (kind, uri or '')


def refusal_reason(mime_type: str, content_disposition: str | None) -> str | None:
    """Why a response must not be shown in the window, or None when it may be shown.

    A response is shown only when its type is one of ``SHOWN_DOCUMENT_TYPES`` and it is not a
    download: any ``Content-Disposition`` other than ``inline`` counts as an attachment, as RFC 6266
    says unknown disposition types must. The reason is safe to log (no file name)."""
    kind = (mime_type or "").split(";", 1)[0].strip().lower()
    disposition = (content_disposition or "").split(";", 1)[0].strip().lower()
    if disposition and disposition != "inline":
        return f"{kind or 'untyped'} attachment"
    if kind not in SHOWN_DOCUMENT_TYPES:
        return kind if re.fullmatch(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}", kind) \
            else "untyped response"
    return None


def loggable_target(uri: str) -> str:
    """What a log line may say about a URL: scheme, host and port only (no path, query, user)."""
    try:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except (ValueError, AttributeError, TypeError):
        return "(unparseable URL)"
    if not re.fullmatch(r"[a-z][a-z0-9+.-]{0,31}", scheme):
        return "(unparseable URL)"
    if not host:
        return f"{scheme}:"
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def response_refusal(decision) -> str | None:
    """``refusal_reason`` for a WebKit2.ResponsePolicyDecision, plus what WebKit cannot display."""
    response = decision.get_response()
    headers = response.get_http_headers()  # None for about:, data: and the like
    disposition = headers.get_one("Content-Disposition") if headers is not None else None
    reason = refusal_reason(response.get_mime_type() or "", disposition)
    if reason is None and not decision.is_mime_type_supported():
        reason = "page WebKit cannot display"
    return reason


def swallow_control_scroll(_view, event) -> bool:
    """Ctrl+wheel and touchpad pinch arrive as control-scroll; swallow them, keep plain scroll.
    The signal hands over a Gdk.EventScroll; its ``state`` field holds the modifier keys."""
    from gi.repository import Gdk

    return bool(event.state & Gdk.ModifierType.CONTROL_MASK)


def _keep_zoom(view, _pspec) -> None:
    if view.get_zoom_level() != 1.0:
        view.set_zoom_level(1.0)


def lock_down(view, report: Report, user_agent_mark: str = "") -> None:
    """Harden one WebKit2.WebView (settings and refusing handlers); see the module docstring."""
    settings = view.get_settings()
    settings.set_enable_developer_extras(False)
    settings.set_allow_file_access_from_file_urls(False)
    settings.set_allow_universal_access_from_file_urls(False)
    settings.set_javascript_can_open_windows_automatically(False)
    settings.set_javascript_can_access_clipboard(False)
    # pywebview turns camera and microphone on; a public kiosk has no use for them.
    settings.set_enable_media_stream(False)
    settings.set_enable_back_forward_navigation_gestures(False)
    settings.set_zoom_text_only(False)
    if user_agent_mark:
        settings.set_user_agent_with_application_details(user_agent_mark, "1")
    view.set_zoom_level(1.0)

    view.connect("context-menu", lambda *_: True)  # True = handled: no menu at all
    view.connect("notify::zoom-level", _keep_zoom)
    view.connect("scroll-event", swallow_control_scroll)

    def on_permission_request(_view, request) -> bool:
        # Geolocation, camera, microphone, notifications, pointer lock, clipboard, media keys…
        request.deny()
        report("permission", "")
        return True

    def on_print(_view, _operation) -> bool:
        report("print", "")
        return True  # handled: WebKit shows no dialog and prints nothing

    def on_native_dialog(_view, request, kind: str) -> bool:
        request.cancel()
        report(kind, "")
        return True

    view.connect("permission-request", on_permission_request)
    # Native dialogs open as windows of their own over the kiosk; the print dialog and the file
    # chooser browse the disk and can open other programs. None of them is ever shown.
    view.connect("print", on_print)
    view.connect("run-file-chooser", on_native_dialog, "file_chooser")
    view.connect("run-color-chooser", on_native_dialog, "color_chooser")
    view.connect("authenticate", on_native_dialog, "authenticate")

    # Responses are refused in decide-policy, but WebKit starts some downloads by itself (a link
    # with a download attribute); a kiosk never saves files. The web context can outlive the
    # view, so its handler holds no reference to the view.
    def on_download(_context, download) -> None:
        uri = download.get_request().get_uri() or ""
        download.cancel()
        report("download", uri)

    context = view.get_context()
    handler_id = context.connect("download-started", on_download)
    view.connect("destroy", lambda *_: context.handler_is_connected(handler_id) and context.disconnect(handler_id))
