"""Helpers shared by every area of the appliance (terminal, payments, facility, monitoring)."""
