"""Every simulator at once, plus a small loopback HTTP control API (what `cnap sim` runs).

HTTP API (JSON, 127.0.0.1 only):
  GET  /status                      every simulator's state and URL
  POST /<device>/<action>           body: keyword arguments, e.g.
                                    POST /bill_validator/insert_bill {"amount_kop": 20000}
  GET  /printer/text                what the printer printed, decoded
  GET  /printer/preview.png         a PNG preview of it
"""
from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devices.bill_validator.simulator import BillValidatorSimulator
from devices.card_terminal.simulator import CardTerminalSimulator
from devices.printer.simulator import PrinterSimulator
from devices.simwire import LOOPBACK_HOSTS

log = logging.getLogger(__name__)

ACTIONS = {
    "bill_validator": {"insert_bill", "set_cassette_full", "remove_cassette", "replace_cassette",
                       "jam_bill", "clear_jam", "cheat", "fail", "clear_failure", "power_cycle",
                       "set_silent", "set_delay", "set_busy", "lose_next_acks",
                       "corrupt_next_answers", "garbage_before_next_answers",
                       "truncate_next_answers", "drop_next_answers"},
    "card_terminal": {"set_behaviour", "set_silent", "garbage_before_next_answers"},
    "printer": {"set_paper", "set_cover_open", "set_error", "set_silent", "run_out_of_paper_after",
                "clear"},
}


@dataclass
class SimulatorSet:
    simulators: dict
    urls: dict
    http_url: str | None = None
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._thread:
            self._thread.join(timeout=2)
        for sim in self.simulators.values():
            sim.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def control(self, device: str, action: str, **kwargs):
        if action not in ACTIONS.get(device, ()):
            raise KeyError(f"unknown action {device}/{action}")
        return getattr(self.simulators[device], action)(**kwargs)

    def snapshot(self) -> dict:
        return {"urls": dict(self.urls),
                **{name: sim.snapshot() for name, sim in self.simulators.items()}}


def start_all(host: str = "127.0.0.1", *, http_port: int | None = 0, use_pty: bool = False,
              ports: dict | None = None, bill_validator: dict | None = None,
              card_terminal: dict | None = None) -> SimulatorSet:
    """Start the three simulators (and the HTTP control API unless http_port is None)."""
    if host not in LOOPBACK_HOSTS:
        raise ValueError("simulators listen on loopback only")
    ports = ports or {}
    sims = {"bill_validator": BillValidatorSimulator(**(bill_validator or {})),
            "card_terminal": CardTerminalSimulator(**(card_terminal or {})),
            "printer": PrinterSimulator()}
    urls = {}
    for name, sim in sims.items():
        urls[name] = sim.start_pty() if use_pty else sim.start_tcp(host, ports.get(name, 0))
    result = SimulatorSet(sims, urls)
    if http_port is not None:
        server = ThreadingHTTPServer((host, http_port), _handler(result))
        server.daemon_threads = True
        result._server = server
        result.http_url = f"http://127.0.0.1:{server.server_address[1]}"
        result._thread = threading.Thread(target=server.serve_forever, name="sim-http", daemon=True)
        result._thread.start()
    return result


def _handler(sims: SimulatorSet):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            log.debug("sim http: " + fmt, *args)

        def _send(self, code: int, body, content_type="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/status":
                self._send(200, sims.snapshot())
            elif self.path == "/printer/text":
                self._send(200, sims.simulators["printer"].received_text().encode(),
                           "text/plain; charset=utf-8")
            elif self.path == "/printer/preview.png":
                buffer = io.BytesIO()
                sims.simulators["printer"].render_png(buffer)
                self._send(200, buffer.getvalue(), "image/png")
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self):
            parts = self.path.strip("/").split("/")
            if len(parts) != 2:
                self._send(404, {"error": "use /<device>/<action>"})
                return
            try:
                length = min(int(self.headers.get("Content-Length") or 0), 65536)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                result = sims.control(parts[0], parts[1], **body)
            except KeyError as exc:
                self._send(404, {"error": str(exc)})
            except (TypeError, ValueError) as exc:
                self._send(400, {"error": str(exc)})
            else:
                self._send(200, {"ok": True, "result": result})

    return Handler
