"""The cash side of service mode: what is in the cassette since the last encashment, the
encashment (collection) reports, and the shifts closed by Z reports. All folded from the
journal's ``encashment`` and ``shift`` streams and the payments' credited bills. The till's lock
guards both books."""
from __future__ import annotations

from collections import Counter
from typing import Callable

from payments.ledger import Ledger
from payments.reports import shift_totals
from payments.streams import ENCASHMENT_STREAM, SHIFT_STREAM

Write = Callable[[str, str, dict], int]


class Cassette:
    """Bills credited since the last encashment, and the encashment reports."""

    def __init__(self, *, write: Write, now: Callable[[], float], terminal_id: str) -> None:
        self._write = write
        self._now = now
        self._terminal_id = terminal_id
        self._bills: list[tuple[int, int]] = []  # (journal id, kop) credited since the last encashment
        self._encashments: list[dict] = []

    def replay(self, record) -> None:
        """A record of the ``encashment`` stream."""
        if record.kind == "encashment":
            self._encashments.append(dict(record.data, id=record.id, at=record.at))
            self._bills = []

    def credit(self, record_id: int, kop: int) -> None:
        """A bill credited by the journal record ``record_id`` is in the cassette."""
        self._bills.append((record_id, kop))

    def counts(self) -> dict[int, int]:
        """Denomination (kop) -> number of bills."""
        return dict(Counter(kop for _, kop in self._bills))

    def encash(self, staff: str) -> dict:
        """The cassette was emptied: journal the counts, start a new count."""
        counts = self.counts()
        report = {"counts": {str(k): v for k, v in sorted(counts.items())},
                  "bills": sum(counts.values()), "total_kop": sum(k * v for k, v in counts.items()),
                  "by": staff, "terminal": self._terminal_id,
                  "since_id": self._encashments[-1]["id"] if self._encashments else 0}
        record_id = self._write(ENCASHMENT_STREAM, "encashment", report)
        report.update(id=record_id, at=self._now())
        self._encashments.append(report)
        self._bills = []
        return report

    def history(self, count: int | None = None) -> list[dict]:
        """Encashment reports, oldest first (the last ``count`` of them)."""
        return list(self._encashments if count is None else self._encashments[-count:] if count > 0 else [])


class Shifts:
    """Z reports close shifts; a shift is the range of journal ids after the last Z report's."""

    def __init__(self, ledger: Ledger, *, write: Write, now: Callable[[], float], terminal_id: str) -> None:
        self._ledger = ledger
        self._write = write
        self._now = now
        self._terminal_id = terminal_id
        self._closed: list[dict] = []

    def replay(self, record) -> None:
        """A record of the ``shift`` stream."""
        if record.kind == "z_report":
            self._closed.append(dict(record.data, id=record.id, at=record.at))

    def x_report(self, *, since_id: int | None = None, until_id: int | None = None) -> dict:
        """Totals of the payments created since the last Z report (or after journal id
        ``since_id``, up to ``until_id``)."""
        last = self._closed[-1] if self._closed else None
        if since_id is None:
            since_id = last["id"] if last else 0
        return shift_totals(self._ledger.created_between(since_id, until_id), since_id=since_id,
                            since=last["at"] if last else 0.0)

    def close(self, staff: str) -> dict:
        """The Z report: journaled, and the next shift starts after it."""
        report = self.x_report()
        report.update(number=len(self._closed) + 1, by=staff, terminal=self._terminal_id)
        record_id = self._write(SHIFT_STREAM, "z_report", report)
        report.update(id=record_id, at=self._now())
        self._closed.append(report)
        return report

    def history(self, count: int | None = None) -> list[dict]:
        """Z reports, oldest first (the last ``count`` of them)."""
        return list(self._closed if count is None else self._closed[-count:] if count > 0 else [])
