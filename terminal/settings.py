"""Every setting of the appliance, in one place.

Resolution order (later wins):
  1. the defaults below — they run the whole appliance on simulators out of the box;
  2. a TOML file: the path in ``CNAP_CONFIG``, else ``<instance>/cnap.toml`` when it exists
     (keys are the setting names in lower case, e.g. ``idle_timeout_s = 90``);
  3. environment variables ``CNAP_<NAME>`` (e.g. ``CNAP_IDLE_TIMEOUT_S=90``);
  4. the ``config`` mapping passed to ``create_app`` (tests).

``docs/settings.md`` is generated from this table (``cnap settings --markdown``) and a test
keeps the two in step, so a setting cannot exist undocumented.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from facility import CONTROLLERS as FACILITY_CONTROLLERS


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    doc: str
    area: str

    @property
    def kind(self) -> type:
        return type(self.default)

    def parse(self, raw: Any) -> Any:
        """Coerce a TOML or environment value to the setting's type, with a clear error."""
        kind = self.kind
        if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
            return raw
        text = str(raw).strip()
        try:
            if kind is bool:
                lowered = text.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
            if kind is list:
                return [item.strip() for item in text.split(",") if item.strip()]
            return text
        except ValueError:
            raise SettingError(f"setting {self.name}: {text!r} is not a valid {kind.__name__}") from None


class SettingError(ValueError):
    pass


def _s(area: str, name: str, default: Any, doc: str) -> Setting:
    return Setting(name=name, default=default, doc=doc, area=area)


