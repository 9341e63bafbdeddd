"""The kiosk shell: the native full-screen window that shows the kiosk's own web pages.

This is the only module of the project that imports ``webview`` (pywebview, GTK/WebKit2
backend). A visitor must never leave the kiosk's pages: the window is full-screen, frameless and
cannot be dragged; the context menu, developer tools, zoom and file URLs are off; and every
navigation is checked against the kiosk's own origin by a ``decide-policy`` hook on the native
WebKit2 view. Responses the kiosk does not show as a page (downloads, attachments, PDFs, CSV…)
are refused and the visitor stays where they were. No native dialog opens over the page: printing,
file, colour and log-in choosers are refused. Closing the window (Alt+F4, a window manager) is
refused too; only a deliberate stop (SIGTERM/SIGINT to this process) closes it. Blocked things
are logged with the target host only: paths, query strings and file names can carry personal data.

Manual run: ``python -m terminal.shell --url http://127.0.0.1:8080/ [--windowed]``.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from typing import Callable, Iterable
from urllib.parse import urlsplit

from terminal.internet.webkit_guard import (REFUSALS, SHOWN_DOCUMENT_TYPES, lock_down, loggable_target,  # noqa: F401
                                            refusal_reason, response_refusal, swallow_control_scroll)

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Seconds between attempts to load the kiosk page while the local web server is not up yet.
_RETRY_LOAD_S = 2
# How long the shell waits for the GTK main loop to install the navigation guard.
_GUARD_INSTALL_TIMEOUT_S = 30
# Added to the window's User-Agent, so pages can offer "open this from a LAN browser or use
# cnap export" instead of download links and file pickers the window would refuse anyway. It is
# not a security check (anyone can send it): the refusals (terminal/internet/webkit_guard.py) are.
WINDOW_USER_AGENT_MARK = "CNAP-Kiosk-Window"


# --- pure helpers (no GTK) ---------------------------------------------------------------


def _origin_of(uri: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL; None for anything else or anything malformed."""
    try:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            return None
        host = parts.hostname  # lower-cased, userinfo and IPv6 brackets stripped
        port = parts.port  # raises ValueError on a bad port
    except (ValueError, AttributeError, TypeError):
        return None
    if not host:
        return None
    return scheme, host, _DEFAULT_PORTS[scheme] if port is None else port


def is_allowed(uri: str, own_origin: str, allowed_origins: Iterable[str] = ()) -> bool:
    """True when the window may navigate to ``uri``.

    Allowed: ``about:blank`` and http(s) URLs with exactly the scheme, host and port of
    ``own_origin`` or of one of ``allowed_origins`` (each given as an origin or any URL on it).
    Everything else is blocked: other hosts or ports, file:, data:, javascript:, blob:, and
    anything that does not parse.
    """
    if uri == "about:blank":
        return True
    target = _origin_of(uri)
    if target is None:
        return False
    permitted = {_origin_of(origin) for origin in (own_origin, *allowed_origins)}
    return target in permitted


def display_available() -> bool:
    """True when $WAYLAND_DISPLAY or $DISPLAY is set and a client can actually connect to it."""
    wayland = os.environ.get("WAYLAND_DISPLAY")
    if wayland and _wayland_socket_usable(wayland):
        return True
    x_display = os.environ.get("DISPLAY")
    if x_display:
        return _x_display_usable(x_display)
    return False


def _wayland_socket_usable(name: str) -> bool:
    path = name if os.path.isabs(name) else os.path.join(os.environ.get("XDG_RUNTIME_DIR", ""), name)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(path)
        return True
    except OSError:
        return False


def _x_display_usable(name: str) -> bool:
    # Opening the display through GDK checks the socket and the X authority in one go.
    try:
        import gi

        gi.require_version("Gdk", "3.0")
        from gi.repository import Gdk
    except (ImportError, ValueError):
        return False
    display = Gdk.Display.open(name)
    if display is None:
        return False
    display.close()
    return True


