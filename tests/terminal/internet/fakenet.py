"""A fake "internet" for the internet tests and benches, on loopback only.

``FakeInternet`` is a threaded HTTP server that behaves as an HTTP forward proxy for ANY host
name, so no DNS is needed anywhere: the browsing view and tinyproxy send every request to a proxy,
and this is the last one. It answers

* absolute-URI requests (``GET http://diia.test/path HTTP/1.1``; GET, HEAD, POST, …) and
  origin-form requests (``GET /path`` + ``Host:``) with the page registered for that host and
  path (``page(...)``), or a small HTML page naming the host;
* ``CONNECT host:port`` with ``HTTP/1.1 200 Connection established`` and then, inside the tunnel,
  by what the client sends first: a TLS ClientHello gets TLS with a certificate for ``host``
  signed by this fake internet's own CA (``ca_file``; made with the openssl CLI on first use) and
  the same pages over HTTPS; an HTTP request line gets the pages in plain HTTP; anything else is
  echoed back byte for byte (to show a tunnel is transparent).

Every request is recorded as ``Hit(method, host, path)`` (CONNECT: path ''; requests inside a
tunnel: the tunnel's host, scheme https when TLS) so a test can assert that ``blocked.test`` was
never reached: ``fake.reached("blocked.test")`` / ``fake.hosts()``.

Use it as a context manager (``with FakeInternet() as net: … net.url``) or through the
``fake_internet`` fixture in tests/terminal/internet/conftest.py. ``url`` is
``http://127.0.0.1:PORT``, usable as a proxy URL (WebKit's proxy settings, tinyproxy's
``Upstream``). Helpers ``fetch_via_proxy`` and ``open_tunnel`` speak to any HTTP proxy (this one
or tinyproxy in front of it) with raw sockets, so tests see exactly what a proxy answered.
"""
from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

MAX_BODY = 1 << 20            # request bodies read (and dropped) at most this big
IO_TIMEOUT_S = 10.0           # an idle client connection or tunnel is closed after this long
_HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")


class Hit(NamedTuple):
    method: str
    host: str
    path: str
    scheme: str = "http"     # "https" inside a TLS tunnel, "tunnel" for CONNECT itself
    port: int = 0            # the port the client asked for (URL, Host or CONNECT; 0 = unknown)
    headers: tuple = ()      # the request's headers as (lower-case name, value) pairs

    def __eq__(self, other):                       # compares with a plain (method, host, path)
        if isinstance(other, tuple) and len(other) == 3:
            return tuple(self[:3]) == other
        return tuple.__eq__(self, other)

    def __hash__(self):
        return hash(tuple(self[:3]))


@dataclass
class Page:
    body: bytes
    status: int = 200
    headers: dict = field(default_factory=dict)


def _host_key(host: str) -> str:
    return (host or "").strip().strip("[]").rstrip(".").lower()


def default_html(host: str, path: str) -> bytes:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{host}</title>"
            f"</head><body><h1 id=\"host\">{host}</h1><p id=\"path\">{path}</p></body></html>").encode()


