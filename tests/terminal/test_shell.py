"""The kiosk shell: the pure navigation rule, and a real pywebview window under Xvfb.

The window tests start their own Xvfb and matchbox window manager, serve a marker page from a
throwaway loopback server, run ``python -m terminal.shell`` in a child process, click with
xdotool like a visitor would, and judge the screen from ``import -window root`` screenshots.
"""
from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import wait_for
from tests.terminal.xscreen import missing_tools, x_screen
from terminal.shell import WINDOW_USER_AGENT_MARK, display_available, is_allowed, loggable_target, refusal_reason

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREEN_W, SCREEN_H = 1280, 800
MAGENTA = (255, 0, 255)  # the kiosk page
YELLOW = (255, 255, 0)  # the outside page
GREEN = (0, 255, 0)  # the local file
OWN = "http://127.0.0.1:8080/"


# --- is_allowed: the pure rule ----------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:8080/",
        "http://127.0.0.1:8080/pay/card?service=12#top",
        "HTTP://127.0.0.1:8080/catalogue",
        "http://user@127.0.0.1:8080/",
        "about:blank",
    ],
)
def test_own_origin_and_about_blank_are_allowed(uri):
    assert is_allowed(uri, OWN, ())


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:8081/",  # other port
        "http://127.0.0.2:8080/",  # other host
        "https://127.0.0.1:8080/",  # other scheme
        "http://127.0.0.1/",  # default port 80 is another port
        "http://localhost:8080/",  # same machine, different origin string
        "http://127.0.0.1:8080@evil.example/",  # userinfo trick
        "http://evil.example/?next=http://127.0.0.1:8080/",
        "file:///etc/passwd",
        "file://127.0.0.1:8080/etc/passwd",
        "data:text/html,<h1>hi</h1>",
        "javascript:alert(1)",
        "blob:http://127.0.0.1:8080/5d2f0c1e",
        "about:config",
        "about:blank#x",
        "ftp://127.0.0.1:8080/",
        "http://127.0.0.1:99999/",  # invalid port
        "http://[::1:8080/",  # unparseable
        "",
        "/relative/path",
    ],
)
def test_everything_else_is_blocked(uri):
    assert not is_allowed(uri, OWN, ())


def test_default_ports_and_case_are_normalised():
    assert is_allowed("http://127.0.0.1:80/x", "http://127.0.0.1/", ())
    assert is_allowed("https://KIOSK.example/x", "https://kiosk.example:443/", ())


def test_extra_allowed_origins_are_exact_origins_too():
    extra = ["https://gov.example"]
    assert is_allowed("https://gov.example/path?q=1", OWN, extra)
    assert not is_allowed("http://gov.example/", OWN, extra)
    assert not is_allowed("https://gov.example:8443/", OWN, extra)
    assert not is_allowed("https://sub.gov.example/", OWN, extra)


def test_an_unparseable_own_origin_allows_nothing_but_about_blank():
    assert not is_allowed("http://127.0.0.1:8080/", "not a url", ())
    assert is_allowed("about:blank", "not a url", ())


@pytest.mark.parametrize("mime, disposition", [
    ("text/html", None), ("text/html; charset=utf-8", None), ("TEXT/HTML", ""), ("application/xhtml+xml", None),
    ("text/html", "inline"), ("text/html", "INLINE; filename=x.html"),
])
def test_inline_html_pages_are_shown(mime, disposition):
    assert refusal_reason(mime, disposition) is None


@pytest.mark.parametrize("mime, disposition, reason", [
    ("text/csv", "attachment; filename=Shevchenko.csv", "text/csv attachment"),
    ("text/html", "attachment", "text/html attachment"),
    ("text/html", "form-data; name=x", "text/html attachment"),  # unknown types count as attachment
    ("text/html", 'Attachment; filename="a.html"', "text/html attachment"),
    ("", "attachment", "untyped attachment"),
    ("application/pdf", None, "application/pdf"),
    ("application/json", None, "application/json"),
    ("text/plain; charset=utf-8", None, "text/plain"),
    ("image/svg+xml", None, "image/svg+xml"),
    ("application/octet-stream", "", "application/octet-stream"),
    ("", None, "untyped response"),
    ("text/html\r\nX-Injected: Shevchenko", None, "untyped response"),  # nothing odd reaches the log
])
def test_everything_else_is_refused_with_a_loggable_reason(mime, disposition, reason):
    assert refusal_reason(mime, disposition) == reason


