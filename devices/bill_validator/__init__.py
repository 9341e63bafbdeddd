"""CashCode CCNET bill validator: codec, driver, simulator."""
