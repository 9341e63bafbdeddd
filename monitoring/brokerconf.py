"""Mosquitto configuration for monitoring: the site and central broker configs, the ACL with its
role blocks, and password-file entries, from the templates in firmware_configs/mosquitto/.

    python -m monitoring.brokerconf central --conf-dir /etc/mosquitto/cnap > /etc/mosquitto/conf.d/cnap.conf
    python -m monitoring.brokerconf site --site kyiv-1 --central-host mqtt.example.org … > …/cnap.conf
    python -m monitoring.brokerconf acl hub.central staff.olena tablet.kyiv-1.desk-3 > /etc/mosquitto/cnap/acl
    python -m monitoring.brokerconf passwd /etc/mosquitto/cnap/passwd kyiv-1     # asks for the password

User names carry the role (the ACL's patterns rely on it): ``<site>`` for a site agent or bridge,
``tablet.<site>.<desk>``, ``hub.<name>``, ``staff.<name>``; see docs/monitoring-broker.md.
"""
from __future__ import annotations

import argparse
import getpass
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from string import Template

from monitoring import topics

MOSQUITTO_DIR = Path(__file__).resolve().parent.parent / "firmware_configs" / "mosquitto"
ROLES = ("site", "tablet", "hub", "staff")
_PART = r"[a-z0-9][a-z0-9_-]{0,31}"
_DOTTED = re.compile(rf"(tablet)\.({topics.SITE_ID_RE.pattern})\.({_PART})|(hub|staff)\.({_PART})")


def render(template: str, **values) -> str:
    """A template from firmware_configs/mosquitto with every ${name} filled (KeyError if one is not)."""
    return Template((MOSQUITTO_DIR / template).read_text(encoding="utf-8")).substitute(
        {key: str(value) for key, value in values.items()})


def central_conf(*, conf_dir: str, cert_dir: str, data_dir: str, local_port: int = 1883, tls_port: int = 8883,
                 tls_bind: str = "0.0.0.0", persistence: bool = True, log_dest: str = "syslog") -> str:
    return render("central.conf", conf_dir=conf_dir, cert_dir=cert_dir, data_dir=data_dir, local_port=local_port,
                  tls_port=tls_port, tls_bind=tls_bind, persistence=str(persistence).lower(), log_dest=log_dest)


def site_conf(*, site: str, conf_dir: str, cert_dir: str, data_dir: str, central_host: str, central_ca_file: str,
              bridge_password: str, central_port: int = 8883, local_port: int = 1883, tls_port: int = 8883,
              tls_bind: str = "0.0.0.0", persistence: bool = True, log_dest: str = "syslog") -> str:
    """The site broker with its bridge. Holds the bridge's password: install it 0640 root:mosquitto."""
    if not topics.valid_site_id(site):
        raise ValueError(f"bad site id {site!r}")
    if not bridge_password or any(ch.isspace() for ch in bridge_password):
        raise ValueError("the bridge password must be non-empty and without spaces")
    broker = render("site.conf", conf_dir=conf_dir, cert_dir=cert_dir, data_dir=data_dir, local_port=local_port,
                    tls_port=tls_port, tls_bind=tls_bind, persistence=str(persistence).lower(), log_dest=log_dest)
    bridge = render("bridge.conf", site=site, central_host=central_host, central_port=central_port,
                    central_ca_file=central_ca_file, bridge_password=bridge_password)
    return broker + "\n" + bridge


def role_of(username: str) -> tuple[str, str | None]:
    """("site", site) | ("tablet", site) | ("hub", None) | ("staff", None); ValueError otherwise."""
    if topics.valid_site_id(username):
        return "site", username
    match = _DOTTED.fullmatch(username or "")
    if match is None:
        raise ValueError(f"bad user name {username!r}: <site>, tablet.<site>.<desk>, hub.<name> or staff.<name>")
    return (match[1], match[2]) if match[1] else (match[4], None)


