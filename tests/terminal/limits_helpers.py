"""What the input-limit and fuzz tests share: a staff session without the login form (login is
fuzzed as a route of its own; its PIN-guessing limits must not lock the fuzzer out), the CSRF
token a page hands a client, and a registered desk tablet."""
from __future__ import annotations

import re
import time
from terminal.state import state

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
FUZZ_ADMIN, FUZZ_PIN = "Fuzz Admin", "864209"


def admin_id(app) -> int:
    store = state(app).staff
    for member in store.members():
        if member["name"] == FUZZ_ADMIN:
            return member["id"]
    return store.add(FUZZ_ADMIN, "admin", FUZZ_PIN).id


def log_in_admin(client) -> None:
    """Give ``client`` an admin's service-mode session, as a successful login would."""
    app = client.application
    store = state(app).staff
    staff_id = admin_id(app)
    store.set_active(staff_id, True)  # a fuzzed request may have switched this admin off
    if hasattr(store, "open_session"):  # server-side sessions: the cookie names one
        from terminal.views import service

        token = store.open_session(staff_id, "127.0.0.1")
        with client.session_transaction() as session:
            session[service.SESSION_KEY] = token
    else:
        with client.session_transaction() as session:
            session["staff"] = {"id": staff_id, "name": FUZZ_ADMIN, "role": "admin", "seen": time.time()}


def csrf_token(client, path: str = "/") -> str | None:
    """The CSRF token a page gives this client's session (None where forms carry none)."""
    page = client.get(path)
    match = _CSRF_META.search(page.get_data(as_text=True))
    return match.group(1) if match else None


def register_tablet(app) -> tuple[int, str]:
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    tablet, token = store.register_tablet("Планшет", branch, "Вікно 1", "desk")
    return tablet.id, token