def test_log_target_keeps_host_and_drops_path_query_and_user():
    assert loggable_target("http://ivan:secret@127.0.0.1:8090/a/b?surname=Shevchenko#f") == "http://127.0.0.1:8090"
    assert loggable_target("https://example.com/tax/1234567890") == "https://example.com"
    assert loggable_target("file:///home/Shevchenko/receipt.pdf") == "file:"
    assert loggable_target("data:text/html,Shevchenko") == "data:"
    assert loggable_target("java\nscript:alert(1)") in ("javascript:", "(unparseable URL)")


def test_no_display_is_reported_as_unavailable(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert display_available() is False
    monkeypatch.setenv("WAYLAND_DISPLAY", "cnap-test-no-such-wayland-socket")
    monkeypatch.setenv("DISPLAY", ":4711")  # nobody serves this display
    assert display_available() is False


def test_command_without_a_display_exits_with_a_clear_message():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [sys.executable, "-m", "terminal.shell", "--url", "http://127.0.0.1:8080/"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "no usable display" in result.stderr


def test_command_rejects_a_non_http_url():
    result = subprocess.run(
        [sys.executable, "-m", "terminal.shell", "--url", "file:///etc/passwd"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--url must be an http(s) URL" in result.stderr


# --- the real window -----------------------------------------------------------------------


_wait_for = wait_for


@pytest.fixture(scope="module")
def x_display(tmp_path_factory):
    """A private Xvfb screen with a window manager (tests/terminal/xscreen.py)."""
    if missing_tools():
        pytest.fail(f"{', '.join(missing_tools())} missing: apt-get install xvfb xauth imagemagick "
                    "matchbox-window-manager x11-utils xdotool")
    try:
        with x_screen(tmp_path_factory.mktemp("wm")) as display:
            yield display
    except RuntimeError as exc:
        pytest.fail(str(exc))


class RecordingServer:
    """A loopback HTTP server that serves fixed pages and records every request path."""

    def __init__(self, pages: dict[str, str], listen: bool = True, binary: dict[str, bytes] | None = None,
                 redirects: dict[str, str] | None = None, typed: dict[str, tuple] | None = None):
        self.pages = pages
        self.binary = binary or {}
        # path -> (status, headers, body): responses with their own type, disposition or status.
        self.typed = typed or {}
        self.redirects = redirects or {}
        self.hits: list[str] = []
        self.agents: set[str] = set()  # User-Agent headers seen
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                recorder.hits.append(self.path)
                recorder.agents.add(self.headers.get("User-Agent", ""))
                path = self.path.split("?")[0]
                if path in recorder.redirects:
                    self.send_response(302)
                    self.send_header("Location", recorder.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path in recorder.typed:
                    status, headers, body = recorder.typed[path]
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if path in recorder.binary:
                    data, kind = recorder.binary[path], "application/octet-stream"
                elif path in recorder.pages:
                    data, kind = recorder.pages[path].encode(), "text/html; charset=utf-8"
                else:
                    self.send_response(204)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.daemon_threads = True
        self.server.server_bind()  # the port is ours from here on, but refuses until listen()
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = None
        if listen:
            self.listen()

    def listen(self):
        self.server.server_activate()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread is not None:
            self.server.shutdown()
            self.thread.join(5)
        self.server.server_close()


class Shell:
    """``python -m terminal.shell`` in its own process group (WebKit adds helper processes)."""

    def __init__(self, display: str, url: str, log_path: Path, extra_args=()):
        home = log_path.parent / "home"
        home.mkdir(exist_ok=True)
        self.display = display
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "terminal.shell", "--url", url, *extra_args],
            # A private HOME: WebKit would save downloads under it; the test checks it stays empty.
            cwd=REPO_ROOT, env={**os.environ, "DISPLAY": display, "HOME": str(home)},
            stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def blocked_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if "kiosk: blocked" in line]

    def peak_rss_kib(self) -> dict[str, int]:
        """VmHWM of every live process in the shell's process group."""
        peaks = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getpgid(int(entry.name)) != self.process.pid:
                    continue
                status = (entry / "status").read_text()
            except (OSError, ProcessLookupError):
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if "VmHWM" in fields:
                peaks[f"{fields['Name'].strip()}[{entry.name}]"] = int(fields["VmHWM"].split()[0])
        return peaks

    def stop(self) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)  # the shell closes its window on SIGTERM
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # any WebKit helper left behind
        except ProcessLookupError:
            pass
        self.process.wait()
        self.log_file.close()
        return self.process.returncode


@pytest.fixture
def run_shell(x_display, tmp_path):
    shells: list[Shell] = []

    def start(url: str, *extra_args: str) -> Shell:
        shell = Shell(x_display, url, tmp_path / f"shell{len(shells)}.log", extra_args)
        shells.append(shell)
        return shell

    yield start
    for shell in shells:
        shell.stop()


def screenshot(display: str, path: Path) -> Image.Image:
    subprocess.run(["import", "-window", "root", str(path)], env={**os.environ, "DISPLAY": display},
                   check=True, capture_output=True, timeout=30)
    with Image.open(path) as image:
        return image.convert("RGB")


def colour_fraction(image: Image.Image, colour, box=None) -> float:
    region = image.crop(box) if box else image
    total = region.width * region.height
    return sum(count for count, pixel in region.getcolors(total) if pixel == colour) / total


def click(display: str, x: int, y: int, button: int = 1):
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", str(button)],
                   env={**os.environ, "DISPLAY": display}, check=True, timeout=10)


# Targets on the kiosk page: (name, centre x, centre y). Each is a 100×60 box on row y=40..100.
TARGETS = {name: (90 + 140 * index, 70) for index, name in
           enumerate(["outside", "blank", "file", "script", "popup", "download", "redirect", "probe"])}


def kiosk_page(outside: str, local_file: Path) -> str:
    leak = "?surname=Shevchenko&tax=1234567890"
    boxes = {
        "outside": f'<a href="{outside}/landing{leak}">out</a>',
        "blank": f'<a href="{outside}/blank{leak}" target="_blank">new</a>',
        "file": f'<a href="{local_file.as_uri()}">file</a>',
        "script": f"<button onclick=\"location.href='{outside}/script{leak}'\">js</button>",
        "popup": f"<button onclick=\"window.open('{outside}/popup{leak}')\">pop</button>",
        "download": '<a href="/ledger.bin">download</a>',
        "redirect": '<a href="/go-out">redirect</a>',  # our server answers 302 to the outside
        "probe": "<button onclick=\"fetch('/probe')\">probe</button>",
    }
    styled = "".join(
        f'<div style="position:absolute;left:{x - 50}px;top:{y - 30}px;width:100px;height:60px">'
        + html.replace("<a ", '<a style="display:block;width:100%;height:100%;background:#000" ')
              .replace("<button ", '<button style="width:100%;height:100%;background:#000;border:0" ')
        + "</div>"
        for name, html in boxes.items()
        for x, y in [TARGETS[name]]
    )
    # The page reports its own load to the server, after two frames so it has been painted.
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>kiosk</title></head>
<body style="margin:0;background:#ff00ff;height:100vh;overflow:hidden">{styled}
<script>addEventListener('load', () => requestAnimationFrame(() => requestAnimationFrame(
  () => fetch('/ready'))));</script></body></html>"""


def coloured_page(colour: str) -> str:
    return f'<!doctype html><html><body style="margin:0;background:{colour};height:100vh"></body></html>'


@pytest.fixture
def sites(tmp_path):
    local_file = tmp_path / "Shevchenko-local.html"
    local_file.write_text(coloured_page("#00ff00"))
    outside = RecordingServer({p: coloured_page("#ffff00") for p in ("/landing", "/blank", "/script", "/popup")})
    own = RecordingServer({"/": kiosk_page(outside.origin, local_file)},
                          binary={"/ledger.bin": b"\x00\x01 not a web page"},
                          redirects={"/go-out": outside.origin + "/landing?surname=Shevchenko"})
    yield own, outside, local_file
    own.stop()
    outside.stop()


def wait_until_kiosk_page_fills_screen(display: str, path: Path) -> Image.Image:
    latest = {}

    def filled():
        latest["image"] = screenshot(display, path)
        return colour_fraction(latest["image"], MAGENTA) > 0.9

    _wait_for(filled, 20, "the kiosk page to fill the screen")
    return latest["image"]


def assert_kiosk_page_fills_screen(image: Image.Image):
    assert image.size == (SCREEN_W, SCREEN_H)
    # Frameless and full screen: every edge row and column is the page itself, no title bar.
    for box in [(0, 0, SCREEN_W, 1), (0, SCREEN_H - 1, SCREEN_W, SCREEN_H),
                (0, 0, 1, SCREEN_H), (SCREEN_W - 1, 0, SCREEN_W, SCREEN_H)]:
        assert colour_fraction(image, MAGENTA, box) == 1.0, f"edge {box} is not the kiosk page"
    # Everything but the 100×60 target boxes is the marker colour.
    assert colour_fraction(image, MAGENTA) >= 1 - (len(TARGETS) * 100 * 60) / (SCREEN_W * SCREEN_H) - 0.001


@pytest.mark.window
def test_window_is_full_screen_and_every_way_out_is_blocked(sites, run_shell, x_display, tmp_path):
    own, outside, local_file = sites
    shell = run_shell(own.origin + "/")
    _wait_for(lambda: "/ready" in own.hits, 30, "the kiosk page to load")
    first = wait_until_kiosk_page_fills_screen(x_display, tmp_path / "first.png")
    assert_kiosk_page_fills_screen(first)

    # Right-click: a context menu would paint over the page and swallow the next click.
    click(x_display, 640, 500, button=3)
    time.sleep(0.7)  # give a menu the time to appear, if one were going to
    after_right_click = screenshot(x_display, tmp_path / "right-click.png")
    assert colour_fraction(after_right_click, MAGENTA, (600, 460, 760, 640)) == 1.0, "a context menu opened"

    # New-window attempts come last: pywebview re-issues them as plain loads, logged a second time.
    expectations = [
        ("outside", "blocked navigation (link-clicked) to " + outside.origin),
        ("script", "blocked navigation (other) to " + outside.origin),
        # WebKit itself refuses file: from a web page, before asking the hook: no log line. The
        # probe click after it and the last screenshot show the page stayed.
        ("file", None),
        ("popup", "blocked new-window (other) to " + outside.origin),
        ("blank", "blocked new-window (link-clicked) to " + outside.origin),
        ("download", "blocked response (application/octet-stream) from " + own.origin),
        ("redirect", "blocked navigation (link-clicked) to " + outside.origin),
    ]
    for name, expected in expectations:
        seen = len(shell.blocked_lines())
        click(x_display, *TARGETS[name])
        if expected is None:
            probes = own.hits.count("/probe")
            click(x_display, *TARGETS["probe"])
            _wait_for(lambda: own.hits.count("/probe") > probes, 15, f"the page to answer after {name}")
            continue
        _wait_for(lambda: [line for line in shell.blocked_lines()[seen:] if line.endswith(expected)],
                  15, f"the {name} navigation to be blocked")
    assert all(line.endswith((outside.origin, " from " + own.origin)) for line in shell.blocked_lines())
    assert not list((tmp_path / "home").rglob("ledger*")), "the download was saved"

    # The page is still there and still responds to touch.
    click(x_display, *TARGETS["probe"])
    _wait_for(lambda: "/probe" in own.hits, 15, "the kiosk page to answer a click")
    last = screenshot(x_display, tmp_path / "last.png")
    assert_kiosk_page_fills_screen(last)
    assert colour_fraction(last, YELLOW) == 0 and colour_fraction(last, GREEN) == 0

    assert outside.hits == [], "a blocked navigation reached the outside server"
    log = shell.log()
    for secret in ("Shevchenko", "1234567890", "surname", str(local_file.parent)):
        assert secret not in log, f"{secret!r} leaked into the log"
    print("peak RSS (KiB):", shell.peak_rss_kib())
    assert shell.stop() == 0  # SIGTERM closes the window and the command exits cleanly


@pytest.mark.window
def test_an_allowed_origin_is_reachable_by_the_same_click(sites, run_shell, x_display, tmp_path):
    # The control for the test above: the same click does navigate when the origin is allowed.
    own, outside, _ = sites
    shell = run_shell(own.origin + "/", "--allow-origin", outside.origin)
    _wait_for(lambda: "/ready" in own.hits, 30, "the kiosk page to load")
    wait_until_kiosk_page_fills_screen(x_display, tmp_path / "first.png")
    click(x_display, *TARGETS["outside"])
    _wait_for(lambda: any(hit.startswith("/landing") for hit in outside.hits), 15, "the allowed navigation")
    _wait_for(lambda: colour_fraction(screenshot(x_display, tmp_path / "outside.png"), YELLOW) > 0.9,
              15, "the allowed page to show")
    assert shell.blocked_lines() == []


@pytest.mark.window
def test_window_keeps_trying_until_the_local_server_answers(run_shell, x_display, tmp_path):
    # `cnap kiosk` may open the window before Flask listens: no error page, the page comes later.
    own = RecordingServer({"/": kiosk_page("http://127.0.0.1:9", tmp_path / "x.html")}, listen=False)
    try:
        shell = run_shell(own.origin + "/")
        _wait_for(lambda: "did not load" in shell.log(), 30, "the first failed load")
        own.listen()
        _wait_for(lambda: "/ready" in own.hits, 30, "the kiosk page to load after a retry")
        assert_kiosk_page_fills_screen(wait_until_kiosk_page_fills_screen(x_display, tmp_path / "late.png"))
    finally:
        own.stop()


HARDENING_PROBE = """
import gi
gi.require_version('Gtk', '3.0'); gi.require_version('Gdk', '3.0'); gi.require_version('WebKit2', '4.1')
from gi.repository import Gdk, WebKit2
from terminal.shell import _KioskGuard
view = WebKit2.WebView()
settings = view.get_settings()
# pywebview's choices, which the guard must undo.
settings.set_enable_developer_extras(True); settings.set_enable_media_stream(True)
settings.set_javascript_can_access_clipboard(True); settings.set_allow_file_access_from_file_urls(True)
_KioskGuard('http://127.0.0.1:8080/', ()).install(view)
view.set_zoom_level(2.5)
guard_for_plain_scroll = _KioskGuard('http://127.0.0.1:8080/', ())
plain = guard_for_plain_scroll.on_scroll(view, Gdk.Event.new(Gdk.EventType.SCROLL))
ctrl_scroll = Gdk.Event.new(Gdk.EventType.SCROLL)
ctrl_scroll.scroll.state = Gdk.ModifierType.CONTROL_MASK
with_ctrl = view.emit('scroll-event', ctrl_scroll)  # through the connected handler
print(dict(
    developer_extras=settings.get_enable_developer_extras(),
    media_stream=settings.get_enable_media_stream(),
    clipboard=settings.get_javascript_can_access_clipboard(),
    file_access=settings.get_allow_file_access_from_file_urls(),
    universal_file_access=settings.get_allow_universal_access_from_file_urls(),
    open_windows=settings.get_javascript_can_open_windows_automatically(),
    zoom=view.get_zoom_level(),
    ctrl_scroll_swallowed=with_ctrl,
    plain_scroll_swallowed=plain,
))
"""


@pytest.mark.window
def test_guard_switches_off_devtools_zoom_and_file_access_on_a_real_webkit_view(x_display):
    result = subprocess.run([sys.executable, "-c", HARDENING_PROBE], cwd=REPO_ROOT,
                            env={**os.environ, "DISPLAY": x_display}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    state = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert state == dict(developer_extras=False, media_stream=False, clipboard=False, file_access=False,
                         universal_file_access=False, open_windows=False, zoom=1.0,
                         ctrl_scroll_swallowed=True, plain_scroll_swallowed=False)


@pytest.mark.window
def test_display_available_sees_a_real_display(x_display, monkeypatch):
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", x_display)
    assert display_available() is True


@pytest.mark.window
def test_cnap_kiosk_opens_the_catalogue_in_its_own_window_process(x_display, tmp_path):
    """`cnap kiosk` serves the app and runs the window as a child process (WebKit's memory
    and crashes stay out of the process that holds the payment journal)."""
    env = {**os.environ, "DISPLAY": x_display, "CNAP_SECRET_KEY": "t", "CNAP_BILL_VALIDATOR_URL": "",
           "CNAP_CARD_TERMINAL_URL": "", "CNAP_PRINTER_URL": "", "HOME": str(tmp_path)}
    kiosk = subprocess.Popen([sys.executable, "-m", "terminal.cli", "kiosk", "--port", "0",
                              "--instance", str(tmp_path / "instance")], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        for _ in range(200):
            line = kiosk.stdout.readline()
            if "window open on" in line or not line:
                break
        assert "window open on http://127.0.0.1:" in line, line

        def window_child():
            children = subprocess.run(["pgrep", "-P", str(kiosk.pid), "-f", "terminal.shell"],
                                      capture_output=True, text=True).stdout.split()
            return children[0] if children else None

        _wait_for(window_child, 20, "the window process")
        # The kiosk's home page (background #f4f6f9) fills the screen.
        def home_on_screen():
            image = screenshot(x_display, tmp_path / "kiosk.png")
            return colour_fraction(image, (0xF4, 0xF6, 0xF9)) > 0.3
        _wait_for(home_on_screen, 30, "the kiosk home page on screen")
        child = window_child()
        kiosk.send_signal(signal.SIGINT)
        assert kiosk.wait(20) == 0
        assert subprocess.run(["ps", "-p", child], capture_output=True).returncode != 0, "window left running"
    finally:
        if kiosk.poll() is None:
            kiosk.kill()
            kiosk.wait()


# --- no dialog, no download, no way to close ---------------------------------------------------

CYAN = (0, 255, 255)  # an ordinary page of the kiosk, reached by the control link
ROW_Y = (70, 170, 270)


def target_page(boxes: dict[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    """A magenta page with one 100×60 black target per entry (rows of eight), and its targets."""
    targets = {name: (90 + 140 * (index % 8), ROW_Y[index // 8]) for index, name in enumerate(boxes)}
    styled = "".join(
        f'<div style="position:absolute;left:{x - 50}px;top:{y - 30}px;width:100px;height:60px">'
        + html.replace("<a ", '<a style="display:block;width:100%;height:100%;background:#000" ')
              .replace("<button ", '<button style="width:100%;height:100%;background:#000;border:0" ')
              .replace("<input ", '<input style="width:100%;height:100%;background:#000;border:0;opacity:1" ')
        + "</div>"
        for name, html in boxes.items()
        for x, y in [targets[name]]
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>kiosk</title></head>
<body style="margin:0;background:#ff00ff;height:100vh;overflow:hidden">{styled}
<script>addEventListener('load', () => requestAnimationFrame(() => requestAnimationFrame(
  () => fetch('/ready'))));</script></body></html>"""
    return page, targets


def visible_windows(display: str) -> set[str]:
    """Ids of every mapped window on the screen (a dialog is a new one)."""
    result = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", ""],
                            env={**os.environ, "DISPLAY": display}, capture_output=True, text=True, timeout=10)
    return set(result.stdout.split())


