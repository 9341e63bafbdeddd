"""`cnap sim` (run or control the simulators) and `cnap devices probe <url>`."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.request

import serial

from devices.bill_validator import codec as ccnet
from devices.transport import open_url, read_some, safe_close

DEFAULT_HTTP_PORT = 8765


def add_commands(subparsers) -> None:
    sim = subparsers.add_parser("sim", help="run the device simulators (or control running ones)")
    sim.add_argument("--pty", action="store_true", help="serve on ptys instead of loopback sockets")
    sim.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="control API port")
    sim.set_defaults(func=run_sim)
    sim_sub = sim.add_subparsers(dest="sim_command")
    ctl = sim_sub.add_parser("ctl", help="send an action to running simulators")
    ctl.add_argument("device", choices=["bill_validator", "card_terminal", "printer", "status"])
    ctl.add_argument("action", nargs="?", default="")
    ctl.add_argument("params", nargs="*", help="key=value (values parsed as JSON when possible)")
    ctl.add_argument("--http", default=f"http://127.0.0.1:{DEFAULT_HTTP_PORT}")
    ctl.set_defaults(func=run_ctl)

    devices = subparsers.add_parser("devices", help="device tools for technicians")
    devices_sub = devices.add_subparsers(dest="devices_command", required=True)
    probe = devices_sub.add_parser("probe", help="identify a device and print its status")
    probe.add_argument("url", help="/dev/ttyUSB0, socket://127.0.0.1:7001, ...")
    probe.add_argument("--kind", default="auto",
                       choices=["auto", "printer", "bill_validator", "card_terminal"])
    probe.add_argument("--baudrate", type=int, default=None)
    probe.set_defaults(func=run_probe)


def run_sim(args) -> int:
    from devices.sim import start_all

    sims = start_all(http_port=args.http_port, use_pty=args.pty)
    for name, url in sims.urls.items():
        print(f"{name} {url}", flush=True)
    print(f"control {sims.http_url}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        done.wait()
    finally:
        sims.stop()
    return 0


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_ctl(args) -> int:
    base = args.http.rstrip("/")
    if not base.startswith(("http://127.0.0.1", "http://localhost")):
        print("control API is loopback only", file=sys.stderr)
        return 2
    try:
        if args.device == "status":
            with urllib.request.urlopen(base + "/status", timeout=5) as response:
                print(response.read().decode())
            return 0
        body = dict(p.split("=", 1) for p in args.params if "=" in p)
        body = {k: _value(v) for k, v in body.items()}
        request = urllib.request.Request(f"{base}/{args.device}/{args.action}",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            print(response.read().decode())
        return 0
    except OSError as exc:
        print(f"simulator control failed: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------- probe
def probe_printer(url: str, baudrate: int | None) -> dict | None:
    from devices.printer.driver import ReceiptPrinter

    printer = ReceiptPrinter(url, baudrate=baudrate or 19200, profile={"status_timeout_s": 0.5})
    status = printer.status()
    if status.paper == "unknown" and not status.online:
        return None
    return {"kind": "printer", "protocol": "ESC/POS", "online": status.online,
            "cover_open": status.cover_open, "paper": status.paper, "error": status.error}


def probe_bill_validator(url: str, baudrate: int | None) -> dict | None:
    port = None
    try:
        port = open_url(url, baudrate=baudrate or 9600)
        decoder = ccnet.FrameDecoder()

        def ask(command: int):
            port.reset_input_buffer()
            decoder.reset()
            port.write(ccnet.encode_command(command))
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                for item in decoder.feed(read_some(port, deadline)):
                    if isinstance(item, ccnet.Frame):
                        if len(item.payload) > 1 or item.payload[0] not in (ccnet.ACK, ccnet.ILLEGAL_COMMAND):
                            port.write(ccnet.ACK_FRAME)
                        return item
            return None

        state = ask(ccnet.POLL)
        if state is None:
            return None
        ident = ask(ccnet.IDENTIFICATION)
        table = ask(ccnet.GET_BILL_TABLE)
        info = {"kind": "bill_validator", "protocol": "CCNET",
                "state": ccnet.parse_poll_answer(state.payload).name}
        if ident is not None and len(ident.payload) >= 27:
            parsed = ccnet.parse_identification(ident.payload)
            info.update(part_number=parsed.part_number, serial_number=parsed.serial_number)
        if table is not None:
            info["bill_table"] = [f"{b.amount_kop // 100} {b.currency}"
                                  for b in ccnet.parse_bill_table(table.payload)]
        return info
    except (serial.SerialException, OSError, ValueError):
        return None
    finally:
        safe_close(port)


def probe_card_terminal(url: str, baudrate: int | None) -> dict | None:
    from devices.card_terminal.driver import CardTerminal

    terminal = CardTerminal(url, baudrate=baudrate or 115200, timeouts={"ping": 2.0})
    try:
        try:
            terminal.flush_line()
        except Exception:
            return None
        if not terminal.ping():
            return None
        status = terminal.status()
        return {"kind": "card_terminal", "protocol": "PrivatBank ECR JSON",
                "online": status.online, "terminal_id": status.detail.get("terminal_id")}
    finally:
        terminal.close()


PROBES = {"printer": probe_printer, "bill_validator": probe_bill_validator,
          "card_terminal": probe_card_terminal}


def probe(url: str, kind: str = "auto", baudrate: int | None = None) -> dict | None:
    # the printer goes first: CCNET or JSON bytes sent to a printer would be printed as junk
    order = ["printer", "bill_validator", "card_terminal"] if kind == "auto" else [kind]
    for name in order:
        found = PROBES[name](url, baudrate)
        if found:
            return found
    return None


def run_probe(args) -> int:
    info = probe(args.url, args.kind, args.baudrate)
    if not info:
        print(f"{args.url}: no device answered ({args.kind})")
        return 1
    print(f"{args.url}: {info['kind']} ({info['protocol']})")
    for key, value in info.items():
        if key not in ("kind", "protocol"):
            print(f"  {key}: {', '.join(value) if isinstance(value, list) else value}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cnap")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_commands(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