class FakeInternet:
    """See the module docstring. Thread-safe: pages can be registered and hits read while
    requests are being served."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the fake internet listens on loopback only")
        self._lock = threading.Lock()
        self._pages: dict[tuple[str, str], Page] = {}
        self._hits: list[Hit] = []
        self._connects: list[tuple[str, int]] = []
        self._ca_dir: str | None = None
        self._tls_contexts: dict[str, ssl.SSLContext] = {}
        self._server = _Server((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeInternet":
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="fake-internet",
                                            kwargs={"poll_interval": 0.1}, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()
        if self._ca_dir:
            shutil.rmtree(self._ca_dir, ignore_errors=True)
            self._ca_dir = None

    def __enter__(self) -> "FakeInternet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- content ---------------------------------------------------------------------------
    def page(self, host: str, path: str = "/", html: str | bytes = "", status: int = 200,
             headers: dict | None = None) -> None:
        """Serve ``html`` (str or bytes; '' = the default page naming the host) for ``host`` and
        ``path`` (exact, without the query; ``"*"`` = every path of that host not registered
        otherwise). ``headers`` are added (e.g. ``{"Location": …}`` with status 302,
        ``{"Content-Type": "application/pdf", "Content-Disposition": "attachment"}``)."""
        body = html.encode() if isinstance(html, str) else bytes(html)
        with self._lock:
            self._pages[(_host_key(host), path)] = Page(body, int(status), dict(headers or {}))

    def _lookup(self, host: str, path: str) -> Page:
        key = _host_key(host)
        bare = path.split("?", 1)[0] or "/"
        with self._lock:
            found = self._pages.get((key, bare)) or self._pages.get((key, "*"))
        if found is None:
            return Page(default_html(key, bare))
        return Page(found.body or default_html(key, bare), found.status, found.headers)

    # --- what was asked ----------------------------------------------------------------------
    def _record(self, hit: Hit) -> None:
        with self._lock:
            self._hits.append(hit)

    @property
    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    @property
    def connects(self) -> list[tuple[str, int]]:
        """Every CONNECT as (host, port)."""
        with self._lock:
            return list(self._connects)

    def headers_of(self, host: str) -> list[dict]:
        """The headers (lower-case names) of every request that reached ``host``."""
        key = _host_key(host)
        return [dict(hit.headers) for hit in self.hits if hit.host == key]

    def hosts(self) -> set[str]:
        return {hit.host for hit in self.hits}

    def reached(self, host: str) -> bool:
        """True when any request (or CONNECT) for ``host`` got here. Only that exact host —
        ``reached("gov.test")`` is False after a hit on ``diia.gov.test``."""
        key = _host_key(host)
        return any(hit.host == key for hit in self.hits)

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()
            self._connects.clear()

    # --- TLS -----------------------------------------------------------------------------------
    @property
    def ca_file(self) -> str:
        """The PEM file of the CA that signs the tunnels' certificates (made on first use)."""
        with self._lock:
            return self._ensure_ca()

    def _ensure_ca(self) -> str:
        if self._ca_dir is None:
            self._ca_dir = tempfile.mkdtemp(prefix="fakenet-ca-")
            _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-days", "2", "-subj", "/CN=cnap-kiosk fake internet CA",
                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                     "-keyout", f"{self._ca_dir}/ca.key", "-out", f"{self._ca_dir}/ca.crt")
        return f"{self._ca_dir}/ca.crt"

    def tls_context(self, host: str) -> ssl.SSLContext:
        """A server context with a certificate for ``host`` (an IP literal gets an IP SAN)."""
        key = _host_key(host) or "unknown.test"
        with self._lock:
            context = self._tls_contexts.get(key)
            if context is None:
                ca = self._ensure_ca()
                directory = Path(self._ca_dir)
                stem = directory / key.replace(":", "_").replace("/", "_")
                san = f"IP:{key}" if _looks_like_ip(key) else f"DNS:{key}"
                _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                         "-subj", f"/CN={key[:64]}", "-keyout", f"{stem}.key", "-out", f"{stem}.csr")
                ext = directory / f"{stem.name}.ext"
                ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
                _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", ca, "-CAkey", f"{self._ca_dir}/ca.key",
                         "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", f"{stem}.crt")
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(f"{stem}.crt", f"{stem}.key")
                self._tls_contexts[key] = context
            return context


def _looks_like_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):   # a client that hangs up is no news
        pass


