"""A real kiosk window with browsing sessions, for tests/terminal/internet/test_browser_window.py and
bench/internet.py: Xvfb + window manager (tests/terminal/xscreen.py), a tiny kiosk page server,
``python -m terminal.shell --control-fd N`` driven through the real WindowChannel, and the escape
suite — one page per escape route of issue 12 item 2, each aiming at its own blocked host.

Layers under test: the window's navigation hook (off with HOOK_OFF_ENV) and a filtering proxy in
front of the fake internet (tests/terminal/internet/fakenet.py): the project's FilteringProxy
(terminal/internet/proxy.py, tinyproxy) with the same Allowlist.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from terminal.internet.allowlist import Allowlist
from terminal.internet.browser import HOOK_OFF_ENV
from terminal.internet.channel import WindowChannel
from terminal.internet.port import SessionRequest
from tests.helpers import wait_for  # noqa: F401 (the tests import it from here too)

REPO_ROOT = Path(__file__).resolve().parents[3]
ALLOWED = "allowed.test"
BLOCKED_SUFFIX = ".blocked.test"
ALLOWLIST = Allowlist([ALLOWED], ports=(80, 443))


# --- the escape suite ------------------------------------------------------------------------

@dataclass(frozen=True)
class Escape:
    name: str
    script: str                  # runs on the visitor's tap (a real click: a user gesture)
    target: str | None           # the blocked host it tries to reach; None = no network host
    hook_sees_it: bool = True    # False: WebKit refuses it before asking the hook (file:)

    @property
    def host(self) -> str:
        return self.target or ""


def escapes(local_file: Path) -> list[Escape]:
    def host(name):
        return f"{name}{BLOCKED_SUFFIX}"

    return [
        Escape("link", f"const a=document.createElement('a');a.href='http://{host('link')}/x';"
                       "document.body.append(a);a.click()", host("link")),
        Escape("redirect", "location.href='/redirect'", host("redirect")),
        Escape("meta_refresh", "const m=document.createElement('meta');m.httpEquiv='refresh';"
                               f"m.content='0;url=http://{host('meta')}/';document.head.append(m)", host("meta")),
        Escape("iframe", f"const f=document.createElement('iframe');f.src='http://{host('iframe')}/';"
                         "document.body.append(f)", host("iframe")),
        Escape("form_post", f"const f=document.createElement('form');f.method='post';"
                            f"f.action='http://{host('form')}/submit';const i=document.createElement('input');"
                            "i.name='q';i.value='1';f.append(i);document.body.append(f);f.submit()", host("form")),
        Escape("window_open", f"window.open('http://{host('popup')}/')", host("popup")),
        Escape("target_blank", f"const a=document.createElement('a');a.href='http://{host('blank')}/';"
                               "a.target='_blank';document.body.append(a);a.click()", host("blank")),
        Escape("https_link", f"location.href='https://{host('tls')}/'", host("tls")),
        Escape("file", f"location.href='{local_file.as_uri()}'", None, hook_sees_it=False),
        Escape("data", f"location.href=\"data:text/html,<img src='http://{host('data')}/d'>\"", host("data")),
        Escape("data_frame", "const f=document.createElement('iframe');"
                             f"f.src=\"data:text/html,<img src='http://{host('dataframe')}/d'>\";document.body.append(f)",
               host("dataframe")),
        Escape("javascript", f"location.href=\"javascript:location.replace('http://{host('js')}/')\"", host("js")),
        Escape("blob", f"location.href=URL.createObjectURL(new Blob([\"<img src='http://{host('blob')}/b'>\"],"
                       "{type:'text/html'}))", host("blob"), hook_sees_it=False),
        Escape("about_config", "location.href='about:config'", None),
    ]


def escape_page(escape: Escape) -> str:
    """A page that is one big button: the harness taps it, the button tries the escape."""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape.name}</title></head>
<body style="margin:0"><button id="go" style="position:fixed;inset:0;width:100vw;height:100vh;background:#ffff00;border:0"
onclick="{escape.script.replace('"', '&quot;')}">go</button>
<script>addEventListener('load', () => requestAnimationFrame(() => requestAnimationFrame(
  () => fetch('/ready-{escape.name}'))));</script></body></html>"""


def register_escapes(net, local_file: Path) -> list[Escape]:
    routes = escapes(local_file)
    for escape in routes:
        net.page(ALLOWED, f"/escape/{escape.name}", escape_page(escape))
    net.page(ALLOWED, "/redirect", "", status=302, headers={"Location": f"http://redirect{BLOCKED_SUFFIX}/"})
    local_file.write_text(f"<!doctype html><img src='http://file{BLOCKED_SUFFIX}/f'>")
    return routes


# --- a filtering proxy -------------------------------------------------------------------------

class ProjectProxy:
    """The project's FilteringProxy (tinyproxy, default deny) in front of ``upstream``."""

    def __init__(self, allowlist: Allowlist, upstream: str, workdir: Path):
        from terminal.internet.proxy import FilteringProxy

        workdir.mkdir(parents=True, exist_ok=True)
        self.proxy = FilteringProxy(allowlist, workdir=workdir, upstream=upstream)
        self.url = self.proxy.start()

    def blocked(self, host: str) -> bool:
        return any(event["host"] == host for event in self.proxy.blocked_since(0))

    def stop(self) -> None:
        self.proxy.stop()


