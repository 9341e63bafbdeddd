"""The fake internet itself: the other internet tests trust what it records."""
from __future__ import annotations

import socket
import ssl
import threading

import pytest

from tests.terminal.internet.fakenet import FakeInternet, fetch_via_proxy, open_tunnel, send_raw


def test_absolute_uri_requests_get_the_registered_or_default_page(fake_internet):
    fake_internet.page("diia.test", "/hello", "<p>привіт</p>", headers={"X-Test": "1"})
    answer = fetch_via_proxy(fake_internet.url, "http://Diia.Test/hello?q=1")
    assert answer.status == 200 and answer.body.decode() == "<p>привіт</p>"
    assert answer.headers["x-test"] == "1"
    other = fetch_via_proxy(fake_internet.url, "http://any.example.test/x")
    assert other.status == 200 and b"any.example.test" in other.body
    posted = fetch_via_proxy(fake_internet.url, "http://forms.test/send", method="POST", body=b"a=1")
    assert posted.status == 200
    head = fetch_via_proxy(fake_internet.url, "http://diia.test/hello", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert fake_internet.hits == [("GET", "diia.test", "/hello?q=1"), ("GET", "any.example.test", "/x"),
                                  ("POST", "forms.test", "/send"), ("HEAD", "diia.test", "/hello")]
    assert fake_internet.reached("diia.test") and not fake_internet.reached("blocked.test")
    assert [hit.port for hit in fake_internet.hits] == [80, 80, 80, 80]
    assert fake_internet.headers_of("forms.test")[0]["content-length"] == "3"
    fetch_via_proxy(fake_internet.url, "http://diia.test:8080/p")
    assert fake_internet.hits[-1].port == 8080


def test_status_and_redirects_and_wildcard_paths(fake_internet):
    fake_internet.page("old.test", "*", status=302, headers={"Location": "http://new.test/"})
    answer = fetch_via_proxy(fake_internet.url, "http://old.test/anything")
    assert answer.status == 302 and answer.headers["location"] == "http://new.test/"
    fake_internet.page("gone.test", "/", "", status=404)
    assert fetch_via_proxy(fake_internet.url, "http://gone.test/").status == 404


def test_connect_is_recorded_and_a_plain_tunnel_echoes_bytes(fake_internet):
    answer, sock = open_tunnel(fake_internet.url, "bank.test", 443)
    assert answer.status == 200 and answer.raw_head.startswith(b"HTTP/1.1 200")
    with sock:
        payload = bytes(range(256)) * 64
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += sock.recv(65536)
    assert got == payload
    assert fake_internet.hits == [("CONNECT", "bank.test", "")]
    assert fake_internet.connects == [("bank.test", 443)]


def test_a_tls_tunnel_serves_https_with_a_certificate_for_the_host(fake_internet):
    fake_internet.page("bank.test", "/pay", "<p>secure</p>")
    answer, sock = open_tunnel(fake_internet.url, "bank.test", 443)
    assert answer.status == 200
    context = ssl.create_default_context(cafile=fake_internet.ca_file)
    with context.wrap_socket(sock, server_hostname="bank.test") as tls:
        tls.sendall(b"GET /pay HTTP/1.1\r\nHost: bank.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"<p>secure</p>")
    assert fake_internet.hits[-1] == ("GET", "bank.test", "/pay")
    assert fake_internet.hits[-1].scheme == "https" and fake_internet.hits[-1].port == 443
    # A client that expects another name refuses the certificate.
    _, sock = open_tunnel(fake_internet.url, "bank.test", 443)
    with sock, pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(sock, server_hostname="other.test")


def test_plain_http_inside_a_tunnel(fake_internet):
    _, sock = open_tunnel(fake_internet.url, "plain.test", 80)
    with sock:
        sock.sendall(b"GET /in HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"plain.test" in data
    assert fake_internet.hits == [("CONNECT", "plain.test", ""), ("GET", "plain.test", "/in")]


def test_garbage_does_not_stop_it_and_parallel_clients_are_all_recorded(fake_internet):
    assert send_raw(fake_internet.url, b"\x00\xff garbage\r\n\r\n").status in (0, 400)
    results = []

    def one(index):
        results.append(fetch_via_proxy(fake_internet.url, f"http://host{index}.test/").status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 20
    assert fake_internet.hosts() == {f"host{i}.test" for i in range(20)}


def test_listens_on_loopback_only_and_stops():
    with FakeInternet() as net:
        port = net.port
        assert net.url == f"http://127.0.0.1:{port}"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), 1).close()
    with pytest.raises(ValueError):
        FakeInternet("0.0.0.0")
