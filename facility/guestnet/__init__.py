"""Guest Wi-Fi: the appliance as the gateway of the visitors' network (DHCP and DNS by dnsmasq,
an nftables table with the admitted clients, client isolation, no way to the office networks or
the appliance's own services but the portal, a total rate cap by tc htb and an optional per-client
ceiling). Run by ``cnap agent`` (root, long-lived): a kiosk crash leaves guests connected; the
captive portal itself is the kiosk's (terminal/views/portal.py), which asks this controller to
``admit`` a client. See docs/internet-guest.md.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

from facility.base import DISABLED, UNAVAILABLE

from .config import Config, ConfigError, enabled, from_settings

log = logging.getLogger("cnap.guestnet")

SETUP_RETRY_S = 10.0
ACTIONS = ("admit", "expel", "check")


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="seconds")


class GuestNetworkController:
    name = "guestnet"
    interval_s = 2.0

    def __init__(self, settings: dict[str, Any], gateway=None) -> None:
        self.events: deque[dict] = deque(maxlen=50)
        self.cfg: Config | None = None
        self.config_error = ""
        self.setup_error = ""
        self.read_error = ""
        self._lock = threading.RLock()
        self._set_up = False
        self._last_setup_try = -SETUP_RETRY_S
        self._admitted: dict[str, int] = {}
        self._counters: dict[str, dict[str, int]] = {}
        self._day = ""
        self._admitted_today = 0
        self.gateway = gateway
        if not enabled(settings):
            return
        try:
            self.cfg = from_settings(settings)
        except ConfigError as exc:
            self.config_error = str(exc)
            self._event("config_error", f"Налаштування гостьової мережі: {exc}", f"Guest network settings: {exc}")
            log.error("guestnet: %s", exc)
            return
        if self.cfg.uplinks_note:
            self._event("config_warning", f"Гостьова мережа: {self.cfg.uplinks_note}",
                        f"Guest network: {self.cfg.uplinks_note}")
            log.warning("guestnet: %s", self.cfg.uplinks_note)
        if self.gateway is None:
            from .io import Gateway
            state_dir = settings.get("GUEST_STATE_DIR") or None
            self.gateway = Gateway(self.cfg, state_dir)

    # --- the agent's side --------------------------------------------------------------
    def poll(self, now: float) -> None:
        if self.cfg is None:
            return
        with self._lock:
            try:
                self._poll(now)
            except Exception as exc:  # noqa: BLE001 - never raise into the agent
                log.exception("guestnet poll")
                self.read_error = str(exc)

    def _poll(self, now: float) -> None:
        mono = time.monotonic()
        if not self._set_up and mono - self._last_setup_try >= SETUP_RETRY_S:
            self._setup()
        if not self._set_up:
            return
        if not self.gateway.dnsmasq_running():
            why = self.gateway.dnsmasq_failure()
            if why:
                self._event("dnsmasq_restarted", f"DHCP/DNS гостей перезапущено ({why})",
                            f"Guests' DHCP/DNS restarted ({why})")
                log.error("guestnet: %s; restarting", why)
            self.gateway.start_dnsmasq()
        try:
            self._admitted = self.gateway.admitted()
            self._counters = self.gateway.counters()
            self.read_error = ""
        except Exception as exc:  # noqa: BLE001 - the table was removed under us: set it up again
            self.read_error = str(exc)
            self._set_up = False

    def _setup(self) -> None:
        self._last_setup_try = time.monotonic()
        try:
            previous = {}
            try:   # clients admitted before an agent restart stay admitted
                previous = self.gateway.admitted()
            except Exception:  # noqa: BLE001 - no table yet
                pass
            self.gateway.setup(previous)
            self.gateway.start_dnsmasq()
            self._set_up = True
            if self.setup_error:
                self._event("setup_ok", "Гостьову мережу налаштовано", "Guest network set up")
            self.setup_error = ""
            log.info("guestnet: gateway of %s on %s set up", self.cfg.network, self.cfg.interface)
        except Exception as exc:  # noqa: BLE001
            if self.setup_error != str(exc):
                self._event("setup_failed", f"Не вдалося налаштувати гостьову мережу: {exc}",
                            f"Could not set up the guest network: {exc}")
                log.error("guestnet setup: %s", exc)
            self.setup_error = str(exc)

    def _event(self, kind: str, text_uk: str, text_en: str) -> None:
        self.events.appendleft({"at": _iso(time.time()), "kind": kind, "text_uk": text_uk, "text_en": text_en})

    def _count_admission(self) -> None:
        today = time.strftime("%Y-%m-%d")   # the site's local day
        if today != self._day:
            self._day, self._admitted_today = today, 0
        self._admitted_today += 1

    # --- views and commands --------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self._lock:
            base = {"events": list(self.events)[:20]}
            if self.config_error:
                return {**base, "available": False, "state": UNAVAILABLE, "alerts": ["config_error"],
                        "error": self.config_error}
            if self.cfg is None:
                return {**base, "available": False, "state": DISABLED, "alerts": []}
            alerts = []
            if self.setup_error:
                alerts.append("setup_failed")
            dnsmasq = bool(self.gateway and self._set_up and self.gateway.dnsmasq_running())
            if self._set_up and not dnsmasq:
                alerts.append("dhcp_down")
            if self.read_error:
                alerts.append("read_failed")
            available = self._set_up and not self.read_error
            counters = self._counters
            if time.strftime("%Y-%m-%d") != self._day:
                self._day, self._admitted_today = time.strftime("%Y-%m-%d"), 0
            return {**base, "available": available, "state": ("ok" if not alerts else "degraded")
                    if available else UNAVAILABLE, "alerts": alerts,
                    "interface": self.cfg.interface, "network": self.cfg.network,
                    "dhcp": dnsmasq, "clients_now": len(self._admitted),
                    "admitted_today": self._admitted_today,
                    "bytes_up": counters.get("bytes_up", {}).get("bytes", 0),
                    "bytes_down": counters.get("bytes_down", {}).get("bytes", 0),
                    "blocked": counters.get("blocked", {}).get("packets", 0),
                    "redirected": counters.get("redirected", {}).get("packets", 0),
                    "total_rate_kbit": self.cfg.total_kbit, "client_rate_kbit": self.cfg.client_kbit,
                    "admit_minutes": self.cfg.admit_minutes,
                    "error": self.setup_error or self.read_error or None}

    def command(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._command(action, args if isinstance(args, dict) else {})
        except Exception as exc:  # noqa: BLE001
            log.exception("guestnet command")
            return {"ok": False, "message": f"failed: {type(exc).__name__}"}

    def _command(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        if action not in ACTIONS:
            return {"ok": False, "message": f"unknown action {str(action)[:40]!r}; known: {', '.join(ACTIONS)}"}
        if self.cfg is None:
            return {"ok": False, "message": self.config_error or "the guest network is off (GUEST_INTERFACE is empty)"}
        ip = args.get("ip")
        if not isinstance(ip, str) or not self.cfg.contains(ip):
            return {"ok": False, "message": f"ip must be a guest's address in {self.cfg.network}"}
        ip = str(ipaddress.IPv4Address(ip))
        with self._lock:
            if not self._set_up:
                return {"ok": False, "message": f"the guest network is not set up: {self.setup_error or 'starting'}"}
            if action == "check":
                left = self.gateway.admitted().get(ip, 0)
                return {"ok": True, "message": str(left)}
            if action == "expel":
                self.gateway.expel(ip)
                self._admitted.pop(ip, None)
                return {"ok": True, "message": "expelled"}
            minutes = args.get("minutes", self.cfg.admit_minutes)
            if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= self.cfg.admit_minutes:
                return {"ok": False, "message": f"minutes must be a whole number from 1 to {self.cfg.admit_minutes}"}
            self.gateway.admit(ip, minutes * 60)
            self._admitted[ip] = minutes * 60
            self._count_admission()
            return {"ok": True, "message": str(minutes * 60)}

    def close(self) -> None:
        """Stop dnsmasq (our child); the firewall and shaping stay, so admitted guests keep their
        access while the agent restarts (io.Gateway.teardown removes them for good)."""
        with self._lock:
            if self.gateway is not None:
                try:
                    self.gateway.stop_dnsmasq()
                except Exception:  # noqa: BLE001
                    log.exception("guestnet close")


def build(settings: dict[str, Any]) -> GuestNetworkController:
    return GuestNetworkController(settings)


def real_equipment_configured(settings: dict[str, Any]) -> bool:
    """A site's own GUEST_INTERFACE: ``cnap demo`` leaves it alone and builds no lab."""
    return enabled(settings)


