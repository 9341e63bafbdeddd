"""The payment code talks to its parts through public methods: no module reaches into another
object's private members (``till._…``, ``journal._…``), and the till's parts each have a place in
docs/payments.md."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([*(ROOT / "payments").glob("*.py"), ROOT / "terminal" / "views" / "pay.py", ROOT / "terminal" / "cli.py",
                *(ROOT / "bench").glob("payment_*.py")])
ALLOWED = {("os", "_exit")}  # the standard library's own spelling
DOC = (ROOT / "docs" / "payments.md").read_text(encoding="utf-8")


def foreign_private_accesses(source: str) -> list[str]:
    """``x._name`` where ``x`` is not ``self``, ``cls`` or ``super()`` (dunder names excepted)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        value = node.value
        owner = (value.id if isinstance(value, ast.Name)
                 else "super" if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "super" else None)
        if owner in ("self", "cls", "super") or (owner, node.attr) in ALLOWED:
            continue
        found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_finds_a_private_access():
    assert foreign_private_accesses("till._closed = True\nself._ok = 1\nos._exit(0)\n") == ["line 1: till._closed"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_member_of_another_object(path):
    assert foreign_private_accesses(path.read_text(encoding="utf-8")) == []


def test_every_part_the_till_composes_is_documented():
    source = (ROOT / "payments" / "till.py").read_text(encoding="utf-8")
    init = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    built = {n.func.id for n in ast.walk(init) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    imports = dict(re.findall(r"^from payments\.(\w+) import (.+)$", source, re.M))
    parts = {module for module, names in imports.items() if built & {n.strip() for n in names.split(",")}}
    assert {"ledger", "journal_guard", "validator_events", "vouchers", "shift", "printing", "card", "worker",
            "device_status"} <= parts
    section = DOC.split("## The till and its parts", 1)[1].split("\n## ", 1)[0]
    for module in parts:
        assert f"`payments/{module}.py`" in section, module
