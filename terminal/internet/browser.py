"""The visitor's browsing view inside the kiosk window (GTK/WebKit2, in the shell's process).

``BrowserHost`` listens on the control channel (terminal/internet/channel.py) and, for each
"open", builds a ``BrowsingView``: a large toolbar (Home, Back, Forward, the current site, time
left, End session) over a NEW WebKit2.WebView with its own ephemeral WebsiteDataManager and
WebContext, whose network goes through the filtering proxy. The kiosk's own view is taken out of
the window (kept alive) and put back when the session ends.

Two guards, independent of each other:
* the navigation hook (``decide-policy``): every main-frame and frame navigation, redirect, form
  post and popup is checked with ``Allowlist.decide`` — the same decision the proxy's filter is
  written from; popups never open a window (an allowed one loads in this view); responses other
  than HTML pages are refused (no downloads); see ``BrowsingView._decide``;
* the proxy (terminal/internet/proxy.py) refuses every host not on the list, for sub-resources too.

Limits live here, not in page scripts (the kiosk's scripts do not run on foreign pages): a GLib
timer each second; idle = no key, button, touch, scroll or motion event reaching the window (the
window's ``captured-event``, so it sees events meant for any page); a warning bar with "More time"
``warn_s`` before either limit. The end (any reason) destroys the view, its context and its data
manager (cookies, storage, IndexedDB, cache, history, form data are all in memory only), puts the
kiosk's view back and then reports exactly one "ended".

WebKit2GTK has no password manager and no form autofill: nothing is offered to be saved, and what a
visitor typed lives only in the ephemeral session that is destroyed at the end.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.request
from html import escape
from urllib.parse import urlencode, urlsplit

from terminal.i18n import N_
from terminal.internet.allowlist import Verdict
from terminal.internet.channel import END_REASONS, MAX_LINE, encode, request_from_message
from terminal.internet.port import SessionRequest
from terminal.internet.webkit_guard import loggable_target, lock_down, response_refusal

log = logging.getLogger(__name__)

# Tests only: a BrowsingView without the navigation hook, to show the proxy blocks on its own.
# Read from the environment of the window process; no setting reaches it.
HOOK_OFF_ENV = "KIOSK_TEST_NAVIGATION_HOOK_OFF"
BLOCKED_PAGE_TIMEOUT_S = 2.0
TOOLBAR_CSS = b"""
.cnap-browser-toolbar { background: #1d3557; padding: 8px; }
.cnap-browser-toolbar button { min-height: 64px; min-width: 112px; padding: 0 20px; font-size: 22px; }
.cnap-browser-toolbar .cnap-site, .cnap-browser-toolbar .cnap-time { color: #ffffff; font-size: 22px; }
.cnap-browser-end { background: #b00020; color: #ffffff; }
.cnap-browser-end label { color: #ffffff; font-weight: bold; }
.cnap-browser-warning { background: #fff3b0; padding: 8px 16px; }
.cnap-browser-warning label { color: #1a1a1a; font-size: 24px; font-weight: bold; }
.cnap-browser-warning button { min-height: 64px; min-width: 160px; font-size: 22px; }
"""

def window_text(key: str, lang: str, **params) -> str:
    """The toolbar's, the warning's and the built-in notice's words, from the kiosk's gettext
    catalogues (terminal/translations), like every other text of the kiosk."""
    from terminal.i18n import KIOSK

    return KIOSK.gettext(key, lang, **params)



def _gi():
    import gi

    gi.require_version("Gtk", "3.0")
    gi.require_version("Gdk", "3.0")
    gi.require_version("WebKit2", "4.1")
    from gi.repository import Gdk, GLib, Gtk, WebKit2

    return Gdk, GLib, Gtk, WebKit2


def builtin_blocked_page(host: str, lang: str) -> str:
    title = escape(window_text(N_("internet.window.blocked_title"), lang))
    said = escape(window_text(N_("internet.window.blocked"), lang, host=host or "?"))
    hint = escape(window_text(N_("internet.window.blocked_hint"), lang))
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>'
            '<style>body{font:28px/1.4 sans-serif;margin:10vh 8vw;color:#1a1a1a;background:#fff}</style></head>'
            f'<body><h1>{title}</h1><p>{said}</p><p>{hint}</p></body></html>')


def fetch_blocked_page(kiosk_url: str, host: str, lang: str) -> str:
    """The kiosk's own "not available here" page (``/internet/blocked``), fetched straight from the
    kiosk on loopback (never through the proxy); the built-in page when that fails."""
    parts = urlsplit(kiosk_url)
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        url = f"{parts.scheme}://{parts.netloc}/internet/blocked?" + urlencode({"host": host, "lang": lang})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=BLOCKED_PAGE_TIMEOUT_S) as answer:
                kind = answer.headers.get_content_type()
                if answer.status == 200 and kind == "text/html":
                    return answer.read(256 * 1024).decode("utf-8", "replace")
        except (OSError, ValueError):
            pass
    return builtin_blocked_page(host, lang)


class BrowsingView:
    """One visitor's session: toolbar + ephemeral WebView in place of the kiosk's view."""

    def __init__(self, host: "BrowserHost", request: SessionRequest, *, hook: bool = True):
        Gdk, GLib, Gtk, WebKit2 = _gi()
        self.host = host
        self.request = request
        self.hook = hook
        self.started = time.monotonic()
        self.session_deadline = self.started + request.session_s
        self.last_activity = self.started
        self.warned: set[str] = set()
        self.ended = False
        self._blocked_host: str | None = None   # last host the hook refused (for load-failed)

        # Ephemeral: cookies, local/session storage, IndexedDB, cache, HSTS live in memory only.
        self.data_manager = WebKit2.WebsiteDataManager.new_ephemeral()
        if request.proxy_url:
            proxy = WebKit2.NetworkProxySettings.new(request.proxy_url, None)   # no ignore hosts
            self.data_manager.set_network_proxy_settings(WebKit2.NetworkProxyMode.CUSTOM, proxy)
        self.context = WebKit2.WebContext.new_with_website_data_manager(self.data_manager)
        self.context.set_cache_model(WebKit2.CacheModel.DOCUMENT_VIEWER)
        self.view = WebKit2.WebView(web_context=self.context)
        lock_down(self.view, self._report_refusal)
        settings = self.view.get_settings()
        settings.set_enable_html5_database(True)      # ephemeral, gone with the data manager
        settings.set_enable_html5_local_storage(True)
        self.view.connect("decide-policy", self._on_decide_policy)
        self.view.connect("create", self._on_create)
        self.view.connect("notify::uri", self._on_uri_changed)
        self.view.connect("load-changed", self._on_load_changed)
        self.view.connect("load-failed", self._on_load_failed)
        self.view.connect("web-process-terminated", self._on_page_process_ended)

        self.box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL)
        toolbar = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=8)
        toolbar.get_style_context().add_class("cnap-browser-toolbar")
        self.home_button = self._button(self._text(N_("internet.window.home")), self._on_home)
        self.back_button = self._button(self._text(N_("internet.window.back")), lambda *_: self.view.go_back())
        self.forward_button = self._button(self._text(N_("internet.window.forward")), lambda *_: self.view.go_forward())
        self.end_button = self._button(self._text(N_("internet.window.end")), lambda *_: self.end("user"))
        self.end_button.get_style_context().add_class("cnap-browser-end")
        self.site_label = Gtk.Label(label="", xalign=0.0)
        self.site_label.set_ellipsize(3)  # Pango.EllipsizeMode.END
        self.site_label.get_style_context().add_class("cnap-site")
        self.time_label = Gtk.Label(label="")
        self.time_label.get_style_context().add_class("cnap-time")
        for widget in (self.home_button, self.back_button, self.forward_button):
            toolbar.pack_start(widget, False, False, 0)
        toolbar.pack_start(self.site_label, True, True, 12)
        toolbar.pack_end(self.end_button, False, False, 0)
        toolbar.pack_end(self.time_label, False, False, 12)

        self.warning_bar = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=16)
        self.warning_bar.get_style_context().add_class("cnap-browser-warning")
        self.warning_label = Gtk.Label(label="", xalign=0.0)
        self.warning_label.set_line_wrap(True)
        self._mark_alert(self.warning_bar)
        self.more_button = self._button(self._text(N_("internet.window.more")), self._on_more_time)
        self.warning_bar.pack_start(self.warning_label, True, True, 0)
        self.warning_bar.pack_end(self.more_button, False, False, 0)
        self.warning_bar.set_no_show_all(True)

        self.box.pack_start(toolbar, False, False, 0)
        self.box.pack_start(self.warning_bar, False, False, 0)
        self.box.pack_start(self.view, True, True, 0)
        self._update_buttons()
        self._update_time()

    # --- building blocks --------------------------------------------------------------------
    def _text(self, key: str, **params) -> str:
        return window_text(key, self.request.lang, **params)

    def _button(self, label: str, handler):
        _, _, Gtk, _ = _gi()
        button = Gtk.Button(label=label)
        button.set_can_focus(True)
        button.connect("clicked", handler)
        return button

    @staticmethod
    def _mark_alert(widget) -> None:
        """Screen readers announce the warning as an alert (ATK role), when ATK is there."""
        try:
            import gi

            gi.require_version("Atk", "1.0")
            from gi.repository import Atk

            widget.get_accessible().set_role(Atk.Role.ALERT)
        except (ImportError, ValueError, AttributeError):
            pass

    def start(self) -> None:
        self.box.show_all()
        self.view.load_uri(self.request.home_url)

    def emit(self, event: dict) -> None:
        self.host.send(event)

    # --- the navigation hook ---------------------------------------------------------------
    def _verdict(self, uri: str) -> Verdict:
        if not self.hook:
            return Verdict(True, urlsplit(uri).hostname or "" if "://" in uri else "")
        return self.request.allowlist.decide(uri)

    def _on_decide_policy(self, view, decision, decision_type) -> bool:
        try:
            return self._decide(view, decision, decision_type)
        except Exception:
            log.exception("internet: navigation hook failed; blocking")  # fail closed
            decision.ignore()
            return True

    def _decide(self, view, decision, decision_type) -> bool:
        _, _, _, WebKit2 = _gi()
        if decision_type == WebKit2.PolicyDecisionType.RESPONSE:
            reason = response_refusal(decision)
            if reason is None:
                decision.use()
                return True
            decision.ignore()   # nothing is shown or saved; the visitor stays on the page
            response = decision.get_response()
            uri = response.get_uri() or ""
            if response.get_status_code() < 400:
                # An error answer (e.g. the proxy's refusal of a tunnel) is no download: the proxy
                # counts its own refusals.
                self._block(self._host_of(uri), "download", show_page=False)
            log.warning("internet: refused response (%s) from %s", reason, loggable_target(uri))
            return True
        if decision_type not in (WebKit2.PolicyDecisionType.NAVIGATION_ACTION,
                                 WebKit2.PolicyDecisionType.NEW_WINDOW_ACTION):
            decision.ignore()
            return True
        action = decision.get_navigation_action()
        uri = action.get_request().get_uri() or ""
        verdict = self._verdict(uri)
        nav_type = action.get_navigation_type()
        if decision_type == WebKit2.PolicyDecisionType.NEW_WINDOW_ACTION:
            decision.ignore()   # never a second window
            if verdict.allowed:
                view.load_uri(uri)   # checked here again as an ordinary navigation
            else:
                self._block(verdict.host, "scheme" if verdict.reason in ("scheme", "malformed") else "popup",
                            show_page=True)
            return True
        if verdict.allowed:
            decision.use()
            return True
        decision.ignore()
        if verdict.reason in ("scheme", "malformed"):
            kind = "scheme"
        elif action.is_redirect():
            kind = "redirect"
        elif nav_type in (WebKit2.NavigationType.FORM_SUBMITTED, WebKit2.NavigationType.FORM_RESUBMITTED):
            kind = "form"
        else:
            kind = "navigation"
        # A frame's navigation looks the same as the page's here; only what the visitor asked for
        # (a tap on a link or a button, a form) replaces the page with the notice. A page's own
        # redirect is cancelled mid-load and shows the notice from load-failed; a frame just
        # stays empty.
        visitor_asked = action.is_user_gesture() or kind == "form" or \
            nav_type == WebKit2.NavigationType.LINK_CLICKED
        self._blocked_host = verdict.host
        self._block(verdict.host, kind, show_page=visitor_asked)
        return True

    def _on_create(self, view, action):
        """window.open() asks for a new view here (target=_blank links come through decide-policy
        as NEW_WINDOW_ACTION): never a second window; an allowed popup loads in this view."""
        try:
            uri = action.get_request().get_uri() or ""
            verdict = self._verdict(uri)
            if verdict.allowed and uri != "about:blank":
                view.load_uri(uri)   # checked in decide-policy again
            elif not verdict.allowed:
                kind = "scheme" if verdict.reason in ("scheme", "malformed") else "popup"
                self._block(verdict.host, kind, show_page=action.is_user_gesture())
        except Exception:
            log.exception("internet: popup hook failed")
        return None   # the page gets null from window.open()

    def _block(self, host: str, kind: str, *, show_page: bool) -> None:
        self.emit({"type": "blocked", "host": host, "layer": "hook", "kind": kind})
        if show_page:
            self._show_blocked_page(host)

    def _show_blocked_page(self, host: str) -> None:
        _, GLib, _, _ = _gi()
        kiosk_url, lang = self.host.kiosk_url, self.request.lang

        def fetch() -> None:
            html = fetch_blocked_page(kiosk_url, host, lang)
            GLib.idle_add(self._load_notice, html)

        threading.Thread(target=fetch, name="internet-blocked-page", daemon=True).start()

    def _load_notice(self, html: str) -> bool:
        if not self.ended:
            # about:blank as the base: the notice has no origin a link could use.
            self.view.load_html(html, None)
        return False

    def _report_refusal(self, kind: str, uri: str) -> None:
        self.emit({"type": "blocked", "host": self._host_of(uri), "layer": "hook", "kind": kind})

    @staticmethod
    def _host_of(uri: str) -> str:
        target = loggable_target(uri)
        return urlsplit(target).hostname or "" if "://" in target else ""

    def _on_load_failed(self, _view, _event, failing_uri, error) -> bool:
        _, _, _, WebKit2 = _gi()
        if error.matches(WebKit2.policy_error_quark(), WebKit2.PolicyError.FRAME_LOAD_INTERRUPTED_BY_POLICY_CHANGE) \
                and self._blocked_host is not None:
            self._show_blocked_page(self._blocked_host)
            self._blocked_host = None
            return True
        return False

    def _on_page_process_ended(self, _view, reason) -> None:
        # The page's own process crashed or was killed (a hostile page, out of memory): the view
        # is dead. End the session honestly (its data are wiped as always) rather than leave the
        # visitor in front of a blank page until a limit passes.
        log.warning("internet: the page's web process ended (%s); ending the session", reason)
        _, GLib, _, _ = _gi()
        GLib.idle_add(lambda: self.end("error") and False)

    # --- toolbar -------------------------------------------------------------------------------
    def _on_home(self, *_):
        self.view.load_uri(self.request.home_url)

    def _on_uri_changed(self, view, _pspec) -> None:
        uri = view.get_uri() or ""
        host = urlsplit(uri).hostname if uri.startswith(("http://", "https://")) else ""
        try:
            shown = (host or "").encode("ascii").decode("idna") if host else ""
        except UnicodeError:
            shown = host or ""
        self.site_label.set_text(shown)
        self._update_buttons()

    def _on_load_changed(self, _view, _event) -> None:
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.back_button.set_sensitive(self.view.can_go_back())
        self.forward_button.set_sensitive(self.view.can_go_forward())

    def _update_time(self) -> None:
        left = max(0, int(self.session_deadline - time.monotonic() + 0.999))
        self.time_label.set_text(self._text(N_("internet.window.time_left"), time=f"{left // 60}:{left % 60:02d}"))

    # --- limits ---------------------------------------------------------------------------------
    def activity(self) -> None:
        self.last_activity = time.monotonic()
        if "idle" in self.warned:
            self.warned.discard("idle")
            self.emit({"type": "extended", "limit": "idle"})
            self._refresh_warning()

    def _on_more_time(self, *_):
        self.activity()
        if "session" in self.warned:
            self.session_deadline += self.request.extend_s
            self.warned.discard("session")
            self.emit({"type": "extended", "limit": "session"})
        self._refresh_warning()

    def tick(self) -> bool:
        if self.ended:
            return False
        now = time.monotonic()
        left = {"session": self.session_deadline - now, "idle": self.last_activity + self.request.idle_s - now}
        for limit, seconds in left.items():
            if seconds <= 0:
                self.end("session_limit" if limit == "session" else "idle")
                return False
        for limit, seconds in left.items():
            if seconds <= self.request.warn_s and limit not in self.warned:
                self.warned.add(limit)
                self.emit({"type": "warning", "limit": limit, "seconds_left": int(seconds + 0.5)})
        self._update_time()
        self._refresh_warning(left)
        return True

    def _refresh_warning(self, left: dict | None = None) -> None:
        if not self.warned:
            self.warning_bar.hide()
            return
        now = time.monotonic()
        left = left or {"session": self.session_deadline - now, "idle": self.last_activity + self.request.idle_s - now}
        limit = min(self.warned, key=lambda name: left[name])
        seconds = max(0, int(left[limit] + 0.5))
        self.warning_label.set_text(self._text(N_("internet.window.warn_session") if limit == "session"
                                           else N_("internet.window.warn_idle"), seconds=seconds))
        self.more_button.set_visible(True)
        self.warning_label.set_visible(True)
        self.warning_bar.show()

    # --- the end ----------------------------------------------------------------------------
    def end(self, reason: str) -> None:
        _, _, _, WebKit2 = _gi()
        if self.ended:
            return
        self.ended = True
        seconds = round(time.monotonic() - self.started, 1)
        try:
            self.view.stop_loading()
            # Belt and braces: the manager is ephemeral and dropped below anyway.
            self.data_manager.clear(WebKit2.WebsiteDataTypes.ALL, 0, None, None, None)
        except Exception:
            log.exception("internet: clearing the session's data failed")
        self.host.restore_kiosk(self.box)
        self.box.destroy()   # destroys the WebView with it; its context and data manager follow
        self.view = self.context = self.data_manager = self.box = None
        self.host.session_over(self)
        self.emit({"type": "ended", "reason": reason if reason in END_REASONS else "stopped", "seconds": seconds})


class BrowserHost:
    """The window's side of the control channel: one BrowsingView at a time."""

    def __init__(self, window, kiosk_url: str, sock: socket.socket, *, hook: bool | None = None):
        Gdk, GLib, Gtk, _ = _gi()
        self.window = window
        self.kiosk_url = kiosk_url
        self.sock = sock
        self.hook = (os.environ.get(HOOK_OFF_ENV) != "1") if hook is None else hook
        if not self.hook:
            log.warning("internet: navigation hook OFF (%s, tests only)", HOOK_OFF_ENV)
        self.session: BrowsingView | None = None
        self._kiosk_child = None
        self._buffer = b""
        self._controllers: list = []
        provider = Gtk.CssProvider()
        provider.load_from_data(TOOLBAR_CSS)
        Gtk.StyleContext.add_provider_for_screen(Gdk.Screen.get_default(), provider,
                                                 Gtk.STYLE_PROVIDER_PRIORITY_APPLICATION)
        sock.setblocking(False)
        GLib.io_add_watch(sock.fileno(), GLib.PRIORITY_DEFAULT,
                          GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR, self._on_readable)

    # --- channel ------------------------------------------------------------------------------
    def send(self, event: dict) -> None:
        data = encode(event)
        try:
            self.sock.setblocking(True)
            self.sock.sendall(data)
        except OSError:
            pass   # the kiosk is gone; the shell closes itself when its parent dies
        finally:
            try:
                self.sock.setblocking(False)
            except OSError:
                pass

    def _on_readable(self, _fd, condition) -> bool:
        _, GLib, _, _ = _gi()
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            log.warning("internet: the control channel closed")
            if self.session is not None:
                self.session.end("stopped")
            return False
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if isinstance(message, dict):
                self._handle(message)
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
        return True

    def _handle(self, message: dict) -> None:
        op = message.get("op")
        if op == "end":
            if self.session is not None:
                reason = message.get("reason")
                self.session.end(reason if reason in END_REASONS else "stopped")
            return
        if op != "open":
            return
        if self.session is not None:
            return   # the kiosk's channel refuses a second open; ignore a stray one
        try:
            request = request_from_message(message)
        except (ValueError, TypeError, KeyError) as exc:
            log.error("internet: a malformed session request (%s)", type(exc).__name__)
            self.send({"type": "ended", "reason": "error", "seconds": 0.0})
            return
        self.open(request)

    # --- sessions ------------------------------------------------------------------------------
    def open(self, request: SessionRequest) -> BrowsingView:
        Gdk, GLib, Gtk, _ = _gi()
        session = BrowsingView(self, request, hook=self.hook)
        self.session = session
        # The kiosk's view (in pywebview's scrolled window) leaves the window but stays alive.
        self._kiosk_child = self.window.get_child()
        self.window.remove(self._kiosk_child)
        self.window.add(session.box)
        session.start()
        self._watch_activity()
        GLib.timeout_add(1000, session.tick)
        self.send({"type": "started"})
        return session

    def _watch_activity(self) -> None:
        """Event controllers on the window in the capture phase: they see every tap, key, scroll and
        pointer move before the page does (and never stop them), whatever page is shown."""
        _, _, Gtk, _ = _gi()
        capture = Gtk.PropagationPhase.CAPTURE
        press = Gtk.GestureMultiPress.new(self.window)   # mouse buttons and touch
        press.set_button(0)
        press.connect("pressed", lambda *_: self._activity())
        motion = Gtk.EventControllerMotion.new(self.window)
        motion.connect("motion", lambda *_: self._activity())
        keys = Gtk.EventControllerKey.new(self.window)
        keys.connect("key-pressed", lambda *_: self._activity() or False)
        scroll = Gtk.EventControllerScroll.new(self.window, Gtk.EventControllerScrollFlags.BOTH_AXES)
        scroll.connect("scroll", lambda *_: self._activity() or False)
        self._controllers = [press, motion, keys, scroll]
        for controller in self._controllers:
            controller.set_propagation_phase(capture)

    def _activity(self) -> None:
        if self.session is not None:
            self.session.activity()

    def restore_kiosk(self, box) -> None:
        _, _, Gtk, _ = _gi()
        for controller in self._controllers:
            controller.set_propagation_phase(Gtk.PropagationPhase.NONE)
        self._controllers = []
        self.window.remove(box)
        if self._kiosk_child is not None:
            self.window.add(self._kiosk_child)
            self._kiosk_child.show_all()
            self._kiosk_child = None

    def session_over(self, session: BrowsingView) -> None:
        if self.session is session:
            self.session = None
        from terminal.shell import _find_webkit_view

        kiosk_view = _find_webkit_view(self.window)
        if kiosk_view is not None:
            kiosk_view.load_uri(session.request.back_url or self.kiosk_url)