def assert_only_page_on_screen(display: str, path: Path, targets: dict, windows_before: set[str]):
    assert visible_windows(display) == windows_before, "a new window (dialog) appeared"
    image = screenshot(display, path)
    for box in [(0, 0, SCREEN_W, 1), (0, SCREEN_H - 1, SCREEN_W, SCREEN_H),
                (0, 0, 1, SCREEN_H), (SCREEN_W - 1, 0, SCREEN_W, SCREEN_H)]:
        assert colour_fraction(image, MAGENTA, box) == 1.0, f"edge {box} is not the kiosk page"
    assert colour_fraction(image, MAGENTA) >= 1 - (len(targets) * 100 * 60) / (SCREEN_W * SCREEN_H) - 0.001


def wait_for_log(shell: Shell, seen: int, expected: str, what: str):
    _wait_for(lambda: [line for line in shell.blocked_lines()[seen:] if line.endswith(expected)], 15, what)


def probe_answers(display: str, server: RecordingServer, targets: dict, what: str):
    probes = server.hits.count("/probe")
    click(display, *targets["probe"])
    _wait_for(lambda: server.hits.count("/probe") > probes, 15, f"the kiosk page to answer after {what}")


@pytest.mark.window
def test_print_file_and_colour_choosers_never_open(run_shell, x_display, tmp_path):
    page, targets = target_page({
        "print": "<button onclick=\"window.print()\">print</button>",
        "file": '<input type="file" aria-label="file">',
        "files": '<input type="file" multiple webkitdirectory aria-label="folder">',
        "colour": '<input type="color" aria-label="colour">',
        "probe": "<button onclick=\"fetch('/probe')\">probe</button>",
    })
    own = RecordingServer({"/": page})
    try:
        shell = run_shell(own.origin + "/")
        _wait_for(lambda: "/ready" in own.hits, 30, "the kiosk page to load")
        wait_until_kiosk_page_fills_screen(x_display, tmp_path / "first.png")
        windows = visible_windows(x_display)
        assert windows, "xdotool sees no window at all"
        # Pages can tell they are in the kiosk window (service mode then offers no downloads).
        assert all(agent.endswith(f" {WINDOW_USER_AGENT_MARK}/1") for agent in own.agents), own.agents
        for name, expected in [("print", "blocked print dialog"), ("file", "blocked file chooser"),
                               ("files", "blocked file chooser"), ("colour", "blocked colour chooser")]:
            seen = len(shell.blocked_lines())
            click(x_display, *targets[name])
            wait_for_log(shell, seen, expected, f"the {name} dialog to be refused")
            probe_answers(x_display, own, targets, name)
            assert_only_page_on_screen(x_display, tmp_path / f"{name}.png", targets, windows)
        # A keyboard shortcut asks WebKit for the same print operation.
        seen = len(shell.blocked_lines())
        subprocess.run(["xdotool", "key", "ctrl+p"], env={**os.environ, "DISPLAY": x_display}, check=True)
        probe_answers(x_display, own, targets, "ctrl+p")
        assert_only_page_on_screen(x_display, tmp_path / "ctrl-p.png", targets, windows)
        assert shell.process.poll() is None
    finally:
        own.stop()


