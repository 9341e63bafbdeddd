"""Home Assistant MQTT discovery for a site: one retained config per entity on
``<prefix>/<component>/<node_id>/<object_id>/config`` (node_id = the site id), pointing at our own
state topics (monitoring/topics.py) with a ``value_template`` into their JSON. Every entity
belongs to one device (the site's agent) and is unavailable while ``cnap/<site>/online`` says
``offline`` (the agent's last will). Home Assistant announces a restart with ``online`` on
``<prefix>/status``; the agent then sends the configs again.

The site's broker must let the site account write its configs and read the status topic; the ACL
lines for that are ``ACL_LINES`` (in firmware_configs/mosquitto/acl; the dotted accounts' blocks
deny them, so only a site's own agent announces under its site id). Discovery is off unless
MQTT_DISCOVERY is set.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from monitoring import topics

DEFAULT_PREFIX = "homeassistant"
MANUFACTURER = "cnap-kiosk"
MODEL = "cnap agent"
ACL_LINES = (f"pattern write {DEFAULT_PREFIX}/+/%u/+/config", f"pattern read {DEFAULT_PREFIX}/status")


def status_topic(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/status"


def config_topic(component: str, site: str, object_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/{component}/{site}/{object_id}/config"


def _entity(site: str, component: str, object_id: str, name: str, state_topic: str, template: str,
            **extra: Any) -> tuple[str, dict]:
    config = {
        "name": name,
        "unique_id": f"cnap_{site}_{object_id}",
        "object_id": f"cnap_{site}_{object_id}",
        "state_topic": state_topic,
        "value_template": template,
        "availability_topic": topics.topic("online", site),
        "payload_available": topics.ONLINE,
        "payload_not_available": topics.OFFLINE,
        "device": {"identifiers": [f"cnap_{site}"], "name": f"ЦНАП {site}", "manufacturer": MANUFACTURER,
                   "model": MODEL},
    }
    config.update({key: value for key, value in extra.items() if value is not None})
    return component, {"object_id_": object_id, **config}


def _binary(template_bool: str) -> str:
    return "{{ 'ON' if " + template_bool + " else 'OFF' }}"


def entities(site: str, uplinks: Iterable[str] = ()) -> list[tuple[str, dict]]:
    """(component, config) for every entity of the site; ``uplinks``: the uplink names it has."""
    vent, air, power = (topics.topic(kind, site) for kind in ("ventilation", "air", "power"))
    diagnostic = "diagnostic"
    found = [
        _entity(site, "sensor", "ventilation_level", "Ventilation level", vent,
                "{{ value_json.level if value_json.level is defined else none }}",
                unit_of_measurement="%", state_class="measurement", icon="mdi:fan"),
        _entity(site, "sensor", "ventilation_state", "Ventilation state", vent, "{{ value_json.state }}",
                entity_category=diagnostic),
        _entity(site, "binary_sensor", "ventilation_problem", "Ventilation problem", vent,
                _binary("(not value_json.available) or (value_json.alerts | length > 0)"),
                device_class="problem", entity_category=diagnostic),
        _entity(site, "sensor", "co2", "CO2", air,
                "{{ value_json.sensors[0].co2_ppm if value_json.sensors and value_json.sensors[0].co2_ppm "
                "is defined else none }}", device_class="carbon_dioxide", unit_of_measurement="ppm",
                state_class="measurement"),
        _entity(site, "sensor", "temperature", "Room temperature", air,
                "{{ value_json.sensors[0].temperature_c if value_json.sensors and "
                "value_json.sensors[0].temperature_c is defined else none }}", device_class="temperature",
                unit_of_measurement="°C", state_class="measurement"),
        _entity(site, "sensor", "humidity", "Room humidity", air,
                "{{ value_json.sensors[0].humidity_pct if value_json.sensors and "
                "value_json.sensors[0].humidity_pct is defined else none }}", device_class="humidity",
                unit_of_measurement="%", state_class="measurement"),
        _entity(site, "sensor", "ups_status", "UPS status", power,
                "{{ value_json.ups.status if value_json.ups is defined else 'unknown' }}", icon="mdi:power-plug"),
        _entity(site, "sensor", "ups_charge", "UPS battery", power,
                "{{ value_json.ups.charge_pct if value_json.ups is defined and value_json.ups.charge_pct "
                "is defined else none }}", device_class="battery", unit_of_measurement="%",
                state_class="measurement"),
        _entity(site, "sensor", "ups_runtime", "UPS runtime", power,
                "{{ value_json.ups.runtime_s if value_json.ups is defined and value_json.ups.runtime_s "
                "is defined else none }}", device_class="duration", unit_of_measurement="s",
                state_class="measurement"),
        _entity(site, "sensor", "ups_input_voltage", "UPS input voltage", power,
                "{{ value_json.ups.input_voltage_v if value_json.ups is defined and "
                "value_json.ups.input_voltage_v is defined else none }}", device_class="voltage",
                unit_of_measurement="V", state_class="measurement", entity_category=diagnostic),
        _entity(site, "binary_sensor", "power_problem", "Power problem", power,
                _binary("(not value_json.available) or (value_json.alerts | length > 0)"),
                device_class="problem", entity_category=diagnostic),
        _entity(site, "binary_sensor", "printer", "Printer", topics.topic("device", site, "printer"),
                _binary("value_json.online"), device_class="connectivity", entity_category=diagnostic),
        _entity(site, "sensor", "printer_paper", "Printer paper", topics.topic("device", site, "printer"),
                "{{ value_json.paper }}", device_class="enum", options=["ok", "near_end", "out", "unknown"]),
        _entity(site, "sensor", "cassette_fill", "Bill cassette fill",
                topics.topic("device", site, "bill_validator"),
                "{{ (100 * value_json.cassette_bills / value_json.cassette_capacity) | round(0) }}",
                unit_of_measurement="%", state_class="measurement", icon="mdi:cash"),
        _entity(site, "binary_sensor", "card_terminal", "Card terminal",
                topics.topic("device", site, "card_terminal"), _binary("value_json.online"),
                device_class="connectivity", entity_category=diagnostic),
    ]
    found += _internet(site) + _guest_network(site)
    for uplink in sorted(set(uplinks)):
        if not topics.valid_name(uplink):
            continue
        state = topics.topic("uplink", site, uplink)
        object_id = "uplink_" + uplink.replace("-", "_")
        found += [
            _entity(site, "binary_sensor", object_id, f"Uplink {uplink}", state, _binary("value_json.up"),
                    device_class="connectivity"),
            _entity(site, "sensor", object_id + "_latency", f"Uplink {uplink} latency", state,
                    "{{ value_json.latency_ms if value_json.latency_ms is defined else none }}",
                    device_class="duration", unit_of_measurement="ms", state_class="measurement",
                    entity_category=diagnostic),
            _entity(site, "sensor", object_id + "_loss", f"Uplink {uplink} loss", state,
                    "{{ value_json.loss_pct if value_json.loss_pct is defined else none }}",
                    unit_of_measurement="%", state_class="measurement", entity_category=diagnostic),
        ]
    return found


def _internet(site: str) -> list[tuple[str, dict]]:
    """The kiosk's visitor browsing today (InternetState)."""
    state = topics.topic("internet", site)
    return [
        _entity(site, "binary_sensor", "internet_offered", "Visitor internet offered", state,
                _binary("value_json.available"), icon="mdi:web"),
        _entity(site, "sensor", "internet_sessions", "Visitor internet sessions today", state,
                "{{ value_json.sessions }}", state_class="total", icon="mdi:web"),
        _entity(site, "sensor", "internet_minutes", "Visitor internet minutes today", state,
                "{{ value_json.minutes }}", device_class="duration", unit_of_measurement="min",
                state_class="total"),
        _entity(site, "sensor", "internet_blocked", "Visitor internet blocked today", state,
                "{{ value_json.blocked_hook + value_json.blocked_proxy }}", state_class="total",
                icon="mdi:shield-off", entity_category="diagnostic"),
    ]


