"""The hub's "out of service" switch on the kiosk (terminal/out_of_service.py): while on, no new
payment starts — the screen says why in Ukrainian and English, with the reason's words from the
interface catalogue — while the payment in flight finishes and prints; the catalogue keeps
working; the switch survives a restart and an unreadable file keeps payments closed."""
from __future__ import annotations

import json

import pytest

from tests.payments.helpers import Kiosk, make_app
from terminal import close_app
from terminal.out_of_service import FILE_NAME, REASONS, OutOfServiceSwitch, check
from terminal.state import state

UK_REFUSAL = "Оплата тимчасово недоступна: технічне обслуговування термінала"
EN_REFUSAL = "Payment is temporarily unavailable: terminal maintenance"


def switch(kiosk) -> OutOfServiceSwitch:
    return state(kiosk.app).out_of_service


def test_on_refuses_new_payments_the_one_in_flight_finishes_and_the_catalogue_works(tmp_path):
    kiosk = Kiosk(make_app(tmp_path / "instance"))
    try:
        kiosk.payer()
        kiosk.begin("cash")
        kiosk.pay_bills(5000)
        second = kiosk.app.test_client()
        assert kiosk.payer(client=second).status_code == 302     # a ready draft, not started yet

        assert switch(kiosk).set(True, "maintenance", "hub.central") == (True, "out of service on")

        kiosk.pay_bills(2000)
        kiosk.insert(2000)
        kiosk.settle()
        paid = kiosk.payment()
        assert paid.status == "paid" and paid.receipt == "printed"
        payments_before = list(kiosk.till.order)

        kiosk.client.post("/pay/finish")
        page = kiosk.client.get("/pay").get_data(as_text=True)
        assert UK_REFUSAL in page and "головному екрані" in page
        refused = kiosk.payer()
        assert refused.status_code == 503 and UK_REFUSAL in refused.get_data(as_text=True)
        refused = second.post("/pay/confirm", data={"draft": kiosk.draft(second), "method": "cash"})
        assert refused.status_code == 503 and UK_REFUSAL in refused.get_data(as_text=True)
        assert kiosk.till.order == payments_before
        assert kiosk.client.get("/").status_code == 200 and kiosk.client.get("/search?q=паспорт").status_code == 200

        second.post("/lang/en", data={"next": "/pay"})
        assert EN_REFUSAL in second.get("/pay").get_data(as_text=True)
        health = kiosk.client.get("/healthz").get_json()["checks"]["out_of_service"]
        assert health == {"ok": True, "on": True, "reason": "maintenance"}

        assert switch(kiosk).set(False, None, "hub.central")[0] is True
        assert kiosk.payer().status_code == 302
        assert second.post("/pay/confirm", data={"draft": kiosk.draft(second), "method": "cash"}).status_code == 302
    finally:
        kiosk.close()


@pytest.mark.parametrize("reason", REASONS)
def test_each_reason_has_its_words_in_both_languages(tmp_path, reason):
    kiosk = Kiosk(make_app(tmp_path / "instance"))
    try:
        switch(kiosk).set(True, reason, "hub.central")
        uk = kiosk.payer().get_data(as_text=True)
        kiosk.client.post("/lang/en", data={"next": "/"})
        en = kiosk.payer().get_data(as_text=True)
        assert "Оплата тимчасово недоступна: " in uk and "oos.reason" not in uk
        assert "Payment is temporarily unavailable: " in en and "oos.reason" not in en
    finally:
        kiosk.close()


def test_the_switch_survives_a_restart_and_each_change_is_audited(tmp_path):
    app = make_app(tmp_path / "instance")
    state(app).out_of_service.set(True, "encashment", "staff.olena")
    state(app).out_of_service.set(True, "encashment", "staff.olena")   # no change: no entry
    close_app(app)
    app = make_app(tmp_path / "instance")
    try:
        current = state(app).out_of_service.current()
        assert (current.on, current.reason, current.by) == (True, "encashment", "staff.olena")
        assert Kiosk(app).payer().status_code == 503
        state(app).out_of_service.set(False, None, "hub.central")
        entries = [(e["action"], e["detail"]) for e in state(app).staff.audit_log()
                   if e["action"].startswith("out_of_service")]
        assert entries == [("out_of_service.off", {"reason": None, "by": "hub.central"}),
                           ("out_of_service.on", {"reason": "encashment", "by": "staff.olena"})]
    finally:
        close_app(app)


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"on": "yes", "by": "hub.a"}', b"\xff\xfe", b" " * 5000,
                                     json.dumps({"on": True, "reason": "Free text", "by": "hub.a"}).encode()])
def test_an_unreadable_file_keeps_payments_closed_until_set_again(tmp_path, content):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / FILE_NAME).write_bytes(content)
    kiosk = Kiosk(make_app(instance))
    try:
        assert kiosk.payer().status_code == 503
        health = kiosk.client.get("/healthz")
        assert health.status_code == 503 and health.get_json()["checks"]["out_of_service"]["error"] == "unreadable"
        assert switch(kiosk).set(False, None, "hub.central")[0] is True
        assert kiosk.payer().status_code == 302
        assert json.loads((instance / FILE_NAME).read_text())["on"] is False
    finally:
        kiosk.close()


def test_bad_values_are_refused_and_change_nothing(tmp_path):
    seen = []
    switch = OutOfServiceSwitch(tmp_path / FILE_NAME, lambda action, detail: seen.append(action))
    for on, reason, by in ((1, "maintenance", "hub.a"), (True, None, "hub.a"), (True, "Ремонт", "hub.a"),
                           (True, "maintenance", ""), (True, "maintenance", "Іван Петренко"),
                           (True, "maintenance", "hub.a\n"), (False, "x", "hub.a"), (True, "maintenance", None)):
        assert check(on, reason, by) is not None
        assert switch.set(on, reason, by)[0] is False
    assert switch.current().on is False and seen == [] and not (tmp_path / FILE_NAME).exists()


def test_a_switch_that_cannot_be_saved_stays_as_it_was(tmp_path):
    folder = tmp_path / "instance"
    switch = OutOfServiceSwitch(folder / FILE_NAME)
    folder.write_text("")    # the folder is now a file: no write can succeed (even as root)
    ok, message = switch.set(True, "maintenance", "hub.a")
    assert ok is False and "cannot save" in message and switch.current().on is False