HTML_YELLOW = coloured_page("#ffff00").encode()


@pytest.mark.window
def test_downloads_and_documents_the_kiosk_does_not_show_are_refused(run_shell, x_display, tmp_path):
    """Whatever WebKit could display or save, only HTML pages that are not attachments are shown."""
    def typed(kind, body=HTML_YELLOW, disposition=None, status=200):
        headers = {"Content-Type": kind}
        if disposition:
            headers["Content-Disposition"] = disposition
        return status, headers, body

    responses = {
        "/report.csv": typed("text/csv; charset=utf-8", "uuid,surname\n1,Shevchenko\n".encode(),
                             "attachment; filename=Shevchenko-registry.csv"),
        "/html-attachment": typed("text/html", disposition='attachment; filename="page.html"'),
        "/odd-disposition": typed("text/html", disposition="x-unknown; filename=page.html"),
        "/doc.pdf": typed("application/pdf", b"%PDF-1.4\n%%EOF\n"),
        "/data.json": typed("application/json", b'{"surname": "Shevchenko"}'),
        "/plain.txt": typed("text/plain; charset=utf-8", b"Shevchenko 1234567890"),
        "/picture.svg": typed("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'),
        "/blob.bin": typed("application/octet-stream", b"\x00\x01\x02"),
        "/untyped": (200, {}, b"\x00\x01 no type at all"),
        "/inline": typed("text/html; charset=utf-8", coloured_page("#00ffff").encode(), "inline"),
        "/log-in": (401, {"WWW-Authenticate": 'Basic realm="staff"', "Content-Type": "text/plain"}, b"denied"),
    }
    boxes = {name: f'<a href="/{name}">{name}</a>' for name in
             ("report.csv", "html-attachment", "odd-disposition", "doc.pdf", "data.json", "plain.txt",
              "picture.svg", "blob.bin", "untyped", "log-in")}
    boxes["download-attribute"] = '<a href="/page.html" download="page.html">save</a>'
    boxes["script-blob"] = ("<button onclick=\"const a=document.createElement('a');"
                            "a.href=window.URL.createObjectURL(new Blob(['Shevchenko'],{type:'text/csv'}));"
                            "a.download='x.csv';document.body.append(a);a.click()\">blob</button>")
    boxes["script-data"] = ("<button onclick=\"const a=document.createElement('a');"
                            "a.href='data:text/csv,Shevchenko';a.download='y.csv';document.body.append(a);"
                            "a.click()\">data</button>")
    boxes["probe"] = "<button onclick=\"fetch('/probe')\">probe</button>"
    boxes["inline"] = '<a href="/inline">inline</a>'  # the control: a page of the kiosk opens
    page, targets = target_page(boxes)
    own = RecordingServer({"/": page, "/page.html": coloured_page("#ffff00")}, typed=responses)
    try:
        shell = run_shell(own.origin + "/")
        _wait_for(lambda: "/ready" in own.hits, 30, "the kiosk page to load")
        wait_until_kiosk_page_fills_screen(x_display, tmp_path / "first.png")
        windows = visible_windows(x_display)
        expectations = {
            "report.csv": "blocked response (text/csv attachment)",
            "html-attachment": "blocked response (text/html attachment)",
            "odd-disposition": "blocked response (text/html attachment)",
            "doc.pdf": "blocked response (application/pdf)",
            "data.json": "blocked response (application/json)",
            "plain.txt": "blocked response (text/plain)",
            "picture.svg": "blocked response (image/svg+xml)",
            "blob.bin": "blocked response (application/octet-stream)",
            "untyped": "blocked response (",
            "log-in": "blocked log-in dialog",
            "download-attribute": "blocked download",
            "script-blob": "to blob:",
            "script-data": "to data:",
        }
        for name, expected in expectations.items():
            seen = len(shell.blocked_lines())
            hits = len(own.hits)
            click(x_display, *targets[name])
            _wait_for(lambda: [line for line in shell.blocked_lines()[seen:] if expected in line], 15,
                      f"{name} to be refused")
            if not name.startswith("script-"):
                assert len(own.hits) > hits, f"{name}: the click did not reach the server"
            probe_answers(x_display, own, targets, name)
            assert_only_page_on_screen(x_display, tmp_path / f"{name}.png", targets, windows)
        assert not [p for p in (tmp_path / "home").rglob("*") if p.is_file() and "cache" not in str(p).lower()], \
            "something was saved"
        log = shell.log()
        for secret in ("Shevchenko", "1234567890", "registry.csv", "page.html"):
            assert secret not in log, f"{secret!r} leaked into the log"
        # The control: an inline HTML page of the kiosk's own origin does open.
        seen = len(shell.blocked_lines())
        click(x_display, *targets["inline"])
        _wait_for(lambda: colour_fraction(screenshot(x_display, tmp_path / "inline.png"), CYAN) > 0.9, 15,
                  "the inline page to show")
        assert shell.blocked_lines()[seen:] == []
    finally:
        own.stop()


def press(display: str, keys: str):
    subprocess.run(["xdotool", "key", keys], env={**os.environ, "DISPLAY": display}, check=True, timeout=10)


@pytest.mark.window
def test_alt_f4_and_close_requests_do_not_close_the_window(run_shell, x_display, tmp_path):
    page, targets = target_page({"probe": "<button onclick=\"fetch('/probe')\">probe</button>"})
    own = RecordingServer({"/": page})
    try:
        shell = run_shell(own.origin + "/")
        _wait_for(lambda: "/ready" in own.hits, 30, "the kiosk page to load")
        wait_until_kiosk_page_fills_screen(x_display, tmp_path / "first.png")
        windows = visible_windows(x_display)
        for attempt, keys in enumerate(["alt+F4", "alt+c", "alt+F4"]):
            click(x_display, 640, 500)  # focus, as a visitor's touch would
            press(x_display, keys)
            _wait_for(lambda: shell.log().count("refused to close the window") > attempt, 15,
                      f"{keys} to be refused")
            probe_answers(x_display, own, targets, keys)
            assert shell.process.poll() is None, f"{keys} ended the window process"
            assert_only_page_on_screen(x_display, tmp_path / f"close{attempt}.png", targets, windows)
        assert shell.stop() == 0  # a deliberate stop (SIGTERM) still closes it
    finally:
        own.stop()


def window_children(kiosk_pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(kiosk_pid), "-f", "terminal.shell"],
                          capture_output=True, text=True).stdout.split()


