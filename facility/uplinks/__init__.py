"""Internet uplink failover: watch every provider, route through the best one (gateway mode) or
only report (report_only mode, when an existing router does the switching).

``build(settings)`` gives the agent its controller; ``start_simulator(settings)`` gives ``cnap
demo`` and tests three loopback "uplinks" whose loss and cuts can be scripted. See
docs/facility-uplinks.md.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

from facility.base import DISABLED, UNAVAILABLE

from .config import Config, ConfigError, from_settings
from .policy import DOWN, GUEST, UP, Flush, Policy, Round, SetRoute, Transition

log = logging.getLogger("cnap.uplinks")

REASONS = {
    "no_answer": ("немає відповіді", "no answer"),
    "loss": ("великі втрати", "heavy loss"),
    "latency": ("велика затримка", "high latency"),
    "stable": ("стабільний", "stable"),
    "start": ("запуск", "start"),
    "failover": ("аварійне переключення", "failover"),
    "failback": ("повернення на основний", "failback"),
    "prefer": ("вибір оператора", "operator's choice"),
    "guest_uplink_down": ("гостьовий канал недоступний", "guest uplink down"),
    "guest_uplink_up": ("гостьовий канал відновлено", "guest uplink back"),
}
ROUTE_RETRY_S = 2.0
SETUP_RETRY_S = 10.0


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="seconds")


class UplinksController:
    name = "uplinks"
    interval_s = 1.0   # the agent's poll only watches the prober thread; rounds run on their own

    def __init__(self, settings: dict[str, Any]) -> None:
        self._lock = threading.RLock()
        self.events: deque[dict] = deque(maxlen=100)
        self.switches: deque[dict] = deque(maxlen=100)
        self.cfg: Config | None = None
        self.config_error = ""
        self.policy: Policy | None = None
        self.router = None
        self.prober = None
        self.setup_error = ""
        self.route_error = ""
        self.flushed: dict[str, int] = {}
        self._desired: dict[str, str | None] = {}
        self._applied: dict[str, str | None] = {}
        self._last_route_try = 0.0
        self._last_setup_try = 0.0
        self._closed = False
        try:
            self.cfg = from_settings(settings)
        except ConfigError as exc:
            self.config_error = str(exc)
            self._event("config_error", f"Налаштування каналів: {exc}", f"Uplink settings: {exc}")
            log.error("uplinks: %s", exc)
            return
        if self.cfg.uplinks:
            t = self.cfg.thresholds
            self.policy = Policy([u.name for u in self.cfg.uplinks], t,
                                 guest_uplink=self.cfg.guest_uplink, guest_share=self.cfg.guest_share,
                                 interval_s=self.cfg.interval_s)

    # --- the agent's side --------------------------------------------------------------
    def poll(self, now: float) -> None:
        try:
            if self.policy is None or self._closed:
                return
            if self.prober is None or not self.prober.alive():
                if self.prober is not None:
                    self._event("probe_restarted", "Перевірку каналів перезапущено",
                                "Uplink probing restarted")
                self._start()
        except Exception as exc:  # noqa: BLE001 - never raise into the agent
            log.exception("uplinks poll")
            self.setup_error = str(exc)

    def start(self) -> "UplinksController":
        """Start watching now (the agent's first poll does the same)."""
        self.poll(time.time())
        return self

    def _start(self) -> None:
        from .io import Prober, Router
        cfg = self.cfg
        if self.router is None and any(u.routable for u in cfg.uplinks):
            self.router = Router(cfg)
        self.prober = Prober(cfg, self._on_round, self._on_tick, on_start=self._on_start)
        self.prober.start()

    def _on_start(self) -> None:
        with self._lock:
            self.setup_error = ""
            self._setup()
            if not self._desired:
                self._apply(self.policy.start(time.monotonic()))
            else:
                self._applied = {}   # a restarted prober re-applies the routes it had

    def _setup(self) -> None:
        if self.router is None:
            return
        self._last_setup_try = time.monotonic()
        try:
            self.router.setup()
            if self.setup_error:
                self._event("route_ok", "Маршрути каналів налаштовано", "Uplink routing set up")
                self._applied = {}   # set the routes again on the fresh tables
            self.setup_error = ""
        except Exception as exc:  # noqa: BLE001
            if self.setup_error != str(exc):
                self._event("route_failed", f"Не вдалося налаштувати маршрути: {exc}",
                            f"Could not set up routing: {exc}")
                log.error("uplinks setup: %s", exc)
            self.setup_error = str(exc)

    def _on_round(self, rnd: Round, now: float) -> None:
        with self._lock:
            self._apply(self.policy.observe(rnd, now))

    def _on_tick(self, now: float) -> None:
        with self._lock:
            self._apply(self.policy.tick(now))
            if self.setup_error and now - self._last_setup_try >= SETUP_RETRY_S:
                self._setup()   # a modem plugged in late, an interface renamed back, …
            if self._desired != self._applied and now - self._last_route_try >= ROUTE_RETRY_S:
                self._routes()

    def _apply(self, outputs: list) -> None:
        for out in outputs:
            if isinstance(out, Transition):
                self._transition(out)
            elif isinstance(out, SetRoute):
                self._switch(out)
                self._routes()   # now, before a Flush that follows
            elif isinstance(out, Flush) and self.cfg.gateway and self.cfg.flush_conntrack and self.router:
                try:
                    count = self.router.flush(out.uplink)
                    self.flushed[out.uplink] = self.flushed.get(out.uplink, 0) + count
                    log.info("uplinks: flushed %d connections of %s", count, out.uplink)
                except Exception as exc:  # noqa: BLE001
                    self._event("flush_failed", f"Не вдалося скинути з'єднання каналу {out.uplink}: {exc}",
                                f"Could not flush the connections of {out.uplink}: {exc}")

    def _transition(self, t: Transition) -> None:
        uk, en = REASONS.get(t.reason, (t.reason, t.reason))
        figures = []
        if t.loss_pct is not None:
            figures.append(f"{t.loss_pct:g} %")
        if t.rtt_ms is not None:
            figures.append(f"{t.rtt_ms:g} ms")
        tail = f" ({', '.join(figures)})" if figures else ""
        if t.new == DOWN:
            self._event("uplink_down", f"Канал {t.uplink} недоступний: {uk}{tail}",
                        f"Uplink {t.uplink} down: {en}{tail}")
        else:
            self._event("uplink_up", f"Канал {t.uplink} знову працює{tail}", f"Uplink {t.uplink} up again{tail}")
        log.info("uplinks: %s %s → %s (%s)%s", t.uplink, t.old, t.new, t.reason, tail)

    def _switch(self, s: SetRoute) -> None:
        self._desired[s.role] = s.uplink
        if s.reason == "start":
            return
        self.switches.appendleft({"at": _iso(time.time()), "role": s.role, "from": s.previous,
                                  "to": s.uplink, "reason": s.reason})
        uk, en = REASONS.get(s.reason, (s.reason, s.reason))
        what_uk, what_en = ("Гостьову мережу", "Guest network") if s.role == GUEST else ("Інтернет", "Internet")
        to_uk, to_en = (s.uplink, s.uplink) if s.uplink else ("нікуди (вимкнено)", "nowhere (off)")
        verb = "переключено" if self.cfg.gateway else "слід переключити"
        verb_en = "switched" if self.cfg.gateway else "should switch"
        self._event("switch", f"{what_uk} {verb} з {s.previous} на {to_uk} ({uk})",
                    f"{what_en} {verb_en} from {s.previous} to {to_en} ({en})")

    def _routes(self) -> None:
        """Make the kernel's tables match the decisions (gateway mode only); retried on failure."""
        if not self.cfg.gateway or self.router is None:
            self._applied = dict(self._desired)
            return
        self._last_route_try = time.monotonic()
        for role, uplink in self._desired.items():
            if role in self._applied and self._applied[role] == uplink:
                continue
            if role == GUEST and not self.cfg.guest_network:
                self._applied[role] = uplink
                continue
            try:
                self.router.set_route(role, uplink)
                self._applied[role] = uplink
                if self.route_error:
                    self.route_error = ""
            except Exception as exc:  # noqa: BLE001
                if self.route_error != str(exc):
                    self._event("route_failed", f"Не вдалося змінити маршрут: {exc}",
                                f"Could not change the route: {exc}")
                    log.error("uplinks route %s → %s: %s", role, uplink, exc)
                self.route_error = str(exc)

    def _event(self, kind: str, text_uk: str, text_en: str) -> None:
        self.events.appendleft({"at": _iso(time.time()), "kind": kind, "text_uk": text_uk, "text_en": text_en})

    # --- views and commands --------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        try:
            return self._status()
        except Exception as exc:  # noqa: BLE001
            log.exception("uplinks status")
            return {"available": False, "state": UNAVAILABLE, "alerts": ["status_failed"],
                    "events": list(self.events), "error": str(exc)}

    def _status(self) -> dict[str, Any]:
        with self._lock:
            base = {"events": list(self.events)[:20], "switches": list(self.switches)[:20]}
            if self.config_error:
                return {**base, "available": False, "state": UNAVAILABLE, "alerts": ["config_error"],
                        "error": self.config_error}
            if self.policy is None:
                return {**base, "available": False, "state": DISABLED, "alerts": []}
            mono, wall = time.monotonic(), time.time()

            def to_wall(m):
                return None if m is None else _iso(wall - (mono - m))

            rows = self.policy.snapshot(mono)
            for row in rows:
                row["since"] = to_wall(row["since"])
                row["healthy_since"] = to_wall(row["healthy_since"])
                if self.prober is not None and row["name"] in self.prober.errors:
                    row["error"] = self.prober.errors[row["name"]]
            running = self.prober is not None and self.prober.alive()
            alerts = []
            down = [r["name"] for r in rows if r["state"] != UP]
            if down:
                alerts.append("uplink_down")
            if len(down) == len(rows):
                alerts.append("all_uplinks_down")
            if self.setup_error or self.route_error:
                alerts.append("route_failed")
            if not running:
                alerts.append("probe_stopped")
            state = ("all_down" if len(down) == len(rows) else "degraded" if down else "ok")
            available = running
            return {**base, "available": available, "state": state if available else UNAVAILABLE,
                    "mode": self.cfg.mode, "active": self.policy.active,
                    "guest_active": self.policy.guest_active if self.cfg.guest_uplink else None,
                    "preferred": self.policy.preferred or None, "uplinks": rows, "alerts": alerts,
                    "flushed": dict(self.flushed),
                    "error": self.setup_error or self.route_error or None}

    def command(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            if action != "prefer":
                return {"ok": False, "message": f"unknown action {action!r}; known: prefer"}
            if self.policy is None:
                return {"ok": False, "message": "no uplinks are configured"}
            uplink = (args or {}).get("uplink") or ""
            if not isinstance(uplink, str) or uplink not in ("", *self.policy.order):
                return {"ok": False, "message": f"no uplink named {str(uplink)[:40]!r}"}
            with self._lock:
                self._apply(self.policy.prefer(uplink, time.monotonic()))
            if uplink:
                return {"ok": True, "message": f"{uplink} is preferred while it is up"}
            return {"ok": True, "message": "back to the configured order"}
        except Exception as exc:  # noqa: BLE001
            log.exception("uplinks command")
            return {"ok": False, "message": f"failed: {exc}"}

    def close(self) -> None:
        """Stop probing. Routes stay as they are: traffic keeps flowing through the last good
        uplink while the agent restarts (Router.teardown removes our rules for good)."""
        self._closed = True
        if self.prober is not None:
            self.prober.stop()


def build(settings: dict[str, Any]) -> UplinksController:
    return UplinksController(settings)


def start_simulator(settings: dict[str, Any]):
    from .simulator import UplinkSimulator
    return UplinkSimulator.start(settings)
