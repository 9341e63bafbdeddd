"""Free internet access for visitors: the guarded browsing view at the kiosk (allowlist, navigation
hook, filtering proxy, session limits and wipe) and the guest network's captive portal."""