def process_gone(pid: str) -> bool:
    return subprocess.run(["ps", "-p", pid], capture_output=True).returncode != 0


@pytest.mark.window
def test_cnap_kiosk_reopens_a_window_that_ended_and_stops_only_on_purpose(x_display, tmp_path):
    """A crash (SIGKILL), a window that exits on its own (even with status 0) and Alt+F4 all leave
    the kiosk on screen; service mode's "Stop the kiosk" ends window, server and command (exit 0)."""
    from tests.terminal.kiosk_http import StaffBrowser, kiosk_url, start_kiosk

    kiosk, out = start_kiosk(tmp_path, display=x_display)

    def home_on_screen(name):
        return colour_fraction(screenshot(x_display, tmp_path / f"{name}.png"), (0xF4, 0xF6, 0xF9)) > 0.3

    try:
        url = kiosk_url(kiosk, out, "window open on ")
        first = _wait_for(lambda: window_children(kiosk.pid), 20, "the window process")[0]
        _wait_for(lambda: home_on_screen("first"), 30, "the kiosk home page on screen")

        previous = first
        for how in (signal.SIGKILL, signal.SIGTERM):  # a crash; a window that closed "cleanly"
            os.kill(int(previous), how)
            _wait_for(lambda: process_gone(previous), 20, f"the window to end on {how.name}")
            _wait_for(lambda: [c for c in window_children(kiosk.pid) if c != previous], 30,
                      f"a new window after {how.name}")
            previous = window_children(kiosk.pid)[0]
            _wait_for(lambda: home_on_screen(how.name), 30, f"the home page again after {how.name}")
            assert kiosk.poll() is None

        click(x_display, 640, 700)
        press(x_display, "alt+F4")
        _wait_for(lambda: "refused to close the window" in out.read_text(), 15, "Alt+F4 to be refused")
        assert window_children(kiosk.pid) == [previous] and home_on_screen("alt-f4")

        staff = StaffBrowser(url)
        staff.log_in("222222")  # technician
        status, page = staff.post("/service/stop", {}, "/service/stop")
        assert status == 200, page
        assert kiosk.wait(30) == 0, out.read_text()
        assert process_gone(previous), "the window outlived cnap kiosk"
        assert not home_on_screen("after-stop")
    finally:
        if kiosk.poll() is None:
            kiosk.kill()
            kiosk.wait()
        for child in window_children(kiosk.pid):
            os.kill(int(child), signal.SIGKILL)


@pytest.mark.window
def test_the_window_does_not_outlive_a_killed_cnap_kiosk(x_display, tmp_path):
    # A restarted kiosk would otherwise open a second window over the orphan.
    from tests.terminal.kiosk_http import kiosk_url, start_kiosk

    kiosk, out = start_kiosk(tmp_path, display=x_display)
    child = None
    try:
        kiosk_url(kiosk, out, "window open on ")
        child = _wait_for(lambda: window_children(kiosk.pid), 20, "the window process")[0]
        _wait_for(lambda: colour_fraction(screenshot(x_display, tmp_path / "home.png"), (0xF4, 0xF6, 0xF9)) > 0.3,
                  30, "the kiosk home page on screen")
        kiosk.kill()
        kiosk.wait()
        _wait_for(lambda: process_gone(child), 20, "the orphaned window to close")
    finally:
        if kiosk.poll() is None:
            kiosk.kill()
            kiosk.wait()
        if child and not process_gone(child):
            os.kill(int(child), signal.SIGKILL)