def acl_block(username: str) -> str:
    """The ACL lines of one account; a site account needs none (the patterns cover it)."""
    role, site = role_of(username)
    if role == "site":
        return ""
    # what the patterns would give it: a tree of its own under cnap/ and discovery configs
    lines = [f"user {username}", f"topic deny cnap/{username}/#", f"topic deny homeassistant/+/{username}/#"]
    if role == "tablet":
        lines.append(f"topic write {topics.topic('survey', site)}")
    elif role == "hub":
        lines += ["topic read cnap/#", f"topic read $share/hub/{topics.HUB_FILTER}",
                  f"topic write {topics.SPECS['cmd'].filter}"]
    else:
        lines.append("topic read cnap/#")
    return "\n".join(lines) + "\n"


def acl_text(usernames: list[str]) -> str:
    blocks = [acl_block(name) for name in dict.fromkeys(usernames)]
    return (MOSQUITTO_DIR / "acl").read_text(encoding="utf-8") + "".join("\n" + b for b in blocks if b)


def set_password(passwd_file: str | os.PathLike, username: str, password: str) -> None:
    """Add or replace one account in a mosquitto password file. The password goes through a
    private temporary file and `mosquitto_passwd -U` (never on a command line, where ps shows it)."""
    role_of(username)
    if not password or "\n" in password or "\r" in password:
        raise ValueError("empty password or one with a line break")
    path = Path(passwd_file)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "one"
        plain.write_text(f"{username}:{password}\n", encoding="utf-8")
        subprocess.run(["mosquitto_passwd", "-U", str(plain)], check=True, capture_output=True)
        hashed = plain.read_text(encoding="utf-8")
    kept = [line for line in (path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else [])
            if line.split(":", 1)[0] != username]
    path.write_text("".join(kept) + hashed, encoding="utf-8")
    path.chmod(0o640)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.brokerconf", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("central", "site"):
        p = sub.add_parser(name, help=f"print the {name} broker's mosquitto.conf")
        p.add_argument("--conf-dir", default="/etc/mosquitto/cnap", help="holds passwd and acl")
        p.add_argument("--cert-dir", default="/etc/mosquitto/cnap/certs", help="holds ca.crt, server.crt, server.key")
        p.add_argument("--data-dir", default="/var/lib/mosquitto")
        p.add_argument("--local-port", type=int, default=1883)
        p.add_argument("--tls-port", type=int, default=8883)
        p.add_argument("--tls-bind", default="0.0.0.0")
        if name == "site":
            p.add_argument("--site", required=True)
            p.add_argument("--central-host", required=True)
            p.add_argument("--central-port", type=int, default=8883)
            p.add_argument("--central-ca-file", default="/etc/mosquitto/cnap/certs/central-ca.crt")
    p = sub.add_parser("acl", help="print the ACL file for these accounts")
    p.add_argument("usernames", nargs="*")
    p = sub.add_parser("passwd", help="add or change an account's password (asked for, or one line on stdin)")
    p.add_argument("passwd_file")
    p.add_argument("username")
    args = parser.parse_args(argv)
    try:
        if args.what == "central":
            sys.stdout.write(central_conf(conf_dir=args.conf_dir, cert_dir=args.cert_dir, data_dir=args.data_dir,
                                          local_port=args.local_port, tls_port=args.tls_port, tls_bind=args.tls_bind))
        elif args.what == "site":
            password = getpass.getpass(f"password of {args.site} at the central broker: ") if sys.stdin.isatty() \
                else sys.stdin.readline().rstrip("\n")
            sys.stdout.write(site_conf(site=args.site, conf_dir=args.conf_dir, cert_dir=args.cert_dir,
                                       data_dir=args.data_dir, central_host=args.central_host,
                                       central_port=args.central_port, central_ca_file=args.central_ca_file,
                                       bridge_password=password, local_port=args.local_port,
                                       tls_port=args.tls_port, tls_bind=args.tls_bind))
        elif args.what == "acl":
            sys.stdout.write(acl_text(args.usernames))
        else:
            password = getpass.getpass(f"new password of {args.username}: ") if sys.stdin.isatty() \
                else sys.stdin.readline().rstrip("\n")
            set_password(args.passwd_file, args.username, password)
    except (ValueError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
