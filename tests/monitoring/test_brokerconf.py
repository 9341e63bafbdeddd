"""The broker files agree with the topic tree, accounts are told apart by name, passwords never
reach a command line."""
from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest
from hypothesis import given

from monitoring import brokerconf, topics
from tests.monitoring.strategies import sites


def acl_patterns(access: str) -> set[str]:
    text = (brokerconf.MOSQUITTO_DIR / "acl").read_text(encoding="utf-8")
    return set(re.findall(rf"^pattern {access} (\S+)$", text, re.M))


def test_site_acl_patterns_are_the_topic_tree():
    """A site may write every kind of topic but commands, and read only its commands (besides its
    Home Assistant discovery configs and Home Assistant's status)."""
    from monitoring import discovery

    ha_write, ha_read = (line.split(" ", 2)[2] for line in discovery.ACL_LINES)
    site_writes = {spec.pattern.replace("{site}", "%u").replace("{name}", "+") for spec in topics.TOPICS
                   if spec.kind != "cmd"}
    assert acl_patterns("write") == site_writes | {ha_write}
    assert acl_patterns("read") == {topics.SPECS["cmd"].pattern.replace("{site}", "%u").replace("{name}", "+"),
                                    ha_read}
    assert acl_patterns("readwrite") == set()


def test_bridge_carries_the_tree_out_and_commands_in():
    conf = brokerconf.render("bridge.conf", site="kyiv-1", central_host="h", central_port=1, central_ca_file="ca",
                             bridge_password="p")
    lines = re.findall(r"^topic (\S+) (in|out|both) 1 cnap/kyiv-1/ cnap/kyiv-1/$", conf, re.M)
    out = {"cnap/kyiv-1/" + pattern for pattern, direction in lines if direction == "out"}
    into = {"cnap/kyiv-1/" + pattern for pattern, direction in lines if direction == "in"}
    expected_out = {spec.filter.replace("+", "kyiv-1", 1) for spec in topics.TOPICS if spec.kind not in ("cmd", "bridge")}
    assert out == expected_out            # the bridge's own "bridge" topic is its notification, not a copy
    assert into == {topics.command_filter("kyiv-1")}
    assert not re.search(r"^topic .* both ", conf, re.M)
    assert "notification_topic cnap/kyiv-1/bridge" in conf


@given(sites)
def test_every_site_id_is_a_site_account(site):
    assert brokerconf.role_of(site) == ("site", site)
    assert brokerconf.acl_block(site) == ""


@pytest.mark.parametrize("username, role", [
    ("tablet.kyiv-1.desk-3", ("tablet", "kyiv-1")), ("hub.central", ("hub", None)), ("staff.olena", ("staff", None)),
])
def test_dotted_accounts(username, role):
    assert brokerconf.role_of(username) == role
    block = brokerconf.acl_block(username)
    assert block.startswith(f"user {username}\ntopic deny cnap/{username}/#\n")


@pytest.mark.parametrize("username", ["", "Kyiv", "tablet.kyiv-1", "tablet.+.1", "hub.", "staff.a/b",
                                      "root.x", "kyiv-1.x", "hub.central.extra", "staff.#"])
def test_bad_user_names_are_refused(username):
    with pytest.raises(ValueError):
        brokerconf.role_of(username)


def test_acl_blocks_per_role():
    acl = brokerconf.acl_text(["kyiv-1", "tablet.kyiv-1.desk-3", "hub.central", "staff.olena", "staff.olena"])
    assert acl.count("user staff.olena") == 1
    assert "topic write cnap/kyiv-1/survey/answer" in acl
    hub = acl[acl.index("user hub.central"):].split("\n\n")[0]
    assert "topic write cnap/+/cmd/+" in hub and "topic read cnap/#" in hub
    staff = acl[acl.index("user staff.olena"):].split("\n\n")[0]
    assert "write" not in staff


def test_set_password_adds_and_replaces_without_a_command_line(tmp_path, monkeypatch):
    calls = []
    real_run = subprocess.run

    def spy(args, **kwargs):
        calls.append(args)
        return real_run(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    passwd = tmp_path / "passwd"
    brokerconf.set_password(passwd, "kyiv-1", "first secret")
    brokerconf.set_password(passwd, "hub.central", "hub secret")
    first = passwd.read_text()
    brokerconf.set_password(passwd, "kyiv-1", "second secret")
    lines = passwd.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["hub.central", "kyiv-1"]
    assert "secret" not in passwd.read_text() and lines[1] not in first
    assert all("secret" not in " ".join(map(str, args)) for args in calls)
    assert oct(passwd.stat().st_mode & 0o777) == "0o640"
    with pytest.raises(ValueError):
        brokerconf.set_password(passwd, "kyiv-1", "two\nlines")
    with pytest.raises(ValueError):
        brokerconf.set_password(passwd, "not a name", "x")


def test_site_conf_refuses_bad_values():
    common = dict(conf_dir="/c", cert_dir="/c/certs", data_dir="/d", central_host="h", central_ca_file="/ca")
    with pytest.raises(ValueError):
        brokerconf.site_conf(site="Kyiv", bridge_password="p", **common)
    with pytest.raises(ValueError):
        brokerconf.site_conf(site="kyiv-1", bridge_password="with space", **common)
    conf = brokerconf.site_conf(site="kyiv-1", bridge_password="p", **common)
    assert "${" not in conf and "remote_username kyiv-1" in conf


def test_command_line(tmp_path, monkeypatch, capsys):
    assert brokerconf.main(["central", "--conf-dir", "/etc/x"]) == 0
    assert "password_file /etc/x/passwd" in capsys.readouterr().out
    assert brokerconf.main(["acl", "hub.central"]) == 0
    assert "user hub.central" in capsys.readouterr().out
    assert brokerconf.main(["acl", "bad name"]) == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))
    assert brokerconf.main(["passwd", str(tmp_path / "passwd"), "kyiv-1"]) == 0
    assert (tmp_path / "passwd").read_text().startswith("kyiv-1:$")
    monkeypatch.setattr(sys, "stdin", io.StringIO("bridge-secret\n"))
    assert brokerconf.main(["site", "--site", "kyiv-1", "--central-host", "mqtt.example.org"]) == 0
    assert "remote_password bridge-secret" in capsys.readouterr().out



def test_discovery_lines_are_in_the_acl_and_only_sites_may_announce():
    from monitoring import discovery

    acl = (brokerconf.MOSQUITTO_DIR / "acl").read_text(encoding="utf-8")
    assert all(line in acl.splitlines() for line in discovery.ACL_LINES)
    for account in ("hub.central", "staff.olena", "tablet.kyiv-1.desk-3"):
        assert f"topic deny homeassistant/+/{account}/#" in brokerconf.acl_block(account).splitlines()
