"""Which listener serves what, over real HTTP (waitress on loopback, as `cnap kiosk` serves it).

The desk tablets' listener serves only the tablet app, the survey API and the two static files
the app loads. The main listener serves everything to this machine and, to other clients, only
the tablet area (all but /pay to SERVICE_NETWORKS). Other machines are played by loopback
addresses other than 127.0.0.1: the main listener is bound to 127.0.0.2 (its "LAN address") and
clients bind their source address to 127.0.0.3 / 127.0.0.4."""
from __future__ import annotations

import http.client
import json
import re

import pytest

from terminal import close_app, create_app
from terminal.server import BackgroundServer
from terminal.state import state

KIOSK_ONLY = ["/", "/search?q=pasport", "/healthz", "/metrics", "/service/", "/service/login",
              "/service/surveys/tablets", "/service/pay/payments", "/pay", "/receipt/1?c=x",
              "/static/pay.js", "/static/search.js", "/branches"]
TABLET_AREA = ["/tablet/", "/tablet/sw.js", "/tablet/manifest.webmanifest", "/tablet/static/tablet.js",
               "/tablet/static/tablet.css", "/static/kiosk.css", "/static/kiosk.js"]


def request(server_host: str, port: int, method: str, path: str, *, source: str = "127.0.0.1",
            headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection(server_host, port, timeout=20, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def make_app(tmp_path, **config):
    return create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "TESTING": True, "SECRET_KEY": "test",
                       "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "", "PRINTER_URL": "", **config})


@pytest.fixture
def served(tmp_path):
    """The kiosk with its main listener on 127.0.0.2 (as if on the LAN) and the tablets' on 127.0.0.1."""
    app = make_app(tmp_path)
    server = BackgroundServer(app, "127.0.0.2", 0, threads=4, tablet_host="127.0.0.1", tablet_port=0)
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    _, token = store.register_tablet("Планшет 1", branch, "Вікно 1", "desk")
    yield app, server, token
    server.stop()
    close_app(app)


def tablet_port(server) -> int:
    return int(server.tablet_url.rsplit(":", 1)[1])


def test_tablet_listener_serves_the_tablet_app_and_its_api(served):
    app, server, token = served
    port = tablet_port(server)
    for path in TABLET_AREA:
        status, _ = request("127.0.0.1", port, "GET", path)
        assert status == 200, path
    status, body = request("127.0.0.1", port, "GET", "/api/survey/config",
                           headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and json.loads(body)["tablet"]["label"] == "Планшет 1"
    # Everything the tablet page links to is reachable on this listener.
    _, page = request("127.0.0.1", port, "GET", "/tablet/")
    for link in re.findall(r'(?:href|src)="(/[^"]+)"', page):
        assert request("127.0.0.1", port, "GET", link)[0] == 200, link


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_tablet_listener_has_nothing_else(served, method):
    app, server, _ = served
    port = tablet_port(server)
    for path in KIOSK_ONLY:
        status, body = request("127.0.0.1", port, method, path,
                               headers={"Content-Type": "application/x-www-form-urlencoded"}, body=b"pin=000000")
        assert status == 404, (method, path, status)
        if not path.startswith("/api/"):
            assert "Сторінку не знайдено" in body  # the kiosk's own error page


def test_tablet_listener_ignores_what_the_host_header_says(served):
    """The area depends on the socket, not on the Host header a client chooses."""
    app, server, _ = served
    port = tablet_port(server)
    for host in (f"127.0.0.2:{server.port}", "localhost", f"127.0.0.1:{server.port}"):
        for path in ("/service/login", "/metrics", "/pay"):
            assert request("127.0.0.1", port, "GET", path, headers={"Host": host})[0] == 404, (host, path)


def test_main_listener_refuses_other_machines_everything_but_the_tablet_area(served):
    app, server, token = served
    for path in KIOSK_ONLY:
        for method in ("GET", "POST"):
            status, body = request("127.0.0.2", server.port, method, path, source="127.0.0.3",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"}, body=b"a=1")
            assert status == 403, (method, path, status)
            assert "Доступ заборонено" in body
    # Proxy headers from an untrusted client change nothing.
    spoofed = {"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1", "X-Real-IP": "127.0.0.1",
               "Host": "127.0.0.1"}
    assert request("127.0.0.2", server.port, "GET", "/service/login", source="127.0.0.3", headers=spoofed)[0] == 403
    # Tablets that still use the main listener's address keep working.
    for path in TABLET_AREA:
        assert request("127.0.0.2", server.port, "GET", path, source="127.0.0.3")[0] == 200, path
    status, _ = request("127.0.0.2", server.port, "GET", "/api/survey/config", source="127.0.0.3",
                        headers={"Authorization": f"Bearer {token}"})
    assert status == 200


def test_main_listener_serves_everything_to_this_machine(served):
    app, server, _ = served
    # The kiosk window connects from 127.0.0.1 (loopback/wildcard listener) or from the listener's
    # own address (a listener bound to a LAN address).
    for source in ("127.0.0.1", "127.0.0.2"):
        for path in ("/", "/healthz", "/metrics", "/service/login", "/pay", "/static/pay.js"):
            assert request("127.0.0.2", server.port, "GET", path, source=source)[0] == 200, (source, path)


def test_service_networks_open_service_mode_and_metrics_but_never_the_pay_flow(tmp_path):
    app = make_app(tmp_path, SERVICE_NETWORKS="127.0.0.4/32, 10.0.0.0/8")
    server = BackgroundServer(app, "127.0.0.2", 0, threads=4)
    try:
        assert server.tablet_url is None
        for path in ("/service/login", "/metrics", "/", "/static/kiosk.css"):
            assert request("127.0.0.2", server.port, "GET", path, source="127.0.0.4")[0] == 200, path
        for path in ("/pay", "/pay/confirm"):
            assert request("127.0.0.2", server.port, "GET", path, source="127.0.0.4")[0] == 403, path
        # A neighbour outside the listed networks still gets nothing.
        assert request("127.0.0.2", server.port, "GET", "/service/login", source="127.0.0.3")[0] == 403
    finally:
        server.stop()
        close_app(app)


def test_a_taken_tablet_port_closes_the_main_listener_and_says_which(tmp_path, capsys):
    import socket

    from terminal.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free_main = probe.getsockname()[1]
        code = main(["kiosk", "--port", str(free_main), "--tablet-port", str(port), "--no-window",
                     "--instance", str(tmp_path / "instance")])
        assert code == 2
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err
        # The main listener opened first was closed again: its port is free.
        with socket.socket() as again:
            again.bind(("127.0.0.1", free_main))


def test_bad_service_networks_setting_is_refused(tmp_path):
    from terminal.settings import SettingError

    with pytest.raises(SettingError, match="SERVICE_NETWORKS"):
        make_app(tmp_path, SERVICE_NETWORKS="192.168.1.0/24,kiosk-lan")


def test_service_mode_offers_the_tablets_listener_for_new_tablet_links(tmp_path):
    """A tablet registered in service mode gets a link to the tablets' listener, which serves it;
    the main listener's address would not reach it from the LAN."""
    from flask.testing import FlaskClient

    from tests.terminal.limits_helpers import csrf_token, log_in_admin

    app = make_app(tmp_path)
    server = BackgroundServer(app, "127.0.0.1", 0, threads=4, tablet_host="127.0.0.2", tablet_port=0)
    app.config["TABLET_URL"] = server.tablet_url  # as cnap kiosk sets it
    try:
        client = FlaskClient(app, app.response_class, use_cookies=True)
        log_in_admin(client)
        page = client.get("/service/surveys/tablets").text
        assert f'name="base" value="{server.tablet_url}"' in page
        token = csrf_token(client)
        branch = state(app).catalogue.branches[0].id
        registered = client.post("/service/surveys/tablets", data={
            "label": "Планшет 2", "branch": branch, "desk": "Вікно 2", "survey": "desk", "base": "",
            **({"csrf_token": token} if token else {})})
        link = re_link(registered.text)
        assert link.startswith(server.tablet_url + "/tablet/#token=")
        port = tablet_port(server)
        status, body = request("127.0.0.2", port, "GET", "/api/survey/config",
                               headers={"Authorization": "Bearer " + link.split("#token=")[1]})
        assert status == 200 and json.loads(body)["tablet"]["label"] == "Планшет 2"
        # A listener on every address is offered under the name service mode was opened with.
        from terminal.views.survey import _tablets_base

        app.config["TABLET_URL"] = "http://0.0.0.0:8181"
        with app.test_request_context("/service/surveys/tablets", base_url="http://kiosk-3.cnap.lan:8080"):
            assert _tablets_base() == "http://kiosk-3.cnap.lan:8181/"
    finally:
        server.stop()
        close_app(app)


def re_link(page: str) -> str:
    match = re.search(r'(http://[^"<\s]+/tablet/#token=[^"<\s]+)', page)
    assert match, page[:2000]
    return match.group(1)


def test_the_server_refuses_bodies_no_route_would_take_before_buffering_them(served):
    """waitress reads a whole body (to a temporary file) before the app runs, up to 1 GB by
    default; beyond the largest route limit (media uploads, 51 MiB) it now answers 413 itself."""
    from terminal.server import largest_body

    app, server, _ = served

    def chunks(total, size=1024 * 1024):
        for _ in range(total // size):
            yield b"%x\r\n" % size + b"\0" * size + b"\r\n"
        yield b"0\r\n\r\n"

    def post_chunked(megabytes):
        conn = http.client.HTTPConnection("127.0.0.2", server.port, timeout=60)
        try:
            conn.putrequest("POST", "/healthz")  # the app would answer 405 without reading the body
            conn.putheader("Transfer-Encoding", "chunked")
            conn.putheader("Content-Type", "application/octet-stream")
            conn.endheaders()
            try:
                for chunk in chunks(megabytes * 1024 * 1024):
                    conn.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server stopped reading: its answer is waiting
            response = conn.getresponse()
            return response.status
        finally:
            conn.close()

    assert post_chunked(2) == 405          # within the limit: the app answers
    assert post_chunked(60) == 413         # beyond it: refused by the server
    assert largest_body(app) == 51 * 1024 * 1024

