"""The shape every pure machine here shares (payments/machine.py, monitoring/alerts.py): a table
from an event's kind to its handler, filled by a decorator beside each handler."""
from __future__ import annotations

from typing import Callable, TypeVar

H = TypeVar("H", bound=Callable)


def handler_table() -> tuple[dict[str, Callable], Callable[[str], Callable[[H], H]]]:
    """A new, empty table and its ``on(kind)`` decorator."""
    table: dict[str, Callable] = {}

    def on(kind: str) -> Callable[[H], H]:
        def register(fn: H) -> H:
            if kind in table:
                raise ValueError(f"two handlers for {kind!r}")
            table[kind] = fn
            return fn
        return register

    return table, on
