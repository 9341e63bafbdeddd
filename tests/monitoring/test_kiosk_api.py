"""The kiosk's loopback API (terminal/views/internal.py) through the agent's client
(monitoring/kiosk_client.py), over real sockets: a real kiosk app with the device simulators,
waitress on 127.0.0.x, the agent's token file. Devices fit the hub's models, survey answers go out
without staff ids and come back marked, the out-of-service switch is set and read, and anybody
but this machine with the agent's token gets nothing."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid as uuidlib
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from monitoring import topics
from monitoring.agent import ensure_token, token_path
from monitoring.kiosk_client import KioskClient, KioskUnavailable
from payments.health import DeviceHealth, not_configured
from tests.payments.helpers import make_app, wait_until
from terminal import close_app
from terminal.server import BackgroundServer
from terminal.state import state
from terminal.views.internal import device_fields


def request(host: str, port: int, method: str, path: str, *, source: str = "127.0.0.1",
            headers: dict | None = None, body: bytes | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=20, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


@pytest.fixture
def kiosk(tmp_path):
    app = make_app(tmp_path / "instance")
    token = ensure_token(token_path(app.config))
    server = BackgroundServer(app, "127.0.0.1", 0, threads=4)
    yield app, server, token
    server.stop()
    close_app(app)


def client_for(kiosk) -> KioskClient:
    app, server, token = kiosk
    return KioskClient(server.url, token, timeout=20)


def ingest(app, count: int, comment: str | None = None) -> list[str]:
    store = state(app).surveys
    branch = state(app).catalogue.branches[0].id
    tablet, _ = store.register_tablet("Планшет", branch, "Вікно 2", "desk")
    now = time.time()
    answers = [{"uuid": str(uuidlib.uuid4()), "survey": "desk", "version": 1, "answered_at": now - 600 + i,
                "main": "good", "path": [], "nps": 9, "comment": comment, "lang": "uk"} for i in range(count)]
    store.ingest(tablet, answers, now=now)
    return [a["uuid"] for a in answers]


def test_devices_fit_the_hub_models_and_follow_the_kiosk_health(kiosk):
    app, _, _ = kiosk
    client = client_for(kiosk)
    devices = client.devices()
    assert set(devices) == set(topics.DEVICES)
    for name, fields in devices.items():
        assert "ts" not in fields and "v" not in fields
        topics.outgoing("kyiv-1", topics.device_model(name)(ts=datetime.now(timezone.utc), **fields))  # publishable as is
    assert devices["printer"]["paper"] == "ok" and devices["printer"]["cover_open"] is False
    assert devices["card_terminal"]["online"] is True
    assert devices["bill_validator"]["cassette_capacity"] >= 1

    printer = state(app).hardware.simulators["printer"]
    printer.set_paper("near_end")
    wait_until(lambda: client.devices()["printer"]["paper"] == "near_end", what="paper near end")
    printer.set_cover_open(True)
    printer_state = wait_until(lambda: (p := client.devices()["printer"])["cover_open"] and p, what="cover open")
    # the same verdict /healthz gives: not ok, and the state word is the alert (a printer with its
    # cover open also reports itself offline, as real ESC/POS printers do)
    assert printer_state["state"] in ("cover_open", "offline") and printer_state["alerts"] == [printer_state["state"]]
    assert app.test_client().get("/healthz").get_json()["checks"]["printer"]["ok"] is False


def test_answers_go_out_without_staff_ids_masked_and_come_back_marked(kiosk):
    app, _, _ = kiosk
    client = client_for(kiosk)
    uuids = ingest(app, 3, comment="Дзвоніть 0671234567")
    pending = client.pending_answers(10)
    assert sorted(a["uuid"] for a in pending) == sorted(uuids)   # one batch: one received_at
    for fields in pending:
        assert not {"admin_id", "shift_id", "claimed_shift_id", "forwarded_at"} & set(fields)
        assert "0671234567" not in json.dumps(fields, ensure_ascii=False)
        message = topics.SurveyAnswer.model_validate_json(json.dumps(fields))
        assert message.desk == "Вікно 2" and message.nps == 9
    first_two = [a["uuid"] for a in client.pending_answers(2)]
    assert len(first_two) == 2 and set(first_two) <= set(uuids)
    assert client.mark_forwarded(first_two) == 2
    assert client.mark_forwarded(first_two) == 0       # again: nothing left to mark
    assert [a["uuid"] for a in client.pending_answers(10)] == sorted(set(uuids) - set(first_two))
    assert client.mark_forwarded([]) == 0


def test_out_of_service_is_set_read_refused_for_bad_values_and_audited(kiosk):
    app, _, _ = kiosk
    client = client_for(kiosk)
    assert client.out_of_service()["on"] is False
    assert client.set_out_of_service(True, "maintenance", "hub.central") == {"ok": True, "message": "out of service on"}
    current = client.out_of_service()
    assert (current["on"], current["reason"], current["by"]) == (True, "maintenance", "hub.central")
    refused = client.set_out_of_service(True, "Каса закрита, бо <script>", "hub.central")
    assert refused["ok"] is False and "reason" in refused["message"]
    assert client.set_out_of_service(True, "network", "Іван Петренко")["ok"] is False
    assert client.out_of_service()["reason"] == "maintenance"      # refusals change nothing
    assert client.set_out_of_service(False, "maintenance", "staff.olena")["ok"] is True
    assert client.out_of_service()["on"] is False
    actions = [(e["action"], e["detail"]) for e in state(app).staff.audit_log()
               if e["action"].startswith("out_of_service")]
    assert actions == [("out_of_service.off", {"reason": None, "by": "staff.olena"}),
                       ("out_of_service.on", {"reason": "maintenance", "by": "hub.central"})]


def test_without_the_agent_token_nothing_is_answered(kiosk):
    app, server, token = kiosk
    for bad in ("", "Bearer", "Bearer " + token[:-1], "Bearer " + token + "x", "Basic " + token, token):
        headers = {"Authorization": bad} if bad else {}
        for method, path in (("GET", "/internal/devices"), ("GET", "/internal/survey-answers"),
                             ("POST", "/internal/out-of-service")):
            status, body = request("127.0.0.1", server.port, method, path, headers={**headers,
                                   "Content-Type": "application/json"}, body=b'{"on": true}' if method == "POST" else None)
            assert status == 401 and "error" in json.loads(body), (bad, path)
    with pytest.raises(KioskUnavailable, match="401"):
        KioskClient(server.url, "x" * 43).devices()
    assert state(app).out_of_service.current().on is False


def test_before_the_agent_ever_ran_there_is_no_token_and_no_entry(tmp_path):
    app = make_app(tmp_path / "instance")
    server = BackgroundServer(app, "127.0.0.1", 0, threads=2)
    try:
        status, body = request("127.0.0.1", server.port, "GET", "/internal/devices",
                               headers={"Authorization": "Bearer "})
        assert status == 401 and "cnap agent" in json.loads(body)["error"]
    finally:
        server.stop()
        close_app(app)


def test_bad_queries_and_bodies_are_json_400s(kiosk):
    _, server, token = kiosk
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for limit in ("٣", "0", "501", "-1", "1.5", " 1", "9" * 30):
        status, body = request("127.0.0.1", server.port, "GET", f"/internal/survey-answers?limit={quote(limit)}",
                               headers=auth)
        assert status == 400 and "limit" in json.loads(body)["error"], limit
    too_many = json.dumps({"uuids": [str(uuidlib.uuid4()) for _ in range(501)]}).encode()
    for document in (b"", b"[]", b"{", b'{"uuids": "x"}', b'{"uuids": ["not-a-uuid"]}',
                     json.dumps({"uuids": [str(uuidlib.uuid4()).upper()]}).encode(), too_many, b"[" * 5000):
        status, body = request("127.0.0.1", server.port, "POST", "/internal/survey-answers/forwarded",
                               headers=auth, body=document)
        assert status == 400 and "error" in json.loads(body), document[:30]
    for document in (b'{"on": "yes", "reason": "maintenance", "by": "hub.a"}', b'{"on": true, "by": "hub.a"}',
                     b'{"on": true, "reason": "maintenance"}', b"null", b'{"on": NaN}'):
        status, body = request("127.0.0.1", server.port, "POST", "/internal/out-of-service", headers=auth,
                               body=document)
        assert status == 400 and "error" in json.loads(body), document


def test_only_this_machine_reaches_it(tmp_path):
    """Main listener on 127.0.0.2 (as if on the LAN), the tablets' on 127.0.0.1, and a service
    network that opens service mode to 127.0.0.4: the API is for this machine only."""
    app = make_app(tmp_path / "instance", SERVICE_NETWORKS="127.0.0.4/32")
    token = ensure_token(token_path(app.config))
    server = BackgroundServer(app, "127.0.0.2", 0, threads=4, tablet_host="127.0.0.1", tablet_port=0)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        tablet_port = int(server.tablet_url.rsplit(":", 1)[1])
        for path in ("/internal/devices", "/internal/out-of-service", "/internal/nothing"):
            assert request("127.0.0.2", server.port, "GET", path, source="127.0.0.3", headers=auth)[0] == 403
            assert request("127.0.0.2", server.port, "GET", path, source="127.0.0.4", headers=auth)[0] == 403
            assert request("127.0.0.1", tablet_port, "GET", path, headers=auth)[0] == 404
        assert request("127.0.0.2", server.port, "GET", "/service/login", source="127.0.0.4")[0] == 200
        # the listener's own address is this machine
        assert request("127.0.0.2", server.port, "GET", "/internal/devices", source="127.0.0.2", headers=auth)[0] == 200
    finally:
        server.stop()
        close_app(app)


def test_no_kiosk_or_a_garbage_answer_is_kiosk_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = KioskClient(f"http://127.0.0.1:{port}", "t" * 43, timeout=5)
    for call in (closed.devices, lambda: closed.pending_answers(5), lambda: closed.mark_forwarded([]),
                 lambda: closed.set_out_of_service(True, "maintenance", "hub.a"), closed.out_of_service):
        with pytest.raises(KioskUnavailable):
            call()

    answers = iter([b"not json", b"[1, 2]", json.dumps({"devices": {"printer": {}}}).encode(),
                    json.dumps({"answers": [{"uuid": "x"}]}).encode(), json.dumps({"marked": "2"}).encode(),
                    json.dumps({"on": "yes"}).encode()])
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve():
            for answer in answers:
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(answer)).encode() + b"\r\nConnection: close\r\n\r\n" + answer)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        garbage = KioskClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "t" * 43, timeout=20)
        for call, why in ((garbage.devices, "not JSON"), (garbage.devices, "not a JSON object"),
                          (garbage.devices, "bill_validator"), (lambda: garbage.pending_answers(5), "SurveyAnswer"),
                          (lambda: garbage.mark_forwarded([]), "count"), (garbage.out_of_service, "on/off")):
            with pytest.raises(KioskUnavailable, match=why):
                call()
        thread.join(20)


def test_the_client_refuses_a_bad_base_url_and_limits():
    for url in ("ftp://127.0.0.1:1", "127.0.0.1:8080", "http://"):
        with pytest.raises(ValueError):
            KioskClient(url, "t")
    client = KioskClient("http://127.0.0.1:1", "t")
    for limit in (0, 501, True, "5"):
        with pytest.raises(ValueError):
            client.pending_answers(limit)


@pytest.mark.parametrize("name,verdict,expected", [
    ("bill_validator", DeviceHealth("bill_validator", True, False, "Drop Cassette-Full", {}),
     {"online": True, "state": "drop_cassette_full", "alerts": ["drop_cassette_full", "cassette_over_capacity"],
      "cassette_bills": 100000, "cassette_capacity": 100000}),
    ("bill_validator", DeviceHealth("bill_validator", True, False, "offline", {}),
     {"online": False, "state": "offline", "alerts": ["offline", "cassette_over_capacity"],
      "cassette_bills": 100000, "cassette_capacity": 100000}),
    ("printer", not_configured("printer"),
     {"online": False, "state": "not_configured", "alerts": [], "paper": "unknown", "cover_open": False}),
    ("printer", DeviceHealth("printer", True, True, "ready", {"paper": "near_end", "cover_open": False}),
     {"online": True, "state": "ready", "alerts": [], "paper": "near_end", "cover_open": False}),
    ("card_terminal", DeviceHealth("card_terminal", True, False, "", {}),
     {"online": False, "state": "unknown", "alerts": ["unknown"]}),
])
def test_each_verdict_maps_onto_the_hub_model(name, verdict, expected):
    """The mapping alone, for verdicts the simulators do not give on demand (a huge cassette count
    is capped at the model's bound and says so)."""
    fields = device_fields(name, verdict, cassette_bills=10 ** 7, cassette_capacity=10 ** 9)
    assert fields == expected
    topics.device_model(name)(ts=datetime.now(timezone.utc), **fields)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20)
