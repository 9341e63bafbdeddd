"""The second guard layer of the kiosk's browsing view: a local filtering proxy with default deny.

The browsing view sends every request through this proxy (WebKit's proxy settings, see
``SessionRequest.proxy_url``), so a navigation the window's hook misses is still refused here.
It is Debian's tinyproxy (package ``tinyproxy-bin``), run by the kiosk itself in the foreground
(``tinyproxy -d -c CONF``, never the system service), listening on 127.0.0.1 only, with a filter
file written from the same ``Allowlist`` the hook uses:

* plain HTTP: the whole request target must match ``http://HOST[:PORT][/…]`` with HOST an allowed
  domain or subdomain and PORT an allowed port (``FilterURLs On``: filtering by host alone would
  let ``http://allowed.example:8080/`` through);
* HTTPS: the CONNECT target ``HOST:PORT`` must match the same way, and ``ConnectPort`` allows
  only the allowed ports as well. The tunnel itself is not inspected: TLS stays end to end;
* everything else (IP literals, look-alike names, user-info tricks, other ports) is refused with
  403 (``FilterDefaultDeny Yes``).

tinyproxy logs to its stdout, a pipe only this process reads: nothing is written to disk. Each
refusal becomes an event ``{"type": "blocked", "layer": "proxy", "host": …, "kind": "request" |
"connect"}`` (host only — log lines carry the visitor's URLs, and they are dropped after parsing).

``update()`` rewrites the filter and config and sends SIGUSR1, which tinyproxy 1.11 answers by
re-reading both (SIGHUP would end it). If tinyproxy dies, ``running`` turns False, ``on_down`` is
called, and ``ensure_running()`` starts it again on the same port.
"""
from __future__ import annotations

import collections
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from terminal.internet.allowlist import Allowlist

log = logging.getLogger(__name__)

START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
RELOAD_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 60            # tinyproxy Timeout: an idle connection is closed after this long
STAT_HOST = "tinyproxy-stats.invalid"   # tinyproxy answers its stats page on this name: one no list can hold
MAX_EVENTS = 1000              # blocked events kept for blocked_since()
CONF_NAME = "tinyproxy.conf"
FILTER_NAME = "filter"
ERROR_PAGE_NAME = "blocked.html"
# tinyproxy gets SIGTERM when the kiosk process that started it dies (killed, crashed), so no proxy
# outlives the kiosk; util-linux's setpriv sets that before it executes tinyproxy.
_DIE_WITH_US = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []
PID_NAME = "tinyproxy.pid"       # lets the next kiosk process end one left behind by a killed one

# A friendly page for refused plain-HTTP requests (browsers show nothing for a refused CONNECT).
# No template variables: tinyproxy's {url} would put the visitor's URL on the screen of the next one.
ERROR_PAGE = """<!doctype html>
<html lang="uk"><head><meta charset="utf-8"><title>Сайт недоступний / Site not available</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; font-size: 1.5rem; margin: 2rem;">
<h1>Цей сайт тут недоступний</h1>
<p>На цьому терміналі можна відкрити лише сайти зі списку дозволених.</p>
<h2 lang="en">This site is not available here</h2>
<p lang="en">Only the sites on the allowed list can be opened at this terminal.</p>
</body></html>
"""


class ProxyError(RuntimeError):
    """The proxy cannot start or reload; the message says why (safe to show in service mode)."""


def render_filter(allowlist: Allowlist) -> str:
    """The filter file: one POSIX ERE per allowed domain, matched case-insensitively against the
    request target (``http://host…`` or CONNECT's ``host:port``). Empty list: nothing passes."""
    lines = ["# Written by terminal/internet/proxy.py from the kiosk's allowlist; do not edit."]
    lines += allowlist.proxy_url_patterns()
    return "\n".join(lines) + "\n"


