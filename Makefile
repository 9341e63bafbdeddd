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
APT_PACKAGES += mosquitto mosquitto-clients openssl  # MQTT broker tests (real mosquitto, mosquitto_passwd, TLS certificates)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test system-deps python-deps bench docs clean

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

demo: python-deps
	$(VENV)/bin/cnap demo

test: python-deps
	$(PY) -m pytest -q

bench: python-deps
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

docs: python-deps
	$(VENV)/bin/cnap settings --markdown > docs/settings.md

clean:
	rm -rf $(VENV) instance .pytest_cache
