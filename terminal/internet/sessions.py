"""The kiosk's side of browsing sessions (app state ``KioskState.internet``): whether the home
screen may offer the internet tile, the session request it hands to the window
(terminal/internet/port.py), the window's events turned into counters, and the filtering proxy's
lifecycle.

The tile rule (docs/internet-kiosk.md): the tile shows while all of these hold —
  1. INTERNET_ENABLED;
  2. the kiosk window can browse (``KioskState.internet_window`` is set: `cnap kiosk` with a
     display; a plain browser on the kiosk's URL has none);
  3. the filtering proxy runs;
  4. an uplink works, as `cnap agent` says over loopback: its ``uplinks`` controller reports
     itself available with at least one uplink ``up``. When the agent has no uplink watch (no
     ``uplinks`` controller, or one that is ``disabled`` because no uplinks are configured) the
     internet counts as available. When the agent cannot be reached, the tile hides.
The agent is asked in the background at most every INTERNET_UPLINK_CHECK_S; the home page only
reads the last answer (the very first time it waits a moment for it), so a slow agent never
holds the home screen. An answer older than three check periods counts as no answer.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from terminal.i18n import LANGUAGES, SOURCE_LANGUAGE
from terminal.internet.allowlist import Allowlist
from terminal.internet.port import Event, SessionRequest, WindowPort
from terminal.internet.store import InternetStore

log = logging.getLogger("cnap.internet")

# Why the internet is not offered now (the words service mode and the pages show).
DISABLED, NO_WINDOW, PROXY_DOWN, NO_UPLINK, NO_AGENT, EMPTY_LIST = (
    "disabled", "no_window", "proxy_down", "no_uplink", "no_agent", "empty_list")
UP, DOWN, NOT_CONFIGURED = "up", "down", "not_configured"
FIRST_ANSWER_WAIT_S = 0.3       # the home page waits this long for the agent's very first answer
PROXY_RETRY_S = 30.0            # a proxy that died is started again at most this often


def uplink_verdict(status: Any) -> str:
    """``up``, ``down`` or ``not_configured`` from the agent's /status (monitoring/agent.py):
    the ``uplinks`` controller's snapshot (facility/uplinks ``status()``)."""
    controllers = status.get("controllers") if isinstance(status, Mapping) else None
    uplinks = controllers.get("uplinks") if isinstance(controllers, Mapping) else None
    if uplinks is None:
        return NOT_CONFIGURED
    if not isinstance(uplinks, Mapping):
        return DOWN
    if uplinks.get("state") == "disabled":
        return NOT_CONFIGURED
    rows = uplinks.get("uplinks")
    if uplinks.get("available") is True and isinstance(rows, list) and any(
            isinstance(row, Mapping) and row.get("state") == "up" for row in rows):
        return UP
    return DOWN


class UplinkWatch:
    """The agent's last answer about the uplinks, refreshed in a background thread."""

    def __init__(self, ask: Callable[[], dict], every_s: float, clock: Callable[[], float] = time.monotonic):
        self._ask, self.every_s, self._clock = ask, every_s, clock
        self._lock = threading.Lock()
        self._verdict: str | None = None     # up / down / not_configured; None: no answer
        self._at: float | None = None
        self._refreshing: threading.Thread | None = None
        self.problem = ""

    def verdict(self) -> str | None:
        """The last verdict, or None when the agent has not answered (recently)."""
        with self._lock:
            now = self._clock()
            stale = self._at is None or now - self._at >= self.every_s
            thread = self._refreshing
            if stale and (thread is None or not thread.is_alive()):
                thread = threading.Thread(target=self._refresh, name="internet-uplink-check", daemon=True)
                self._refreshing = thread
                thread.start()
            first = self._at is None
        if first and thread is not None:
            thread.join(FIRST_ANSWER_WAIT_S)
        with self._lock:
            if self._at is None or self._clock() - self._at > 3 * self.every_s:
                return None
            return self._verdict

    def _refresh(self) -> None:
        try:
            verdict, problem = uplink_verdict(self._ask()), ""
        except Exception as exc:   # the agent down, a bad token, an odd answer: all "no answer"
            verdict, problem = None, f"{type(exc).__name__}: {exc}"[:300]
        with self._lock:
            self._verdict, self._at, self.problem = verdict, self._clock(), problem


@dataclass
class LastEnd:
    reason: str
    seconds: float