def render_config(*, port: int, workdir: str | os.PathLike, ports, max_clients: int,
                  upstream: str = "") -> str:
    """tinyproxy 1.11's configuration. ``ports``: the only ports CONNECT may reach (the filter
    enforces them for plain HTTP). ``upstream``: an HTTP proxy URL everything is forwarded to
    (tests: the fake internet); '' = tinyproxy resolves and connects itself."""
    workdir = Path(workdir)
    lines = [
        "# tinyproxy configuration of the kiosk's filtering proxy (terminal/internet/proxy.py).",
        "# Written at start from the settings; do not edit — see firmware_configs/tinyproxy/README.md.",
        f"Port {int(port)}",
        "Listen 127.0.0.1",
        "Allow 127.0.0.1",
        f"Timeout {IDLE_TIMEOUT_S}",
        f"MaxClients {int(max_clients)}",
        "# Logs go to stdout, read by the kiosk (no LogFile, no Syslog: nothing reaches the disk).",
        "LogLevel Info",
        "# No header telling sites about the proxy or the client.",
        "DisableViaHeader Yes",
        "XTinyproxy No",
        f'StatHost "{STAT_HOST}"',
        f'DefaultErrorFile "{workdir / ERROR_PAGE_NAME}"',
        "# Default deny: only request targets matching a line of the filter pass.",
        f'Filter "{workdir / FILTER_NAME}"',
        "FilterType ere",
        "FilterURLs On",
        "FilterCaseSensitive No",
        "FilterDefaultDeny Yes",
    ]
    lines += [f"ConnectPort {int(p)}" for p in sorted(set(int(p) for p in ports))] or ["ConnectPort 0"]
    if upstream:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://HOST:PORT, not {upstream!r}")
        lines.append(f"Upstream http {parts.hostname}:{parts.port}")
    return "\n".join(lines) + "\n"


def example_files() -> dict[str, str]:
    """The files shipped in firmware_configs/tinyproxy/ (default settings, an example list)."""
    from terminal.settings import BY_NAME

    allowlist = Allowlist(["gov.ua", "diia.gov.ua"], BY_NAME["INTERNET_ALLOWED_PORTS"].default)
    return {
        "tinyproxy.conf": render_config(port=3128, workdir="/run/cnap-kiosk/internet-proxy",
                                        ports=allowlist.ports,
                                        max_clients=BY_NAME["INTERNET_PROXY_MAX_CLIENTS"].default),
        "filter.example": render_filter(allowlist),
        "blocked.html": ERROR_PAGE,
    }


# --- reading tinyproxy's log ---------------------------------------------------------------------
_REQUEST = re.compile(r"Request \(file descriptor (\d+)\): (\S+) (\S+)")
_FILTERED = re.compile(r'Proxying refused on filtered (url|domain) "(.*)"')
_BAD_PORT = re.compile(r"Refused CONNECT method on port (\d+)")
_RELOADED = "Re-reading filter file"
_LISTENING = "Accepting connections"
_LEVEL = re.compile(r"(INFO|CONNECT|NOTICE|WARNING|ERROR|CRITICAL)\s")
_URL_TAIL = re.compile(r"(\w+://[^/\s\"?]+)\S*")
_SAFE_HOST = re.compile(r"[^a-z0-9._:-]")


def _clean_host(text: str) -> str:
    host = text.strip().strip("[]").rstrip(".").lower()
    return _SAFE_HOST.sub("?", host)[:253]


def _target_host(target: str) -> tuple[str, str]:
    """(host, kind) of a request target as tinyproxy logs it: ``http://h:p/x`` or ``h:p``."""
    if "://" in target:
        try:
            return _clean_host(urlsplit(target).hostname or ""), "request"
        except ValueError:
            return "", "request"
    host = target.rpartition(":")[0] if ":" in target else target
    return _clean_host(host), "connect"


