"""The filtering proxy (real tinyproxy) with the fake internet as its upstream: allowed sites
pass, everything else is refused before it reaches the "internet", refusals are reported with the
host only, the list changes live, and a misbehaving client cannot stop it."""
from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from terminal import settings
from terminal.internet.allowlist import Allowlist
from terminal.internet.proxy import FilteringProxy, ProxyError, example_files, render_config
from tests.terminal.internet.fakenet import fetch_via_proxy, open_tunnel, send_raw

pytestmark = pytest.mark.skipif(shutil.which("tinyproxy") is None,
                                reason="tinyproxy is not installed (Debian package tinyproxy-bin; make test installs it)")

REPO = Path(__file__).resolve().parents[3]
ALLOWED = Allowlist(["allowed.test", "gov.test"])


@pytest.fixture
def proxy(fake_internet, tmp_path):
    events = []
    proxy = FilteringProxy(ALLOWED, workdir=tmp_path / "proxy", upstream=fake_internet.url, on_event=events.append)
    proxy.start()
    proxy.events = events
    yield proxy
    proxy.stop()


def _refused(answer) -> bool:
    return answer.status == 403


def test_allowed_sites_reach_the_fake_internet_over_http_and_connect(proxy, fake_internet):
    fake_internet.page("www.allowed.test", "/page", "<p>ok</p>")
    answer = fetch_via_proxy(proxy.url, "http://www.allowed.test/page")
    assert answer.status == 200 and answer.body == b"<p>ok</p>"
    assert fetch_via_proxy(proxy.url, "http://GOV.test:80/x?y=1").status == 200
    assert fetch_via_proxy(proxy.url, "http://a.gov.test./").status == 200
    posted = fetch_via_proxy(proxy.url, "http://allowed.test/form", method="POST", body=b"name=x")
    assert posted.status == 200
    tunnel_answer, sock = open_tunnel(proxy.url, "allowed.test", 443)
    assert tunnel_answer.status == 200
    sock.close()
    assert fake_internet.hits == [("GET", "www.allowed.test", "/page"), ("GET", "gov.test", "/x?y=1"),
                                  ("GET", "a.gov.test", "/"), ("POST", "allowed.test", "/form"),
                                  ("CONNECT", "allowed.test", "")]
    assert proxy.blocked_since(0) == []


def test_no_header_tells_the_site_about_the_proxy(proxy, fake_internet):
    fetch_via_proxy(proxy.url, "http://allowed.test/")
    headers = fake_internet.headers_of("allowed.test")[0]
    assert "via" not in headers and "x-tinyproxy" not in headers and "forwarded" not in headers
    assert "x-forwarded-for" not in headers


@pytest.mark.parametrize("url, host", [
    ("http://blocked.test/", "blocked.test"),
    ("http://blocked.test/secret/path?token=123", "blocked.test"),
    ("http://evilallowed.test/", "evilallowed.test"),           # look-alike: not a subdomain
    ("http://allowed.test.evil.example/", "allowed.test.evil.example"),
    ("http://allowed.testx/", "allowed.testx"),
    ("http://127.0.0.1/", "127.0.0.1"),                          # IP literals
    ("http://2130706433/", "2130706433"),
    ("http://0x7f000001/", "0x7f000001"),
    ("http://[::1]/", "::1"),
    ("http://allowed.test@blocked.test/", "blocked.test"),      # user-info: the real host is refused
    ("http://allowed.test:8080/", "allowed.test"),              # a port not on the list
    ("http://allowed.test:22/", "allowed.test"),
    ("http://blocked.test/?.allowed.test", "blocked.test"),
    ("http://blocked.test%2eallowed.test/", "blocked.test?2eallowed.test"),
])
def test_refused_requests_never_reach_the_internet(proxy, fake_internet, url, host):
    mark = proxy.mark()
    answer = fetch_via_proxy(proxy.url, url)
    assert _refused(answer), (url, answer.status)
    assert "Сайт недоступний" in answer.body.decode() and "not available" in answer.body.decode()
    assert fake_internet.hits == []
    events = proxy.wait_blocked(mark)
    assert events == [{"type": "blocked", "layer": "proxy", "host": host, "kind": "request"}]
    assert proxy.events[-1] == events[0]       # the callback got it too