# --- the kiosk window with a control channel -------------------------------------------------

class KioskPages:
    """The kiosk's own pages: '/' (magenta) and /internet/blocked (the notice); records hits."""

    def __init__(self):
        self.hits: list[str] = []
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                pages.hits.append(self.path)
                if self.path.startswith("/internet/blocked"):
                    body = b"<!doctype html><html><body style='background:#00ffff'><h1>blocked-notice</h1></body></html>"
                else:
                    body = b"<!doctype html><html><body style='margin:0;background:#ff00ff;height:100vh'></body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class BrowserWindow:
    """``python -m terminal.shell`` with a control channel; events collected in ``events``."""

    def __init__(self, display: str, workdir: Path, *, hook: bool = True, env: dict | None = None):
        self.display = display
        self.pages = KioskPages()
        self.channel = WindowChannel()
        self.events: list[dict] = []
        self.cond = threading.Condition()
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"shell-{'hook' if hook else 'nohook'}.log"
        self.log_file = open(self.log_path, "w")
        theirs = self.channel.connect()
        env = {**os.environ, "DISPLAY": display, "HOME": str(self.home),
               "XDG_DATA_HOME": str(self.home / ".local/share"), "XDG_CACHE_HOME": str(self.home / ".cache"),
               "XDG_CONFIG_HOME": str(self.home / ".config"), "XDG_DOWNLOAD_DIR": str(self.home / "Downloads"),
               **(env or {})}
        env.pop(HOOK_OFF_ENV, None)
        if not hook:
            env[HOOK_OFF_ENV] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "terminal.shell", "--url", self.pages.url, "--control-fd", str(theirs.fileno())],
            cwd=REPO_ROOT, env=env, pass_fds=[theirs.fileno()], stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True)
        theirs.close()
        wait_for(lambda: "/" in self.pages.hits, 60, "the kiosk page in the window")
        time.sleep(0.5)  # the control channel is watched once the guard is installed (same idle call)

    def log(self) -> str:
        return self.log_path.read_text()

    def _on_event(self, event: dict) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def open(self, home_url: str, *, proxy_url: str, lang: str = "en", allowlist: Allowlist = ALLOWLIST,
             **limits) -> int:
        """Opens a session; returns the index of its first event in ``events``."""
        with self.cond:
            first = len(self.events)
        request = SessionRequest(allowlist=allowlist, home_url=home_url, lang=lang, proxy_url=proxy_url,
                                 back_url=self.pages.url + "back", **limits)
        deadline = time.monotonic() + 20
        while not self.channel.open(request, self._on_event):
            if time.monotonic() > deadline:
                raise AssertionError("the window refused to open a session")
            time.sleep(0.2)
        self.wait_event(lambda e: e["type"] == "started", first, 20, "the session to start")
        return first

    def wait_event(self, predicate, since: int, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events[since:]:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"gave up waiting for {what}; events: {self.events[since:]}")
                self.cond.wait(left)

    def session_events(self, since: int) -> list[dict]:
        with self.cond:
            return list(self.events[since:])

    def end(self, since: int, reason: str = "stopped") -> dict:
        self.channel.end(reason)
        return self.wait_event(lambda e: e["type"] == "ended", since, 20, "the session to end")

    def click(self, x: int, y: int) -> None:
        subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"],
                       env={**os.environ, "DISPLAY": self.display}, check=True, timeout=10)

    def stop(self) -> int:
        self.channel.disconnect()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, 9)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.log_file.close()
        self.pages.stop()
        return self.process.returncode




@dataclass
class EscapeResult:
    name: str
    reached: bool           # the fake internet saw the blocked host: an escape
    hook_blocked: bool
    proxy_blocked: bool
    hook_kinds: tuple = ()  # the kinds of the hook's refusals in the session


def try_escape(window: BrowserWindow, net, proxy, escape: Escape, proxy_url: str,
               settle_s: float = 2.5) -> EscapeResult:
    """One session on the escape's page: tap it, wait for a block or a hit, end the session."""
    since = window.open(f"http://{ALLOWED}/escape/{escape.name}", proxy_url=proxy_url)
    wait_for(lambda: net.reached(ALLOWED) and any(h.path == f"/ready-{escape.name}" for h in net.hits), 20,
             f"the {escape.name} page to load")
    window.click(640, 500)

    def settled():
        hook = any(e["type"] == "blocked" and e["layer"] == "hook" for e in window.session_events(since))
        return hook or (escape.target and (net.reached(escape.target)
                                           or (proxy is not None and proxy.blocked(escape.target))))

    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline and not settled():
        time.sleep(0.1)
    time.sleep(0.5)  # a late second attempt (e.g. a popup's re-load) would show up here
    # One escape per session: any refusal of the hook in it is this escape's.
    hook_kinds = tuple(e["kind"] for e in window.session_events(since) if e["type"] == "blocked" and e["layer"] == "hook")
    window.end(since)
    return EscapeResult(escape.name, bool(escape.target and net.reached(escape.target)), bool(hook_kinds),
                        bool(escape.target and proxy is not None and proxy.blocked(escape.target)), hook_kinds)
