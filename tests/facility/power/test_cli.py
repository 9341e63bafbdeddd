"""`cnap power status` and `cnap power sim`, and the simulator's control over the NUT protocol."""
from __future__ import annotations

import json

import pytest

from facility import power
from terminal.cli import main
from terminal.settings import defaults


@pytest.fixture
def demo_power(monkeypatch):
    sim = power.start_simulator(defaults())
    for name, value in sim.settings.items():
        monkeypatch.setenv(f"CNAP_{name}", str(value))
    yield sim
    sim.stop()


def test_status_and_sim_commands_drive_the_demo_simulator(demo_power, capsys):
    assert main(["power", "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "online" and status["source"] == "input_a" and status["ups_status"] == "OL"
    assert main(["power", "sim", "OB_SHORT"]) == 0
    assert main(["power", "status"]) == 0
    status = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert status["state"] == "on_battery" and status["stop_new_payments"] and status["source"] == "ups"
    assert status["alerts"] == ["on_battery", "runtime_short", "input_a_lost", "input_b_lost"]
    assert main(["power", "sim", "FSD"]) == 0
    capsys.readouterr()
    main(["power", "status"])
    assert json.loads(capsys.readouterr().out)["state"] == "fsd"


def test_status_without_upsd_is_unavailable_with_exit_1(monkeypatch, capsys):
    from facility.power.simulator import free_port

    monkeypatch.setenv("CNAP_NUT_HOST", "127.0.0.1")
    monkeypatch.setenv("CNAP_NUT_PORT", str(free_port()))
    assert main(["power", "status"]) == 1
    assert json.loads(capsys.readouterr().out)["state"] == "unavailable"
    assert main(["power", "sim", "LB"]) == 1


def test_upsmon_style_fsd_and_set_var_on_the_simulator(demo_power):
    import asyncio

    from aionut import AIONUTClient

    async def talk():
        client = AIONUTClient(demo_power.nut.host, demo_power.nut.port, persistent=True)
        try:
            client_reader, client_writer = await asyncio.open_connection(demo_power.nut.host, demo_power.nut.port)
            client_writer.write(f'SET VAR {demo_power.nut.ups} battery.runtime "123"\n'.encode())
            assert await client_reader.readline() == b"OK\n"
            client_writer.write(f"FSD {demo_power.nut.ups}\n".encode())
            assert await client_reader.readline() == b"OK FSD-SET\n"
            client_writer.close()
            return await client.list_vars(demo_power.nut.ups), await client.list_commands(demo_power.nut.ups)
        finally:
            client.shutdown()

    from facility.power.io import run_coroutine

    values, commands = run_coroutine(talk)  # also inside Playwright's loop in a whole-suite run
    assert values["ups.status"] == "FSD OL" and values["battery.runtime"] == "123"
    assert "sim.lb" in commands


def test_shipped_nut_samples_agree_with_the_settings_and_the_ats_map():
    import tomllib
    from pathlib import Path

    from facility.power import io

    folder = Path(__file__).resolve().parents[3] / "firmware_configs" / "nut"
    upsmon = (folder / "upsmon.conf").read_text()
    deadtime = int(next(line.split()[1] for line in upsmon.splitlines() if line.startswith("DEADTIME")))
    assert deadtime == defaults()["POWER_DEADTIME_S"]
    assert "[ups]" in (folder / "ups.conf").read_text() and defaults()["NUT_UPS"] == "ups"
    assert f"LISTEN 127.0.0.1 {defaults()['NUT_PORT']}" in (folder / "upsd.conf").read_text()
    ats = tomllib.loads((folder.parent / "facility" / "ats-generic.toml").read_text())["status_register"]
    assert (ats["address"], ats["bit_input_a_live"], ats["bit_input_b_live"], ats["bit_position_a"],
            ats["bit_position_b"], ats["bit_alarm"]) == (io.ATS_STATUS_REGISTER, io.BIT_A_LIVE, io.BIT_B_LIVE,
                                                         io.BIT_POS_A, io.BIT_POS_B, io.BIT_ALARM)