@pytest.mark.parametrize("host, port, event_host", [
    ("blocked.test", 443, "blocked.test"),
    ("evilallowed.test", 443, "evilallowed.test"),
    ("127.0.0.1", 443, "127.0.0.1"),
    ("::1", 443, "::1"),
    ("allowed.test", 22, "allowed.test"),       # allowed host, port not on the list (ConnectPort)
    ("allowed.test", 8443, "allowed.test"),
])
def test_refused_connects_never_reach_the_internet(proxy, fake_internet, host, port, event_host):
    mark = proxy.mark()
    answer, sock = open_tunnel(proxy.url, host, port)
    assert sock is None and _refused(answer), (host, port, answer.raw_head)
    assert fake_internet.hits == [] and fake_internet.connects == []
    assert proxy.wait_blocked(mark) == [{"type": "blocked", "layer": "proxy", "host": event_host, "kind": "connect"}]


def test_origin_form_requests_are_filtered_by_their_host_header(proxy, fake_internet):
    assert _refused(send_raw(proxy.url, b"GET /x HTTP/1.1\r\nHost: blocked.test\r\nConnection: close\r\n\r\n"))
    assert not fake_internet.reached("blocked.test")
    assert send_raw(proxy.url, b"GET /x HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n").status == 200


def test_a_connect_tunnel_is_byte_transparent_and_tls_is_end_to_end(proxy, fake_internet):
    answer, sock = open_tunnel(proxy.url, "allowed.test", 443)
    assert answer.status == 200
    with sock:
        payload = os.urandom(200_000).replace(b"\x16", b"\x17")   # never looks like TLS or HTTP
        payload = b"\x00" + payload
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            assert chunk, "tunnel closed early"
            received += chunk
    assert received == payload
    # TLS through the proxy: the certificate is the site's (signed by the fake internet's CA), so
    # the proxy does not terminate or inspect TLS.
    fake_internet.page("allowed.test", "/secure", "<p>over tls</p>")
    _, sock = open_tunnel(proxy.url, "allowed.test", 443)
    context = ssl.create_default_context(cafile=fake_internet.ca_file)
    with context.wrap_socket(sock, server_hostname="allowed.test") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        tls.sendall(b"GET /secure HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"<p>over tls</p>")
    assert fake_internet.hits[-1] == ("GET", "allowed.test", "/secure")
    assert fake_internet.hits[-1].scheme == "https"


def test_update_removes_and_adds_domains_live(proxy, fake_internet):
    assert fetch_via_proxy(proxy.url, "http://allowed.test/").status == 200
    assert _refused(fetch_via_proxy(proxy.url, "http://new.test/"))
    pid = proxy._process.pid
    proxy.update(Allowlist(["new.test"]))
    assert proxy._process.pid == pid                          # reloaded, not restarted
    fake_internet.clear()
    assert _refused(fetch_via_proxy(proxy.url, "http://allowed.test/"))
    answer, sock = open_tunnel(proxy.url, "allowed.test", 443)
    assert sock is None and _refused(answer)
    assert fetch_via_proxy(proxy.url, "http://sub.new.test/").status == 200
    assert fake_internet.hosts() == {"sub.new.test"}
    # Ports change live too: 443 only, so plain http on 80 is refused (CONNECT to 80 as well).
    proxy.update(Allowlist(["new.test"], ports=[443]))
    assert _refused(fetch_via_proxy(proxy.url, "http://new.test/"))
    answer, sock = open_tunnel(proxy.url, "new.test", 80)
    assert sock is None and _refused(answer)
    # An empty list refuses everything.
    proxy.update(Allowlist([]))
    assert _refused(fetch_via_proxy(proxy.url, "http://new.test:443/"))


def test_garbage_and_huge_requests_are_refused_and_the_proxy_lives_on(proxy, fake_internet):
    huge_header = b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    assert send_raw(proxy.url, huge_header).status in (0, 400, 413, 431)
    many_headers = b"GET http://allowed.test/ HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(20_000)) + b"\r\n"
    assert send_raw(proxy.url, many_headers).status in (0, 400, 413, 431)
    assert send_raw(proxy.url, b"\x00\xff\x16\x03\x01garbage\r\n\r\n").status in (0, 400)
    assert send_raw(proxy.url, b"GET\r\n\r\n").status in (0, 400)
    assert send_raw(proxy.url, b"CONNECT allowed.test HTTP/1.1\r\n\r\n").status in (0, 400, 403)
    assert send_raw(proxy.url, b"GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n").status in (0, 400, 403)
    with socket.create_connection(("127.0.0.1", proxy.port), 5) as half_open:
        half_open.sendall(b"GET http://allowed.test/ HTTP/1.1\r\n")   # and never finishes
        assert proxy.is_alive()
        assert fetch_via_proxy(proxy.url, "http://allowed.test/ok").status == 200
    assert fake_internet.hits == [("GET", "allowed.test", "/ok")]
    assert proxy.running


def test_stop_leaves_no_process_and_frees_the_port(fake_internet, tmp_path):
    proxy = FilteringProxy(ALLOWED, workdir=tmp_path, upstream=fake_internet.url)
    url = proxy.start()
    pid, port = proxy._process.pid, proxy.port
    assert url == f"http://127.0.0.1:{port}" and proxy.is_alive()
    proxy.stop()
    assert not proxy.running and not proxy.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), 1).close()
    proxy.stop()    # twice is fine


