"""The browsing view in a real kiosk window under Xvfb (issue 12, Part 1): every escape route is
blocked by each layer on its own, nothing survives a session, nothing is downloaded, the limits
warn and end the session, More time and End session work, a popup never opens a window.

The window is ``python -m terminal.shell --control-fd N`` driven through the real WindowChannel
(tests/terminal/internet/window_harness.py); the internet is the fake one
(tests/terminal/internet/fakenet.py), behind the project's filtering proxy (tinyproxy).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.helpers import descendants
from tests.terminal.internet.fakenet import FakeInternet
from tests.terminal.internet.window_harness import (ALLOWED, BrowserWindow, ProjectProxy, register_escapes,
                                                    try_escape, wait_for)
from tests.terminal.test_shell import x_display  # noqa: F401 (the module-scoped X screen fixture)

pytestmark = pytest.mark.window

# Routes that leave the allowed site when neither layer is on (the control run shows it);
# file:, top-level data: and blob:, about:config are refused by WebKit itself or lead nowhere.
NETWORK_ESCAPES = {"link", "redirect", "meta_refresh", "iframe", "form_post", "window_open", "target_blank",
                   "https_link", "data_frame", "javascript"}


@pytest.fixture
def net():
    with FakeInternet() as fake:
        yield fake


@pytest.fixture
def proxy(net, tmp_path):
    filtering = ProjectProxy(__import__("tests.terminal.internet.window_harness", fromlist=["ALLOWLIST"]).ALLOWLIST,
                             net.url, tmp_path / "proxy")
    yield filtering
    filtering.stop()


@pytest.fixture
def window_factory(x_display, tmp_path):  # noqa: F811
    windows = []

    def start(hook: bool = True, env: dict | None = None) -> BrowserWindow:
        window = BrowserWindow(x_display, tmp_path / f"window{len(windows)}", hook=hook, env=env)
        windows.append(window)
        return window

    yield start
    for window in windows:
        window.stop()


def run_suite(window, net, proxy, proxy_url, tmp_path):
    routes = register_escapes(net, tmp_path / "local-escape.html")
    return routes, {route.name: try_escape(window, net, proxy, route, proxy_url) for route in routes}


def test_the_escape_routes_do_leave_the_site_with_both_layers_off(window_factory, net, tmp_path):
    """The control: without hook and proxy the same pages reach their blocked hosts."""
    window = window_factory(hook=False)
    _, results = run_suite(window, net, None, net.url, tmp_path)
    assert {name for name, result in results.items() if result.reached} == NETWORK_ESCAPES


@pytest.mark.parametrize("layers", ["proxy_only", "both", "hook_only"])
def test_every_escape_route_is_blocked_by_each_layer_on_its_own(layers, window_factory, net, proxy, tmp_path):
    window = window_factory(hook=layers != "proxy_only")
    proxy_url = net.url if layers == "hook_only" else proxy.url
    routes, results = run_suite(window, net, proxy, proxy_url, tmp_path)
    escaped = [name for name, result in results.items() if result.reached]
    assert escaped == [], f"reached the blocked host: {escaped}"
    assert net.reached(ALLOWED)
    if layers != "proxy_only":
        missed = [route.name for route in routes if route.hook_sees_it and not results[route.name].hook_blocked]
        assert missed == [], f"the hook did not report: {missed}"
    else:
        kinds = {name: result.hook_kinds for name, result in results.items() if result.hook_blocked}
        assert kinds == {}, "the hook is off, yet it refused"
        missed = [name for name in NETWORK_ESCAPES if not results[name].proxy_blocked]
        assert missed == [], f"the proxy did not refuse: {missed}"
    if layers == "hook_only":
        assert not any(result.proxy_blocked for result in results.values())


STORAGE_SCRIPT = """<script>
addEventListener('load', () => {
  if (location.pathname === '/set') {
    document.cookie = 'visitor=Shevchenko; max-age=3600; path=/';
    localStorage.setItem('visitor', 'Shevchenko'); sessionStorage.setItem('visitor', 'Shevchenko');
    indexedDB.open('visits', 1).onupgradeneeded = (e) => e.target.result.createObjectStore('v');
  }
  setTimeout(() => indexedDB.databases().then((dbs) => fetch('/report?' + new URLSearchParams({
    path: location.pathname, cookie: document.cookie, local: localStorage.getItem('visitor') || '',
    session: sessionStorage.getItem('visitor') || '', idb: dbs.map((d) => d.name).join(',')}))), 500);
});
</script>"""


def reports(net, path):
    from urllib.parse import parse_qs, urlsplit

    found = []
    for hit in net.hits:
        if hit.host == ALLOWED and hit.path.startswith("/report?"):
            fields = {k: v[0] for k, v in parse_qs(urlsplit(hit.path).query, keep_blank_values=True).items()}
            if fields.get("path") == path:
                found.append(fields)
    return found


def test_cookies_and_storage_of_one_session_are_gone_in_the_next(window_factory, net, proxy):
    net.page(ALLOWED, "/set", "<!doctype html><title>set</title>" + STORAGE_SCRIPT,
             headers={"Set-Cookie": "server_side=1; Max-Age=3600; Path=/"})
    net.page(ALLOWED, "/read", "<!doctype html><title>read</title>" + STORAGE_SCRIPT)
    window = window_factory()
    since = window.open(f"http://{ALLOWED}/set", proxy_url=proxy.url)
    wait_for(lambda: reports(net, "/set"), 20, "session 1 to report")
    # The control: within the session the data is there, a second page of the session sees it.
    (first,) = reports(net, "/set")
    assert "visitor=Shevchenko" in first["cookie"] and "server_side=1" in first["cookie"]
    assert first["local"] == "Shevchenko" and first["session"] == "Shevchenko" and "visits" in first["idb"]
    window.end(since)
    since = window.open(f"http://{ALLOWED}/read", proxy_url=proxy.url)
    wait_for(lambda: reports(net, "/read"), 20, "session 2 to report")
    (second,) = reports(net, "/read")
    assert second == {"path": "/read", "cookie": "", "local": "", "session": "", "idb": ""}
    window.end(since)
    assert not [p for p in window.home.rglob("*") if p.is_file() and "Shevchenko" in p.read_bytes().decode("latin-1")]


def test_downloads_never_reach_disk(window_factory, net, proxy):
    net.page(ALLOWED, "/report.pdf", b"%PDF-1.4 Shevchenko-download\n", headers={"Content-Type": "application/pdf"})
    net.page(ALLOWED, "/list.csv", "a,Shevchenko-download\n",
             headers={"Content-Type": "text/csv", "Content-Disposition": "attachment; filename=list.csv"})
    net.page(ALLOWED, "/page.html", "<p>Shevchenko-download</p>")
    clicks = {
        "pdf": "location.href='/report.pdf'",
        "attachment": "location.href='/list.csv'",
        "download_attribute": "const a=document.createElement('a');a.href='/page.html';a.download='p.html';"
                              "document.body.append(a);a.click()",
    }
    window = window_factory()
    for name, script in clicks.items():
        net.page(ALLOWED, f"/dl-{name}", f"""<!doctype html><button style="position:fixed;inset:0;width:100vw;
