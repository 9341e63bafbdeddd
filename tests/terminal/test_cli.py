"""The front door: `cnap demo` serves the sample catalogue on simulators; `cnap settings`."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from terminal.cli import build_parser, main


def test_every_area_contributes_its_subcommands():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"kiosk", "demo", "settings", "catalogue", "sim", "devices"} <= set(commands)


def test_settings_markdown_is_the_reference(capsys):
    assert main(["settings", "--markdown"]) == 0
    assert "### IDLE_TIMEOUT_S" in capsys.readouterr().out


def test_demo_without_a_display_serves_the_catalogue_on_simulators(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["CNAP_SECRET_KEY"] = "demo-test"
    proc = subprocess.Popen([sys.executable, "-m", "terminal.cli", "demo", "--port", "0", "--no-window",
                             "--instance", str(tmp_path / "instance")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, seen = None, []
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            match = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
            url = match.group(1) if match else None
        assert url, "".join(seen)
        assert any("simulator bill_validator at socket://127.0.0.1:" in s for s in seen)
        home = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "Категорії послуг" in home
        health = urllib.request.urlopen(url + "healthz", timeout=10).read().decode()
        assert '"catalogue"' in health
        # A desk tablet is ready too, on the tablets' own listener: its link carries a token the
        # survey API there accepts.
        (tablet,) = [re.search(r"desk tablet at (http://127\.0\.0\.1:(\d+)/)tablet/#token=(\S+)", s)
                     for s in seen if "desk tablet at" in s]
        assert tablet.group(1) != url
        request = urllib.request.Request(tablet.group(1) + "api/survey/config",
                                         headers={"Authorization": f"Bearer {tablet.group(3)}"})
        config = json.loads(urllib.request.urlopen(request, timeout=10).read())
        assert config["tablet"]["label"] == "Демо-планшет"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("cnap demo did not stop on Ctrl+C")


def test_kiosk_on_a_taken_port_says_so_and_exits(tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["kiosk", "--port", str(port), "--tablet-port", "0", "--no-window",
                     "--instance", str(tmp_path / "instance")])
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err