# answers shaped like the kiosk's, with any values inside
answer_shapes = st.one_of(
    json_values,
    st.fixed_dictionaries({"devices": st.dictionaries(st.sampled_from(topics.DEVICES), json_values, max_size=3)}),
    st.fixed_dictionaries({"answers": st.lists(st.dictionaries(st.sampled_from(sorted(topics.SurveyAnswer.model_fields)),
                                                               json_values, max_size=6), max_size=3)}),
    st.fixed_dictionaries({"marked": json_values}), st.fixed_dictionaries({"on": json_values}),
    st.fixed_dictionaries({"ok": json_values, "message": json_values}), st.fixed_dictionaries({"error": json_values}))


class _Canned(BaseHTTPRequestHandler):
    status, body = 200, b"{}"

    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(type(self).body)))
        self.end_headers()
        self.wfile.write(type(self).body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def canned_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=st.sampled_from([200, 200, 200, 400, 401, 404, 500, 503]), answer=answer_shapes,
       raw=st.one_of(st.none(), st.binary(max_size=60)))
def test_whatever_the_kiosk_answers_the_client_gives_a_result_or_kiosk_unavailable(canned_server, status, answer,
                                                                                      raw):
    _Canned.status, _Canned.body = status, raw if raw is not None else json.dumps(answer).encode()
    client = KioskClient(f"http://127.0.0.1:{canned_server.server_address[1]}", "t" * 43, timeout=20)
    for call in (client.devices, lambda: client.pending_answers(5), lambda: client.mark_forwarded([]),
                 lambda: client.set_out_of_service(True, "maintenance", "hub.a"), client.out_of_service):
        try:
            result = call()
        except KioskUnavailable:
            continue
        assert isinstance(result, (dict, list, int))
