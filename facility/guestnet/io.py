"""The real side of the guest network: the interface's address, nftables, tc and dnsmasq, each
run inside GUEST_NETNS when set (as the uplink watch does with UPLINKS_NETNS)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path

from facility.uplinks import netns

from . import policy
from .config import Config

log = logging.getLogger("cnap.guestnet")


class GatewayError(OSError):
    pass


class Gateway:
    def __init__(self, cfg: Config, state_dir: str | os.PathLike | None = None) -> None:
        self.cfg = cfg
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="cnap-guestnet-"))
        self.dnsmasq: subprocess.Popen | None = None
        self.dnsmasq_log = b""

    # --- running things ------------------------------------------------------------------
    def _run(self, argv: list[str], input: str | None = None, check: bool = True) -> str:
        done = subprocess.run(netns.command(self.cfg.netns, argv), input=input, text=True,
                              capture_output=True, timeout=15)
        if check and done.returncode:
            raise GatewayError(f"{argv[0]}: {done.stderr.strip()[:300]}")
        return done.stdout

    def nft(self, script: str) -> None:
        self._run(["nft", "-f", "-"], input=script)

    # --- setting up ------------------------------------------------------------------------
    def setup(self, admitted: dict[str, int] | None = None) -> None:
        """Address, forwarding, firewall, shaping; ``admitted`` (address → seconds left) re-admits
        the clients an earlier run let out."""
        cfg = self.cfg
        prefix = cfg.network.split("/")[1]
        self._run(["ip", "link", "set", cfg.interface, "up"])
        self._run(["ip", "addr", "replace", f"{cfg.gateway}/{prefix}", "dev", cfg.interface])
        self._run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self.nft(policy.nft_ruleset(cfg))
        for address, seconds in (admitted or {}).items():
            if seconds > 0:
                self.admit(address, seconds)
        for argv in policy.tc_teardown(cfg):
            self._run(argv, check=False)
        for argv in policy.tc_commands(cfg):
            self._run(argv)

    def start_dnsmasq(self) -> None:
        self.stop_dnsmasq()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        leases = self.state_dir / f"{self.cfg.interface}.leases"
        argv = netns.command(self.cfg.netns, policy.dnsmasq_argv(self.cfg, str(leases)))
        self.dnsmasq = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)

    def dnsmasq_running(self) -> bool:
        return self.dnsmasq is not None and self.dnsmasq.poll() is None

    def dnsmasq_failure(self) -> str:
        """Why dnsmasq ended (its last words), '' while it runs."""
        if self.dnsmasq is None or self.dnsmasq.poll() is None:
            return ""
        try:
            tail = (self.dnsmasq.stderr.read() or b"").decode(errors="replace").strip()[-300:]
        except (OSError, ValueError):
            tail = ""
        return f"dnsmasq ended with status {self.dnsmasq.returncode}: {tail}".strip()

    def stop_dnsmasq(self) -> None:
        if self.dnsmasq is None:
            return
        if self.dnsmasq.poll() is None:
            self.dnsmasq.terminate()
            try:
                self.dnsmasq.wait(5)
            except subprocess.TimeoutExpired:
                self.dnsmasq.kill()
                self.dnsmasq.wait()
        if self.dnsmasq.stderr:
            self.dnsmasq.stderr.close()
        self.dnsmasq = None

    def teardown(self) -> None:
        """Remove our table and shaping (uninstall, tests); close() leaves them in place."""
        self.stop_dnsmasq()
        self._run(["nft", "-f", "-"], input=policy.nft_teardown(), check=False)
        for argv in policy.tc_teardown(self.cfg):
            self._run(argv, check=False)

    # --- clients ---------------------------------------------------------------------------
    def admit(self, address: str, seconds: int) -> None:
        self.nft(policy.admit_script(address, seconds))

    def expel(self, address: str) -> None:
        self._run(["nft", "-f", "-"], input=policy.expel_script(address), check=False)

    def admitted(self) -> dict[str, int]:
        """Clients let out now: address → seconds left."""
        out = self._run(["nft", "-j", "list", "set", "inet", policy.TABLE, policy.ADMITTED_SET])
        found: dict[str, int] = {}
        for item in json.loads(out).get("nftables", []):
            for elem in (item.get("set") or {}).get("elem", []) or []:
                inner = elem.get("elem", elem) if isinstance(elem, dict) else {"val": elem}
                value = inner.get("val")
                if isinstance(value, str):
                    found[value] = int(inner.get("expires", inner.get("timeout", 0)) or 0)
        return found

    def counters(self) -> dict[str, dict[str, int]]:
        out = self._run(["nft", "-j", "list", "counters", "table", "inet", policy.TABLE])
        found = {}
        for item in json.loads(out).get("nftables", []):
            counter = item.get("counter")
            if counter and counter.get("table") == policy.TABLE:
                found[counter["name"]] = {"packets": int(counter.get("packets", 0)),
                                          "bytes": int(counter.get("bytes", 0))}
        return found