SETTINGS: tuple[Setting, ...] = (
    # --- kiosk -------------------------------------------------------------------------
    _s("kiosk", "HOST", "127.0.0.1", "Address the kiosk's web server listens on. Keep loopback "
       "unless desk tablets must reach it over the LAN."),
    _s("kiosk", "PORT", 8080, "TCP port of the kiosk's web server."),
    _s("kiosk", "TABLET_HOST", "127.0.0.1", "Address of the desk tablets' own listener, which serves "
       "only the tablet app (/tablet/…), the survey API (/api/survey/…) and the two static files they "
       "load; anything else there is 404. Set it to this machine's LAN address (or 0.0.0.0) so desk "
       "tablets reach it, and keep HOST on loopback. Empty: no tablet listener."),
    _s("kiosk", "TABLET_PORT", 8081, "TCP port of the desk tablets' listener (0: any free port)."),
    _s("kiosk", "SERVICE_NETWORKS", [], "Networks of other machines (CIDR, e.g. 192.168.10.0/24; "
       "comma-separated in the environment) allowed to use service mode, /metrics and the catalogue "
       "on the main listener when HOST is not loopback. The pay flow (/pay/…) answers only this "
       "machine, whatever this says. Empty: only this machine (clients 127.0.0.1, ::1 or HOST "
       "itself); other clients of the main listener get 403 for everything but the tablet pages."),
    _s("kiosk", "HTTP_THREADS", 8, "Worker threads of the web server (waitress); desk tablets and "
       "the kiosk screen share them."),
    _s("kiosk", "MAX_CONTENT_LENGTH", 1024 * 1024, "Largest request body in bytes; larger gets 413 "
       "(400 with a JSON error on the survey API). A few routes allow more: attract-loop media "
       "uploads (50 MB + 1 MiB) and tablet answer batches (2 MiB); the web server refuses a body "
       "larger than all of them before reading it."),
    _s("kiosk", "MAX_FORM_MEMORY_SIZE", 1024 * 1024, "Largest non-file field of a multipart form, in "
       "bytes (Flask/Werkzeug)."),
    _s("kiosk", "MAX_FORM_PARTS", 100, "Most fields and files one multipart form may have "
       "(Flask/Werkzeug); more gets 413."),
    _s("kiosk", "MAX_JSON_DEPTH", 20, "Deepest nesting of arrays and objects a JSON request body may "
       "have; deeper gets 400 before it is parsed."),
    _s("kiosk", "INSTANCE_PATH", "", "Folder for the SQLite files and the optional cnap.toml. "
       "Empty: ./instance under the working directory."),
    _s("kiosk", "TERMINAL_ID", "KIOSK-01", "Identifier of this terminal, printed on receipts and "
       "reported to monitoring."),
    _s("kiosk", "BRANCH_ID", "central", "Catalogue id of the branch this terminal stands in."),
    _s("kiosk", "DEFAULT_LANGUAGE", "uk", "Language a new visitor sees first: uk or en."),
    _s("kiosk", "IDLE_TIMEOUT_S", 90, "Seconds without a touch before the idle warning appears."),
    _s("kiosk", "IDLE_WARNING_S", 30, "Seconds the idle warning counts down before the kiosk "
       "returns home and forgets the visitor (WCAG 2.2.1 asks for at least 20)."),
    _s("kiosk", "SECRET_KEY", "", "Key that signs the visitor's session cookie. Empty: a random "
       "key per process start (visitors' sessions end with a restart, which is what a kiosk wants)."),
    _s("kiosk", "HTTPS", False, "The kiosk is reached over HTTPS (a TLS-terminating proxy in front of "
       "waitress): the session cookie gets the Secure flag, so browsers never send it over plain "
       "HTTP. Leave off for the kiosk screen on loopback (plain HTTP there would drop a Secure "
       "cookie and break every form). The cookie is always HttpOnly and SameSite=Strict."),
    _s("kiosk", "FULLSCREEN", True, "Open the kiosk window full-screen and frameless."),
    _s("kiosk", "ALLOWED_ORIGINS", [], "Extra origins (scheme://host[:port]) the kiosk window may "
       "navigate to besides its own. Comma-separated in the environment."),
    # --- catalogue ---------------------------------------------------------------------
    _s("catalogue", "CATALOGUE_DB", "catalogue.sqlite", "Catalogue database file, relative to the "
       "instance folder."),
    _s("catalogue", "CATALOGUE_SOURCE", "", "Catalogue folder (YAML) imported when the database is "
       "empty. Empty: the sample catalogue shipped in terminal/catalogue/sample."),
    _s("catalogue", "TIMEZONE", "Europe/Kyiv", "Time zone for branch schedules (open now / closes at)."),
    # --- service mode ------------------------------------------------------------------
    _s("service", "SERVICE_DB", "service.sqlite", "Service-mode database (staff PINs, audit log), "
       "relative to the instance folder."),
    _s("service", "SERVICE_PINS", "admin:000000,cashier:111111,technician:222222",
       "Initial staff PINs as role:PIN pairs, used only while the service database has no staff. "
       "Change them in service mode on the first day."),
    _s("service", "SERVICE_SESSION_S", 600, "Seconds of inactivity after which service mode logs out "
       "(measured on the server: the session ends even if its page stays open)."),
    _s("service", "SERVICE_PINS_MUST_CHANGE", True, "Staff created from SERVICE_PINS (and seeded staff "
       "still holding those PINs) must choose a PIN of their own at first login before service mode "
       "lets them do anything else. Switch off only if SERVICE_PINS holds PINs nobody else knows."),
    # --- devices -----------------------------------------------------------------------
    _s("devices", "BILL_VALIDATOR_URL", "sim", "Bill validator port as a pyserial URL (/dev/ttyUSB0, "
       "socket://127.0.0.1:9001, spy://…). 'sim': start the CCNET simulator inside the kiosk; "
       "empty: no cash acceptance."),
    _s("devices", "BILL_VALIDATOR_PROFILE", "cashcode-sm", "Device profile in "
       "firmware_configs/devices/bill_validator/ (baud, poll interval, denominations)."),
    _s("devices", "CARD_TERMINAL_URL", "sim", "Card terminal (PrivatBank ECR JSON) as a pyserial URL "
       "(socket://10.0.0.5:2000 for TCP terminals). 'sim': built-in simulator; empty: no card payments."),
    _s("devices", "CARD_MERCHANT_ID", "", "Merchant id passed with Purchase when the terminal serves "
       "several merchants. Empty: the terminal's default."),
    _s("devices", "PRINTER_URL", "sim", "Receipt printer (ESC/POS) as a pyserial URL. 'sim': built-in "
       "simulator; empty: electronic receipts only."),
    _s("devices", "PRINTER_PROFILE", "generic-80mm", "Printer profile in "
       "firmware_configs/devices/printer/ (code page, paper width)."),
    # --- payments ----------------------------------------------------------------------
    _s("payments", "JOURNAL_DB", "journal.sqlite", "Payment journal (append-only, WAL, full sync), "
       "relative to the instance folder. Never delete it: it is the truth about money."),
    _s("payments", "RECEIPT_VERIFY_URL", "http://127.0.0.1:8080/receipt/", "Base URL printed in the "
       "receipt's QR code to verify it; the receipt number and a check code are appended."),
    _s("payments", "MAX_PAYMENT_KOP", 5000000, "Largest total one payment may have, in kopiykas."),
    _s("payments", "PERSONAL_DATA_RETENTION_DAYS", 90, "Days after a payment is settled during which the "
       "journal keeps the payer's full surname and tax number for the bank registry; then they are "
       "masked by an audited redaction event (at start and every hour; `cnap payments redact`)."),
    # --- surveys -----------------------------------------------------------------------
    _s("surveys", "SURVEYS_DB", "surveys.sqlite", "Survey definitions, tablets and answers, relative "
       "to the instance folder."),
    _s("surveys", "SURVEY_REPEAT_WINDOW_S", 5, "Presses on the same tablet within this many seconds "
       "count once and are flagged."),
    _s("surveys", "SURVEY_BURST_SIZE", 10, "This many identical main answers in a row from one tablet "
       "within SURVEY_BURST_WINDOW_S are flagged for review (never dropped)."),
    _s("surveys", "SURVEY_BURST_WINDOW_S", 120, "Time window for SURVEY_BURST_SIZE: the answers were "
       "given within it (tablet times) or reached the server within it (the server's clock)."),
    _s("surveys", "SURVEY_MAX_OFFLINE_S", 7 * 86400, "Oldest answer a tablet may still deliver, in "
       "seconds before it sends it (its clock corrected): how long a tablet may stay offline. Older "
       "answers are refused."),
    _s("surveys", "SURVEY_LATE_AFTER_S", 600, "An answer given more than this many seconds before an "
       "earlier delivery from the same tablet was held back while the tablet was online: stored, "
       "flagged 'late' and not counted. 0 turns the check off."),
    _s("surveys", "SURVEY_API_REQUESTS_PER_MIN", 120, "Answer batches one tablet may send a minute "
       "(in bursts of as many); more get 429 with Retry-After and the tablet retries. 0: no limit."),
    _s("surveys", "SURVEY_CLOCK_QUIET_S", 3600, "A step of the server's wall clock (NTP) is adopted for "
       "survey times only after this many seconds without survey activity (answers, shift starts and "
       "ends), so a step during a shift or a burst changes no figures."),
    _s("surveys", "SURVEY_THANKS_S", 6, "Seconds the thank-you screen stays before the tablet returns "
       "to the first question."),
    # --- ventilation -------------------------------------------------------------------
    _s("ventilation", "VENT_UNIT_URL", "", "The air handling unit: tcp://HOST:502 (Modbus TCP), "
       "rtu+tcp://GATEWAY:PORT (RTU frames through a transparent serial gateway) or "
       "rtu:///dev/ttyUSB0?baudrate=9600&parity=N&stopbits=1 (RS-485); add ?device_id=N for a unit "
       "address other than 1. Empty: no ventilation control on this site (the simulator of "
       "`cnap demo` sets it)."),
    _s("ventilation", "VENT_PROFILE", "generic", "Register map of the unit: a profile name from "
       "firmware_configs/ventilation/ (generic, systemair-save) or the path of a profile YAML file."),
    _s("ventilation", "VENT_TIMEOUT_S", 1.0, "Seconds to wait for the unit's answer to one request."),
    _s("ventilation", "VENT_INTERVAL_S", 30.0, "Seconds between two polls of the unit."),
    _s("ventilation", "VENT_MODE", "demand", "Mode at start: off (fans stopped where the unit allows "
       "it, else its lowest level), schedule (levels from the branch's opening hours) or demand "
       "(levels from CO2 within the schedule). Service mode can change it; a manual override is "
       "always time-limited."),
    _s("ventilation", "VENT_CO2_BANDS_PPM", ["800", "1000", "1400"], "CO2 thresholds in ppm, "
       "increasing (EN 16798-1 categories I–III). Comma-separated in the environment."),
    _s("ventilation", "VENT_CO2_LEVELS", ["1", "2", "3", "4"], "Fan level below the first CO2 band, "
       "in each band and above the last (one more entry than VENT_CO2_BANDS_PPM)."),
    _s("ventilation", "VENT_HYSTERESIS_PPM", 100, "CO2 must fall this far below a threshold before "
       "the band drops back."),
    _s("ventilation", "VENT_DWELL_S", 300, "An automatic level change waits at least this many seconds "
       "after the previous change, so fans do not hunt."),
    _s("ventilation", "VENT_DOWN_DWELL_S", 900, "A lowering of the level (other than off or frost "
       "protection) waits at least this many seconds after the previous change."),
    _s("ventilation", "VENT_PRE_PURGE_MIN", 60, "Minutes of ventilation at VENT_PURGE_LEVEL before "
       "the branch opens."),
    _s("ventilation", "VENT_POST_PURGE_MIN", 30, "Minutes of ventilation at VENT_PURGE_LEVEL after "
       "the branch closes."),
    _s("ventilation", "VENT_PURGE_LEVEL", 2, "Fan level of the pre- and post-purge."),
    _s("ventilation", "VENT_OPEN_LEVEL", 2, "Fan level while open in schedule mode, and in demand "
       "mode when no CO2 reading can be believed."),
    _s("ventilation", "VENT_CLOSED_LEVEL", 0, "Fan level while closed (0: off, if the unit allows)."),
    _s("ventilation", "VENT_MIN_LEVEL", 1, "Lowest running level this site allows."),
    _s("ventilation", "VENT_MAX_LEVEL", 4, "Highest level this site allows (the unit's profile may "
       "allow fewer)."),
    _s("ventilation", "VENT_COMFORT_LEVEL", 3, "Level used for humidity above VENT_RH_MAX_PCT and for "
       "free cooling of a room above VENT_TEMP_MAX_C when it is cooler outside."),
    _s("ventilation", "VENT_RH_MAX_PCT", 70.0, "Room relative humidity above which the level is raised."),
    _s("ventilation", "VENT_TEMP_MAX_C", 26.0, "Room temperature above which the room is cooled with "
       "outdoor air when that is at least 2 °C cooler."),
    _s("ventilation", "VENT_FROST_OUTDOOR_C", -15.0, "Outdoor temperature below which frost "
       "protection limits the airflow to VENT_FROST_MAX_LEVEL (ends 2 °C above)."),
    _s("ventilation", "VENT_FROST_SUPPLY_C", 8.0, "Supply air temperature below which frost "
       "protection limits the airflow (ends 2 °C above)."),
    _s("ventilation", "VENT_FROST_MAX_LEVEL", 1, "Highest level during frost protection."),
    _s("ventilation", "VENT_FILTER_DP_MAX_PA", 150.0, "Filter differential pressure (Pa) above which "
       "the filter is reported dirty."),
    _s("ventilation", "VENT_FAN_MIN_RPM", 200.0, "A fan commanded to run that turns slower than this "
       "after VENT_FAN_GRACE_S is reported failed."),
    _s("ventilation", "VENT_FAN_GRACE_S", 120.0, "Seconds a fan gets to spin up after a level change."),
    _s("ventilation", "VENT_CO2_STUCK_MIN", 30, "A CO2 reading that stays exactly the same this many "
       "minutes is taken as a stuck sensor and not believed."),
    _s("ventilation", "VENT_SENSOR_STALE_S", 300, "A CO2 reading older than this many seconds is not "
       "believed."),
    _s("ventilation", "VENT_OVERRIDE_MAX_MIN", 240, "Longest manual override, in minutes (1–1440; "
       "service mode offers no longer)."),
    _s("ventilation", "VENT_HOURS_CACHE", "ventilation-hours.json", "Last good copy of the branch's "
       "opening hours, relative to the instance folder; used when the catalogue cannot be read."),
    # --- agent (facility controllers, `cnap agent`) -------------------------------------
    _s("agent", "FACILITY_CONTROLLERS", list(FACILITY_CONTROLLERS), "Controller packages `cnap agent` "
       "runs, by module name (facility/base.py). Remove one this site does not have; a package that "
       "cannot be imported or built shows as an unavailable controller with the reason."),
    _s("agent", "AGENT_HOST", "127.0.0.1", "Address of the agent's JSON endpoint (`cnap agent`: "
       "GET /status, POST /command/<controller>). Loopback only (127.0.0.0/8 or ::1): the kiosk and "
       "service mode on this machine are its only clients; anything else is refused at start."),
    _s("agent", "AGENT_PORT", 8082, "TCP port of the agent's JSON endpoint (0: any free port, "
       "printed at start)."),
    _s("agent", "AGENT_TOKEN_FILE", "agent.token", "File holding the agent's random secret, relative "
       "to the instance folder (0600). The agent creates it when missing; the kiosk reads it and "
       "sends it with every request, so other local users and web pages cannot use the endpoint."),
    _s("agent", "AGENT_TIMEOUT_S", 3.0, "Seconds the kiosk waits for an answer from the agent "
       "before service mode shows it as unavailable."),
    _s("agent", "AGENT_MAX_BODY", 16384, "Largest command body in bytes the agent accepts; larger "
       "gets 400."),
    _s("agent", "AGENT_SHUTDOWN_WAIT_S", 60.0, "On a UPS shutdown (low battery or FSD) the agent "
       "stops too, once the kiosk (HOST:PORT) no longer answers, having closed its journal, or after "
       "this many seconds."),
    _s("agent", "AGENT_STOP_TIMEOUT_S", 10.0, "Seconds the agent waits at stop for a controller's "
       "poll in progress to end before closing it anyway."),
    # --- mqtt (the agent's reporting to the site broker, monitoring/mqtt_agent.py) ----------
    _s("mqtt", "MQTT_HOST", "", "Host of the site's MQTT broker the agent reports to (127.0.0.1 on "
       "the appliance). Empty: no MQTT reporting; `cnap agent` runs the controllers and its endpoint "
       "only."),
    _s("mqtt", "MQTT_PORT", 1883, "TCP port of the site broker (its loopback listener; 8883 for TLS)."),
    _s("mqtt", "MQTT_PROTOCOL", "5", "MQTT version the agent speaks: 5, or 3.1.1 for a broker without "
       "MQTT 5 (the demo's embedded broker when Mosquitto is not installed)."),
    _s("mqtt", "MQTT_SITE", "", "This site's id: the cnap/<site>/… topic level and the agent's user "
       "name on the broker (1–32 of a-z 0-9 - _). Required with MQTT_HOST."),
    _s("mqtt", "MQTT_PASSWORD_FILE", "mqtt.password", "File holding the site account's broker "
       "password, relative to the instance folder (keep it 0600)."),
    _s("mqtt", "MQTT_TLS_CA_FILE", "", "CA certificate that signed the broker's certificate. Set: "
       "connect over TLS (1.2 or later); empty: plain MQTT (the broker's loopback listener)."),
    _s("mqtt", "MQTT_TLS_CERT_FILE", "", "Client certificate for brokers that require one (TLS only)."),
    _s("mqtt", "MQTT_TLS_KEY_FILE", "", "Private key of MQTT_TLS_CERT_FILE."),
    _s("mqtt", "MQTT_KEEPALIVE_S", 30, "MQTT keep-alive in seconds: the broker publishes the agent's "
       "last will (offline) about 1.5 times this after the connection dies silently."),
    _s("mqtt", "MQTT_REFRESH_S", 300.0, "Seconds between two full publications of every state topic "
       "(changes are published at once)."),
    _s("mqtt", "MQTT_KIOSK_POLL_S", 5.0, "Seconds between two readings of the kiosk's devices and "
       "pending survey answers."),
    _s("mqtt", "MQTT_RECONNECT_MAX_S", 60.0, "Longest wait between two connection attempts (the wait "
       "doubles from 0.5 s after each failure)."),
    _s("mqtt", "MQTT_OUTBOX_FILE", "mqtt-outbox.sqlite3", "The agent's outbox (SQLite), relative to "
       "the instance folder: the newest state per topic and the survey answers until the broker has "
       "them, across restarts and outages."),
    _s("mqtt", "MQTT_OUTBOX_MAX_ANSWERS", 5000, "Survey answers the outbox holds at most; beyond it "
       "the kiosk keeps them until there is room (none is dropped)."),
    _s("mqtt", "MQTT_OUTBOX_MAX_BYTES", 8388608, "Payload bytes the outbox holds at most; beyond it "
       "the oldest state rows go first and no further answers are taken from the kiosk."),
    _s("mqtt", "MQTT_DISCOVERY", False, "Publish Home Assistant MQTT discovery configs (retained, "
       "under MQTT_DISCOVERY_PREFIX). The broker's ACL must allow it: see monitoring/discovery.py."),
    _s("mqtt", "MQTT_DISCOVERY_PREFIX", "homeassistant", "Home Assistant's discovery prefix."),
    # --- power -------------------------------------------------------------------------
    _s("power", "NUT_HOST", "", "Host of NUT's upsd that watches this kiosk's UPS (127.0.0.1 on the "
       "appliance). Empty: no UPS supervision, and the payment gate stays open. `cnap demo` points it "
       "at a built-in simulator."),
    _s("power", "NUT_PORT", 3493, "TCP port of upsd."),
    _s("power", "NUT_UPS", "ups", "Name of the UPS in upsd (the [section] of ups.conf)."),
    _s("power", "NUT_USERNAME", "", "upsd user (upsd.users) for reading; empty: no login (reading "
       "variables needs none)."),
    _s("power", "NUT_PASSWORD", "", "Password of NUT_USERNAME."),
    _s("power", "NUT_TIMEOUT_S", 3.0, "Seconds to wait for each answer of upsd; a silent upsd makes "
       "the UPS 'unavailable'."),
    _s("power", "POWER_POLL_S", 2.0, "Seconds between readings of upsd and the transfer switch (kiosk "
       "gate and agent alike)."),
    _s("power", "POWER_RUNTIME_MARGIN_S", 300, "On battery, when the UPS reports less runtime than this "
       "(battery.runtime, seconds), the kiosk starts no new payment (the screen says why); payments "
       "already started finish and print. Keep it above the longest payment plus the shutdown."),
    _s("power", "POWER_DEADTIME_S", 15, "A UPS last seen on battery that stays silent this many seconds "
       "counts as critical, as upsmon's DEADTIME: the kiosk shuts down in order."),
    _s("power", "ATS_SOURCE", "none", "How the automatic transfer switch between the two substation "
       "inputs is read: none, modbus (its Modbus TCP map) or contacts (its two position contacts on "
       "GPIO inputs)."),
    _s("power", "ATS_URL", "", "Where the ATS is: modbus-tcp://HOST:PORT?unit=N for modbus; "
       "contacts://PATH_A,PATH_B (GPIO value files, 1 = closed) for contacts."),
    # --- uplinks (facility/uplinks, run by `cnap agent`) ----------------------------------
    _s("uplinks", "UPLINKS", [], "Internet providers in priority order, each written like an ip "
       "route line: 'NAME dev=IFACE via=GATEWAY table=ID' (src=ADDRESS binds the probes to a source "
       "address instead of, or as well as, the interface); e.g. 'kyivstar dev=eth1 via=192.168.1.1 "
       "table=101'. Comma-separated in the environment. Empty: the uplink watch is off."),
    _s("uplinks", "UPLINKS_TARGETS", ["icmp:1.1.1.1", "icmp:8.8.8.8", "icmp:9.9.9.9",
                                      "tcp:1.1.1.1:443", "tcp:8.8.8.8:443", "tcp:9.9.9.9:443"],
       "Probe targets, each probed through every uplink every interval: icmp:HOST, tcp:HOST:PORT "
       "(a refused connection counts as reached) or http://HOST[:PORT]/PATH. Give three or more "
       "hosts: an uplink's loss and RTT are the lower median over these paths, so one host that "
       "rate-limits or answers slowly cannot fail a link."),
    _s("uplinks", "UPLINKS_MODE", "report_only", "gateway: this appliance routes the LAN and switches "
       "the default route (policy routing), pins connections to their uplink and flushes those of a "
       "dead one. report_only: an existing router switches; the same watch only reports (it adds "
       "just the per-uplink tables its own probes use)."),
    _s("uplinks", "UPLINKS_PROBE_INTERVAL_MS", 500, "Milliseconds between two probe rounds of an uplink."),
    _s("uplinks", "UPLINKS_PROBE_TIMEOUT_MS", 800, "A probe unanswered this long is lost."),
    _s("uplinks", "UPLINKS_DOWN_ROUNDS", 3, "Rounds in a row without a single answer that make an uplink "
       "down (a cut): about interval × rounds + timeout to detect, 2.3 s with the defaults."),
    _s("uplinks", "UPLINKS_WINDOW_S", 30.0, "Sliding window, in seconds, over which loss and RTT are "
       "measured."),
    _s("uplinks", "UPLINKS_MIN_ROUNDS", 10, "Rounds the window must hold before loss or RTT may decide."),
    _s("uplinks", "UPLINKS_LOSS_DOWN_PCT", 50.0, "An up uplink with this much loss (median over its "
       "paths, per cent) in the window goes down."),
    _s("uplinks", "UPLINKS_LOSS_UP_PCT", 20.0, "A down uplink comes back only with at most this much "
       "loss over its stable period (below UPLINKS_LOSS_DOWN_PCT: hysteresis)."),
    _s("uplinks", "UPLINKS_RTT_DOWN_MS", 1500, "An up uplink whose median RTT in the window reaches "
       "this goes down."),
    _s("uplinks", "UPLINKS_RTT_UP_MS", 800, "A down uplink comes back only with a median RTT at most "
       "this over its stable period."),
    _s("uplinks", "UPLINKS_STABLE_S", 30.0, "Seconds a down uplink must stay good before it is up "
       "again; failing back to a better uplink happens then (within one probe interval)."),
    _s("uplinks", "UPLINKS_GUEST_UPLINK", "", "Uplink reserved for the guest network (visitors' "
       "internet); staff traffic uses it only when no other uplink is up. Empty: none."),
    _s("uplinks", "UPLINKS_GUEST_NETWORK", "", "The guest network (CIDR, e.g. 10.99.0.0/22) whose "
       "traffic goes through UPLINKS_GUEST_UPLINK (gateway mode)."),
    _s("uplinks", "UPLINKS_GUEST_SHARE", False, "While the guest uplink is down, let guests use the "
       "staff uplink. Off: the guest network has no internet until its uplink is back."),
    _s("uplinks", "UPLINKS_ACTIVE_TABLE", 200, "Routing table holding the active default route "
       "(gateway mode); must differ from the uplinks' tables."),
    _s("uplinks", "UPLINKS_GUEST_TABLE", 201, "Routing table holding the guest network's default route."),
    _s("uplinks", "UPLINKS_RULE_PRIORITY", 10000, "First of the 100 ip rule priorities the watch owns "
       "(it replaces any rule there on start)."),
    _s("uplinks", "UPLINKS_NETNS", "", "Network namespace (ip netns name) the uplinks live in. Empty: "
       "the agent's own."),
    _s("uplinks", "UPLINKS_FLUSH_CONNTRACK", True, "Gateway mode: forget the tracked connections of an "
       "uplink that goes down, so their next packet starts over through the active uplink."),
    # hub: the alert rules' numbers (monitoring/alerts.py, docs/monitoring-alerts.md)
    _s("hub", "HUB_ALERT_UPS_ON_BATTERY_FOR_S", 300, "Seconds a UPS runs on battery before the "
       "ups_on_battery alert fires."),
    _s("hub", "HUB_ALERT_UPS_LOW_BATTERY_PCT", 30, "UPS charge (%) below which ups_low_battery fires."),
    _s("hub", "HUB_ALERT_UPS_BATTERY_OK_PCT", 40, "UPS charge (%) at or above which ups_low_battery "
       "resolves (above the low mark, so a charge hovering at it does not flap)."),
    _s("hub", "HUB_ALERT_CO2_HIGH_PPM", 1400, "CO2 (ppm) above which co2_high starts (EN 16798-1 "
       "category III)."),
    _s("hub", "HUB_ALERT_CO2_OK_PPM", 1300, "CO2 (ppm) at or below which co2_high resolves."),
    _s("hub", "HUB_ALERT_CO2_FOR_S", 600, "Seconds CO2 stays high before co2_high fires."),
    _s("hub", "HUB_ALERT_UPLINK_DOWN_FOR_S", 60, "Seconds an uplink (or every uplink of a site) is "
       "down before uplink_down (all_uplinks_down) fires."),
    _s("hub", "HUB_ALERT_CASSETTE_FULL_PCT", 90, "Bill cassette fill (%) at which cassette_full fires."),
    _s("hub", "HUB_ALERT_CASSETTE_OK_PCT", 80, "Bill cassette fill (%) below which cassette_full "
       "resolves (after encashment)."),
    _s("hub", "HUB_ALERT_SITE_OFFLINE_FOR_S", 60, "Seconds a site stays offline (its agent's last "
       "will) before site_offline fires; a quick reconnect is no alert."),
    _s("hub", "HUB_ALERT_CLOCK_SKEW_MAX_S", 120, "Largest difference in seconds between an agent's "
       "clock and the hub's before agent_clock_skew starts; it resolves at half of it."),
    _s("hub", "HUB_ALERT_CLOCK_SKEW_FOR_S", 300, "Seconds the skew lasts before agent_clock_skew fires."),
    _s("hub", "HUB_ALERT_KEEP_FIRING_FOR_S", 120, "Seconds a firing alert's resolve condition must "
       "hold before it resolves (damps a condition that toggles quickly)."),
    _s("hub", "HUB_ALERT_REPEAT_INTERVAL_S", 14400, "Seconds between repeated notices of a firing "
       "alert nobody has acknowledged."),
    _s("hub", "HUB_ALERT_FLAP_WINDOW_S", 3600, "Window in seconds for counting how often an alert "
       "fired (flap detection)."),
    _s("hub", "HUB_ALERT_FLAP_LIMIT", 3, "An alert that fires more often than this within "
       "HUB_ALERT_FLAP_WINDOW_S is flapping: one 'flapping' notice, then quiet until it settles."),
    # --- hub: process, store, ingest, web, notifications (docs/monitoring.md) ---------------
    _s("hub", "HUB_HOST", "127.0.0.1", "Address the hub's web app listens on. Facility staff reach it "
       "through a TLS-terminating proxy; keep loopback unless the hub's own network is trusted."),
    _s("hub", "HUB_PORT", 8090, "TCP port of the hub's web app (0: any free port)."),
    _s("hub", "HUB_HTTP_THREADS", 8, "Worker threads of the hub's web server."),
    _s("hub", "HUB_STORE", "", "Where the hub keeps state and history: a file path or sqlite:///path "
       "(one machine, a few hundred sites), or postgresql://user@host/db (a region or the country; "
       "several hubs and ingest machines share it). Empty: hub.db in the instance folder."),
    _s("hub", "HUB_SECRET_KEY", "", "Key that signs the hub's session cookie. Empty: random per start "
       "(staff log in again after a restart)."),
    _s("hub", "HUB_SESSION_IDLE_S", 900, "A staff session on the hub ends after this many seconds "
       "without a request."),
    _s("hub", "HUB_HTTPS", False, "The hub is reached over HTTPS (a proxy in front): the session "
       "cookie gets the Secure flag."),
    _s("hub", "HUB_COMMAND_TTL_S", 300, "A command to a site (ventilation override, kiosk out of "
       "service) not delivered within this many seconds is not acted upon."),
    _s("hub", "HUB_EVALUATE_INTERVAL_S", 1.0, "Seconds between the alert evaluator's and the "
       "notifier's rounds."),
    _s("hub", "HUB_MQTT_HOST", "", "The central broker the hub's ingest workers read "
       "(cnap/+/# through the shared subscription). Empty: no ingest in this process."),
    _s("hub", "HUB_MQTT_PORT", 8883, "Port of the central broker (8883: TLS; 1883: loopback only)."),
    _s("hub", "HUB_MQTT_USERNAME", "hub.central", "The hub's broker account (role hub: reads every "
       "site, writes only commands)."),
    _s("hub", "HUB_MQTT_PASSWORD", "", "Password of HUB_MQTT_USERNAME."),
    _s("hub", "HUB_MQTT_CA_FILE", "", "CA certificate that signed the central broker's; set: TLS."),
    _s("hub", "HUB_MQTT_CLIENT_ID", "hub-ingest", "Client id prefix of the ingest workers (each adds "
       "-<n>; hubs on several machines need different prefixes)."),
    _s("hub", "HUB_MQTT_PROTOCOL", "5", "MQTT version of the ingest workers: 5, or 3.1.1 for a broker "
       "without MQTT 5 (then no shared subscription: one worker reads everything)."),
    _s("hub", "HUB_SHARED_GROUP", "hub", "MQTT 5 shared-subscription group the ingest workers join "
       "($share/<group>/cnap/+/#); the hub account's ACL allows the group 'hub'."),
    _s("hub", "HUB_INGEST_WORKERS", 1, "Ingest worker processes this hub runs."),
    _s("hub", "HUB_NOTIFY_WEBHOOK_URL", "", "Alert notifications are POSTed here as JSON. Empty: no webhook."),
    _s("hub", "HUB_NOTIFY_WEBHOOK_SECRET", "", "Signs each webhook body (HMAC-SHA256, header "
       "X-Cnap-Signature) so the receiver knows it came from the hub."),
    _s("hub", "HUB_NOTIFY_WEBHOOK_TIMEOUT_S", 10.0, "Seconds a webhook request may take."),
    _s("hub", "HUB_NOTIFY_SMTP_HOST", "", "Mail server for alert e-mails. Empty: no e-mail."),
    _s("hub", "HUB_NOTIFY_SMTP_PORT", 25, "Mail server port (587 with STARTTLS)."),
    _s("hub", "HUB_NOTIFY_SMTP_STARTTLS", False, "Upgrade the mail connection with STARTTLS."),
    _s("hub", "HUB_NOTIFY_SMTP_USER", "", "Mail login (empty: none)."),
    _s("hub", "HUB_NOTIFY_SMTP_PASSWORD", "", "Mail password."),
    _s("hub", "HUB_NOTIFY_SMTP_FROM", "", "Sender address of alert e-mails."),
    _s("hub", "HUB_NOTIFY_SMTP_TO", [], "Recipients of alert e-mails (comma-separated in the environment)."),
    _s("hub", "HUB_NOTIFY_MAX_ATTEMPTS", 10, "A notification is given up after this many failed tries, or when HUB_NOTIFY_GIVE_UP_AFTER_S has passed."),
    _s("hub", "HUB_NOTIFY_RETRY_S", 30.0, "Seconds before the second try of a notification that failed; "
       "each further try waits twice as long."),
    _s("hub", "HUB_NOTIFY_RETRY_MAX_S", 3600.0, "Longest wait between two tries of a notification."),
    _s("hub", "HUB_NOTIFY_BATCH", 50, "Notifications one round of the notifier sends at most."),
    _s("hub", "HUB_NOTIFY_SMTP_TIMEOUT_S", 20.0, "Seconds the mail server may take."),
    _s("hub", "HUB_NOTIFY_GIVE_UP_AFTER_S", 86400.0, "Seconds after which a notification that could not be sent is given up."),
    # --- internet: filtering proxy (terminal/internet/proxy.py, docs/internet.md) ---------------
    _s("internet", "INTERNET_PROXY_PORT", 0, "TCP port on 127.0.0.1 of the filtering proxy (tinyproxy) "
       "the browsing view goes through (0: any free port, chosen at start)."),
    _s("internet", "INTERNET_PROXY_BINARY", "tinyproxy", "The tinyproxy program (a name on PATH or a "
       "full path; Debian package tinyproxy-bin). The kiosk runs it itself in the foreground, never "
       "the system service."),
    _s("internet", "INTERNET_ALLOWED_PORTS", [80, 443], "Ports a browsing-view URL may name, and the "
       "only ports the proxy connects to (comma-separated in the environment; 1–65535). A URL without "
       "a port uses its scheme's default (80, 443), which must be listed too."),
    _s("internet", "INTERNET_PROXY_MAX_CLIENTS", 32, "Most connections the filtering proxy serves at "
       "once (tinyproxy MaxClients); one browsing view opens a few per page."),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
ENV_PREFIX = "CNAP_"


def defaults() -> dict[str, Any]:
    return {s.name: (list(s.default) if isinstance(s.default, list) else s.default) for s in SETTINGS}


def _merge(target: dict[str, Any], values: Mapping[str, Any], origin: str, strict: bool) -> None:
    for key, raw in values.items():
        name = key.upper()
        setting = BY_NAME.get(name)
        if setting is None:
            if strict:
                raise SettingError(f"{origin}: unknown setting {key!r}")
            continue
        target[name] = setting.parse(raw)


def load(config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
         instance_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Resolve every setting: defaults → TOML → CNAP_* environment → ``config``."""
    env = os.environ if environ is None else environ
    values = defaults()
    toml_path = env.get(ENV_PREFIX + "CONFIG")
    if not toml_path:
        folder = instance_path or env.get(ENV_PREFIX + "INSTANCE_PATH") or "instance"
        candidate = Path(folder) / "cnap.toml"
        toml_path = str(candidate) if candidate.is_file() else ""
    if toml_path:
        try:
            with open(toml_path, "rb") as fh:
                _merge(values, tomllib.load(fh), toml_path, strict=True)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingError(f"cannot read settings file {toml_path}: {exc}") from exc
    _merge(values, {k[len(ENV_PREFIX):]: v for k, v in env.items()
                    if k.startswith(ENV_PREFIX) and k != ENV_PREFIX + "CONFIG"}, "environment",
           strict=False)
    if config:
        # Tests may pass Flask's own keys (TESTING, ...) alongside ours.
        for key, raw in config.items():
            setting = BY_NAME.get(key.upper())
            values[key.upper() if setting else key] = setting.parse(raw) if setting else raw
    if values["DEFAULT_LANGUAGE"] not in ("uk", "en"):
        raise SettingError("setting DEFAULT_LANGUAGE: must be uk or en")
    if not 1 <= values["HTTP_THREADS"] <= 64:
        raise SettingError("setting HTTP_THREADS: must be from 1 to 64")
    if values["PERSONAL_DATA_RETENTION_DAYS"] < 1:
        raise SettingError("setting PERSONAL_DATA_RETENTION_DAYS: must be at least 1")
    if not 0 <= values["TABLET_PORT"] <= 65535:
        raise SettingError("setting TABLET_PORT: must be from 0 to 65535")
    if not _is_loopback(values["AGENT_HOST"]):
        raise SettingError(f"setting AGENT_HOST: {values['AGENT_HOST']!r} is not a loopback address "
                           "(127.0.0.1 or ::1); the agent's endpoint never leaves this machine")
    if not 0 <= values["AGENT_PORT"] <= 65535:
        raise SettingError("setting AGENT_PORT: must be from 0 to 65535")
    for name in ("MQTT_PROTOCOL", "HUB_MQTT_PROTOCOL"):
        if values[name] not in ("5", "3.1.1"):
            raise SettingError(f"setting {name}: 5 or 3.1.1")
    if values["MQTT_HOST"] and not _valid_site_id(values["MQTT_SITE"]):
        raise SettingError("setting MQTT_SITE: a site id (1–32 of a-z 0-9 - _) is required with MQTT_HOST")
    if not 0 < values["MQTT_PORT"] <= 65535 or not 5 <= values["MQTT_KEEPALIVE_S"] <= 3600:
        raise SettingError("settings MQTT_PORT and MQTT_KEEPALIVE_S: 1–65535 and 5–3600 seconds")
    if values["MQTT_REFRESH_S"] < 1 or values["MQTT_KIOSK_POLL_S"] < 0.1 or values["MQTT_RECONNECT_MAX_S"] < 0.5:
        raise SettingError("settings MQTT_REFRESH_S, MQTT_KIOSK_POLL_S, MQTT_RECONNECT_MAX_S: at least 1, 0.1, 0.5 s")
    if values["MQTT_OUTBOX_MAX_ANSWERS"] < 1 or values["MQTT_OUTBOX_MAX_BYTES"] < 65536:
        raise SettingError("settings MQTT_OUTBOX_MAX_ANSWERS and MQTT_OUTBOX_MAX_BYTES: at least 1 and 65536")
    if not 1 <= values["VENT_OVERRIDE_MAX_MIN"] <= 24 * 60:
        raise SettingError("setting VENT_OVERRIDE_MAX_MIN: must be from 1 to 1440")
    for module_name in values["FACILITY_CONTROLLERS"]:
        if not _MODULE_NAME.fullmatch(module_name):
            raise SettingError(f"setting FACILITY_CONTROLLERS: {module_name!r} is not a module name "
                               "such as facility.ventilation")
    if values["ATS_SOURCE"] not in ("none", "modbus", "contacts"):
        raise SettingError("setting ATS_SOURCE: must be none, modbus or contacts")
    if not 0 < values["POWER_POLL_S"] <= 60 or not 0 < values["NUT_TIMEOUT_S"] <= 30:
        raise SettingError("settings POWER_POLL_S and NUT_TIMEOUT_S: from above 0 to 60 and 30 seconds")
    if not 0 <= values["INTERNET_PROXY_PORT"] <= 65535:
        raise SettingError("setting INTERNET_PROXY_PORT: must be from 0 to 65535")
    if not 1 <= values["INTERNET_PROXY_MAX_CLIENTS"] <= 1024:
        raise SettingError("setting INTERNET_PROXY_MAX_CLIENTS: must be from 1 to 1024")
    try:
        ports = [int(port) for port in values["INTERNET_ALLOWED_PORTS"]]
    except (TypeError, ValueError):
        ports = []
    if not ports or not all(0 < port <= 65535 for port in ports):
        raise SettingError("setting INTERNET_ALLOWED_PORTS: one or more ports from 1 to 65535, e.g. 80,443")
    values["INTERNET_ALLOWED_PORTS"] = sorted(set(ports))
    for network in values["SERVICE_NETWORKS"]:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingError(f"setting SERVICE_NETWORKS: {network!r} is not a network "
                               "such as 192.168.10.0/24") from None
    return values


_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII)


def _valid_site_id(site: str) -> bool:
    from monitoring.topics import valid_site_id   # here: pydantic loads only when MQTT is set

    return valid_site_id(site)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: "localhost" may resolve elsewhere on a badly set-up machine
        return False


def markdown() -> str:
    """The settings reference, as shipped in docs/settings.md."""
    lines = [
        "# Settings",
        "",
        "Generated by `cnap settings --markdown` from `terminal/settings.py`; a test fails when the",
        "two differ. Resolution order, later wins: defaults → TOML file (`CNAP_CONFIG`, else",
        "`<instance>/cnap.toml`; keys in lower case) → `CNAP_<NAME>` environment → the mapping given",
        "to `create_app(config)`.",
        "",
    ]
    area = None
    for s in SETTINGS:
        if s.area != area:
            area = s.area
            lines += [f"## {area.capitalize()}", ""]
        default = ",".join(map(str, s.default)) if isinstance(s.default, list) else s.default
        lines += [f"### {s.name}", "", f"- environment: `{ENV_PREFIX}{s.name}`",
                  f"- type: {s.kind.__name__}; default: `{default!s}`", "", s.doc, ""]
    return "\n".join(lines)
