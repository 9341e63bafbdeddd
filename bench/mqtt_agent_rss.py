"""MQTT agent footprint. Last line: ``agent_rss_mb=… agent_cpu_pct=… publishes=… seconds=…``.

One `cnap agent` (monitoring/agent.py Agent: the loopback endpoint, the runner and the MQTT
reporter) runs in a process of its own with three simulated controllers (ventilation, power,
uplinks with two links) polled at 1 Hz, every poll changing a reading, so each second publishes
the ventilation, air, power and both uplink topics at QoS 1 to a real Mosquitto on loopback, through
the disk outbox. After a 5 s warm-up the agent process measures itself over 30 s: peak RSS
(VmHWM) and CPU time (all threads) as a share of one core; publishes = messages the broker
acknowledged in that window.

agent_without_mqtt_rss_mb: the same agent without MQTT_HOST (a shorter run), for what the reporter
adds. Targets: RSS ≤ 35 MB, CPU ≤ 0.5 % of one core. Measured here (2 shared cores): RSS 47.6 MB,
of which the agent without MQTT is 35.1 MB (Flask, waitress); the reporter adds ~12.5 MB, mostly
pydantic (the monitoring/topics.py models) and paho. CPU 0.33–0.35 %, 150 publishes in 30 s.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WARMUP_S, WINDOW_S = 5.0, 30.0

AGENT = r'''
import json, os, sys, time
sys.path.insert(0, sys.argv[2])
from facility.runner import Runner
from monitoring.agent import Agent
from terminal import settings as settings_module

class Simulated:
    def __init__(self, name, make):
        self.name, self.interval_s, self.make, self.n = name, 1.0, make, 0
    def poll(self, now):
        self.n += 1
    def status(self):
        return {"available": True, "alerts": [], "events": [], **self.make(self.n)}
    def command(self, action, args):
        return {"ok": False, "message": "no"}
    def close(self):
        pass

controllers = [
    Simulated("ventilation", lambda n: {"state": "demand", "level": 30 + n % 50, "max_level": 100,
                                        "readings": {"co2_ppm": 600.0 + n % 300, "room_temp_c": 21.0, "rh_pct": 40.0}}),
    Simulated("power", lambda n: {"state": "online", "ups_status": "OL", "charge_pct": float(100 - n % 50),
                                  "runtime_s": 1800, "input_voltage": 230.0}),
    Simulated("uplinks", lambda n: {"state": "ok", "active": "fibre", "uplinks": [
        {"name": "fibre", "state": "up", "loss_pct": 0.0, "rtt_ms": 10.0 + n % 7},
        {"name": "lte", "state": "up", "loss_pct": 1.0, "rtt_ms": 40.0 + n % 11}]}),
]
settings = settings_module.load(json.loads(sys.argv[1]), environ={})
agent = Agent(settings, runner=Runner(controllers))
agent.start(port=0)
time.sleep(float(sys.argv[3]))
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
reporter = agent.reporter
published, cpu, wall = reporter.published if reporter else 0, time.process_time(), time.monotonic()
time.sleep(float(sys.argv[4]))
cpu, wall = time.process_time() - cpu, time.monotonic() - wall
print(json.dumps({"rss_mb": rss_mb(), "cpu_pct": 100 * cpu / wall, "publishes": (reporter.published if reporter else 0) - published,
                  "seconds": wall}), flush=True)
agent.stop()
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_agent(settings: dict, window_s: float) -> dict:
    out = subprocess.run([sys.executable, "-c", AGENT, json.dumps(settings), str(ROOT), str(WARMUP_S),
                          str(window_s)], capture_output=True, text=True, timeout=WARMUP_S + window_s + 60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(window_s: float = None) -> tuple[dict, dict]:
    """One agent's figures over ``window_s`` (default WINDOW_S), and the same agent without MQTT."""
    window_s = WINDOW_S if window_s is None else window_s
    folder = Path(tempfile.mkdtemp(prefix="cnap-mqtt-bench-"))
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n")
    conf.chmod(0o644)
    folder.chmod(0o755)
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("mosquitto did not start")
                time.sleep(0.05)
        instance = folder / "instance"
        instance.mkdir()
        (instance / "mqtt.password").write_text("unused\n")
        settings = {"INSTANCE_PATH": str(instance), "MQTT_HOST": "127.0.0.1", "MQTT_PORT": port,
                    "MQTT_SITE": "bench-1", "AGENT_PORT": 0}
        figures = run_agent(settings, window_s)
        # The same agent without MQTT_HOST, for what the reporter itself adds.
        baseline = run_agent({**settings, "MQTT_HOST": ""}, 2.0)
    finally:
        broker.terminate()
        broker.wait(10)
    return figures, baseline


def main() -> None:
    figures, baseline = measure()
    print(f"agent_rss_mb={figures['rss_mb']:.1f} agent_cpu_pct={figures['cpu_pct']:.2f} "
          f"publishes={figures['publishes']} seconds={figures['seconds']:.1f} "
          f"agent_without_mqtt_rss_mb={baseline['rss_mb']:.1f}")


if __name__ == "__main__":
    main()
