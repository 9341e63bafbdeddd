"""``cnap agent``: the facility controllers and their loopback endpoint (monitoring/agent.py)."""
from __future__ import annotations


def add_commands(sub) -> None:
    p = sub.add_parser("agent", help="run the facility controllers and their loopback JSON endpoint")
    p.add_argument("--port", type=int, default=None, help="endpoint port (default AGENT_PORT; 0: any free port)")
    p.add_argument("--instance", default=None, help="instance folder (the token file, cnap.toml)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from monitoring.agent import run_agent

    return run_agent(args)