# --- the native hooks --------------------------------------------------------------------


def _webkit():
    import gi

    gi.require_version("Gtk", "3.0")
    gi.require_version("WebKit2", "4.1")
    from gi.repository import GLib, WebKit2

    return GLib, WebKit2


def _find_webkit_view(widget):
    """Depth-first search for the WebKit2.WebView inside pywebview's native Gtk.Window."""
    _, WebKit2 = _webkit()
    if isinstance(widget, WebKit2.WebView):
        return widget
    get_children = getattr(widget, "get_children", None)
    for child in get_children() if get_children else ():
        found = _find_webkit_view(child)
        if found is not None:
            return found
    return None


class _KioskGuard:
    """The signal handlers that keep the visitor on the kiosk's pages."""

    def __init__(self, url: str, allowed_origins: Iterable[str]):
        self.url = url
        self.allowed_origins = tuple(allowed_origins)
        self.page_loaded = threading.Event()

    def install(self, view) -> None:
        lock_down(view, self.report, WINDOW_USER_AGENT_MARK)
        view.connect("decide-policy", self.on_decide_policy)
        view.connect("create", self.on_create)  # window.open() asks for a new view here
        view.connect("load-changed", self.on_load_changed)
        view.connect("load-failed", self.on_load_failed)

    @staticmethod
    def report(kind: str, uri: str) -> None:
        if kind == "permission":
            return  # denied silently, as before: pages ask for these on their own
        where = f" from {loggable_target(uri)}" if uri else ""
        log.warning("kiosk: blocked %s%s", REFUSALS[kind], where)

    on_scroll = staticmethod(swallow_control_scroll)

    def on_decide_policy(self, view, decision, decision_type) -> bool:
        try:
            return self._decide(view, decision, decision_type)
        except Exception:
            # Fail closed: a bug in the guard must not let a navigation through.
            log.exception("kiosk: navigation guard failed; blocking")
            decision.ignore()
            return True

    def _decide(self, view, decision, decision_type) -> bool:
        _, WebKit2 = _webkit()
        if decision_type == WebKit2.PolicyDecisionType.RESPONSE:
            return self._decide_response(decision)
        if decision_type not in (
            WebKit2.PolicyDecisionType.NAVIGATION_ACTION,
            WebKit2.PolicyDecisionType.NEW_WINDOW_ACTION,
        ):
            decision.ignore()  # a decision type this guard does not know: fail closed
            return True
        action = decision.get_navigation_action()
        uri = action.get_request().get_uri() or ""
        new_window = decision_type == WebKit2.PolicyDecisionType.NEW_WINDOW_ACTION
        if not new_window and is_allowed(uri, self.url, self.allowed_origins):
            decision.use()
            return True
        decision.ignore()
        # A second window is never opened; an allowed _blank target is loaded into this window
        # instead, and that load is checked here again.
        if new_window and is_allowed(uri, self.url, self.allowed_origins):
            view.load_uri(uri)
            return True
        kind = "new-window" if new_window else "navigation"
        nav_type = action.get_navigation_type().value_nick
        log.warning("kiosk: blocked %s (%s) to %s", kind, nav_type, loggable_target(uri))
        return True  # handled: later handlers must not override the decision

    def _decide_response(self, decision) -> bool:
        reason = response_refusal(decision)
        if reason is None:
            decision.use()
            return True
        # Ignoring the response keeps the page the visitor is on; nothing is shown or saved.
        decision.ignore()
        log.warning("kiosk: blocked response (%s) from %s", reason,
                    loggable_target(decision.get_response().get_uri() or ""))
        return True

    def on_create(self, _view, action):
        nav_type = action.get_navigation_type().value_nick
        uri = action.get_request().get_uri() or ""
        log.warning("kiosk: blocked new-window (%s) to %s", nav_type, loggable_target(uri))
        return None  # no new view: the page gets null from window.open()

    def on_load_changed(self, view, load_event) -> None:
        _, WebKit2 = _webkit()
        if load_event == WebKit2.LoadEvent.FINISHED and _origin_of(view.get_uri() or "") == _origin_of(self.url):
            self.page_loaded.set()

    def on_load_failed(self, view, _load_event, failing_uri, error) -> bool:
        GLib, WebKit2 = _webkit()
        if error.matches(WebKit2.policy_error_quark(), error.code) or (
            error.matches(WebKit2.network_error_quark(), WebKit2.NetworkError.CANCELLED)
        ):
            return False  # our own blocks and superseded loads: nothing went wrong
        if _origin_of(failing_uri) != _origin_of(self.url):
            return False
        # The local web server is not up (yet): keep the screen as it is and try again, rather
        # than show WebKit's English error page to a visitor.
        log.warning("kiosk: page %s did not load (%s); retrying", loggable_target(failing_uri), error.message)
        GLib.timeout_add_seconds(_RETRY_LOAD_S, self._retry_load, view)
        return True

    def _retry_load(self, view) -> bool:
        view.load_uri(self.url)
        return False  # one-shot timer


