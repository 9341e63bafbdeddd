"""Start `cnap kiosk` in a child process, and drive it over HTTP like a staff member's browser: cookies, the CSRF token
the page gives, log in by choosing a name and typing a PIN."""
from __future__ import annotations

import http.cookiejar
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_STAFF = re.compile(r'name="staff_id" value="(\d+)"')


class StaffBrowser:
    def __init__(self, origin: str):
        self.origin = origin.rstrip("/")
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> tuple[int, str]:
        return self._send(urllib.request.Request(self.origin + path))

    def post(self, path: str, form: dict, token_page: str) -> tuple[int, str]:
        _, page = self.get(token_page)
        match = _META.search(page)
        data = dict(form, csrf_token=match.group(1)) if match else dict(form)
        return self._send(urllib.request.Request(self.origin + path, data=urllib.parse.urlencode(data).encode()))

    def _send(self, request) -> tuple[int, str]:
        try:
            with self.opener.open(request, timeout=20) as response:  # follows redirects
                self.last_url = response.url
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            self.last_url = error.url
            return error.code, error.read().decode()

    def log_in(self, pin: str) -> None:
        """Tries the PIN on each listed person until one logs in (the seeded staff hold the sample
        PINs); a successful login lands on the service-mode index."""
        _, page = self.get("/service/login")
        for staff_id in _STAFF.findall(page):
            status, _ = self.post("/service/login", {"staff_id": staff_id, "pin": pin}, "/service/login")
            if status == 200 and urllib.parse.urlsplit(self.last_url).path == "/service/":
                return
        raise AssertionError(f"nobody logged in with PIN {pin}")


def start_kiosk(tmp_path: Path, *extra: str, display: str | None = None) -> tuple[subprocess.Popen, Path]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update({"CNAP_SECRET_KEY": "t", "CNAP_BILL_VALIDATOR_URL": "", "CNAP_CARD_TERMINAL_URL": "",
                "CNAP_PRINTER_URL": "", "CNAP_SERVICE_PINS_MUST_CHANGE": "0", "HOME": str(tmp_path)})
    if display:
        env["DISPLAY"] = display
    out = tmp_path / "kiosk.out"
    with open(out, "w") as output:
        kiosk = subprocess.Popen([sys.executable, "-m", "terminal.cli", "kiosk", "--port", "0",
                                  "--instance", str(tmp_path / "instance"), *extra],
                                 env=env, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT)
    return kiosk, out


def kiosk_url(kiosk: subprocess.Popen, out: Path, marker: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in out.read_text().splitlines():
            if marker in line:
                return line.split(marker, 1)[1].split()[0].rstrip("/")
        if kiosk.poll() is not None:
            pytest.fail(f"cnap kiosk exited early: {out.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"cnap kiosk did not print {marker!r}: {out.read_text()}")
