# cnap-kiosk: `make demo` runs the appliance, `make test` passes the tests. Both set up a fresh
# Debian machine themselves (Debian packages via apt-get as root, Python packages in .venv).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Debian packages: browser tests (chromium), the native window under a virtual screen (xvfb,
# matchbox, WebKit2GTK), building PyGObject (libgirepository, cairo), fonts with Cyrillic;
# chattr, mkfs.ext4, mount, pgrep for the money-under-faults tests (full and read-only file systems).
APT_PACKAGES := chromium xvfb xauth imagemagick matchbox-window-manager xdotool \
	gir1.2-webkit2-4.1 libgirepository1.0-dev libcairo2-dev pkg-config \
	x11-utils fonts-dejavu-core python3-venv e2fsprogs mount procps
APT_PACKAGES += socat  # ventilation tests: a serial line for Modbus RTU as a pty pair
APT_PACKAGES += nut-server nut-client  # UPS tests (upsd, dummy-ups)
APT_PACKAGES += iproute2 nftables conntrack  # uplink failover: policy routing, pinning, flushes, namespace tests
APT_PACKAGES += mosquitto mosquitto-clients openssl  # MQTT broker tests (real mosquitto, mosquitto_passwd, TLS certificates)
APT_PACKAGES += postgresql libpq5 prometheus  # the hub on PostgreSQL (tests start their own server); promtool checks /metrics
APT_PACKAGES += tinyproxy-bin  # internet: the filtering proxy (run by the kiosk in the foreground; no system service)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# ESPHome (for validating the sensor nodes' configs) pins paho-mqtt 1.x while the app needs 2.x, so
# it lives in a venv of its own.
ESPHOME_VENV ?= .venv-esphome
ESPHOME_VERSION ?= 2026.6.5

.PHONY: demo test system-deps python-deps esphome-venv bench docs translations clean

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,gtk]'
	touch $@

python-deps: system-deps $(VENV)/.installed

$(ESPHOME_VENV)/.installed:
	$(PYTHON) -m venv $(ESPHOME_VENV)
	$(ESPHOME_VENV)/bin/pip install -q --upgrade pip
	$(ESPHOME_VENV)/bin/pip install -q esphome==$(ESPHOME_VERSION)
	touch $@

esphome-venv: system-deps $(ESPHOME_VENV)/.installed

demo: python-deps
	$(VENV)/bin/cnap demo

test: python-deps esphome-venv
	$(PY) -m pytest -q

bench: python-deps
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

docs: python-deps
	$(VENV)/bin/cnap settings --markdown > docs/settings.md

# Interface strings (docs/translations.md): extract from Python, Jinja and JS into the template,
# merge it into each language's .po (new keys arrive empty, so the tests fail until translated),
# compile the .mo files the app loads. Fuzzy matching is off: the msgids are symbolic keys.
translations: python-deps
	$(VENV)/bin/pybabel extract -F babel.cfg -k N_ --no-location --sort-output --add-comments=TRANSLATORS: \
	  --project=cnap-kiosk --version=0.1.0 -o terminal/translations/messages.pot .
	$(VENV)/bin/pybabel update -i terminal/translations/messages.pot -d terminal/translations \
	  --no-fuzzy-matching --ignore-obsolete --ignore-pot-creation-date -w 100
	$(VENV)/bin/pybabel compile -d terminal/translations --statistics

clean:
	rm -rf $(VENV) $(ESPHOME_VENV) instance .pytest_cache