height:100vh" onclick="{script}">go</button><script>addEventListener('load',()=>fetch('/ready-{name}'))</script>""")
        since = window.open(f"http://{ALLOWED}/dl-{name}", proxy_url=proxy.url)
        wait_for(lambda: any(h.path == f"/ready-{name}" for h in net.hits), 20, f"the {name} page")
        window.click(640, 500)
        window.wait_event(lambda e: e["type"] == "blocked" and e["kind"] == "download", since, 15,
                          f"the {name} download to be refused")
        window.end(since)
    saved = [p for p in window.home.rglob("*") if p.is_file() and b"Shevchenko-download" in p.read_bytes()]
    assert saved == []
    assert not list(window.home.rglob("*.csv")) and not list(window.home.rglob("*.pdf"))
    assert not list(window.home.rglob("p.html"))


def test_a_script_made_blob_download_writes_nothing(window_factory, net, proxy, tmp_path):
    # A download of a blob: URL made by the page's own script never touches the network, so the
    # proxy cannot see it; whether WebKit reports it or not, nothing may land on disk.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # window.URL: inside an inline handler a bare URL is document.URL, a string.
    script = ("const b=new Blob(['Shevchenko-blob-download'],{type:'application/octet-stream'});"
              "const a=document.createElement('a');a.href=window.URL.createObjectURL(b);a.download='data.bin';"
              "document.body.append(a);a.click()")
    net.page(ALLOWED, "/dl-blob", f"""<!doctype html><button style="position:fixed;inset:0;width:100vw;
height:100vh" onclick="{script}">go</button><script>addEventListener('load',()=>fetch('/ready-blob'))</script>""")
    window = window_factory(env={"TMPDIR": str(tmp)})
    since = window.open(f"http://{ALLOWED}/dl-blob", proxy_url=proxy.url)
    wait_for(lambda: any(h.path == "/ready-blob" for h in net.hits), 20, "the blob page")
    window.click(640, 500)
    window.wait_event(lambda e: e["type"] == "blocked" and e["kind"] == "scheme", since, 15,
                      "the blob: target to be refused")
    time.sleep(2)   # give a download, had one started anyway, the time to write (not a timing assert)
    window.end(since)
    written = [p for folder in (window.home, tmp) for p in folder.rglob("*")
               if p.is_file() and b"Shevchenko-blob-download" in p.read_bytes()]
    assert written == [] and not list(window.home.rglob("data.bin")) and not list(tmp.rglob("data.bin"))