def test_a_dead_proxy_is_noticed_and_restarted_on_the_same_port(fake_internet, tmp_path):
    downs = []
    proxy = FilteringProxy(ALLOWED, workdir=tmp_path, upstream=fake_internet.url, on_down=downs.append)
    url = proxy.start()
    try:
        proxy._process.kill()
        proxy._process.wait(5)
        proxy._reader.join(5)
        assert not proxy.running and not proxy.is_alive()
        assert downs == [-9]
        assert proxy.ensure_running() == url
        assert proxy.is_alive()
        assert fetch_via_proxy(url, "http://allowed.test/").status == 200
    finally:
        proxy.stop()
    assert downs == [-9]          # an ordinary stop is not a death


def test_a_given_port_is_used_and_a_taken_one_is_a_clear_error(fake_internet, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        proxy = FilteringProxy(ALLOWED, workdir=tmp_path, port=busy, upstream=fake_internet.url)
        with pytest.raises(ProxyError, match="taken"):
            proxy.start()
        assert not proxy.running
    with FilteringProxy(ALLOWED, workdir=tmp_path, port=busy, upstream=fake_internet.url) as proxy:
        assert proxy.url == f"http://127.0.0.1:{busy}"


def test_missing_or_failing_tinyproxy_is_a_clear_error(tmp_path):
    with pytest.raises(ProxyError, match="tinyproxy-bin"):
        FilteringProxy(ALLOWED, workdir=tmp_path, binary=str(tmp_path / "no-such-tinyproxy")).start()
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\necho 'ERROR: Syntax error on line 3' ; exit 1\n")
    failing.chmod(0o755)
    with pytest.raises(ProxyError, match="Syntax error on line 3"):
        FilteringProxy(ALLOWED, workdir=tmp_path, binary=str(failing)).start()


def test_listens_on_loopback_only(proxy):
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if f"pid={proxy._process.pid}," in line]
    assert lines and all(f"127.0.0.1:{proxy.port}" in line for line in lines)
    assert "Listen 127.0.0.1" in (proxy.workdir / "tinyproxy.conf").read_text()


def test_the_shipped_example_is_what_the_code_writes():
    for name, text in example_files().items():
        assert (REPO / "firmware_configs" / "tinyproxy" / name).read_text(encoding="utf-8") == text, name
    conf = example_files()["tinyproxy.conf"]
    for directive in ("FilterDefaultDeny Yes", "FilterType ere", "FilterURLs On", "FilterCaseSensitive No",
                      "DisableViaHeader Yes", "XTinyproxy No", "ConnectPort 80", "ConnectPort 443",
                      "Listen 127.0.0.1", "MaxClients 32"):
        assert directive in conf.splitlines()
    directives = [line.split()[0] for line in conf.splitlines() if line and not line.startswith("#")]
    assert not {"Upstream", "LogFile", "Syslog", "PidFile", "ReversePath", "AddHeader"} & set(directives)


