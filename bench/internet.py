"""Internet bench (issue 12): the escape suite in a real kiosk window, and the guest network.

    .venv/bin/python bench/internet.py

Part 1 (needs Xvfb, matchbox-window-manager, xdotool, tinyproxy): a private X screen, the kiosk
window (``python -m terminal.shell --control-fd N``), the fake internet on loopback
(tests/terminal/internet/fakenet.py) and the project's filtering proxy (tinyproxy) in front of it.
Every escape route of tests/terminal/internet/window_harness.py is tried in its own session, with
both layers, with the hook alone (no proxy) and with the proxy alone (hook off). Then a cookie,
localStorage and sessionStorage set in one session are looked for in the next.

    attempts       routes × 3 layer set-ups
    escapes        attempts whose blocked host the fake internet saw (must be 0)
    hook_blocked   attempts the window's hook refused (set-ups with the hook on)
    proxy_blocked  attempts the proxy refused (set-ups with the proxy on)
    wipe_ok        1 when session 2 saw nothing of session 1 (and session 1 saw its own data)

Part 2 comes from bench/internet_guest.py ``measure()`` when that file exists (guest_admit_ms,
guest_cap_ratio), else NA. The last line holds every key.
"""
from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.terminal.internet.fakenet import FakeInternet  # noqa: E402
from tests.terminal.internet.window_harness import (ALLOWED, ALLOWLIST, BrowserWindow, ProjectProxy,  # noqa: E402
                                                    register_escapes, try_escape, wait_for)
from tests.terminal.xscreen import missing_tools, x_screen  # noqa: E402

WIPE_PAGE = """<!doctype html><title>wipe</title><script>
addEventListener('load', () => {
  if (location.pathname === '/set') { document.cookie = 'v=1; max-age=3600; path=/';
    localStorage.setItem('v', '1'); sessionStorage.setItem('v', '1'); }
  fetch('/report?' + new URLSearchParams({path: location.pathname, cookie: document.cookie,
    local: localStorage.getItem('v') || '', session: sessionStorage.getItem('v') || ''}));
});</script>"""


def _report(net, path):
    for hit in net.hits:
        if hit.host == ALLOWED and hit.path.startswith("/report?"):
            fields = {k: v[0] for k, v in parse_qs(urlsplit(hit.path).query, keep_blank_values=True).items()}
            if fields.get("path") == path:
                return fields
    return None


def part1(work: Path) -> dict:
    totals = {"attempts": 0, "escapes": 0, "hook_blocked": 0, "proxy_blocked": 0}
    with x_screen(work) as display:
        for layers in ("both", "hook_only", "proxy_only"):
            with FakeInternet() as net:
                proxy = ProjectProxy(ALLOWLIST, net.url, work / f"proxy-{layers}")
                window = BrowserWindow(display, work / f"window-{layers}", hook=layers != "proxy_only")
                try:
                    routes = register_escapes(net, work / f"escape-{layers}.html")
                    proxy_url = net.url if layers == "hook_only" else proxy.url
                    started = time.monotonic()
                    for route in routes:
                        result = try_escape(window, net, proxy, route, proxy_url)
                        totals["attempts"] += 1
                        totals["escapes"] += result.reached
                        totals["hook_blocked"] += result.hook_blocked
                        totals["proxy_blocked"] += result.proxy_blocked
                        if result.reached:
                            print(f"ESCAPE: {route.name} with {layers}", flush=True)
                    print(f"{layers}: {len(routes)} routes in {time.monotonic() - started:.1f} s", flush=True)
                    if layers == "both":
                        totals["wipe_ok"] = int(wipe_ok(window, net, proxy))
                finally:
                    window.stop()
                    proxy.stop()
    return totals


def wipe_ok(window, net, proxy) -> bool:
    net.page(ALLOWED, "/set", WIPE_PAGE)
    net.page(ALLOWED, "/read", WIPE_PAGE)
    since = window.open(f"http://{ALLOWED}/set", proxy_url=proxy.url)
    wait_for(lambda: _report(net, "/set"), 20, "session 1")
    window.end(since)
    since = window.open(f"http://{ALLOWED}/read", proxy_url=proxy.url)
    wait_for(lambda: _report(net, "/read"), 20, "session 2")
    window.end(since)
    first, second = _report(net, "/set"), _report(net, "/read")
    return (first["cookie"] == "v=1" and first["local"] == "1" and first["session"] == "1"
            and second["cookie"] == second["local"] == second["session"] == "")


def part2() -> dict:
    path = ROOT / "bench" / "internet_guest.py"
    if not path.exists():
        return {"guest_admit_ms": "NA", "guest_cap_ratio": "NA"}
    spec = importlib.util.spec_from_file_location("bench.internet_guest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.measure()


def main() -> int:
    if missing_tools():
        print(f"bench/internet.py: {', '.join(missing_tools())} missing", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cnap-internet-bench-") as folder:
        figures = part1(Path(folder))
    figures.update(part2())
    keys = ("attempts", "escapes", "hook_blocked", "proxy_blocked", "wipe_ok", "guest_admit_ms", "guest_cap_ratio")
    print(" ".join(f"{key}={figures.get(key, 'NA')}" for key in keys), flush=True)
    return 0 if figures["escapes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
