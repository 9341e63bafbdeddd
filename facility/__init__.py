"""Facility control: ventilation, power (UPS, ATS input), internet uplinks and the guest Wi-Fi, each a controller
package that follows ``facility/base.py``, run by ``facility/runner.py`` inside ``cnap agent``."""

# The controller packages the agent loads, by module name. One that cannot be imported, or whose
# build(settings) fails, is reported as an unavailable controller with the reason; the others run.
CONTROLLERS = ("facility.ventilation", "facility.power", "facility.uplinks", "facility.guestnet")