def test_a_crashed_page_process_ends_the_session_honestly(window_factory, net, proxy):
    window = window_factory()
    before = set(_web_processes(window.process.pid))
    since = window.open(f"http://{ALLOWED}/", proxy_url=proxy.url)
    wait_for(lambda: any(h.host == ALLOWED for h in net.hits), 20, "the page")
    pages = wait_for(lambda: set(_web_processes(window.process.pid)) - before, 20, "the session's page process")
    for pid in pages:
        os.kill(pid, signal.SIGKILL)
    ended = window.wait_event(lambda e: e["type"] == "ended", since, 20, "the session to end")
    assert ended["reason"] == "error"


def _web_processes(root: int) -> list[int]:
    """WebKit's page processes under ``root`` (the window process)."""
    found = []
    for pid in descendants(root):
        try:
            if b"WebKitWebProcess" in open(f"/proc/{pid}/cmdline", "rb").read():
                found.append(pid)
        except OSError:
            pass
    return found


def test_session_limit_warns_first_then_ends_the_session(window_factory, net, proxy):
    window = window_factory()
    since = window.open(f"http://{ALLOWED}/", proxy_url=proxy.url, session_s=4, warn_s=2, idle_s=120)
    warning = window.wait_event(lambda e: e["type"] == "warning", since, 10, "the warning")
    assert warning["limit"] == "session" and 1 <= warning["seconds_left"] <= 2
    ended = window.wait_event(lambda e: e["type"] == "ended", since, 10, "the end")
    assert ended["reason"] == "session_limit" and 3.5 <= ended["seconds"] <= 6
    types = [e["type"] for e in window.session_events(since)]
    assert types.index("warning") < types.index("ended") and types.count("ended") == 1
    wait_for(lambda: "/back" in window.pages.hits, 10, "the kiosk's page after the session")


def test_idle_limit_warns_first_and_a_touch_resets_it(window_factory, net, proxy):
    window = window_factory()
    since = window.open(f"http://{ALLOWED}/", proxy_url=proxy.url, session_s=120, warn_s=2, idle_s=4)
    warning = window.wait_event(lambda e: e["type"] == "warning", since, 10, "the idle warning")
    assert warning["limit"] == "idle"
    window.click(640, 500)  # a touch on the (foreign) page
    window.wait_event(lambda e: e["type"] == "extended" and e["limit"] == "idle", since, 5, "the idle reset")
    assert not [e for e in window.session_events(since) if e["type"] == "ended"]
    ended = window.wait_event(lambda e: e["type"] == "ended", since, 15, "the idle end")
    assert ended["reason"] == "idle" and ended["seconds"] >= 5.5


def test_more_time_extends_the_session(window_factory, net, proxy):
    window = window_factory()
    since = window.open(f"http://{ALLOWED}/", proxy_url=proxy.url, session_s=4, warn_s=3, idle_s=120, extend_s=6)
    window.wait_event(lambda e: e["type"] == "warning" and e["limit"] == "session", since, 10, "the warning")
    window.click(1190, 120)  # "More time", right end of the warning bar under the 80 px toolbar
    window.wait_event(lambda e: e["type"] == "extended" and e["limit"] == "session", since, 5, "More time")
    ended = window.wait_event(lambda e: e["type"] == "ended", since, 20, "the end")
    assert ended["reason"] == "session_limit" and ended["seconds"] >= 9


