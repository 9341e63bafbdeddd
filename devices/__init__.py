"""Drivers and wire-true simulators for the kiosk's money hardware.

Written like a separate library: nothing here imports from ``terminal`` or ``payments``.
Each device kind has three parts sharing one codec:

* ``<kind>/codec.py``     pure bytes <-> messages, no I/O, no threads, no clock;
* ``<kind>/driver.py``    opens a URL through ``serial.serial_for_url`` (``/dev/ttyUSB0``,
  ``socket://127.0.0.1:PORT``, ``spy://...``, ``loop://``), never raises into its caller on a
  device fault;
* ``<kind>/simulator.py`` the device's side of the wire on a pty or a loopback TCP socket.

Public API (names are stable; the payments package relies on them)::

    from devices.events import DeviceEvent, DeviceStatus
    DeviceEvent(seq, device, kind, data, at)   # seq strictly increasing per driver instance
    DeviceStatus(online, state, last_error, detail)

    from devices.bill_validator.driver import BillValidator
    bv = BillValidator(url, poll_interval_s=0.1, lost_after_polls=30, baudrate=9600,
                       response_timeout_s=0.3)
    bv.start(); bv.stop(); bv.subscribe(callback)      # callback(DeviceEvent) from the poll thread
    bv.enable({2000, 5000, ...}) ; bv.disable()        # kopiykas; escrow always on
    bv.stack() ; bv.return_bill()                      # answers to an "escrow" event
    bv.status() -> DeviceStatus ; bv.bill_table -> list[int]   # kopiykas, read from the device
    bv.clear_alarm()                                   # after a "stacked_unknown" incident
    # event kinds: escrow, stacked, stacked_unknown, returned, rejected(reason), cassette_full,
    # cassette_removed, cassette_replaced, jammed, cheated, failure, powerup_with_bill(where,
    # amount_kop?), power_up, power_up_at_start, lost, online, disabled, idle,
    # unavailable(reason), available, alarm_cleared.
    # Bill events carry {"amount_kop", "currency", "bill_type"}.
    # The driver never auto-stacks; credit only on "stacked". A callback that raises = not
    # recorded: no ACK, same event (same seq) re-delivered later (see bill_validator.driver).

    from devices.card_terminal.driver import CardTerminal, CardResult
    ct = CardTerminal(url, timeouts=None)
    ct.ping() -> bool ; ct.purchase(amount_kop, merchant_id=None) -> CardResult
    ct.last_result() ; ct.void(invoice_number) ; ct.audit() ; ct.reconcile() ; ct.interrupt()
    ct.status() -> DeviceStatus
    # CardResult.status: approved | declined | cancelled | timeout | busy | offline | error | unknown
    # purchase() never re-sends Purchase: after a timeout or lost answer it asks getLastResult.

    from devices.printer.driver import ReceiptPrinter, PrinterStatus, PrintResult
    pr = ReceiptPrinter(url, profile="generic-80mm", code_page="cp1251", width_chars=48)
    pr.status() -> PrinterStatus(online, cover_open, paper, error)
    pr.print_job([("text", "Квитанція", {"bold": True, "align": "center", "double": True}),
                  ("qr", "https://..."), ("feed", 2), ("cut",)]) -> PrintResult

    from devices.bill_validator.simulator import BillValidatorSimulator
    from devices.card_terminal.simulator import CardTerminalSimulator
    from devices.printer.simulator import PrinterSimulator
    sim = BillValidatorSimulator(); url = sim.start_tcp()   # "socket://127.0.0.1:PORT"
    sim.start_pty() -> "/dev/pts/N" ; sim.stop()
    sim.insert_bill(20000) ; sim.power_cycle(bill_in="stacker") ; ...
    CardTerminalSimulator().set_behaviour("approve"|"decline"|"timeout"|"lost_response"|
                                          "customer_cancel"|"no_paper"|"busy")
    PrinterSimulator().set_paper("ok"|"near_end"|"out") ; .set_cover_open(True)
    PrinterSimulator().received_text() -> str ; .render_png(path)

    from devices.sim import start_all
    sims = start_all(host="127.0.0.1")   # SimulatorSet: .urls {kind: url}, .http_url, .stop()

See docs/devices.md for the protocols as implemented.
"""

DEVICE_KINDS = ("bill_validator", "card_terminal", "printer")