class BrowsingSessions:
    """``window``: returns the app's WindowPort or None; ``proxy_factory(allowlist, workdir=,
    port=, upstream=)``: terminal/internet/proxy.py FilteringProxy unless a test gives another;
    ``agent_status``: the agent's /status (monitoring/agent_client.py AgentClient.status)."""

    def __init__(self, config: Mapping[str, Any], store: InternetStore, *, window: Callable[[], WindowPort | None],
                 agent_status: Callable[[], dict], proxy_factory: Callable[..., Any] | None = None,
                 workdir: str | Path = ".", clock: Callable[[], float] = time.monotonic):
        self.config, self.store, self._window, self._clock = config, store, window, clock
        self._proxy_factory = proxy_factory
        self.workdir = Path(workdir)
        self.uplinks = UplinkWatch(agent_status, config["INTERNET_UPLINK_CHECK_S"], clock)
        self._lock = threading.RLock()
        self.proxy: Any = None
        self.proxy_url = ""
        self.proxy_error = ""
        self._proxy_tried_at: float | None = None
        # the open session as the window's events tell it
        self._open = False
        self._started_at: float | None = None
        self._length_s = 0
        self._extend_s = 0
        self._warning: dict | None = None
        self.last_end: LastEnd | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.config["INTERNET_ENABLED"])

    def window(self) -> WindowPort | None:
        return self._window()

    # --- the allowlist ------------------------------------------------------------------------
    def allowlist(self) -> Allowlist:
        return Allowlist(self.store.domains(), ports=self.config["INTERNET_ALLOWED_PORTS"])

    def allowlist_changed(self) -> bool:
        """Give the running proxy the stored list at once (service mode's edits); False when the
        proxy is not running or refused it (the next start uses the new list anyway)."""
        with self._lock:
            proxy = self.proxy
        if proxy is None:
            return False
        try:
            proxy.update(self.allowlist())
            return True
        except Exception as exc:
            log.error("internet: the proxy did not take the new allowlist: %s", exc)
            self.proxy_error = f"update: {type(exc).__name__}: {exc}"[:300]
            return False

    # --- the filtering proxy ----------------------------------------------------------------------
    def start_proxy(self) -> bool:
        """Start the filtering proxy (when enabled and not running); False with ``proxy_error``
        set when it cannot run (tinyproxy missing, port taken, …)."""
        if not self.enabled:
            return False
        with self._lock:
            if self.proxy is not None and self._proxy_alive(self.proxy):
                return True
            self._stop_proxy_locked()
            self._proxy_tried_at = self._clock()
            try:
                factory = self._proxy_factory
                if factory is None:
                    from terminal.internet.proxy import FilteringProxy as factory   # noqa: N813
                proxy = factory(self.allowlist(), workdir=str(self.workdir / "proxy"),
                                port=self.config["INTERNET_PROXY_PORT"], binary=self.config["INTERNET_PROXY_BINARY"],
                                max_clients=self.config["INTERNET_PROXY_MAX_CLIENTS"])
                proxy.on_event = self.on_proxy_event   # its own refusals, counted as layer "proxy"
                self.proxy_url = proxy.start()
            except Exception as exc:
                self.proxy, self.proxy_url = None, ""
                self.proxy_error = f"{type(exc).__name__}: {exc}"[:300]
                log.error("internet: the filtering proxy cannot start: %s", self.proxy_error)
                return False
            self.proxy, self.proxy_error = proxy, ""
            log.info("internet: filtering proxy on %s", self.proxy_url)
            return True

    @staticmethod
    def _proxy_alive(proxy) -> bool:
        return bool(proxy.running)

    def proxy_running(self) -> bool:
        with self._lock:
            proxy = self.proxy
        if proxy is not None and self._proxy_alive(proxy):
            return True
        if proxy is not None and not self.proxy_error:
            self.proxy_error = "the proxy process has ended"
            log.error("internet: the filtering proxy has ended")
        # A proxy that died (or never started) is tried again now and then, never on every page.
        if self.enabled and self.window() is not None and (
                self._proxy_tried_at is None or self._clock() - self._proxy_tried_at >= PROXY_RETRY_S):
            return self.start_proxy()
        return False

    def _stop_proxy_locked(self) -> None:
        proxy, self.proxy, self.proxy_url = self.proxy, None, ""
        if proxy is not None:
            try:
                proxy.stop()
            except Exception:
                log.exception("internet: stopping the proxy failed")

    def close(self) -> None:
        window = self.window()
        if window is not None and self._open:
            try:
                window.end("stopped")
            except Exception:
                log.exception("internet: ending the open session failed")
        with self._lock:
            self._stop_proxy_locked()

    # --- may a session start? ---------------------------------------------------------------
    def unavailable_reason(self, *, check_uplink: bool = True) -> str | None:
        """None when the tile may show (the rule in the module's docstring), else the reason."""
        if not self.enabled:
            return DISABLED
        if self.window() is None:
            return NO_WINDOW
        if not self.proxy_running():
            return PROXY_DOWN
        if not self.store.domains():
            return EMPTY_LIST
        if check_uplink:
            verdict = self.uplinks.verdict()
            if verdict is None:
                return NO_AGENT
            if verdict == DOWN:
                return NO_UPLINK
        return None

    def tile_visible(self) -> bool:
        try:
            return self.unavailable_reason() is None
        except Exception:   # the home page never fails because of the tile
            log.exception("internet: tile check failed")
            return False

    def request(self, lang: str, back_url: str = "") -> SessionRequest:
        allowlist = self.allowlist()
        home = self.config["INTERNET_HOME_URL"]
        if not allowlist.decide(home).allowed and allowlist.domains:
            home = f"https://{allowlist.domains[0]}/"    # the configured home is off the list now
        # The numbers are checked once, by terminal/settings.py (INTERNET_WARN_S ≥ 20, …).
        config = self.config
        return SessionRequest(allowlist=allowlist, home_url=home, lang=lang if lang in LANGUAGES else SOURCE_LANGUAGE,
                              proxy_url=self.proxy_url, session_s=config["INTERNET_SESSION_MIN"] * 60,
                              idle_s=config["INTERNET_IDLE_S"], warn_s=config["INTERNET_WARN_S"],
                              extend_s=config["INTERNET_EXTEND_MIN"] * 60, back_url=back_url)

    def start(self, lang: str, back_url: str = "") -> str | None:
        """Open a session in the window; None when it opened, else why not (a reason word, or
        ``already_open`` / ``refused``)."""
        reason = self.unavailable_reason()
        if reason is not None:
            return reason
        window = self.window()
        if window.is_open():
            return "already_open"
        request = self.request(lang, back_url)
        with self._lock:
            self._length_s, self._warning, self.last_end = request.session_s, None, None
            self._extend_s = request.extend_s
        if not window.open(request, self.on_event):
            return "refused"
        return None

    # --- events -----------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """The window's events (any thread): the page's view of the session and the counters."""
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        try:
            if kind == "started":
                with self._lock:
                    self._open, self._started_at, self._warning = True, self._clock(), None
                self.store.session_started()
            elif kind == "blocked":
                layer = event.get("layer")
                if layer == "proxy":
                    return   # the proxy reports its own refusals (on_proxy_event); an echo would double them
                self.store.blocked("hook", event.get("host"))
            elif kind == "warning":
                with self._lock:
                    self._warning = {"limit": event.get("limit"), "seconds_left": event.get("seconds_left")}
            elif kind == "extended":
                with self._lock:
                    if event.get("limit") == "session":
                        self._length_s += self._extend_s
                    self._warning = None
            elif kind == "ended":
                reason = event.get("reason") if isinstance(event.get("reason"), str) else "error"
                seconds = event.get("seconds")
                seconds = float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else 0.0
                with self._lock:
                    self._open, self._started_at, self._warning = False, None, None
                    self.last_end = LastEnd(reason, seconds)
                self.store.session_ended(reason, seconds)
        except Exception:   # a counter that could not be written must not break the window's thread
            log.exception("internet: event %s not recorded", kind)

    def on_proxy_event(self, event: Event) -> None:
        """The filtering proxy's events: ``{"type": "blocked", "layer": "proxy", "host": …}``."""
        if isinstance(event, dict) and event.get("type") == "blocked":
            try:
                self.store.blocked("proxy", event.get("host"))
            except Exception:
                log.exception("internet: proxy event not recorded")

    def status(self) -> dict:
        """For the pages: is a session open, its time left as the events tell it, the last end."""
        window = self.window()
        with self._lock:
            is_open = self._open or bool(window is not None and window.is_open())
            left = None
            if self._open and self._started_at is not None:
                left = max(0, int(self._length_s - (self._clock() - self._started_at)))
            end = self.last_end
            return {"open": is_open, "seconds_left": left, "warning": self._warning,
                    "last_end": None if end is None else {"reason": end.reason, "seconds": end.seconds}}

    def health(self) -> tuple[bool, dict]:
        """/healthz: a window that could browse but has no proxy is a fault; no window is not."""
        if not self.enabled:
            return True, {"enabled": False}
        has_window = self.window() is not None
        running = self.proxy_running() if has_window else self.proxy is not None
        detail = {"enabled": True, "window": has_window, "proxy": running, "domains": len(self.store.domains())}
        if self.proxy_error:
            detail["error"] = self.proxy_error
        return (running or not has_window), detail