def visible_windows(display):
    result = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", ""],
                            env={**os.environ, "DISPLAY": display}, capture_output=True, text=True, timeout=10)
    return set(result.stdout.split())


def test_end_session_button_and_an_allowed_popup_stays_in_the_same_window(window_factory, net, proxy, x_display):  # noqa: F811
    net.page(ALLOWED, "/popper", """<!doctype html><button style="position:fixed;inset:0;width:100vw;height:100vh"
onclick="window.open('/popped')">go</button><script>addEventListener('load',()=>fetch('/ready-popper'))</script>""")
    window = window_factory()
    before = visible_windows(x_display)
    since = window.open(f"http://{ALLOWED}/popper", proxy_url=proxy.url)
    wait_for(lambda: any(h.path == "/ready-popper" for h in net.hits), 20, "the page")
    window.click(640, 500)
    wait_for(lambda: any(h.path == "/popped" for h in net.hits), 10, "the allowed popup to load")
    time.sleep(0.5)
    assert visible_windows(x_display) == before, "a second window opened"
    window.click(1262, 40)  # "End session", the toolbar's right end
    ended = window.wait_event(lambda e: e["type"] == "ended", since, 10, "End session")
    assert ended["reason"] == "user"
    wait_for(lambda: "/back" in window.pages.hits, 10, "the kiosk's page after the session")


def test_a_blocked_link_shows_the_kiosks_notice(window_factory, net, proxy):
    window = window_factory()
    register_escapes(net, window.home / "x.html")
    since = window.open(f"http://{ALLOWED}/escape/link", proxy_url=proxy.url, lang="uk")
    wait_for(lambda: any(h.path == "/ready-link" for h in net.hits), 20, "the page")
    window.click(640, 500)
    wait_for(lambda: any(p.startswith("/internet/blocked?host=link.blocked.test&lang=uk") for p in window.pages.hits),
             10, "the notice to be fetched from the kiosk")
    window.end(since)


def test_cnap_kiosk_gives_the_app_a_window_port_that_survives_a_window_crash(x_display, net, proxy, tmp_path,  # noqa: F811
                                                                                monkeypatch):
    """`cnap kiosk` with a window: state(app).internet_window opens sessions in the real window; a
    window killed mid-session ends it with "error", and the reopened window serves the next one."""
    import argparse
    import signal
    import threading

    from terminal.cli import run_kiosk
    from terminal.internet.port import SessionRequest
    from terminal.state import state
    from tests.terminal.internet.window_harness import ALLOWLIST

    monkeypatch.setenv("DISPLAY", x_display)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    apps = []
    args = argparse.Namespace(instance=str(tmp_path / "instance"), port=0, tablet_port=None, no_window=False,
                              windowed=True)
    config = {"SECRET_KEY": "t", "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": ""}
    kiosk = threading.Thread(target=run_kiosk, args=(args, config, lambda app, url: apps.append(app)), daemon=True)
    kiosk.start()
    try:
        app = wait_for(lambda: apps and apps[0], 60, "the kiosk app")
        port = wait_for(lambda: state(app).internet_window, 30, "the window port")
        events, lock = [], threading.Lock()

        def sink(event):
            with lock:
                events.append(event)

        request = SessionRequest(allowlist=ALLOWLIST, home_url=f"http://{ALLOWED}/e2e", lang="uk",
                                 proxy_url=proxy.url)
        wait_for(lambda: port.open(request, sink), 60, "the window to take a session")
        wait_for(lambda: any(e["type"] == "started" for e in events), 20, "started")
        wait_for(lambda: any(h.path == "/e2e" for h in net.hits), 20, "the page through the proxy")
        children = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "terminal.shell"], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == 1
        os.kill(int(children[0]), signal.SIGKILL)
        wait_for(lambda: any(e["type"] == "ended" for e in events), 20, "the session to end")
        assert [e for e in events if e["type"] == "ended"][0]["reason"] == "error"
        assert not port.is_open()
        second = []
        wait_for(lambda: port.open(request, second.append), 60, "the reopened window to take a session")
        wait_for(lambda: any(e["type"] == "started" for e in second), 30, "started again")
        port.end("user")
        wait_for(lambda: any(e["type"] == "ended" for e in second), 20, "the second session to end")
        assert [e["reason"] for e in second if e["type"] == "ended"] == ["user"]
    finally:
        if apps:
            state(apps[0]).kiosk_stop("test over")
        kiosk.join(30)
    assert not kiosk.is_alive()
