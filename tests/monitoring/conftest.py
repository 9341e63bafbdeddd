"""Real Mosquitto brokers (central, and a site broker bridged to it) on free loopback ports."""
from __future__ import annotations

import shutil

import pytest

from monitoring import brokerconf
from tests.monitoring.mqtt import Broker, make_certs, private_dir

# One account per role; the passwords exist only for the tests' brokers.
PASSWORDS = {
    "kyiv-1": "site-kyiv-secret",
    "lviv-2": "site-lviv-secret",
    "hub.central": "hub-secret",
    "staff.olena": "staff-secret",
    "tablet.kyiv-1.desk-3": "tablet-secret",
}


@pytest.fixture(scope="session")
def certs():
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto is not installed: run `make test`, which installs mosquitto and mosquitto-clients")
    folder = make_certs(private_dir("cnap-certs-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def central(certs):
    broker = Broker("central", lambda b: brokerconf.central_conf(
        conf_dir=b.dir, cert_dir=certs, data_dir=b.dir, local_port=b.local_port, tls_port=b.tls_port,
        tls_bind="127.0.0.1", persistence=False, log_dest="stderr"), PASSWORDS)
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def site(central, certs):
    """The kyiv-1 site broker, bridged to ``central``. It also (wrongly) lets lviv-2's agent in,
    so the tests can show the bridge carries no other site's topics even then."""
    accounts = {name: PASSWORDS[name] for name in ("kyiv-1", "lviv-2", "tablet.kyiv-1.desk-3")}
    broker = Broker("site", lambda b: brokerconf.site_conf(
        site="kyiv-1", conf_dir=b.dir, cert_dir=certs, data_dir=b.dir, central_host="127.0.0.1",
        central_port=central.tls_port, central_ca_file=certs / "ca.crt", bridge_password=PASSWORDS["kyiv-1"],
        local_port=b.local_port, tls_port=b.tls_port, tls_bind="127.0.0.1", persistence=False,
        log_dest="stderr"), accounts)
    yield broker
    broker.stop()


from tests.monitoring.postgres import pg_url, postgres_server  # noqa: E402,F401 - fixtures for the hub's tests
