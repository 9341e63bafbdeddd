"""`cnap power status` (what the UPS and the transfer switch say now, as the agent would report
it) and `cnap power sim STATE` (switch a running simulator, e.g. the one `cnap demo` started)."""
from __future__ import annotations

import json
import sys
import time


def add_commands(subparsers) -> None:
    power = subparsers.add_parser("power", help="UPS (NUT) and transfer switch: status, simulator control")
    sub = power.add_subparsers(dest="power_command", required=True)
    status = sub.add_parser("status", help="read upsd and the ATS once and print the power status as JSON")
    status.set_defaults(func=run_status)
    sim = sub.add_parser("sim", help="switch the simulated UPS (cnap demo): OL, OB, OB_SHORT, LB or FSD")
    sim.add_argument("state", choices=["OL", "OB", "OB_SHORT", "LB", "FSD"])
    sim.set_defaults(func=run_sim)


def _settings():
    from terminal import settings as settings_module

    return settings_module.load()


def run_status(args) -> int:
    from facility.power import build

    controller = build(_settings())
    controller.poll(time.time())
    status = controller.status()
    controller.close()
    json.dump(status, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0 if status["available"] else 1


def run_sim(args) -> int:
    from aionut import AIONUTClient

    settings = _settings()
    if not settings["NUT_HOST"]:
        print("cnap power sim: NUT_HOST is not set (cnap demo prints the simulator's address)", file=sys.stderr)
        return 2

    async def send():
        client = AIONUTClient(settings["NUT_HOST"], settings["NUT_PORT"], timeout=settings["NUT_TIMEOUT_S"],
                              persistent=False)
        try:
            return await client.run_command(settings["NUT_UPS"], f"sim.{args.state.lower()}")
        finally:
            client.shutdown()

    from facility.power.io import run_coroutine

    try:
        print(run_coroutine(send))
    except Exception as exc:
        print(f"cnap power sim: {exc}", file=sys.stderr)
        return 1
    return 0