# --- the window ----------------------------------------------------------------------------


def run_kiosk(
    url: str,
    *,
    fullscreen: bool = True,
    allowed_origins: Iterable[str] = (),
    on_ready: Callable[[Callable[[], None]], None] | None = None,
    parent_pid: int | None = None,
    control_fd: int | None = None,
) -> None:
    """Open the kiosk window on ``url`` and block until it is closed.

    ``url`` is the kiosk's own page (``http://127.0.0.1:PORT/``); its origin, plus
    ``allowed_origins``, are the only places the window may navigate to. ``fullscreen=False``
    gives an ordinary decorated 1280×800 window for development. ``on_ready(close)`` is called
    once, in a worker thread, after the kiosk page has loaded; ``close()`` closes the window.
    SIGTERM and SIGINT also close the window, so ``run_kiosk`` returns and the caller cleans up.
    Those are the only ways to close it: Alt+F4 and other close requests are refused.
    ``parent_pid``: the window closes once that process is no longer its parent (it died).
    ``control_fd``: the window's end of `cnap kiosk`'s control channel (a Unix socket): the kiosk
    opens visitors' browsing sessions through it (terminal/internet/browser.py).
    """
    if _origin_of(url) is None:
        raise ValueError(f"kiosk URL must be an http(s) URL, got {loggable_target(url)}")
    import webview  # the project's only import of pywebview

    GLib, _ = _webkit()
    webview.settings["OPEN_EXTERNAL_LINKS_IN_BROWSER"] = False  # else _blank goes to a browser
    webview.settings["ALLOW_FILE_URLS"] = False
    webview.settings["ALLOW_DOWNLOADS"] = False
    webview.settings["OPEN_DEVTOOLS_IN_DEBUG"] = False

    guard = _KioskGuard(url, allowed_origins)
    # The window opens on a blank page; the kiosk URL is loaded only once the guard is in place,
    # so not even the first page can navigate away unchecked.
    window = webview.create_window(
        "ЦНАП",
        url=None,
        fullscreen=fullscreen,
        frameless=fullscreen,
        easy_drag=False,
        draggable=False,
        resizable=not fullscreen,
        zoomable=False,
        text_select=False,
        confirm_close=False,
        width=1280,
        height=800,
        background_color="#FFFFFF",
    )
    failure: list[str] = []
    browser_hosts: list = []  # the internet browsing sessions' host, once the window is up
    stopping = threading.Event()  # set only by a deliberate stop; any other close is refused

    def close() -> None:
        stopping.set()
        GLib.idle_add(_close_native, window)

    def on_closing() -> bool:
        if stopping.is_set():
            return True
        # Alt+F4, the window manager's close button or a close message: the kiosk stays open.
        log.warning("kiosk: refused to close the window (only a deliberate stop closes it)")
        return False  # pywebview cancels the close

    window.events.closing += on_closing

    def install_guard(done: threading.Event) -> bool:
        try:
            view = _find_webkit_view(window.native)
            if view is None:
                failure.append("no WebKit2.WebView inside the pywebview window")
            else:
                # pywebview's own decide-policy handler runs first and would decide responses
                # (show or download) before the guard sees them; the guard takes over its job.
                _disconnect_pywebview_policy(view, window)
                guard.install(view)
                if control_fd is not None:
                    from terminal.internet.browser import BrowserHost

                    browser_hosts.append(BrowserHost(window.native, url, socket.socket(fileno=control_fd)))
        except Exception as exc:  # a window without the guard must not stay open
            failure.append(f"installing the navigation guard failed: {exc!r}")
        finally:
            done.set()
        return False  # run once

    def after_start() -> None:
        # Runs in pywebview's worker thread; the GTK work itself goes through GLib.idle_add.
        window.events.before_show.wait()
        done = threading.Event()
        GLib.idle_add(install_guard, done)
        if not done.wait(_GUARD_INSTALL_TIMEOUT_S):
            failure.append("the GTK main loop did not install the navigation guard in time")
        if failure:
            log.error("kiosk: %s; closing the window", failure[0])
            close()
            return
        window.load_url(url)
        if on_ready is not None:
            guard.page_loaded.wait()
            try:
                on_ready(close)
            except Exception:
                log.exception("kiosk: on_ready callback failed")

    def on_signal() -> bool:
        log.info("kiosk: signal received, closing the window")
        stopping.set()
        _close_native(window)
        return True  # keep the handler for a second signal

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, on_signal)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, on_signal)
    if parent_pid is not None:

        def parent_gone() -> bool:
            if os.getppid() == parent_pid:
                return True
            log.warning("kiosk: the supervising process is gone; closing the window")
            on_signal()
            return False

        # A window must not outlive `cnap kiosk` (a restarted kiosk would open a second one).
        GLib.timeout_add_seconds(1, parent_gone)
    webview.start(after_start, gui="gtk", debug=False, private_mode=True)
    if failure:
        raise RuntimeError(f"kiosk shell: {failure[0]}")


