"""What the till refuses a request with; the pay screens and service mode turn these into
messages."""
from __future__ import annotations


class Busy(Exception):
    """The hardware serves another payment right now."""


class Unavailable(Exception):
    """The kiosk cannot do this now (not ready, journal fault, device off, wrong voucher code…);
    ``reason`` names why, for the screen's message."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
