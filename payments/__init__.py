"""Fee payment: the only place money state changes (see docs/payments.md)."""