def _disconnect_pywebview_policy(view, window) -> None:
    from webview.platforms import gtk as pywebview_gtk

    browser = pywebview_gtk.BrowserView.instances.get(window.uid)
    if browser is None or browser.webview is not view:
        raise RuntimeError("pywebview's view for this window was not found")
    if view.disconnect_by_func(browser.on_navigation) != 1:
        raise RuntimeError("pywebview's decide-policy handler was not found")


def _close_native(window) -> bool:
    native = window.native
    if native is not None:
        native.close()  # emits delete-event, so pywebview tears down as for a normal close
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m terminal.shell", description="Open the kiosk window on a local URL."
    )
    parser.add_argument("--url", required=True, help="the kiosk's own page, e.g. http://127.0.0.1:8080/")
    parser.add_argument("--windowed", action="store_true", help="ordinary window instead of full screen")
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="another origin the window may navigate to (repeatable)",
    )
    parser.add_argument("--control-fd", type=int, metavar="FD",
                        help="the window's end of cnap kiosk's control channel (internet browsing sessions)")
    parser.add_argument("--parent-pid", type=int, metavar="PID",
                        help="close the window once process PID is no longer its parent (cnap kiosk passes its own)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if _origin_of(args.url) is None:
        parser.error("--url must be an http(s) URL")
    if not display_available():
        print("kiosk shell: no usable display ($DISPLAY or $WAYLAND_DISPLAY)", file=sys.stderr)
        return 2
    run_kiosk(args.url, fullscreen=not args.windowed, allowed_origins=args.allow_origin,
              parent_pid=args.parent_pid, control_fd=args.control_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