class FilteringProxy:
    """tinyproxy as the kiosk's filtering proxy. See the module docstring.

    ``on_event(event)`` is called (from a reader thread) for every refusal; ``on_down(code)`` when
    tinyproxy ends without ``stop()``. Both must return quickly and not raise."""

    def __init__(self, allowlist: Allowlist, *, workdir: str | os.PathLike, port: int = 0,
                 upstream: str = "", binary: str = "tinyproxy", max_clients: int = 32,
                 on_event: Callable[[dict], None] | None = None,
                 on_down: Callable[[int], None] | None = None):
        self.allowlist = allowlist
        self.workdir = Path(workdir)
        self.port = int(port)
        self.upstream = upstream
        self.binary = binary
        self.max_clients = int(max_clients)
        self.on_event = on_event
        self.on_down = on_down
        self._lock = threading.RLock()
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False
        self._events: collections.deque[tuple[int, dict]] = collections.deque(maxlen=MAX_EVENTS)
        self._event_count = 0
        self._event_ready = threading.Condition(threading.Lock())
        self._recent_connects: collections.deque[str] = collections.deque(maxlen=64)
        self._diagnostics: collections.deque[str] = collections.deque(maxlen=20)
        self._reloads = 0
        self._listening = False

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" if self.port else ""

    @property
    def running(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None

    def is_alive(self) -> bool:
        """Running and accepting connections on its port."""
        if not self.running:
            return False
        try:
            socket.create_connection(("127.0.0.1", self.port), 1.0).close()
            return True
        except OSError:
            return False

    def start(self) -> str:
        """Start tinyproxy and wait until it accepts connections; its proxy URL. ProxyError when
        the program is missing or does not come up (the reason from its log)."""
        with self._lock:
            if self.running:
                return self.url
            attempts = 3 if self.port == 0 else 1
            for attempt in range(attempts):
                port = self.port or _free_port()
                try:
                    self._start_on(port)
                    self.port = port
                    return self.url
                except _PortTaken:
                    if attempt == attempts - 1:
                        raise ProxyError(f"port {port} on 127.0.0.1 is taken") from None
            raise AssertionError("unreachable")

    def _write_files(self, port: int) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.workdir / ERROR_PAGE_NAME, ERROR_PAGE)
        _write_atomic(self.workdir / FILTER_NAME, render_filter(self.allowlist))
        conf = self.workdir / CONF_NAME
        _write_atomic(conf, render_config(port=port, workdir=self.workdir, ports=self.allowlist.ports,
                                          max_clients=self.max_clients, upstream=self.upstream))
        return conf

    def _program(self) -> str:
        """The tinyproxy program's path (FileNotFoundError when there is none): looked up here,
        because the launcher in front of it would only say so in its exit status."""
        found = shutil.which(self.binary)
        if found is None:
            raise FileNotFoundError(self.binary)
        return found

    def _end_leftover(self) -> None:
        """End a tinyproxy that an earlier kiosk process started on this workdir and left behind
        (the kiosk was killed): it would hold the port and filter by an old list. Only a process
        whose command line names this workdir's config is touched."""
        pid_file = self.workdir / PID_NAME
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(self.workdir / CONF_NAME).encode() not in cmdline:
            return
        log.warning("internet proxy: ending tinyproxy %s left by an earlier kiosk process", pid)
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(int(STOP_TIMEOUT_S / 0.05)):
                time.sleep(0.05)
                os.kill(pid, 0)
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _start_on(self, port: int) -> None:
        self._end_leftover()
        conf = self._write_files(port)
        self._diagnostics.clear()
        self._stopping = False
        self._listening = False
        try:
            process = subprocess.Popen([*_DIE_WITH_US, self._program(), "-d", "-c", str(conf)],
                                       stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        except FileNotFoundError:
            raise ProxyError(f"{self.binary!r} not found: install the Debian package tinyproxy-bin "
                             "(or set INTERNET_PROXY_BINARY)") from None
        except PermissionError:
            raise ProxyError(f"{self.binary!r} cannot be run (permission denied)") from None
        self._process = process
        _write_atomic(self.workdir / PID_NAME, f"{process.pid}\n")
        self._reader = threading.Thread(target=self._read_log, args=(process,), name="tinyproxy-log",
                                        daemon=True)
        self._reader.start()
        # Ready when it says so: a connection test alone could reach another program that
        # holds the port (tinyproxy then exits with "Could not create listening sockets").
        deadline = time.monotonic() + START_TIMEOUT_S
        with self._event_ready:
            while not self._listening and process.poll() is None and time.monotonic() < deadline:
                self._event_ready.wait(0.05)
        if self._listening and process.poll() is None:
            return
        if process.poll() is None:
            self._kill(process)
            self._process = None
            raise ProxyError(f"tinyproxy did not start listening within {START_TIMEOUT_S:.0f} s")
        self._reader.join(2)
        self._process = None
        reason = "; ".join(self._diagnostics) or f"exit code {process.returncode}"
        if "listening socket" in reason:
            raise _PortTaken()
        raise ProxyError(f"tinyproxy did not start: {reason}")

    def stop(self) -> None:
        """End tinyproxy (SIGTERM, then SIGKILL) and wait for it; nothing is left running."""
        with self._lock:
            process, self._process = self._process, None
            self._stopping = True
            if process is not None:
                self._kill(process)
            if self._reader is not None:
                self._reader.join(STOP_TIMEOUT_S)
                self._reader = None

    def restart(self) -> str:
        """Stop and start again on the same port (the browsing view keeps its proxy URL)."""
        with self._lock:
            self.stop()
            return self.start()

    def ensure_running(self) -> str:
        """The proxy URL, starting tinyproxy again first when it has died."""
        with self._lock:
            return self.url if self.is_alive() else self.restart()

    def __enter__(self) -> "FilteringProxy":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @staticmethod
    def _kill(process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
        if process.stdout:
            try:
                process.stdout.close()
            except OSError:
                pass

    # --- live changes ---------------------------------------------------------------------------
    def update(self, allowlist: Allowlist) -> None:
        """Filter by ``allowlist`` from now on: the files are rewritten and tinyproxy re-reads
        them (SIGUSR1); returns once it has. Not running: takes effect at the next start."""
        with self._lock:
            self.allowlist = allowlist
            if not self.running:
                return
            before = self._reloads
            self._write_files(self.port)
            self._process.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + RELOAD_TIMEOUT_S
            with self._event_ready:
                while self._reloads == before and time.monotonic() < deadline:
                    if not self.running:
                        break
                    self._event_ready.wait(0.05)
            if self._reloads == before:
                # It may still be reading; a proxy whose filter we cannot vouch for is restarted.
                log.warning("tinyproxy did not confirm the reload; restarting it")
                self.restart()

    # --- refusals -----------------------------------------------------------------------------
    def mark(self) -> int:
        """A position in the event stream for ``blocked_since``."""
        with self._event_ready:
            return self._event_count

    def blocked_since(self, mark: int = 0) -> list[dict]:
        """The blocked events after ``mark`` (the last MAX_EVENTS at most)."""
        with self._event_ready:
            return [event for number, event in self._events if number >= mark]

    def wait_blocked(self, mark: int, count: int = 1, timeout: float = 2.0) -> list[dict]:
        """Wait until at least ``count`` blocked events came after ``mark`` (tinyproxy logs a
        refusal as it answers it; the line may arrive a moment after the 403)."""
        deadline = time.monotonic() + timeout
        with self._event_ready:
            while self._event_count - mark < count and time.monotonic() < deadline:
                self._event_ready.wait(max(0.0, deadline - time.monotonic()))
            return [event for number, event in self._events if number >= mark]

    def _emit(self, host: str, kind: str) -> None:
        event = {"type": "blocked", "layer": "proxy", "host": host, "kind": kind}
        with self._event_ready:
            self._events.append((self._event_count, event))
            self._event_count += 1
            self._event_ready.notify_all()
        if self.on_event is not None:
            try:
                self.on_event(dict(event))
            except Exception:   # a listener's bug must not stop the log reader
                log.exception("internet proxy: event listener failed")

    def _read_log(self, process: subprocess.Popen) -> None:
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            try:
                self._parse(line)
            except Exception:
                log.exception("internet proxy: unreadable log line")
        code = process.wait()
        with self._event_ready:
            self._event_ready.notify_all()
        if not self._stopping and self._process is process:
            log.error("internet proxy: tinyproxy ended (code %s)", code)
            if self.on_down is not None:
                try:
                    self.on_down(code)
                except Exception:
                    log.exception("internet proxy: on_down failed")

    def _parse(self, line: str) -> None:
        # Lines naming a request carry the visitor's URL: only the host is taken, never stored whole.
        match = _REQUEST.search(line)
        if match:
            if match.group(2).upper() == "CONNECT":
                self._recent_connects.append(match.group(3))
            return
        match = _FILTERED.search(line)
        if match:
            host, kind = _target_host(match.group(2))
            if match.group(1) == "domain":    # FilterURLs Off: the host alone; kind unknown
                kind = "connect" if any(t.startswith(match.group(2) + ":") for t in self._recent_connects) else "request"
            self._emit(host, kind)
            return
        match = _BAD_PORT.search(line)
        if match:
            suffix = ":" + match.group(1)
            target = next((t for t in reversed(self._recent_connects) if t.endswith(suffix)), "")
            self._emit(_target_host(target)[0] if target else "", "connect")
            return
        if _LISTENING in line:
            with self._event_ready:
                self._listening = True
                self._event_ready.notify_all()
            return
        if _RELOADED in line:
            with self._event_ready:
                self._reloads += 1
                self._event_ready.notify_all()
            return
        level = _LEVEL.match(line)
        if level is None or level.group(1) in ("WARNING", "ERROR", "CRITICAL"):
            # Start-up failures and errors, for ProxyError's message; URLs cut to their host.
            if "UserName" not in line:   # running as the kiosk's own user is intended
                text = _URL_TAIL.sub(r"\1", line.split("]: ", 1)[-1])
                self._diagnostics.append(text[:200])


class _PortTaken(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """``python -m terminal.internet.proxy example DIR``: write the shipped example files."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "example":
        print("usage: python -m terminal.internet.proxy example DIR", file=sys.stderr)
        return 2
    directory = Path(args[1])
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in example_files().items():
        (directory / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
