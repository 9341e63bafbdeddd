"""The seam between the kiosk's internet pages (Flask, terminal/views/internet.py) and the
browsing view inside the kiosk window (GTK/WebKit, terminal/internet/browser.py, installed by
terminal/shell.py): the kiosk asks the window to open a browsing session; the window reports what
happens in it as events. Either side can be tested alone against this contract.

Events (plain dicts, JSON-safe; ``host`` is an ASCII host name only — never a path or query):
    {"type": "started"}
    {"type": "blocked", "host": str, "layer": "hook" | "proxy", "kind": str}
        kind: navigation, redirect, frame, popup, form, scheme, download, permission, …
    {"type": "warning", "limit": "session" | "idle", "seconds_left": int}
    {"type": "extended", "limit": "session" | "idle"}
    {"type": "ended", "reason": "user" | "session_limit" | "idle" | "stopped" | "error",
     "seconds": float}
A session always ends with exactly one "ended" event, after the window has erased its data and
shown the kiosk's own page again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from terminal.internet.allowlist import Allowlist

Event = dict
EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class SessionRequest:
    allowlist: Allowlist
    home_url: str             # the first page and the toolbar's Home (an allowed URL)
    lang: str                 # "uk" or "en": the toolbar's and warnings' language
    proxy_url: str = ""       # http://127.0.0.1:PORT of the filtering proxy; "" = none (tests only)
    session_s: int = 900      # whole session length
    idle_s: int = 120         # no touch or key for this long ends the session
    warn_s: int = 30          # warning this many seconds before either limit (≥ 20, WCAG 2.2.1)
    extend_s: int = 300       # "More time" adds this much to the session limit
    back_url: str = ""        # the kiosk page shown after the session ends


class WindowPort(Protocol):
    """What the kiosk needs from the window. Methods are thread-safe and return at once."""

    def open(self, request: SessionRequest, on_event: EventSink) -> bool:
        """Start a session; False when one is already open or the window cannot browse."""

    def end(self, reason: str = "stopped") -> None:
        """End the open session (if any) as if its limit had passed with ``reason``."""

    def is_open(self) -> bool:
        """True while a session is open."""
