"""Journal streams other than payments (the journal's ``payment_id`` column holds a payment id
or one of these)."""
from __future__ import annotations

DEVICE_STREAM = "device"            # validator states and faults, stray bills, device commands, self-tests
RECOVERY_STREAM = "recovery"        # recovery_case
ENCASHMENT_STREAM = "encashment"    # cassette_removed, cassette_replaced, encashment
SHIFT_STREAM = "shift"              # z_report
RETENTION_STREAM = "retention"      # redaction (payments/retention.py)
VOUCHER_STREAM_PREFIX = "voucher:"  # voucher:<code>: voucher_refunded