class DemoGuestNetwork:
    """``cnap demo``'s guest Wi-Fi: the namespaces of facility/guestnet/lab.py (root only), with a
    guest phone that takes a DHCP lease once the agent's dnsmasq answers."""

    def __init__(self) -> None:
        from .lab import GATEWAY, GUEST_INTERFACE, INTERNET, GuestLab
        from facility.uplinks.netlab import sh

        self.lab = GuestLab(guests=1)
        try:
            # The address first, so the kiosk can bind its portal listener before the agent runs.
            sh("ip", "-n", self.lab.gateway, "addr", "replace", f"{GATEWAY}/22", "dev", GUEST_INTERFACE)
            sh("ip", "-n", self.lab.gateway, "link", "set", GUEST_INTERFACE, "up")
        except BaseException:
            self.lab.close()
            raise
        self.settings = self.lab.settings()
        guest = self.lab.guests[0]
        self.description = (f"guest Wi-Fi in namespaces (gateway {self.lab.gateway}); be the guest's phone with "
                            f"`ip netns exec {guest} curl -i http://{INTERNET}/` (redirected to the portal "
                            f"http://{GATEWAY}:{self.settings.get('GUEST_PORTAL_PORT', 8083)}/portal/ until "
                            "accepted)")
        self._stopping = threading.Event()
        threading.Thread(target=self._lease, name="cnap-demo-guest", daemon=True).start()

    def _lease(self) -> None:
        while not self._stopping.is_set():
            try:
                lease = self.lab.dhcp(1, timeout_s=5)
                print(f"cnap demo: the guest phone got {lease['ip']} by DHCP from the agent's dnsmasq", flush=True)
                return
            except Exception:  # noqa: BLE001 - the agent is not up yet: try again
                self._stopping.wait(2)

    def stop(self) -> None:
        self._stopping.set()
        self.lab.close()


def start_simulator(settings: dict[str, Any]):
    """The demo's guest network in namespaces; when that is impossible (not root, a tool
    missing) the reason is raised and ``cnap demo`` prints it and runs on without guest Wi-Fi."""
    from .lab import usable
    why = usable()
    if why:
        raise RuntimeError(f"guest Wi-Fi is off in this demo: {why} (run `sudo make demo` to see it)")
    return DemoGuestNetwork()