def _guest_network(site: str) -> list[tuple[str, dict]]:
    """The guest Wi-Fi's figures (GuestNetworkState); none while the guest network is not up."""
    state = topics.topic("guest_network", site)

    def figure(field: str) -> str:
        return "{{ value_json." + field + " if value_json.available else none }}"

    return [
        _entity(site, "sensor", "guest_clients", "Guest Wi-Fi clients", state, figure("clients_now"),
                state_class="measurement", icon="mdi:wifi"),
        _entity(site, "sensor", "guest_admitted_today", "Guest Wi-Fi admitted today", state,
                figure("admitted_today"), state_class="total", icon="mdi:account-check"),
        _entity(site, "sensor", "guest_bytes_up", "Guest Wi-Fi sent", state, figure("bytes_up"),
                device_class="data_size", unit_of_measurement="B", state_class="total_increasing"),
        _entity(site, "sensor", "guest_bytes_down", "Guest Wi-Fi received", state, figure("bytes_down"),
                device_class="data_size", unit_of_measurement="B", state_class="total_increasing"),
        _entity(site, "sensor", "guest_blocked", "Guest Wi-Fi blocked", state, figure("blocked"),
                state_class="total_increasing", icon="mdi:shield-off", entity_category="diagnostic"),
        _entity(site, "binary_sensor", "guest_problem", "Guest Wi-Fi problem", state,
                _binary("value_json.alerts | length > 0"), device_class="problem", entity_category="diagnostic"),
    ]


def configs(site: str, uplinks: Iterable[str] = (), prefix: str = DEFAULT_PREFIX) -> list[topics.Outgoing]:
    """The retained discovery messages of the site (QoS 1)."""
    messages = []
    for component, config in entities(site, uplinks):
        object_id = config.pop("object_id_")
        messages.append(topics.Outgoing(config_topic(component, site, object_id, prefix),
                                        json.dumps(config, ensure_ascii=False, sort_keys=True).encode(), 1, True))
    return messages
