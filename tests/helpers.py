"""Test clients that behave like the kiosk's browser: forms carry the CSRF token the page gave
them, and staff log in by choosing their name and typing their PIN.

CSRF protection stays on in every test. ``BrowserLikeClient`` (made the default test client by
tests/conftest.py) reads the token from a page's ``<meta name="csrf-token">`` before each
POST/PUT/PATCH/DELETE and sends it as a browser form or script would; pass ``csrf=False`` to send
a request without it (the CSRF tests use a plain ``FlaskClient`` instead).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from flask.testing import FlaskClient
from terminal.state import state

TOKEN_PAGE = "/service/login"   # any page rendered from base.html has the token; this one is cheap
_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def csrf_token_from(client: FlaskClient, path: str = TOKEN_PAGE) -> str | None:
    """The CSRF token a page hands this client (its session), read from the meta tag; None when
    the page has none for this client (e.g. a listener that serves only the tablet API)."""
    page = FlaskClient.open(client, path, method="GET")
    match = _META.search(page.get_data(as_text=True))
    return match.group(1) if match else None


class BrowserLikeClient(FlaskClient):
    def open(self, *args, csrf: bool = True, **kwargs):
        method = str(kwargs.get("method", "GET")).upper()
        if csrf and method in _UNSAFE and not args[1:] and _is_path(args):
            token = csrf_token_from(self)
        else:
            token = None
        if token:
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", token)
            kwargs["headers"] = headers
            data = kwargs.get("data")
            if isinstance(data, dict) and "json" not in kwargs:
                kwargs["data"] = {"csrf_token": token, **data}
        return super().open(*args, **kwargs)


def _is_path(args) -> bool:
    return bool(args) and isinstance(args[0], str)


def holder_of(store, pin: str):
    """The active staff member whose PIN this is (tests know the PINs they seeded)."""
    return next((store.member(m["id"]) for m in store.members(active_only=True)
                 if store.pin_matches(m["id"], pin)), None)


def service_login(client: FlaskClient, pin: str, name: str | None = None, next_path: str | None = None):
    """Log in to service mode the way the login page does: choose the person, type the PIN.
    ``name`` defaults to the active staff member who holds ``pin`` (looked up in the real store)."""
    store = state(client.application).staff
    if name is None:
        holder = holder_of(store, pin)
        staff_id = holder.id if holder else next(m["id"] for m in store.members(active_only=True))
    else:
        staff_id = next(m["id"] for m in store.members(active_only=True) if m["name"] == name)
    path = "/service/login" + (f"?next={next_path}" if next_path else "")
    return client.post(path, data={"staff_id": str(staff_id), "pin": pin})


def choose_staff(page, name: str) -> None:
    """In a browser: tap the person's tile on the service-mode login page."""
    page.locator(".staff-tile", has_text=name).first.click()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), so a test that kills the demo cleans up after it."""
    found, frontier = [], [pid]
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    while frontier:
        parent = frontier.pop()
        for child, ppid in stats.items():
            if ppid == parent:
                found.append(child)
                frontier.append(child)
    return found


def start_headless_demo(tmp_path: Path, settings: dict[str, str]):
    """`cnap demo --no-window` in ``tmp_path`` with these CNAP_* ``settings`` (none inherited from
    the test's environment, no display), its output in ``tmp_path/demo.out``; (process, out file)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY") and not k.startswith("CNAP_")}
    env.update({"PYTHONPATH": str(root), "CNAP_SECRET_KEY": "demo-test", "CNAP_SERVICE_PINS_MUST_CHANGE": "0",
                **settings})
    out = tmp_path / "demo.out"
    with open(out, "w") as output:
        demo = subprocess.Popen([sys.executable, "-m", "terminal.cli", "demo", "--port", "0", "--no-window",
                                 "--instance", str(tmp_path / "instance")], env=env, cwd=tmp_path,
                                stdout=output, stderr=subprocess.STDOUT, text=True)
    return demo, out


def interrupt_and_wait(process, timeout: float = 60) -> None:
    """Ctrl+C for a `cnap demo` (or any process that stops in order on SIGINT); killed when it
    has not stopped within ``timeout`` seconds."""
    import signal
    import subprocess

    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kill_all(pids) -> None:
    """SIGKILL each of ``pids`` that still runs (cleanup after a test that killed a parent)."""
    import os
    import signal

    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(predicate, timeout: float, what: str, step: float = 0.1):
    """The first truthy value of ``predicate()``, asked every ``step`` seconds; fails the test
    saying what it waited for after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(step)
