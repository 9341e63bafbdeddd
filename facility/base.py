"""What every facility controller gives the agent (`cnap agent`).

A controller package (``facility/ventilation``, ``facility/power``, ``facility/uplinks``) has:

- ``policy.py``    pure decisions: inputs + time in, commands out; no I/O, no threads, no clock.
- ``io.py``        the real side (pymodbus, NUT, pyroute2/nftables); errors turn into "unavailable".
- ``simulator.py`` the device or network on the other side, speaking the real protocol.
- ``__init__.py``  ``build(settings: dict) -> Controller`` (``settings`` is ``terminal.settings.load()``)
                   and ``start_simulator(settings: dict) -> Simulator`` for ``cnap demo`` and tests.

The agent calls ``poll`` every ``interval_s`` seconds from one thread per controller, serves
``status()`` as JSON on loopback, and passes commands from service mode (later the hub) to
``command``. None of these may raise: a fault is reported in the status, never a crash.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

# The words a controller's status may give as its overall "state" besides its own
# (ventilation: "demand", "schedule", …; power: "online", "on_battery", …).
UNAVAILABLE = "unavailable"     # cannot read or command the equipment right now
DISABLED = "disabled"           # not configured on this site


@runtime_checkable
class Controller(Protocol):
    name: str           # "ventilation", "power", "uplinks": the status key and the MQTT topic word
    interval_s: float   # how often the agent calls poll()

    def poll(self, now: float) -> None:
        """Read inputs, decide, act. ``now`` is time.time(). Never raises."""

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot: at least ``available`` (bool), ``state`` (str), ``alerts`` (list of
        short machine words that are active now, e.g. "filter_dirty") and ``events`` (the recent
        ones, newest first: ``{"at": ISO-8601 UTC, "kind": str, "text_uk": str, "text_en": str}``)."""

    def command(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """Carry out an operator's command; returns ``{"ok": bool, "message": str}``. An unknown
        action or bad argument gives ok False with the reason, never an exception."""

    def close(self) -> None:
        """Release connections and threads; the equipment is left in its safe state."""


class Simulator(Protocol):
    settings: dict[str, Any]   # setting overrides that point the controller at this simulator

    def stop(self) -> None: ...