def test_config_from_settings_and_upstream_checks():
    values = settings.load(environ={"CNAP_INTERNET_ALLOWED_PORTS": "443, 8443", "CNAP_INTERNET_PROXY_MAX_CLIENTS": "7"})
    assert values["INTERNET_ALLOWED_PORTS"] == [443, 8443]
    conf = render_config(port=1, workdir="/w", ports=values["INTERNET_ALLOWED_PORTS"],
                         max_clients=values["INTERNET_PROXY_MAX_CLIENTS"], upstream="http://127.0.0.1:9")
    assert "ConnectPort 443\nConnectPort 8443\n" in conf and "MaxClients 7" in conf
    assert "Upstream http 127.0.0.1:9" in conf and "ConnectPort 80\n" not in conf
    for bad in ("socks5://127.0.0.1:1", "http://127.0.0.1", "127.0.0.1:1"):
        with pytest.raises(ValueError):
            render_config(port=1, workdir="/w", ports=[443], max_clients=1, upstream=bad)
    for name, value in [("INTERNET_ALLOWED_PORTS", "0"), ("INTERNET_ALLOWED_PORTS", "http"),
                        ("INTERNET_ALLOWED_PORTS", ""), ("INTERNET_PROXY_PORT", "70000"),
                        ("INTERNET_PROXY_MAX_CLIENTS", "0")]:
        with pytest.raises(settings.SettingError, match=name):
            settings.load(environ={f"CNAP_{name}": value})


def _kiosk_with_a_proxy(workdir, upstream: str, *, die_with_it: bool) -> tuple[subprocess.Popen, str, int]:
    """A stand-in kiosk process that starts a FilteringProxy and waits; its proxy URL and pid."""
    script = ("import sys, time; sys.path.insert(0, sys.argv[1]);"
              "import terminal.internet.proxy as m;"
              + ("" if die_with_it else "m._DIE_WITH_US = [];") +
              "from terminal.internet.allowlist import Allowlist;"
              "p = m.FilteringProxy(Allowlist(['allowed.test']), workdir=sys.argv[2], upstream=sys.argv[3]);"
              "print(p.start(), p._process.pid, flush=True); time.sleep(60)")
    kiosk = subprocess.Popen([sys.executable, "-c", script, str(REPO), str(workdir), upstream],
                             stdout=subprocess.PIPE, text=True)
    url, pid = kiosk.stdout.readline().split()
    return kiosk, url, int(pid)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") >= 0


def test_the_proxy_ends_when_the_kiosk_process_is_killed(fake_internet, tmp_path):
    kiosk, url, pid = _kiosk_with_a_proxy(tmp_path, fake_internet.url, die_with_it=True)
    try:
        assert not _gone(pid)
        kiosk.kill()
        kiosk.wait(5)
        deadline = time.monotonic() + 5
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid)
    finally:
        kiosk.kill()


def test_a_proxy_left_by_a_killed_kiosk_is_ended_by_the_next_start(fake_internet, tmp_path):
    # Where nothing ended it with its kiosk (no setpriv), the next kiosk process on the same
    # workdir must not find the port taken nor leave the old filter running.
    kiosk, url, old_pid = _kiosk_with_a_proxy(tmp_path, fake_internet.url, die_with_it=False)
    try:
        kiosk.kill()
        kiosk.wait(5)
        assert not _gone(old_pid)          # orphaned, still running
        port = int(url.rsplit(":", 1)[1])
        with FilteringProxy(ALLOWED, workdir=tmp_path, port=port, upstream=fake_internet.url) as proxy:
            assert proxy.url == url and proxy._process.pid != old_pid
            assert fetch_via_proxy(url, "http://gov.test/").status == 200   # the new list filters
        assert _gone(old_pid)
    finally:
        kiosk.kill()