def _handler_for(net: FakeInternet, tunnel_host: str = "", scheme: str = "http", tunnel_port: int = 0):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeInternet/1"
        timeout = IO_TIMEOUT_S
        # Unbuffered on the outer connection: after CONNECT the socket is handed over (TLS or
        # echo), and a buffered reader could already hold the tunnel's first bytes.
        rbufsize = 0 if not tunnel_host else -1

        def log_message(self, *args):
            pass

        def _target(self) -> tuple[str, str, int]:
            default_port = tunnel_port or (443 if scheme == "https" else 80)
            try:
                if "://" in self.path:
                    parts = urlsplit(self.path)
                    path = parts.path or "/"
                    if parts.query:
                        path += "?" + parts.query
                    return (_host_key(parts.hostname or ""), path,
                            parts.port or (443 if parts.scheme.lower() == "https" else 80))
                host = self.headers.get("Host", "") or tunnel_host
                parts = urlsplit("//" + host)
                return _host_key(parts.hostname or host), self.path, parts.port or default_port
            except ValueError:                              # a port that is not a number
                return "", self.path, 0

        def _serve(self) -> None:
            host, path, port = self._target()
            headers = tuple((name.lower(), value) for name, value in self.headers.items())
            net._record(Hit(self.command, host, path, scheme, port, headers))
            length = int(self.headers.get("Content-Length") or 0)
            if 0 < length <= MAX_BODY:
                self.rfile.read(length)
            elif length > MAX_BODY:
                self.close_connection = True
            page = net._lookup(host, path)
            self.send_response(page.status)
            headers = {"Content-Type": "text/html; charset=utf-8", **page.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(page.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(page.body)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _serve

        def do_CONNECT(self) -> None:
            hostport = self.path
            host, _, port_text = hostport.rpartition(":")
            host = _host_key(host)
            try:
                port = int(port_text)
            except ValueError:
                self.send_error(400)
                return
            net._record(Hit("CONNECT", host, "", "tunnel", port,
                            tuple((name.lower(), value) for name, value in self.headers.items())))
            with net._lock:
                net._connects.append((host, port))
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            sock = self.connection
            try:
                first = sock.recv(8, socket.MSG_PEEK)
            except OSError:
                return
            if not first:
                return
            if first[:1] == b"\x16":                       # TLS handshake record
                try:
                    tls = net.tls_context(host).wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                _handler_for(net, host, "https", port)(tls, self.client_address, self.server)
            elif any(first.startswith(m[:len(first)]) for m in _HTTP_METHODS):
                _handler_for(net, host, "http", port)(sock, self.client_address, self.server)
            else:
                _echo(sock)

    return Handler


def _echo(sock: socket.socket) -> None:
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            sock.sendall(chunk)
    except OSError:
        return


# --- client helpers: talk to an HTTP proxy with raw sockets -------------------------------------
@dataclass
class ProxyAnswer:
    status: int            # 0 when the proxy closed without an answer
    headers: dict
    body: bytes
    raw_head: bytes


def _proxy_address(proxy_url: str) -> tuple[str, int]:
    parts = urlsplit(proxy_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _read_answer(sock: socket.socket, head_only: bool = False) -> ProxyAnswer:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            chunk = b""
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return ProxyAnswer(0, {}, b"", head)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only:
        return ProxyAnswer(status, headers, rest, head)
    length = headers.get("content-length")
    body = rest
    while True:
        if length is not None and len(body) >= int(length):
            body = body[:int(length)]
            break
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        body += chunk
    return ProxyAnswer(status, headers, body, head)


def fetch_via_proxy(proxy_url: str, url: str, method: str = "GET", headers: dict | None = None,
                    body: bytes = b"", timeout: float = 10.0) -> ProxyAnswer:
    """Send one absolute-URI request to the proxy at ``proxy_url``; the answer as the proxy gave
    it (status 0 when it just closed the connection)."""
    host = urlsplit(url).netloc
    lines = [f"{method} {url} HTTP/1.1", f"Host: {host}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(_proxy_address(proxy_url), timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(request)
        return _read_answer(sock, head_only=(method == "HEAD"))


def send_raw(proxy_url: str, data: bytes, timeout: float = 10.0) -> ProxyAnswer:
    """Send arbitrary bytes to the proxy, then read what it answers (status 0: nothing)."""
    with socket.create_connection(_proxy_address(proxy_url), timeout) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return ProxyAnswer(0, {}, b"", b"")
        return _read_answer(sock)


def open_tunnel(proxy_url: str, host: str, port: int, timeout: float = 10.0) -> tuple[ProxyAnswer, socket.socket | None]:
    """``CONNECT host:port`` through the proxy. Returns the proxy's answer and, when it is 200,
    the connected socket (the caller closes it); otherwise None (the socket is closed)."""
    sock = socket.create_connection(_proxy_address(proxy_url), timeout)
    sock.settimeout(timeout)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("latin-1"))
    answer = _read_answer(sock, head_only=True)
    if answer.status != 200:
        sock.close()
        return answer, None
    return answer, sock
