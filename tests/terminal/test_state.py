"""The app's shared objects are reached through one typed state object, not string keys, and
payments/ stays below terminal/ (terminal wires the devices into the app, never the reverse)."""
from __future__ import annotations

import ast
from pathlib import Path

from payments.hardware import Hardware
from payments.till import Till
from terminal import close_app, create_app
from terminal.state import KioskState, current_state, state

ROOT = Path(__file__).resolve().parents[2]


def test_every_area_fills_its_typed_fields(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path), "TESTING": True, "SECRET_KEY": "t"})
    try:
        kiosk = state(app)
        assert isinstance(kiosk, KioskState)
        assert isinstance(kiosk.till, Till) and isinstance(kiosk.hardware, Hardware)
        assert kiosk.staff is not None and kiosk.surveys is not None and kiosk.metrics is not None
        assert len(kiosk.catalogue) > 0 and kiosk.search is not None and kiosk.clock is not None
        assert {"catalogue", "payments", "journal", "bill_validator", "card_terminal", "printer",
                "surveys"} <= set(kiosk.health)
        assert kiosk.closers and kiosk.service_sections and kiosk.kiosk_stop is None
        # the one extension key of ours: nothing else is stored under a cnap_* string key
        assert [k for k in app.extensions if k.startswith("cnap")] == ["cnap"]
        with app.app_context():
            assert current_state() is kiosk
    finally:
        close_app(app)
    assert state(app).closers == []


def test_payments_never_imports_terminal():
    # neither the payment runtime (till, journal, devices) nor the `cnap payments` command reaches
    # up into the web app: terminal/cli.py hands the command its settings.
    for path in sorted((ROOT / "payments").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "terminal" or n.startswith("terminal.") for n in names), path


def test_no_string_extension_keys_in_the_code():
    for area in ("terminal", "payments", "bench"):
        for path in sorted((ROOT / area).rglob("*.py")):
            if path.name == "state.py":
                continue
            text = path.read_text(encoding="utf-8")
            assert "extensions[" not in text and "extensions.get(" not in text \
                and "extensions.setdefault(" not in text, path


def test_the_wiring_reads_no_private_members():
    # the modules that wire areas together use other objects' public API only
    paths = [ROOT / "payments" / "hardware.py", ROOT / "terminal" / "state.py", ROOT / "terminal" / "cli.py",
             ROOT / "terminal" / "__init__.py", *sorted((ROOT / "terminal" / "views").glob("*.py"))]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value.id if isinstance(node.value, ast.Name) else None
                assert owner in ("self", "cls"), f"{path.name}:{node.lineno} reads .{node.attr}"
