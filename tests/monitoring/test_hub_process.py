"""`cnap hub` as one process (monitoring/hub/main.py Hub): ingest from a real Mosquitto into the
store, the evaluator and notifier running, and every part's counters on /metrics (promtool)."""
from __future__ import annotations

import shutil
import subprocess
import urllib.request
import uuid
from datetime import datetime, timezone

from monitoring import topics
from monitoring.hub.main import Hub, load_settings
from tests.monitoring.conftest import PASSWORDS
from tests.monitoring.mqtt import Client
from tests.monitoring.test_hub_ingest_workers import wait_until


def test_one_hub_process_ingests_evaluates_and_reports(central, tmp_path, monkeypatch):
    for name, value in {"HUB_MQTT_HOST": "127.0.0.1", "HUB_MQTT_PORT": str(central.local_port),
                        "HUB_MQTT_USERNAME": "hub.central", "HUB_MQTT_PASSWORD": PASSWORDS["hub.central"],
                        "HUB_MQTT_CA_FILE": "", "HUB_MQTT_CLIENT_ID": f"hub-{uuid.uuid4().hex[:6]}",
                        "HUB_PORT": "0", "HUB_EVALUATE_INTERVAL_S": "0.2"}.items():
        monkeypatch.setenv("CNAP_" + name, value)
    hub = Hub(load_settings(str(tmp_path / "hub")))
    url = hub.start()
    site = Client(central.local_port, "kyiv-1", PASSWORDS["kyiv-1"], client_id=f"kyiv-1-{uuid.uuid4().hex[:6]}")
    try:
        assert site.connect() == 0
        wait_until(lambda: [c for c in hub.workers.snapshots().values() if c.get("subscribed")],
                   what="the ingest worker's subscription")
        state = topics.PrinterState(ts=datetime.now(timezone.utc), online=True, state="paper_out", paper="out")
        out = topics.outgoing("kyiv-1", state)
        assert site.publish(out.topic, out.payload, retain=False) == 0
        wait_until(lambda: hub.store.query("SELECT entity FROM entities WHERE site = 'kyiv-1'"), what="stored")
        wait_until(lambda: hub.store.query("SELECT status FROM alerts WHERE rule = 'printer_paper_out'"),
                   what="the evaluator's alert")
        def metrics() -> bytes:
            with urllib.request.urlopen(f"{url}/metrics", timeout=20) as response:
                return response.read()

        def stored_counted(text: bytes) -> bool:   # the workers report their counters every 0.5 s
            return any(line.startswith("cnap_hub_ingest_stored ") and float(line.split()[1]) >= 1
                       for line in text.decode().splitlines())
        text = wait_until(lambda: (lambda t: t if stored_counted(t) else None)(metrics()), what="ingest counters")
        lines = text.decode().splitlines()
        assert any(line.startswith("cnap_hub_evaluator_steps ") for line in lines)
        assert any(line.startswith("cnap_hub_notifier_") for line in lines), text.decode()
        check = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"], input=text,
                               capture_output=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        site.close()
        hub.stop()
    assert not hub.workers.alive()


def test_staff_add_takes_the_pin_from_stdin_under_the_one_pin_rule(tmp_path):
    import os
    import sys

    from terminal.staff import StaffStore

    env = {k: v for k, v in os.environ.items() if not k.startswith("CNAP_")}

    def add(*args, pin):
        return subprocess.run([sys.executable, "-m", "terminal.cli", "hub", *args], input=pin + "\n", text=True,
                              capture_output=True, timeout=60, env=env)
    for bad in ("000000", "12345", "١٢٣٤٥٦"):   # a published sample, too short, not ASCII digits
        assert add("staff", "add", "--instance", str(tmp_path), "Олена", "technician", pin=bad).returncode == 2
    assert add("--instance", str(tmp_path), "staff", "add", "Олена", "technician", pin="582913").returncode == 0
    staff = StaffStore(str(tmp_path / "hub-staff.db"))
    try:
        member = staff.members()[0]
        assert (member["name"], member["role"]) == ("Олена", "technician")
        assert staff.pin_matches(member["id"], "582913")
    finally:
        staff.close()
